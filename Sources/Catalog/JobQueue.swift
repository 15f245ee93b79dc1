// JobQueue: the worker's side of the transactional outbox in inference.jobs. Claims with
// FOR UPDATE SKIP LOCKED under a lease, completes with diagnosis rows in the same transaction, retries
// failures with exponential backoff until the job is dead, and wakes idle workers through LISTEN/NOTIFY.
import Foundation
import Logging
import PostgresNIO

/// Settings of the job queue.
public struct JobQueueConfiguration: Sendable, Hashable {
    /// The NOTIFY channel the jobs table's insert trigger signals (fixed by the migrations).
    public var channel: String
    /// Backoff of failed jobs.
    public var retry: RetryPolicy

    public init(channel: String = "dicom_etl_jobs", retry: RetryPolicy = RetryPolicy()) {
        self.channel = channel
        self.retry = retry
    }
}

/// Why a worker woke up.
public enum JobWakeup: Sendable, Hashable {
    /// The listener (re)connected: notifications may have been missed, so look for work.
    case listening
    /// A NOTIFY arrived: jobs were enqueued.
    case notified
    /// The polling interval passed (catches retries whose backoff ended and expired leases).
    case timer
}

/// Claims, completes and fails jobs.
public struct JobQueue: Sendable {
    public let client: PostgresClient
    public let configuration: JobQueueConfiguration
    let logger: Logger

    public init(
        client: PostgresClient, configuration: JobQueueConfiguration = JobQueueConfiguration(),
        logger: Logger = Logger(label: "dicom-etl.queue")
    ) {
        self.client = client
        self.configuration = configuration
        self.logger = logger
    }

    /// The series' instances (by instance number) that have a tensor of `recipe`, each with its tensor's key: what a
    /// worker feeds a model whose input recipe is `recipe` (a series several routes take has one tensor per recipe).
    public func instanceTensors(
        seriesUID: String, recipe: String, logger: Logger? = nil
    ) async throws -> [(sopInstanceUID: String, tensorKey: String)] {
        let rows = try await client.query("""
            SELECT i.sop_instance_uid, t.tensor_key FROM imaging.instances i
            JOIN imaging.tensors t ON t.sop_instance_uid = i.sop_instance_uid AND t.recipe = \(recipe)
            WHERE i.series_uid = \(seriesUID)
            ORDER BY i.instance_number NULLS LAST, i.sop_instance_uid
            """, logger: logger ?? self.logger)
        var entries: [(sopInstanceUID: String, tensorKey: String)] = []
        for try await row in rows.decode((String, String).self) { entries.append(row) }
        return entries
    }

    /// Leases up to `limit` runnable jobs: queued jobs whose time has come and running jobs whose lease expired.
    /// Jobs whose lease expired on their last attempt are marked dead instead.
    /// - Parameters:
    ///   - lease: how long the claim holds; `extendLease` renews it.
    ///   - models: only jobs for these models (all when nil).
    ///   - anyVersionOf: also jobs for these model names whatever version they were queued for (a worker that
    ///     serves the version `inference.model_serving` names takes them).
    public func claim(_ limit: Int, lease: Duration, models: [ModelRef]? = nil, anyVersionOf: [String] = []) async throws -> [ClaimedJob] {
        guard limit > 0, lease > .zero else { throw CatalogError(.invalidArgument) }
        let logger = self.logger
        return try await inTransaction(client, logger: logger) { connection in
            try await connection.query("""
                UPDATE inference.jobs SET state = 'dead', last_error = 'lease_expired_on_last_attempt',
                       lease_token = NULL, lease_until = NULL, updated_at = now()
                WHERE id IN (SELECT id FROM inference.jobs
                             WHERE state = 'running' AND lease_until < now() AND attempts >= max_attempts
                             FOR UPDATE SKIP LOCKED)
                """, logger: logger)
            let names = models?.map(\.name) ?? []
            let versions = models?.map(\.version) ?? []
            let rows = try await connection.query("""
                WITH next AS (
                    SELECT id FROM inference.jobs
                    WHERE ((state = 'queued' AND run_at <= now())
                           OR (state = 'running' AND lease_until < now() AND attempts < max_attempts))
                      AND (\(models == nil) OR (model_name, model_version) IN
                           (SELECT * FROM unnest(\(names)::text[], \(versions)::text[]))
                           OR model_name = ANY(\(anyVersionOf)::text[]))
                    ORDER BY run_at, id
                    LIMIT \(limit)
                    FOR UPDATE SKIP LOCKED)
                UPDATE inference.jobs j
                SET state = 'running', attempts = j.attempts + 1, lease_token = gen_random_uuid(),
                    lease_until = now() + make_interval(secs => \(lease.seconds)), updated_at = now()
                FROM next WHERE j.id = next.id
                RETURNING j.id, j.series_uid, j.series_revision, j.model_name, j.model_version, j.attempts,
                          j.max_attempts, j.lease_token, j.lease_until
                """, logger: logger)
            var jobs: [ClaimedJob] = []
            for try await (id, series, revision, name, version, attempts, maxAttempts, token, until) in rows.decode(
                (Int64, String, Int, String, String, Int, Int, UUID, Date).self)
            {
                jobs.append(ClaimedJob(
                    id: id, seriesUID: series, seriesRevision: revision, model: ModelRef(name: name, version: version),
                    attempts: attempts, maxAttempts: maxAttempts, leaseToken: token, leaseUntil: until))
            }
            return jobs.sorted { $0.id < $1.id }
        }
    }

