// The bounded hand-off between the watcher and the pipeline: backpressure (the producer waits when
// full) and de-duplication (a file queued or in flight is not queued again by the next rescan).
import Foundation

/// A bounded multi-producer, multi-consumer queue of discovered files.
///
/// A path stays "pending" from `offer` until the consumer calls `complete`, so rescans do not queue a
/// file twice. `close()` discards queued files (they stay in the drop folder for the next start) and
/// wakes every waiter; files in flight still complete.
public final class FileQueue: @unchecked Sendable {
    /// Maximum number of files waiting (not counting those in flight).
    public let capacity: Int

    private let lock = NSLock()
    private var buffer: [DiscoveredFile] = []
    private var head = 0
    private var pending: Set<String> = []
    private var inFlightCount = 0
    private var producers: [(id: UInt64, file: DiscoveredFile, continuation: CheckedContinuation<Bool, Never>)] = []
    private var consumers: [(id: UInt64, continuation: CheckedContinuation<DiscoveredFile?, Never>)] = []
    private var nextID: UInt64 = 0
    private var closed = false

    public init(capacity: Int) {
        precondition(capacity > 0)
        self.capacity = capacity
    }

    /// Files waiting to be taken.
    public var depth: Int { lock.withLock { buffer.count - head } }
    /// Files taken and not yet completed.
    public var inFlight: Int { lock.withLock { inFlightCount } }
    /// True once `close()` was called.
    public var isClosed: Bool { lock.withLock { closed } }

    /// True when `path` is queued or in flight.
    public func isPending(_ path: String) -> Bool { lock.withLock { pending.contains(path) } }

