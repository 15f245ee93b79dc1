// The bounded hand-off between the watcher and the pipeline: backpressure (the producer waits when
// full) and de-duplication (a file queued or in flight is not queued again by the next rescan).
import Foundation
import Synchronization

/// A bounded multi-producer, multi-consumer queue of discovered files.
///
/// A path stays "pending" from `offer` until the consumer calls `complete`, so rescans do not queue a
/// file twice. `close()` discards queued files (they stay in the drop folder for the next start) and
/// wakes every waiter; files in flight still complete.
public final class FileQueue: Sendable {
    /// Maximum number of files waiting (not counting those in flight).
    public let capacity: Int

    /// Everything the queue knows, behind one lock.
    private struct State {
        /// Where a file offered goes when it is not refused.
        enum Admission {
            /// Straight to this waiting consumer (now in flight).
            case handed(CheckedContinuation<DiscoveredFile?, Never>)
            /// Into the buffer.
            case buffered
            /// Nowhere: the buffer is full.
            case full
        }

        var buffer: [DiscoveredFile] = []
        var head = 0
        var pending: Set<String> = []
        var inFlightCount = 0
        var producers: [(id: UInt64, file: DiscoveredFile, continuation: CheckedContinuation<Bool, Never>)] = []
        var consumers: [(id: UInt64, continuation: CheckedContinuation<DiscoveredFile?, Never>)] = []
        var nextID: UInt64 = 0
        var closed = false

        /// Hands a pending file to the first waiting consumer, else buffers it while there is room.
        mutating func admit(_ file: DiscoveredFile, capacity: Int) -> Admission {
            if !consumers.isEmpty {
                inFlightCount += 1
                return .handed(consumers.removeFirst().continuation)
            }
            guard buffer.count - head < capacity else { return .full }
            buffer.append(file)
            return .buffered
        }

        /// Takes the first buffered file (now in flight) and admits the first waiting producer's file into the
        /// room it leaves; nil when the buffer is empty.
        mutating func take() -> (DiscoveredFile, CheckedContinuation<Bool, Never>?)? {
            guard head < buffer.count else { return nil }
            let file = buffer[head]
            head += 1
            if head > 64 && head * 2 > buffer.count {
                buffer.removeFirst(head)
                head = 0
            }
            inFlightCount += 1
            var admitted: CheckedContinuation<Bool, Never>?
            if !producers.isEmpty {
                let producer = producers.removeFirst()
                buffer.append(producer.file)
                admitted = producer.continuation
            }
            return (file, admitted)
        }
    }

    private let state = Mutex(State())

    public init(capacity: Int) {
        precondition(capacity > 0)
        self.capacity = capacity
    }

    /// Files waiting to be taken.
    public var depth: Int { state.withLock { s in s.buffer.count - s.head } }
    /// Files taken and not yet completed.
    public var inFlight: Int { state.withLock { s in s.inFlightCount } }
    /// True once `close()` was called.
    public var isClosed: Bool { state.withLock { s in s.closed } }

    /// True when `path` is queued or in flight.
    public func isPending(_ path: String) -> Bool { state.withLock { s in s.pending.contains(path) } }

    /// Queues a file, waiting while the queue is full.
    /// - Returns: false when the file was already pending, the queue is closed, or the task was cancelled.
    @discardableResult
    public func offer(_ file: DiscoveredFile) async -> Bool {
        enum Immediate { case accepted(CheckedContinuation<DiscoveredFile?, Never>?), refused, wait(UInt64) }
        let immediate: Immediate = state.withLock { s in
            if s.closed || s.pending.contains(file.path) { return .refused }
            s.pending.insert(file.path)
            switch s.admit(file, capacity: capacity) {
            case .handed(let consumer): return .accepted(consumer)
            case .buffered: return .accepted(nil)
            case .full:
                s.nextID += 1
                return .wait(s.nextID)
            }
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
                    let then: Then = state.withLock { s in
                        if s.closed || Task.isCancelled {
                            s.pending.remove(file.path)
                            return .refused
                        }
                        switch s.admit(file, capacity: capacity) {
                        case .handed(let consumer): return .accepted(consumer)
                        case .buffered: return .accepted(nil)
                        case .full:
                            s.producers.append((id, file, continuation))
                            return .waiting
                        }
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
                let waiting: CheckedContinuation<Bool, Never>? = state.withLock { s in
                    guard let index = s.producers.firstIndex(where: { $0.id == id }) else { return nil }
                    let producer = s.producers.remove(at: index)
                    s.pending.remove(producer.file.path)
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
        let immediate: Immediate = state.withLock { s in
            if s.closed { return .end }
            if let (file, admitted) = s.take() { return .file(file, admitted) }
            s.nextID += 1
            return .wait(s.nextID)
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
                    let then: Then = state.withLock { s in
                        if s.closed || Task.isCancelled { return .end }
                        if let (file, admitted) = s.take() { return .file(file, admitted) }
                        s.consumers.append((id, continuation))
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
                let waiting: CheckedContinuation<DiscoveredFile?, Never>? = state.withLock { s in
                    guard let index = s.consumers.firstIndex(where: { $0.id == id }) else { return nil }
                    return s.consumers.remove(at: index).continuation
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
        state.withLock { s in
            while batch.count < limit, let (file, producer) = s.take() {
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
        let consumer: CheckedContinuation<DiscoveredFile?, Never>?? = state.withLock { s in
            if s.closed || s.pending.contains(file.path) { return .none }
            switch s.admit(file, capacity: capacity) {
            case .handed(let consumer):
                s.pending.insert(file.path)
                return .some(consumer)
            case .buffered:
                s.pending.insert(file.path)
                return .some(nil)
            case .full: return .none
            }
        }
        guard let consumer else { return false }
        consumer?.resume(returning: file)
        return true
    }

    /// Marks a file taken with `next()` as done: it may be queued again (e.g. when it was left in place).
    public func complete(_ path: String) {
        state.withLock { s in
            if s.pending.remove(path) != nil { s.inFlightCount -= 1 }
        }
    }

    /// Stops the queue: queued files are dropped (not pending any more), waiting producers get false,
    /// waiting consumers nil. Files in flight are unaffected and still call `complete(_:)`.
    public func close() {
        let (waitingProducers, waitingConsumers): ([CheckedContinuation<Bool, Never>], [CheckedContinuation<DiscoveredFile?, Never>]) =
            state.withLock { s in
                s.closed = true
                for file in s.buffer[s.head...] { s.pending.remove(file.path) }
                s.buffer.removeAll()
                s.head = 0
                for producer in s.producers { s.pending.remove(producer.file.path) }
                defer { s.producers.removeAll(); s.consumers.removeAll() }
                return (s.producers.map(\.continuation), s.consumers.map(\.continuation))
            }
        for producer in waitingProducers { producer.resume(returning: false) }
        for consumer in waitingConsumers { consumer.resume(returning: nil) }
    }
}
