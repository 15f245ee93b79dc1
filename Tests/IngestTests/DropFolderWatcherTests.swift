// Tests of the watcher against a real folder: inotify, new subfolders, rescans without events,
// overflow, ignore rules, files still being written, and a large backlog through a small queue.
#if canImport(Glibc)
import Glibc
#endif
import Foundation
@testable import Ingest
import Metrics
import Prometheus
import ServiceLifecycle
import Testing

/// An event source that only delivers what the test sends (no inotify), and records watches.
final class ScriptedEventSource: DirectoryEventSource, @unchecked Sendable {
    let events: AsyncStream<DirectoryEvent>
    let continuation: AsyncStream<DirectoryEvent>.Continuation
    private let lock = NSLock()
    private var watched: Set<String> = []

    init() {
        (events, continuation) = AsyncStream.makeStream(of: DirectoryEvent.self)
    }

    func watch(directory: String) -> Bool {
        lock.withLock { _ = watched.insert(directory) }
        return true
    }

    var watchedDirectories: Set<String> { lock.withLock { watched } }

    func send(_ event: DirectoryEvent) { continuation.yield(event) }

    func stop() { continuation.finish() }
}

/// Runs a watcher over `folder` until `body` returns, collecting what it hands on.
func withWatcher(
    folder: TemporaryFolder, stableTime: Duration = .zero, rescanInterval: Duration = .seconds(3600), capacity: Int = 64,
    readyOnEvent: Bool = true, eventSource: (any DirectoryEventSource)?, _ body: (FileQueue, IngestMetrics) async throws -> Void
) async throws {
    let queue = FileQueue(capacity: capacity)
    let metrics = IngestMetrics(factory: PrometheusMetricsFactory(registry: PrometheusCollectorRegistry()))
    let watcher = DropFolderWatcher(
        layout: DropFolderLayout(root: folder.path),
        timing: .init(stableTime: stableTime, rescanInterval: rescanInterval, stabilityTick: .milliseconds(20), readyOnEvent: readyOnEvent),
        queue: queue, eventSource: eventSource, clock: ContinuousClock(), hasher: PathHasher(secret: [7]), metrics: metrics,
        logger: testLogger)
    let task = Task { try await watcher.run() }
    defer { task.cancel() }
    try await body(queue, metrics)
    task.cancel()
    _ = try? await task.value
}

/// Drains the queue into a set of relative paths (completing each) until `expected` are seen or time runs out.
func collect(_ queue: FileQueue, expecting expected: Int, within seconds: Double = 10) async -> Set<String> {
    final class Seen: @unchecked Sendable {
        private let lock = NSLock()
        private var paths: Set<String> = []
        func insert(_ path: String) { lock.withLock { _ = paths.insert(path) } }
        var all: Set<String> { lock.withLock { paths } }
    }
    let seen = Seen()
    let consumer = Task {
        while let file = await queue.next() {
            seen.insert(file.relativePath)
            queue.complete(file.path)
        }
    }
    _ = await eventually(within: seconds) { seen.all.count >= expected }
    consumer.cancel()
    await consumer.value
    return seen.all
}

