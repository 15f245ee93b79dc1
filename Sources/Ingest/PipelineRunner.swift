// The pipeline service: a fixed number of workers take files from the FileQueue (bounded concurrency;
// a full queue holds the watcher back), run the injected FileProcessor and dispose of each file.
// On graceful shutdown the queue closes: files in flight finish, queued ones stay for the next start.
// An outage (database, store, disk) pauses every worker with a growing delay (OutageBackoff).
import Foundation
import Logging
import ServiceLifecycle

/// Runs a `FileProcessor` over the files of a `FileQueue` with bounded concurrency.
public struct PipelineRunner: Service, Sendable {
    private let queue: FileQueue
    private let processor: any FileProcessor
    private let disposer: FileDisposer
    private let concurrency: Int
    private let metrics: IngestMetrics
    private let backoff: OutageBackoff
    private let logger: Logger

    /// - Parameters:
    ///   - queue: the files found stable by the watcher.
    ///   - processor: the pipeline's work on one file.
    ///   - disposer: moves, deletes or quarantines files after `processor`.
    ///   - concurrency: files processed at once.
    ///   - backoff: the outage state workers wait on (shared with `/readyz`).
    public init(
        queue: FileQueue, processor: any FileProcessor, disposer: FileDisposer, concurrency: Int, metrics: IngestMetrics,
        backoff: OutageBackoff = OutageBackoff(clock: ContinuousClock()), logger: Logger
    ) {
        precondition(concurrency > 0)
        self.queue = queue
        self.processor = processor
        self.disposer = disposer
        self.concurrency = concurrency
        self.metrics = metrics
        self.backoff = backoff
        self.logger = logger
    }

    /// Runs until graceful shutdown (then drains the files in flight) or until the queue is closed.
    public func run() async {
        let queue = self.queue, backoff = self.backoff
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                for _ in 0..<concurrency {
                    group.addTask {
                        while true {
                            await backoff.waitWhileOutage(stop: { queue.isClosed })
                            guard let file = await queue.next() else { break }
                            // An outage may have begun while this worker waited for a file: the file waits too,
                            // and is left for the next start if the daemon stops meanwhile.
                            guard await backoff.waitWhileOutage(stop: { queue.isClosed }) else {
                                queue.complete(file.path)
                                break
                            }
                            await handle(file)
                        }
                    }
                }
            }
        } onGracefulShutdown: {
            queue.close()
        }
    }

    /// Processes and disposes of one file, then releases it in the queue. Never throws: every outcome
    /// ends in processed/, quarantine/, or the file left in place for a later attempt.
    func handle(_ file: DiscoveredFile) async {
        metrics.inFlight.record(queue.inFlight)
        defer {
            queue.complete(file.path)
            metrics.inFlight.record(queue.inFlight)
            metrics.pipelineQueueDepth.record(queue.depth)
        }
        let outcome: ProcessingOutcome
        do {
            outcome = try await processor.process(file)
        } catch let failure as PipelineFailure {
            outcome = .rejected(failure)
        } catch let outage as PipelineOutage {
            metrics.filesRetried.increment()
            if backoff.reportOutage(outage.reason) {
                logger.warning("outage: pausing the pipeline; files stay in the drop folder", metadata: ["reason": .string(outage.reason)])
            }
            return
        } catch {
            metrics.filesRetried.increment()
            logger.warning(
                "file left in place after a transient error",
                metadata: LogRedaction.metadata(for: file).merging(LogRedaction.metadata(for: error)) { $1 })
            return
        }
        if backoff.reportSuccess() { logger.notice("outage over: the pipeline resumes") }
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
        } catch let error as DisposalError where error.reason == "source_missing" {
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
