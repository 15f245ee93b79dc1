// Tests of the pipeline runner: batches bounded in size and number, dispositions by outcome, files left
// in place, and the daemon's graceful drain (batches in flight finish, then the service group returns).
import Foundation
@testable import Ingest
import Logging
import Prometheus
import ServiceLifecycle
import Testing

/// A processor for runner tests: records batches and concurrency, answers by file name, and can hold batches until released.
final class RecordingProcessor: BatchProcessor, @unchecked Sendable {
    private let lock = NSLock()
    private var running = 0
    private(set) var maximumRunning = 0
    private(set) var processed: [String] = []
    private(set) var batches: [Int] = []
    private var gate: CheckedContinuation<Void, Never>?
    private var waiting: [CheckedContinuation<Void, Never>] = []
    private var released = false
    let holdFiles: Bool
    let delay: Duration

    init(holdFiles: Bool = false, delay: Duration = .zero) {
        self.holdFiles = holdFiles
        self.delay = delay
    }

    var callCount: Int { lock.withLock { processed.count } }
    var runningCount: Int { lock.withLock { running } }
    var maximum: Int { lock.withLock { maximumRunning } }
    var largestBatch: Int { lock.withLock { batches.max() ?? 0 } }

    func releaseAll() {
        let held = lock.withLock { () -> [CheckedContinuation<Void, Never>] in
            // A file that starts after the release must not wait for a release that already happened.
            released = true
            defer { waiting.removeAll() }
            return waiting
        }
        for continuation in held { continuation.resume() }
    }

    func process(_ files: [DiscoveredFile]) async throws -> [ProcessingOutcome] {
        lock.withLock {
            running += 1
            maximumRunning = max(maximumRunning, running)
            processed += files.map(\.relativePath)
            batches.append(files.count)
        }
        defer { lock.withLock { running -= 1 } }
        if holdFiles {
            await withCheckedContinuation { continuation in
                let hold = lock.withLock { () -> Bool in
                    if released { return false }
                    waiting.append(continuation)
                    return true
                }
                if !hold { continuation.resume() }
            }
        }
        if delay > .zero { try? await Task.sleep(for: delay) }
        return files.map { file in
            let name = (file.relativePath as NSString).lastPathComponent
            if name.hasPrefix("bad") { return .rejected(PipelineFailure(stage: .parse, reason: "not_dicom")) }
            if name.hasPrefix("burned") { return .rejected(PipelineFailure(stage: .deidentify, reason: "burned_in_text")) }
            if name.hasPrefix("flaky") { return .retry(reason: "claimed_elsewhere", soon: false) }
            if name.hasPrefix("dup") { return .duplicate }
            return .ingested
        }
    }
}

func makeMetrics() -> (IngestMetrics, PrometheusCollectorRegistry) {
    let registry = PrometheusCollectorRegistry()
    return (IngestMetrics(factory: PrometheusMetricsFactory(registry: registry)), registry)
}

@Suite struct PipelineRunnerTests {
    @Test func batchesAreBoundedAndEveryOutcomeIsDisposedOf() async throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let names = (0..<12).map { "ok\($0).dcm" } + ["bad.dcm", "burned.dcm", "dup.dcm", "flaky.dcm"]
        let queue = FileQueue(capacity: 16)
        let processor = RecordingProcessor(delay: .milliseconds(20))
        let (metrics, registry) = makeMetrics()
        let runner = PipelineRunner(
            queue: queue, processor: processor, disposer: FileDisposer(layout: DropFolderLayout(root: folder.path), processedFiles: .move),
            lanes: 2, batchSize: 5, metrics: metrics, logger: testLogger)
        let task = Task { await runner.run() }
        for name in names {
            let path = try folder.write("in/\(name)")
            #expect(await queue.offer(makeFile(path, root: folder.path)))
        }
        #expect(await eventually { processor.callCount == names.count && queue.inFlight == 0 })
        queue.close()
        await task.value
        #expect(processor.maximum <= 2)          // lanes
        #expect(processor.largestBatch <= 5)     // batch size
        #expect(processor.largestBatch >= 2)     // files that arrived while a batch ran go together
        for index in 0..<12 { #expect(folder.exists("processed/in/ok\(index).dcm")) }
        #expect(folder.exists("processed/in/dup.dcm"))
        #expect(folder.exists("quarantine/in/bad.dcm"))
        #expect(folder.exists("quarantine/in/bad.dcm.reason.json"))
        #expect(folder.exists("quarantine/in/burned.dcm.reason.json"))
        #expect(folder.exists("in/flaky.dcm"))   // left for the next rescan
        #expect(!queue.isPending(folder.path + "/in/flaky.dcm"))
        let text = registry.emitToString()
        #expect(text.contains("dicom_etl_files_ingested_total 12"))
        #expect(text.contains("dicom_etl_files_duplicate_total 1"))
        #expect(text.contains("dicom_etl_files_retried_total 1"))
        #expect(text.contains(#"dicom_etl_files_quarantined_total{stage="parse",reason="not_dicom"} 1"#))
        #expect(text.contains(#"dicom_etl_files_quarantined_total{stage="deidentify",reason="burned_in_text"} 1"#))
        #expect(text.contains("dicom_etl_bytes_ingested_total 48"))
    }

