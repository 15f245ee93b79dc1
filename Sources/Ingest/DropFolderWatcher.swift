// The drop-folder watcher service: inotify events, periodic full rescans and stability ticks feed one
// loop that stats candidate files, runs the stability rule and hands stable files to the FileQueue
// (waiting while it is full, which is what bounds memory for a large backlog).
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import ServiceLifecycle

/// Watches the drop folder and its subfolders and hands stable files to a `FileQueue`.
public final class DropFolderWatcher<C: Clock>: Service, Sendable where C.Duration == Duration, C.Instant: Sendable {
    /// Timing of the watcher.
    public struct Timing: Sendable {
        /// Size and modification time unchanged for this long → the file is taken.
        public var stableTime: Duration
        /// Interval of full rescans.
        public var rescanInterval: Duration
        /// How often files waiting to become stable are looked at again.
        public var stabilityTick: Duration
        /// A file closed after writing or renamed into the folder (an inotify event) is ready at once; the stable
        /// time then applies only to files a rescan finds. False where events cannot be trusted to mean "written
        /// completely" (network filesystems, where no events arrive for other hosts' writes).
        public var readyOnEvent: Bool

        public init(stableTime: Duration, rescanInterval: Duration, stabilityTick: Duration? = nil, readyOnEvent: Bool = true) {
            self.stableTime = stableTime
            self.rescanInterval = rescanInterval
            self.stabilityTick = stabilityTick ?? min(max(stableTime / 4, .milliseconds(20)), .seconds(1))
            self.readyOnEvent = readyOnEvent
        }
    }

    enum Input: Sendable {
        case event(DirectoryEvent)
        case rescan(requestedAt: C.Instant)
        case tick(requestedAt: C.Instant)
        case closeTick

        var isCloseTick: Bool { if case .closeTick = self { true } else { false } }
    }

    /// How long a file closed after writing (or renamed in) waits for its writer to open it again before it is
    /// taken: a writer that creates a file empty and then reopens it to write closes (or renames) it first.
    static var closeGrace: Duration { .milliseconds(40) }

    /// How long a file handed on is remembered with its size, modification and change times: a close event that arrives
    /// after a scan has already handed the file on (the scan of a new subfolder races its writer) then finds the
    /// same file and does not hand it on a second time.
    static var handedOnMemory: Duration { .seconds(5) }

    private let layout: DropFolderLayout
    private let timing: Timing
    private let queue: FileQueue
    private let eventSource: (any DirectoryEventSource)?
    private let clock: C
    private let hasher: PathHasher
    private let metrics: IngestMetrics
    private let logger: Logger

    /// - Parameters:
    ///   - layout: the drop folder.
    ///   - timing: stable time and rescan interval.
    ///   - queue: where stable files go.
    ///   - eventSource: inotify (or nil to rely on rescans only, e.g. on a network share).
    ///   - clock: the clock of the stability rule and the timers.
    ///   - hasher: path hashes for logs.
    public init(
        layout: DropFolderLayout, timing: Timing, queue: FileQueue, eventSource: (any DirectoryEventSource)?,
        clock: C, hasher: PathHasher, metrics: IngestMetrics, logger: Logger
    ) {
        self.layout = layout
        self.timing = timing
        self.queue = queue
        self.eventSource = eventSource
        self.clock = clock
        self.hasher = hasher
        self.metrics = metrics
        self.logger = logger
    }

    /// Runs until graceful shutdown or cancellation.
    public func run() async throws {
        _ = await cancelWhenGracefulShutdown { await self.watch() }
        eventSource?.stop()
    }

    private func watch() async {
        let (inputs, continuation) = AsyncStream.makeStream(of: Input.self, bufferingPolicy: .bufferingOldest(65_536))
        // A close waiting out its grace asks for one tick after the grace (no timer runs while none waits).
        let (closes, closeSignal) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        await withTaskGroup(of: Void.self) { group in
            if let eventSource {
                group.addTask {
                    var lost = false
                    for await event in eventSource.events {
                        if lost, case .enqueued = continuation.yield(.event(.overflow)) { lost = false }
                        if case .dropped = continuation.yield(.event(event)) { lost = true }
                    }
                }
            }
            let clock = self.clock
            let timing = self.timing
            group.addTask {
                while (try? await clock.sleep(for: timing.rescanInterval)) != nil {
                    continuation.yield(.rescan(requestedAt: clock.now))
                }
            }
            group.addTask {
                while (try? await clock.sleep(for: timing.stabilityTick)) != nil {
                    continuation.yield(.tick(requestedAt: clock.now))
                }
            }
            if timing.readyOnEvent && eventSource != nil {
                group.addTask {
                    for await _ in closes {
                        guard (try? await clock.sleep(for: Self.closeGrace)) != nil else { break }
                        continuation.yield(.closeTick)
                    }
                }
            }
            continuation.yield(.rescan(requestedAt: clock.now))
            var state = LoopState(tracker: StabilityTracker(stableTime: timing.stableTime))
            for await input in inputs {
                if Task.isCancelled { break }
                let waiting = !state.closed.isEmpty
                await handle(input, state: &state)
                if !state.closed.isEmpty && (!waiting || input.isCloseTick) { closeSignal.yield() }
            }
            closeSignal.finish()
            continuation.finish()
            group.cancelAll()
        }
    }

    struct LoopState {
        var tracker: StabilityTracker<C.Instant>
        /// Files closed after writing, taken at these instants unless opened again meanwhile.
        var closed: [String: C.Instant] = [:]
        var lastRescanStart: C.Instant?
        var ticksSinceRescan = 0
        /// Files handed on lately (see `handedOnMemory`), kept only while closes make files ready at once.
        var handedOn: [String: HandedOn] = [:]
    }