    /// Marks the job done and writes its diagnoses in the same transaction.
    /// Throws `CatalogError.leaseLost` (and writes nothing) when this claim no longer holds the job.
    /// Diagnoses without a `jobID` get this job's id.
    /// - Parameter shadowDiagnoses: rows of a shadow version run on the same job, written to
    ///   `inference.shadow_diagnoses` in the same transaction.
    public func complete(_ job: ClaimedJob, diagnoses: [DiagnosisRecord] = [], shadowDiagnoses: [DiagnosisRecord] = []) async throws {
        let logger = self.logger
        try await inTransaction(client, logger: logger) { connection in
            let rows = try await connection.query("""
                UPDATE inference.jobs SET state = 'done', completed_at = now(), lease_token = NULL, lease_until = NULL,
                       last_error = NULL, updated_at = now()
                WHERE id = \(job.id) AND lease_token = \(job.leaseToken) AND state = 'running'
                RETURNING id
                """, logger: logger)
            var found = false
            for try await _ in rows.decode(Int64.self) { found = true }
            guard found else { throw CatalogError(.leaseLost) }
            let transaction = CatalogTransaction(connection: connection, logger: logger)
            let own = { (d: DiagnosisRecord) -> DiagnosisRecord in
                var d = d
                if d.jobID == nil { d.jobID = job.id }
                return d
            }
            try await transaction.insertDiagnoses(diagnoses.map(own))
            try await transaction.insertShadowDiagnoses(shadowDiagnoses.map(own))
        }
    }

    /// Records a failed attempt: the job returns to the queue after the policy's backoff, or is dead when
    /// its attempts are used up or `permanent` is set.
    /// - Parameter reason: a machine-readable code (no patient data).
    @discardableResult
    public func fail(_ job: ClaimedJob, reason: String, permanent: Bool = false) async throws -> JobFailureOutcome {
        let logger = self.logger
        let retry = configuration.retry
        return try await inTransaction(client, logger: logger) { connection in
            let rows = try await connection.query("""
                SELECT attempts, max_attempts FROM inference.jobs
                WHERE id = \(job.id) AND lease_token = \(job.leaseToken) AND state = 'running'
                FOR UPDATE
                """, logger: logger)
            var found: (Int, Int)?
            for try await row in rows.decode((Int, Int).self) { found = row }
            guard let (attempts, maxAttempts) = found else { throw CatalogError(.leaseLost) }
            if permanent || attempts >= maxAttempts {
                try await connection.query("""
                    UPDATE inference.jobs SET state = 'dead', last_error = \(reason), lease_token = NULL,
                           lease_until = NULL, updated_at = now()
                    WHERE id = \(job.id)
                    """, logger: logger)
                return .dead
            }
            let delay = retry.delay(afterAttempts: attempts)
            try await connection.query("""
                UPDATE inference.jobs SET state = 'queued', last_error = \(reason), lease_token = NULL,
                       lease_until = NULL, run_at = now() + make_interval(secs => \(delay.seconds)), updated_at = now()
                WHERE id = \(job.id)
                """, logger: logger)
            return .retrying(after: delay)
        }
    }

    /// Renews a claim's lease; throws `CatalogError.leaseLost` when the claim no longer holds the job.
    public func extendLease(_ job: ClaimedJob, by lease: Duration) async throws -> ClaimedJob {
        let rows = try await client.query("""
            UPDATE inference.jobs SET lease_until = now() + make_interval(secs => \(lease.seconds)), updated_at = now()
            WHERE id = \(job.id) AND lease_token = \(job.leaseToken) AND state = 'running'
            RETURNING lease_until
            """, logger: logger)
        for try await until in rows.decode(Date.self) {
            var renewed = job
            renewed.leaseUntil = until
            return renewed
        }
        throw CatalogError(.leaseLost)
    }

    /// The number of jobs in each state.
    public func counts() async throws -> [JobState: Int] {
        var result: [JobState: Int] = [:]
        for state in JobState.allCases { result[state] = 0 }
        let rows = try await client.query("SELECT state, count(*) FROM inference.jobs GROUP BY state", logger: logger)
        for try await (state, count) in rows.decode((String, Int).self) {
            if let state = JobState(rawValue: state) { result[state] = count }
        }
        return result
    }

    /// Wake-ups for an idle worker: `.listening` each time the LISTEN connection is (re)established,
    /// `.notified` on each NOTIFY of the jobs channel, `.timer` every `pollInterval` as a fallback.
    /// The listener holds one pooled connection and reconnects after errors; ending the iteration stops it.
    /// At most one wake-up is buffered: a slow worker sees one pending wake-up, not a backlog. `clock` times the
    /// polling and the pause before a reconnection.
    public func wakeups(pollInterval: Duration = .seconds(5), clock: any Clock<Duration> = ContinuousClock()) -> AsyncStream<JobWakeup> {
        let (stream, continuation) = AsyncStream.makeStream(of: JobWakeup.self, bufferingPolicy: .bufferingNewest(1))
        let client = self.client
        let channel = configuration.channel
        let logger = self.logger
        let task = Task {
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    while !Task.isCancelled {
                        do {
                            try await client.withConnection { connection in
                                try await connection.listen(on: channel) { notifications in
                                    continuation.yield(.listening)
                                    for try await _ in notifications { continuation.yield(.notified) }
                                }
                            }
                        } catch {
                            if Task.isCancelled { break }
                            logger.warning("job listener lost its connection; reconnecting", metadata: ["error": .string(String(describing: type(of: error)))])
                        }
                        // Cancellation ends the pause and then the loop.
                        try? await clock.sleep(for: .seconds(1))
                    }
                }
                group.addTask {
                    while !Task.isCancelled {
                        try? await clock.sleep(for: pollInterval)   // cancelled: the check below ends the loop
                        if Task.isCancelled { break }
                        continuation.yield(.timer)
                    }
                }
                await group.waitForAll()
            }
            continuation.finish()
        }
        continuation.onTermination = { _ in task.cancel() }
        return stream
    }
}