    @Test func aFileToRetrySoonComesBackThroughTheQueue() async throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let queue = FileQueue(capacity: 4)
        final class Once: BatchProcessor, @unchecked Sendable {
            let lock = NSLock()
            var seen = 0
            func process(_ files: [DiscoveredFile]) async throws -> [ProcessingOutcome] {
                lock.withLock {
                    seen += files.count
                    return files.map { _ in seen == 1 ? .retry(reason: "process_crashed", soon: true) : .ingested }
                }
            }
        }
        let processor = Once()
        let (metrics, _) = makeMetrics()
        let runner = PipelineRunner(
            queue: queue, processor: processor, disposer: FileDisposer(layout: DropFolderLayout(root: folder.path), processedFiles: .move),
            lanes: 1, batchSize: 4, metrics: metrics, logger: testLogger)
        let task = Task { await runner.run() }
        #expect(await queue.offer(makeFile(try folder.write("crash-once.dcm"), root: folder.path)))
        #expect(await eventually { folder.exists("processed/crash-once.dcm") })
        #expect(processor.lock.withLock { processor.seen } == 2)
        queue.close()
        await task.value
    }

    @Test func gracefulShutdownDrainsFilesInFlightThenReturns() async throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        for index in 0..<6 { try folder.write("study/IM\(index).dcm") }
        var configuration = DaemonConfiguration()
        configuration.dropFolder = folder.path
        configuration.concurrency = 2
        configuration.batchSize = 1
        configuration.stableFileTime = .zero
        configuration.opsPort = 0
        let processor = RecordingProcessor(holdFiles: true)
        let (metrics, registry) = makeMetrics()
        let daemon = DaemonService(
            configuration: configuration,
            pipeline: AssembledPipeline(processor: processor, readiness: { true }, pathHashSecret: [1, 2, 3]),
            registry: registry, metrics: metrics, logger: testLogger, eventSource: { ScriptedEventSource() })
        let ops = daemon.makeOpsServer()
        let group = try daemon.makeServiceGroup(opsServer: ops, handleSignals: false)
        let running = Task { try await group.run() }
        // Two batches of one file in flight (held, one per lane), the others queued.
        #expect(await eventually { processor.runningCount == 2 })
        await group.triggerGracefulShutdown()
        // The watcher stops, then the pipeline closes its queue and waits for the files in flight.
        #expect(await eventually { daemon.queue.isClosed })
        try await Task.sleep(for: .milliseconds(50))
        #expect(processor.runningCount == 2)
        #expect(!running.isCancelled)
        processor.releaseAll()
        try await running.value               // returns once drained
        #expect(processor.callCount == 2)      // nothing new was started after the shutdown began
        let processed = try FileManager.default.contentsOfDirectory(atPath: folder.path + "/processed/study")
        #expect(processed.count == 2)
        let left = try FileManager.default.contentsOfDirectory(atPath: folder.path + "/study")
        #expect(left.count == 4)               // queued files stay for the next start
    }
}