    /// Queues a file, waiting while the queue is full.
    /// - Returns: false when the file was already pending, the queue is closed, or the task was cancelled.
    @discardableResult
    public func offer(_ file: DiscoveredFile) async -> Bool {
        enum Immediate { case accepted(CheckedContinuation<DiscoveredFile?, Never>?), refused, wait(UInt64) }
        let immediate: Immediate = lock.withLock {
            if closed || pending.contains(file.path) { return .refused }
            pending.insert(file.path)
            if !consumers.isEmpty {
                inFlightCount += 1
                return .accepted(consumers.removeFirst().continuation)
            }
            if buffer.count - head < capacity {
                append(file)
                return .accepted(nil)
            }
            nextID += 1
            return .wait(nextID)
        }
        switch immediate {
        case .refused: return false
        case .accepted(let consumer):
            consumer?.resume(returning: file)
            return true
        case .wait(let id):
            return await withTaskCancellationHandler {
                await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                    // Looked at again under the lock: a consumer may have taken a file (room now) or begun
                    // waiting since the first look; waiting then would leave this file pending forever.
                    enum Then { case refused, accepted(CheckedContinuation<DiscoveredFile?, Never>?), waiting }
                    let then: Then = lock.withLock {
                        if closed || Task.isCancelled {
                            pending.remove(file.path)
                            return .refused
                        }
                        if !consumers.isEmpty {
                            inFlightCount += 1
                            return .accepted(consumers.removeFirst().continuation)
                        }
                        if buffer.count - head < capacity {
                            append(file)
                            return .accepted(nil)
                        }
                        producers.append((id, file, continuation))
                        return .waiting
                    }
                    switch then {
                    case .refused: continuation.resume(returning: false)
                    case .accepted(let consumer):
                        consumer?.resume(returning: file)
                        continuation.resume(returning: true)
                    case .waiting: break
                    }
                }
            } onCancel: {
                let waiting: CheckedContinuation<Bool, Never>? = lock.withLock {
                    guard let index = producers.firstIndex(where: { $0.id == id }) else { return nil }
                    let producer = producers.remove(at: index)
                    pending.remove(producer.file.path)
                    return producer.continuation
                }
                waiting?.resume(returning: false)
            }
        }
    }

    /// Takes the next file, waiting while the queue is empty. The caller must call `complete(_:)` once done.
    /// - Returns: nil once the queue is closed (or the task is cancelled).
    public func next() async -> DiscoveredFile? {
        enum Immediate { case file(DiscoveredFile, CheckedContinuation<Bool, Never>?), end, wait(UInt64) }
        let immediate: Immediate = lock.withLock {
            if closed { return .end }
            if let (file, admitted) = takeLocked() { return .file(file, admitted) }
            nextID += 1
            return .wait(nextID)
        }
        switch immediate {
        case .end: return nil
        case .file(let file, let admitted):
            admitted?.resume(returning: true)
            return file
        case .wait(let id):
            return await withTaskCancellationHandler {
                await withCheckedContinuation { (continuation: CheckedContinuation<DiscoveredFile?, Never>) in
                    // Looked at again under the lock: a file offered since the first look went to the buffer
                    // (no consumer was waiting yet); waiting now would leave it there while later files
                    // go straight to waiting consumers.
                    enum Then { case end, file(DiscoveredFile, CheckedContinuation<Bool, Never>?), waiting }
                    let then: Then = lock.withLock {
                        if closed || Task.isCancelled { return .end }
                        if let (file, admitted) = takeLocked() { return .file(file, admitted) }
                        consumers.append((id, continuation))
                        return .waiting
                    }
                    switch then {
                    case .end: continuation.resume(returning: nil)
                    case .file(let file, let admitted):
                        admitted?.resume(returning: true)
                        continuation.resume(returning: file)
                    case .waiting: break
                    }
                }
            } onCancel: {
                let waiting: CheckedContinuation<DiscoveredFile?, Never>? = lock.withLock {
                    guard let index = consumers.firstIndex(where: { $0.id == id }) else { return nil }
                    return consumers.remove(at: index).continuation
                }
                waiting?.resume(returning: nil)
            }
        }
    }

    /// Takes a batch: waits for a first file, then takes what else is waiting, up to `limit` files in all
    /// (what arrived while the previous batch ran). The caller must call `complete(_:)` for each.
    /// - Returns: an empty batch once the queue is closed (or the task is cancelled).
    public func nextBatch(limit: Int) async -> [DiscoveredFile] {
        guard let first = await next() else { return [] }
        var batch = [first]
        var admitted: [CheckedContinuation<Bool, Never>] = []
        lock.withLock {
            while batch.count < limit, let (file, producer) = takeLocked() {
                batch.append(file)
                if let producer { admitted.append(producer) }
            }
        }
        for producer in admitted { producer.resume(returning: true) }
        return batch
    }

    /// Queues a file only when there is room at once (never waits); false when it was pending, the queue is
    /// closed or full.
    @discardableResult
    public func offerIfRoom(_ file: DiscoveredFile) -> Bool {
        let consumer: CheckedContinuation<DiscoveredFile?, Never>?? = lock.withLock {
            if closed || pending.contains(file.path) { return .none }
            if !consumers.isEmpty {
                pending.insert(file.path)
                inFlightCount += 1
                return .some(consumers.removeFirst().continuation)
            }
            guard buffer.count - head < capacity else { return .none }
            pending.insert(file.path)
            append(file)
            return .some(nil)
        }
        guard let consumer else { return false }
        consumer?.resume(returning: file)
        return true
    }

    /// Marks a file taken with `next()` as done: it may be queued again (e.g. when it was left in place).
    public func complete(_ path: String) {
        lock.withLock {
            if pending.remove(path) != nil { inFlightCount -= 1 }
        }
    }

    /// Stops the queue: queued files are dropped (not pending any more), waiting producers get false,
    /// waiting consumers nil. Files in flight are unaffected and still call `complete(_:)`.
    public func close() {
        let (waitingProducers, waitingConsumers): ([CheckedContinuation<Bool, Never>], [CheckedContinuation<DiscoveredFile?, Never>]) =
            lock.withLock {
                closed = true
                for file in buffer[head...] { pending.remove(file.path) }
                buffer.removeAll()
                head = 0
                for producer in producers { pending.remove(producer.file.path) }
                defer { producers.removeAll(); consumers.removeAll() }
                return (producers.map(\.continuation), consumers.map(\.continuation))
            }
        for producer in waitingProducers { producer.resume(returning: false) }
        for consumer in waitingConsumers { consumer.resume(returning: nil) }
    }

    /// Under the lock: takes the first buffered file (now in flight) and admits the first waiting producer's
    /// file into the room it leaves; nil when the buffer is empty.
    private func takeLocked() -> (DiscoveredFile, CheckedContinuation<Bool, Never>?)? {
        guard head < buffer.count else { return nil }
        let file = takeFirst()
        inFlightCount += 1
        var admitted: CheckedContinuation<Bool, Never>?
        if !producers.isEmpty {
            let producer = producers.removeFirst()
            append(producer.file)
            admitted = producer.continuation
        }
        return (file, admitted)
    }

    private func append(_ file: DiscoveredFile) {
        buffer.append(file)
    }

    private func takeFirst() -> DiscoveredFile {
        let file = buffer[head]
        head += 1
        if head > 64 && head * 2 > buffer.count {
            buffer.removeFirst(head)
            head = 0
        }
        return file
    }
}