    /// What a file handed on was: a close of the same write finds it unchanged; a new write, or the same bytes
    /// copied in again with their modification time kept, has another change time.
    struct HandedOn {
        var size: Int64
        var modification: Int64
        var change: Int64
        var at: C.Instant
    }

    private func handle(_ input: Input, state: inout LoopState) async {
        switch input {
        case .rescan(let requestedAt):
            // Rescans requested while a previous one ran are covered by it.
            if let last = state.lastRescanStart, requestedAt < last { return }
            state.lastRescanStart = clock.now
            let found = await scan(layout.root, state: &state)
            metrics.backlog.record(found)
            logger.debug("rescan done", metadata: ["candidates": .stringConvertible(found), "waiting_stable": .stringConvertible(state.tracker.count)])
        case .event(.overflow):
            logger.notice("directory events lost, rescanning")
            state.lastRescanStart = clock.now
            let found = await scan(layout.root, state: &state)
            metrics.backlog.record(found)
        case .event(.directoryAppeared(let path)):
            guard let relative = layout.relativePath(of: path), !layout.isExcludedDirectory(relativePath: relative) else { return }
            _ = await scan(path, state: &state)
        case .event(.fileWritten(let path)), .event(.fileMovedIn(let path)):
            if timing.readyOnEvent {
                state.closed[path] = clock.now.advanced(by: Self.closeGrace)
            } else {
                await consider(path, state: &state)
            }
        case .event(.fileOpened(let path)):
            // Reopened after a close (a writer that creates the file, then writes it): complete only at its next
            // close, or once stable.
            if state.closed.removeValue(forKey: path) != nil { await consider(path, state: &state) }
        case .closeTick:
            guard !state.closed.isEmpty else { return }
            let now = clock.now
            for (path, readyAt) in state.closed where readyAt <= now {
                state.closed[path] = nil
                await consider(path, state: &state, ready: true)
            }
        case .tick(let requestedAt):
            if !state.handedOn.isEmpty {
                // Pruned by when the tick was asked for: events queued behind a long scan still find their entries.
                let cutoff = requestedAt.advanced(by: .zero - Self.handedOnMemory)
                state.handedOn = state.handedOn.filter { $0.value.at >= cutoff }
            }
            for path in state.tracker.due(at: clock.now) {
                if Task.isCancelled { return }
                await consider(path, state: &state)
            }
        }
        metrics.pipelineQueueDepth.record(queue.depth)
    }

    /// Walks `directory`, watching every subfolder and considering every file; returns the candidates seen.
    private func scan(_ directory: String, state: inout LoopState) async -> Int {
        let layout = self.layout
        let walker = DirectoryWalker(root: directory) { path in
            guard let relative = layout.relativePath(of: path) else { return false }
            return !layout.isExcludedDirectory(relativePath: relative)
        }
        var candidates = 0
        var watchFailures = 0
        while let entry = walker.next() {
            if Task.isCancelled { break }
            switch entry {
            case .directory(let path):
                if let eventSource, !eventSource.watch(directory: path) { watchFailures += 1 }
            case .file(let path):
                if layout.isCandidate(path: path) {
                    candidates += 1
                    await consider(path, state: &state)
                }
            }
        }
        if watchFailures > 0 {
            logger.warning("some folders could not be watched; rescans still find their files", metadata: ["folders": .stringConvertible(watchFailures)])
        }
        return candidates
    }

    /// Looks at one file: unless it is pending in the queue, stat it and apply the stability rule (or, when
    /// `ready`, hand it on at once: it was just closed after writing or renamed in).
    private func consider(_ path: String, state: inout LoopState, ready: Bool = false) async {
        guard layout.isCandidate(path: path), !queue.isPending(path) else { return }
        var info = stat()
        guard lstat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
            state.tracker.forget(path)
            return
        }
        let size = Int64(info.st_size)
        let modification = Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec)
        let change = Int64(info.st_ctim.tv_sec) * 1_000_000_000 + Int64(info.st_ctim.tv_nsec)
        var wallNow = timespec()
        clock_gettime(CLOCK_REALTIME, &wallNow)
        let nowNanoseconds = Int64(wallNow.tv_sec) * 1_000_000_000 + Int64(wallNow.tv_nsec)
        let age = Duration.nanoseconds(nowNanoseconds - modification)
        let action: StabilityAction
        // An empty file is never complete: a writer that creates a file and reopens it to write closes it once empty.
        if ready && size > 0 {
            state.tracker.forget(path)
            // The close of a write that a scan had already seen complete: handed on once.
            if let earlier = state.handedOn[path], earlier.size == size, earlier.modification == modification, earlier.change == change {
                return
            }
            action = .handOn
        } else {
            action = state.tracker.observe(path: path, size: size, modification: modification, modificationAge: age, now: clock.now)
        }
        guard action == .handOn, let relative = layout.relativePath(of: path) else { return }
        let file = DiscoveredFile(
            path: path, relativePath: relative, size: size,
            modificationTime: Date(timeIntervalSince1970: Double(modification) / 1e9),
            pathHash: hasher.hash(relative), discoveredAt: Date())
        if await queue.offer(file) {
            if timing.readyOnEvent && eventSource != nil {
                state.handedOn[path] = HandedOn(size: size, modification: modification, change: change, at: clock.now)
            }
            metrics.filesSeen.increment()
            logger.trace("file stable", metadata: LogRedaction.metadata(for: file))
        }
    }
}
