// The pipeline service: a few lanes take batches from the FileQueue (whatever arrived while their previous
// batch ran, up to the batch size), run the injected BatchProcessor and dispose of each file. Two lanes let
// one batch's database and store work overlap the next batch's sandbox work. On graceful shutdown the queue
// closes: batches in flight finish, queued files stay for the next start. An outage (database, store, disk)
// pauses every lane with a growing delay (OutageBackoff).
import Foundation
import Logging
import ServiceLifecycle

/// Runs a `BatchProcessor` over the files of a `FileQueue`, batch by batch.
public struct PipelineRunner: Service, Sendable {
    private let queue: FileQueue
    private let processor: any BatchProcessor
    private let disposer: FileDisposer
    private let lanes: Int
    private let batchSize: Int
    private let metrics: IngestMetrics
    private let backoff: OutageBackoff
    private let logger: Logger

    /// - Parameters:
    ///   - queue: the files the watcher found ready.
    ///   - processor: the pipeline's work on a batch.
    ///   - disposer: moves, deletes or quarantines files after `processor`.
    ///   - lanes: batches in flight at once.
    ///   - batchSize: the most files in one batch.
    ///   - backoff: the outage state lanes wait on (shared with `/readyz`).
    public init(
        queue: FileQueue, processor: any BatchProcessor, disposer: FileDisposer, lanes: Int = 2, batchSize: Int = 512, metrics: IngestMetrics,
        backoff: OutageBackoff = OutageBackoff(clock: ContinuousClock()), logger: Logger
    ) {
        precondition(lanes > 0 && batchSize > 0)
        self.queue = queue
        self.processor = processor
        self.disposer = disposer
        self.lanes = lanes
        self.batchSize = batchSize
        self.metrics = metrics
        self.backoff = backoff
        self.logger = logger
    }

    /// Runs until graceful shutdown (then drains the batches in flight) or until the queue is closed.
    public func run() async {
        let queue = self.queue, backoff = self.backoff, batchSize = self.batchSize
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                for _ in 0..<lanes {
                    group.addTask {
                        while true {
                            await backoff.waitWhileOutage(stop: { queue.isClosed })
                            let batch = await queue.nextBatch(limit: batchSize)
                            if batch.isEmpty { break }
                            // An outage may have begun while this lane waited for files: they wait too, and are
                            // left for the next start if the daemon stops meanwhile.
                            guard await backoff.waitWhileOutage(stop: { queue.isClosed }) else {
                                for file in batch { queue.complete(file.path) }
                                break
                            }
                            await handle(batch)
                        }
                    }
                }
            }
        } onGracefulShutdown: {
            queue.close()
        }
    }

    /// Processes and disposes of one batch, then releases its files in the queue. Never throws: every file
    /// ends in processed/, quarantine/, or left in place for a later attempt.
    func handle(_ batch: [DiscoveredFile]) async {
        metrics.inFlight.record(queue.inFlight)
        metrics.batchSize.record(batch.count)
        var again: [DiscoveredFile] = []
        defer {
            for file in batch { queue.complete(file.path) }
            // Files left for another attempt soon (a crash counted): back in the queue when there is room,
            // else the next rescan finds them.
            for file in again { queue.offerIfRoom(file) }
            metrics.inFlight.record(queue.inFlight)
            metrics.pipelineQueueDepth.record(queue.depth)
        }
        let outcomes: [ProcessingOutcome]
        do {
            outcomes = try await processor.process(batch)
        } catch let outage as PipelineOutage {
            metrics.filesRetried.increment(by: batch.count)
            if backoff.reportOutage(outage.reason) {
                logger.warning("outage: pausing the pipeline; files stay in the drop folder", metadata: ["reason": .string(outage.reason)])
            }
            return
        } catch {
            metrics.filesRetried.increment(by: batch.count)
            logger.warning("batch left in place after an error", metadata: LogRedaction.metadata(for: error))
            return
        }
        if backoff.reportSuccess() { logger.notice("outage over: the pipeline resumes") }
        for (file, outcome) in zip(batch, outcomes) {
            if case .retry(_, let soon) = outcome, soon { again.append(file) }
            dispose(file, outcome)
        }
    }

    /// Moves, deletes or quarantines one file by its outcome and counts it.
    private func dispose(_ file: DiscoveredFile, _ outcome: ProcessingOutcome) {
        do {
            switch outcome {
            case .ingested, .duplicate:
                try dispose { try disposer.finishProcessed(file) }
                if outcome == .ingested {
                    metrics.filesIngested.increment()
                    metrics.bytesIngested.increment(by: file.size)
                } else {
                    metrics.filesDuplicate.increment()
                }
                logger.debug(outcome == .ingested ? "file ingested" : "duplicate file", metadata: LogRedaction.metadata(for: file))
            case .rejected(let failure):
                try dispose { try disposer.quarantine(file, failure: failure) }
                metrics.quarantined(failure)
                logger.notice(
                    "file quarantined",
                    metadata: LogRedaction.metadata(for: file).merging(LogRedaction.metadata(for: failure)) { $1 })
            case .alreadyRecorded(let failure):
                if let failure {
                    try dispose { try disposer.quarantine(file, failure: failure) }
                } else {
                    try dispose { try disposer.finishProcessed(file) }
                }
                logger.debug("file already recorded in the ledger; disposed of", metadata: LogRedaction.metadata(for: file))
                return
            case .retry(let reason, _):
                metrics.filesRetried.increment()
                logger.debug("file left in place", metadata: LogRedaction.metadata(for: file).merging(["reason": .string(reason)]) { $1 })
                return
            }
            metrics.fileLatency.record(duration: .seconds(Date().timeIntervalSince(file.discoveredAt)))
        } catch {
            metrics.filesRetried.increment()
            logger.error(
                "source file could not be disposed of; left in place",
                metadata: LogRedaction.metadata(for: file).merging(LogRedaction.metadata(for: error)) { $1 })
        }
    }

    /// Runs one disposal; a source already gone was disposed of by another replica that found this
    /// file's outcome in the ledger first, which leaves the outcome to be counted here, once.
    private func dispose(_ body: () throws -> some Any) throws {
        do {
            _ = try metrics.measure(.dispose, body)
        } catch let error as DisposalError where error.code == .sourceMissing {
            logger.debug("source file already disposed of by another replica")
        }
    }
}

extension IngestMetrics {
    func measure<T>(_ stage: PipelineStage, _ body: () throws -> T) rethrows -> T {
        let start = ContinuousClock.now
        defer { recordStage(stage, duration: ContinuousClock.now - start) }
        return try body()
    }
}
