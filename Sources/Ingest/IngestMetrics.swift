// The daemon's metrics, through swift-metrics (Prometheus is the backend in `dicom-etl run`).
import CoreMetrics
import Foundation
import Metrics
import Sandbox

/// Named metrics of the ingestion daemon. Labels carry stages and reasons only, never file data.
///
/// Names (Prometheus): `dicom_etl_files_seen_total`, `dicom_etl_files_ingested_total`,
/// `dicom_etl_files_duplicate_total`, `dicom_etl_files_quarantined_total{stage,reason}`,
/// `dicom_etl_files_retried_total`, `dicom_etl_bytes_ingested_total`,
/// `dicom_etl_stage_duration_seconds{stage}` (histogram), `dicom_etl_file_latency_seconds` (histogram,
/// found stable → done), `dicom_etl_pipeline_queue_depth`, `dicom_etl_backlog_files`,
/// `dicom_etl_in_flight_files`, `dicom_etl_job_queue_depth{state}`, `dicom_etl_sandbox_crashes_total{reason}`,
/// `dicom_etl_sandbox_restarts_total`, `dicom_etl_batch_files` (histogram), `dicom_etl_uid_conflicts_total{resolution}`.
public final class IngestMetrics: Sendable {
    private let factory: any MetricsFactory
    /// Files handed on by the watcher.
    public let filesSeen: Counter
    /// Files catalogued.
    public let filesIngested: Counter
    /// Files recognised as duplicates.
    public let filesDuplicate: Counter
    /// Files left in place after a transient error, to be taken again.
    public let filesRetried: Counter
    /// Bytes of ingested source files.
    public let bytesIngested: Counter
    /// Files waiting in the pipeline's queue.
    public let pipelineQueueDepth: Gauge
    /// Candidate files found in the drop folder by the last full scan.
    public let backlog: Gauge
    /// Files being processed.
    public let inFlight: Gauge
    /// Sandbox processes started again after a crash or timeout.
    public let sandboxRestarts: Counter
    /// Time from a file found stable to its disposal.
    public let fileLatency: CoreMetrics.Timer
    /// Files per batch the pipeline took.
    public let batchSize: Recorder

    private let lock = NSLock()
    nonisolated(unsafe) private var quarantined: [String: Counter] = [:]
    nonisolated(unsafe) private var stageTimers: [String: CoreMetrics.Timer] = [:]
    nonisolated(unsafe) private var jobGauges: [String: Gauge] = [:]
    nonisolated(unsafe) private var sandboxCrashes: [String: Counter] = [:]
    nonisolated(unsafe) private var conflicts: [String: Counter] = [:]

    /// - Parameter factory: the metrics backend; the bootstrapped global one by default.
    public init(factory: any MetricsFactory = MetricsSystem.factory) {
        self.factory = factory
        filesSeen = Counter(label: "dicom_etl_files_seen_total", factory: factory)
        filesIngested = Counter(label: "dicom_etl_files_ingested_total", factory: factory)
        filesDuplicate = Counter(label: "dicom_etl_files_duplicate_total", factory: factory)
        filesRetried = Counter(label: "dicom_etl_files_retried_total", factory: factory)
        bytesIngested = Counter(label: "dicom_etl_bytes_ingested_total", factory: factory)
        pipelineQueueDepth = Gauge(label: "dicom_etl_pipeline_queue_depth", factory: factory)
        backlog = Gauge(label: "dicom_etl_backlog_files", factory: factory)
        inFlight = Gauge(label: "dicom_etl_in_flight_files", factory: factory)
        sandboxRestarts = Counter(label: "dicom_etl_sandbox_restarts_total", factory: factory)
        fileLatency = CoreMetrics.Timer(label: "dicom_etl_file_latency_seconds", factory: factory)
        batchSize = Recorder(label: "dicom_etl_batch_files", factory: factory)
    }

    /// Counts a file whose SOP Instance UID was catalogued with other content, by what was done
    /// (`quarantined`, `kept_both`, `replaced`).
    public func uidConflict(resolution: String) {
        let counter = lock.withLock {
            if let existing = conflicts[resolution] { return existing }
            let counter = Counter(label: "dicom_etl_uid_conflicts_total", dimensions: [("resolution", resolution)], factory: factory)
            conflicts[resolution] = counter
            return counter
        }
        counter.increment()
    }

    /// Counts a quarantined file by stage and reason.
    public func quarantined(_ failure: PipelineFailure) {
        let key = failure.stage.rawValue + "\u{0}" + failure.reason
        let counter = lock.withLock {
            if let existing = quarantined[key] { return existing }
            let counter = Counter(
                label: "dicom_etl_files_quarantined_total",
                dimensions: [("stage", failure.stage.rawValue), ("reason", failure.reason)], factory: factory)
            quarantined[key] = counter
            return counter
        }
        counter.increment()
    }

    /// Records how long one stage took for one file.
    public func recordStage(_ stage: PipelineStage, duration: Duration) {
        let timer = lock.withLock {
            if let existing = stageTimers[stage.rawValue] { return existing }
            let timer = CoreMetrics.Timer(label: "dicom_etl_stage_duration_seconds", dimensions: [("stage", stage.rawValue)], factory: factory)
            stageTimers[stage.rawValue] = timer
            return timer
        }
        timer.record(duration: duration)
    }

    /// Times `body` as `stage`, whether it returns or throws.
    public func timeStage<T>(_ stage: PipelineStage, _ body: () async throws -> T) async rethrows -> T {
        let start = ContinuousClock.now
        defer { recordStage(stage, duration: ContinuousClock.now - start) }
        return try await body()
    }

    /// Sets the number of inference jobs in a state (`queued`, `running`, `dead`, …).
    public func setJobQueueDepth(state: String, count: Int) {
        let gauge = lock.withLock {
            if let existing = jobGauges[state] { return existing }
            let gauge = Gauge(label: "dicom_etl_job_queue_depth", dimensions: [("state", state)], factory: factory)
            jobGauges[state] = gauge
            return gauge
        }
        gauge.record(count)
    }

    /// What the sandbox pool reports, counted here (`sandbox_crashes_total`, `sandbox_restarts_total`).
    public var sandboxEvents: SandboxEvents {
        SandboxEvents(lost: { [self] in sandboxCrashed(reason: $0) }, restarted: { [self] in sandboxRestarts.increment() })
    }

    /// Counts a sandbox process lost with a job (`process_crashed`, `timed_out`).
    public func sandboxCrashed(reason: String) {
        let counter = lock.withLock {
            if let existing = sandboxCrashes[reason] { return existing }
            let counter = Counter(label: "dicom_etl_sandbox_crashes_total", dimensions: [("reason", reason)], factory: factory)
            sandboxCrashes[reason] = counter
            return counter
        }
        counter.increment()
    }
}
