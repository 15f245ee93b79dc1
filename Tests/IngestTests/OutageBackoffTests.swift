// Outages: the backoff state machine (doubling pauses, capped; success ends it; readiness), and the
// runner pausing its workers while an outage lasts, leaving the file where it was.
import Foundation
@testable import Ingest
import Testing
import TestSupport

/// A processor that reports an outage for files named `down*` and ingests the others.
final class OutageProcessor: BatchProcessor, @unchecked Sendable {
    private let lock = NSLock()
    private var names: [String] = []
    var calls: [String] { lock.withLock { names } }

    func process(_ files: [DiscoveredFile]) async throws -> [ProcessingOutcome] {
        let batch = files.map { ($0.relativePath as NSString).lastPathComponent }
        lock.withLock { names += batch }
        if batch.contains(where: { $0.hasPrefix("down") }) { throw PipelineOutage(.databaseUnavailable) }
        return files.map { _ in .ingested }
    }
}

@Suite struct OutageBackoffTests {
    @Test func pausesDoubleUpToTheMaximumAndASuccessEndsTheOutage() {
        var state = OutageBackoffState(initialDelay: .seconds(1), maximumDelay: .seconds(30))
        #expect(!state.isOutage(at: .zero))
        let first = state.reportOutage("database_unavailable", at: .seconds(10))
        #expect(first.delay == .seconds(1) && first.began)
        #expect(state.isOutage(at: .seconds(10)))
        #expect(state.remainingDelay(at: .milliseconds(10_400)) == .milliseconds(600))
        var delays: [Duration] = []
        for step in 1...6 { delays.append(state.reportOutage("store_unavailable", at: .seconds(10 + step)).delay) }
        #expect(delays == [.seconds(2), .seconds(4), .seconds(8), .seconds(16), .seconds(30), .seconds(30)])
        #expect(state.consecutiveOutages == 7 && state.lastReason == "store_unavailable")
        #expect(state.remainingDelay(at: .seconds(100)) == .zero)
        // Nobody retried for a whole maximum pause after the retry time: readiness no longer blames an outage.
        #expect(state.isOutage(at: .seconds(16 + 30 + 29)))
        #expect(!state.isOutage(at: .seconds(16 + 30 + 31)))
        let ended = state.reportSuccess()
        #expect(ended)
        #expect(!state.isOutage(at: .seconds(17)) && state.remainingDelay(at: .seconds(17)) == .zero)
        let endedAgain = state.reportSuccess()
        #expect(!endedAgain)
        let again = state.reportOutage("database_unavailable", at: .seconds(200))
        #expect(again.delay == .seconds(1) && again.began)
    }

    @Test func theRunnerLeavesTheFileInPlaceAndPausesUntilTheOutageEnds() async throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let queue = FileQueue(capacity: 4)
        let processor = OutageProcessor()
        let (metrics, registry) = makeMetrics()
        let clock = ManualClock()
        let backoff = OutageBackoff(OutageBackoffState(initialDelay: .seconds(3600), maximumDelay: .seconds(3600)), clock: clock)
        let runner = PipelineRunner(
            queue: queue, processor: processor, disposer: FileDisposer(layout: DropFolderLayout(root: folder.path), processedFiles: .move),
            lanes: 2, batchSize: 1, metrics: metrics, backoff: backoff, logger: testLogger)
        let task = Task { await runner.run() }
        let down = try folder.write("down.dcm")
        #expect(await queue.offer(makeFile(down, root: folder.path)))
        #expect(await eventually { processor.calls == ["down.dcm"] && queue.inFlight == 0 })
        #expect(folder.exists("down.dcm"))                  // left in place, not quarantined
        #expect(!folder.exists("quarantine/down.dcm.reason.json"))
        #expect(!backoff.isAvailable)

        // While the pause lasts, no worker takes the next file: both lanes wait out the pause on the clock.
        let next = try folder.write("next.dcm")
        #expect(await queue.offer(makeFile(next, root: folder.path)))
        try await clock.waitForSleepers(2)
        #expect(processor.calls == ["down.dcm"])   // taken by a worker perhaps, but held until the pause ends
        #expect(folder.exists("next.dcm"))
        clock.advance(by: .seconds(3599))
        try await clock.waitForSleepers(2)
        #expect(processor.calls == ["down.dcm"])   // a second before the pause ends, still held
        #expect(!backoff.isAvailable)

        // The pause ends: the workers resume, and the file's success ends the outage.
        clock.advance(by: .seconds(1))
        #expect(await eventually { processor.calls.count == 2 && queue.inFlight == 0 })
        #expect(folder.exists("processed/next.dcm"))
        #expect(backoff.isAvailable)
        queue.close()
        await task.value
        #expect(registry.emitToString().contains("dicom_etl_files_retried_total 1"))
    }

    @Test(.timeLimit(.minutes(1))) func shutdownEndsThePause() async throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let queue = FileQueue(capacity: 4)
        let (metrics, _) = makeMetrics()
        let clock = ManualClock()
        let backoff = OutageBackoff(OutageBackoffState(initialDelay: .seconds(3600), maximumDelay: .seconds(3600)), clock: clock)
        backoff.reportOutage("database_unavailable")
        let runner = PipelineRunner(
            queue: queue, processor: OutageProcessor(),
            disposer: FileDisposer(layout: DropFolderLayout(root: folder.path), processedFiles: .move),
            lanes: 2, batchSize: 1, metrics: metrics, backoff: backoff, logger: testLogger)
        let task = Task { await runner.run() }
        try await clock.waitForSleepers(2)                  // both lanes wait out the pause
        #expect(!backoff.isAvailable)                       // the hour-long pause is in force
        queue.close()
        // One slice (250 ms) after the queue closed, not an hour: the runner returns (the time limit fails a hang).
        clock.advance(by: .milliseconds(250))
        await task.value
        #expect(!backoff.isAvailable)                       // it returned during the pause, not after it
    }
}