@Suite(.serialized) struct DropFolderWatcherTests {
    @Test func backlogAtStartIsHandedOnWithIgnoreRulesApplied() async throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        try folder.write("a/IM1.dcm")
        try folder.write("a/b/IM2")
        try folder.write("IM3.dcm")
        try folder.write("a/IM4.dcm.part")
        try folder.write("a/IM5.tmp")
        try folder.write(".IM6.dcm")
        try folder.write(".sync/IM7.dcm")
        try folder.write("processed/x/IM8.dcm")
        try folder.write("quarantine/IM9.dcm")
        try await withWatcher(folder: folder, eventSource: nil) { queue, _ in
            let seen = await collect(queue, expecting: 3)
            #expect(seen == ["a/IM1.dcm", "a/b/IM2", "IM3.dcm"])
            // Nothing else arrives.
            #expect(await collect(queue, expecting: 1, within: 0.3).isEmpty)
        }
    }

    @Test func filesOfANewSubfolderAreFoundThroughInotify() async throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let source = try InotifyEventSource()
        try await withWatcher(folder: folder, eventSource: source) { queue, _ in
            // Wait for the initial scan to have watched the root.
            #expect(await eventually { source.watchCount >= 1 })
            // mkdir -p and files written at once: some land before the subfolder's watch exists.
            try folder.write("study/series/IM1.dcm")
            try folder.write("study/series/IM2.dcm")
            let seen = await collect(queue, expecting: 2)
            #expect(seen == ["study/series/IM1.dcm", "study/series/IM2.dcm"])
            // Later files in the (now watched) subfolder arrive through events.
            try folder.write("study/series/IM3.dcm")
            #expect(await collect(queue, expecting: 1) == ["study/series/IM3.dcm"])
            #expect(source.watchCount >= 3)
        }
    }

    @Test func aCloseSeenAfterTheScanHandedTheFileOnIsNotASecondFile() async throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let source = ScriptedEventSource()
        try await withWatcher(folder: folder, eventSource: source) { queue, _ in
            // A scan finds the file complete; its writer's close event comes after (a new subfolder's scan and
            // its writer race): the same file, handed on once.
            try folder.write("study/IM1.dcm")
            source.send(.directoryAppeared(path: folder.path + "/study"))
            #expect(await collect(queue, expecting: 1) == ["study/IM1.dcm"])
            source.send(.fileWritten(path: folder.path + "/study/IM1.dcm"))
            #expect(await collect(queue, expecting: 1, within: 0.5).isEmpty)
            // The same bytes copied in again with the same modification time (cp -p): a new file to take.
            let path = folder.path + "/study/IM1.dcm"
            var before = stat()
            #expect(lstat(path, &before) == 0)
            #expect(unlink(path) == 0)
            try folder.write("study/IM1.dcm")
            var times = [before.st_atim, before.st_mtim]
            #expect(utimensat(AT_FDCWD, path, &times, 0) == 0)
            source.send(.fileWritten(path: path))
            #expect(await collect(queue, expecting: 1) == ["study/IM1.dcm"])
            // Written again (another size and modification time): a new file to take.
            try folder.write("study/IM1.dcm", bytes: Array(repeating: 3, count: 700))
            source.send(.fileWritten(path: path))
            #expect(await collect(queue, expecting: 1) == ["study/IM1.dcm"])
        }
    }

    @Test func periodicRescanFindsFilesWithoutEvents() async throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let source = ScriptedEventSource()
        try await withWatcher(folder: folder, rescanInterval: .milliseconds(100), eventSource: source) { queue, _ in
            try await Task.sleep(for: .milliseconds(50))
            try folder.write("share/IM1.dcm")   // a network share: no event is sent
            #expect(await collect(queue, expecting: 1) == ["share/IM1.dcm"])
            #expect(source.watchedDirectories.contains(folder.path + "/share"))
        }
    }

    @Test func overflowTriggersAFullRescan() async throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let source = ScriptedEventSource()
        try await withWatcher(folder: folder, eventSource: source) { queue, _ in
            #expect(await collect(queue, expecting: 1, within: 0.3).isEmpty)
            try folder.write("x/IM1.dcm")
            try folder.write("IM2.dcm")
            // No rescan is due for an hour and no file event is sent: only the overflow finds them.
            #expect(await collect(queue, expecting: 1, within: 0.3).isEmpty)
            source.send(.overflow)
            #expect(await collect(queue, expecting: 2) == ["x/IM1.dcm", "IM2.dcm"])
        }
    }

    @Test func aFileClosedAfterWritingIsTakenAtOnce() async throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        // Real inotify: a file written in pieces through one handle is taken when it is closed, not before, and
        // long before the stable time.
        let source = try InotifyEventSource()
        try await withWatcher(folder: folder, stableTime: .seconds(30), eventSource: source) { queue, _ in
            try await Task.sleep(for: .milliseconds(100))   // the first scan has put its watch on the folder
            let path = folder.path + "/slow.dcm"
            #expect(FileManager.default.createFile(atPath: path, contents: nil))
            let handle = try #require(FileHandle(forWritingAtPath: path))
            for _ in 0..<5 {
                try handle.write(contentsOf: Data(repeating: 1, count: 100))
                try await Task.sleep(for: .milliseconds(50))
                #expect(queue.depth == 0)
            }
            let closed = ContinuousClock.now
            try handle.close()
            let file = try #require(await queue.next())
            #expect(file.size == 500)
            #expect(ContinuousClock.now - closed < .seconds(5))
            // A file renamed into the folder: taken at once too.
            try folder.write(".incoming", bytes: Array(repeating: 2, count: 300))
            #expect(rename(folder.path + "/.incoming", folder.path + "/moved.dcm") == 0)
            let moved = try #require(await queue.next())
            #expect(moved.relativePath == "moved.dcm" && moved.size == 300)
        }
    }

    @Test func fileStillBeingWrittenIsTakenOnlyOnceStable() async throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let source = ScriptedEventSource()
        // Stability arrival (a network share): events mean "something changed", never "complete".
        try await withWatcher(folder: folder, stableTime: .milliseconds(1500), readyOnEvent: false, eventSource: source) { queue, _ in
            let path = folder.path + "/slow.dcm"
            #expect(FileManager.default.createFile(atPath: path, contents: nil))
            let handle = try #require(FileHandle(forWritingAtPath: path))
            var lastWrite = ContinuousClock.now
            for _ in 0..<5 {
                try handle.write(contentsOf: Data(repeating: 1, count: 100))
                lastWrite = ContinuousClock.now
                source.send(.fileWritten(path: path))
                try await Task.sleep(for: .milliseconds(100))
                #expect(queue.depth == 0)
            }
            try handle.close()
            #expect(await eventually { queue.depth == 1 })
            let file = try #require(await queue.next())
            #expect(file.size == 500)
            // Taken no earlier than the stable time after the last change (a few ms of slack between
            // the write and the reading of the clock).
            #expect(ContinuousClock.now - lastWrite >= .milliseconds(1450))
        }
    }

    @Test func largeBacklogStreamsThroughASmallQueue() async throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        for index in 0..<1_000 { try folder.write("s\(index % 20)/IM\(index)") }
        try await withWatcher(folder: folder, capacity: 8, eventSource: nil) { queue, metrics in
            #expect(await eventually { queue.depth == 8 })
            try await Task.sleep(for: .milliseconds(100))
            #expect(queue.depth == 8)   // the scan waits for the pipeline
            let seen = await collect(queue, expecting: 1_000, within: 60)
            #expect(seen.count == 1_000)
        }
    }
}
