// StatusQueries: what `dicom-etl status` reads from the ledger, the audit trail and the job queue. Each query runs
// on its own pooled connection, outside a transaction (a snapshot of counters, not a consistent cut).
import Foundation
import PostgresNIO

/// The counters of `dicom-etl status`.
public struct IngestCounts: Sendable {
    /// Ledger rows by state.
    public var ledger: [String: Int] = [:]
    /// Ledger rows being processed under a live lease.
    public var inFlight = 0
    /// Quarantined ledger rows by reason (`unknown` when none was recorded).
    public var quarantinedByReason: [String: Int] = [:]
    /// Files whose SOP Instance UID was catalogued with other content, by what was done (`quarantined`,
    /// `kept_both`, `replaced`).
    public var uidConflicts: [String: Int] = [:]
    /// Inference jobs by state.
    public var jobs: [String: Int] = [:]
    /// The most recent quarantines and failures of the audit trail, newest first: time, stage, detail.
    public var lastErrors: [(at: Date, stage: String, reason: String)] = []
}

/// One ledger row with its stage transitions, oldest first.
public struct LedgerFileHistory: Sendable {
    public struct Event: Sendable {
        public var at: Date
        public var stage: String
        public var fromState: String?
        public var toState: String?
        public var detail: String?
    }

    public var id: Int64
    public var state: String
    public var attempts: Int
    public var errorReason: String?
    public var size: Int64
    public var sha256: String
    public var createdAt: Date
    public var events: [Event]
}

extension Catalog {
    /// Ledger, quarantine and job counters, and the `lastErrorCount` most recent failures.
    public func ingestCounts(lastErrorCount: Int) async throws -> IngestCounts {
        var counts = IngestCounts()
        for try await (state, count) in try await client.query("SELECT state, count(*)::int8 FROM ingest.source_files GROUP BY state").decode((String, Int64).self) {
            counts.ledger[state] = Int(count)
        }
        for try await count in try await client.query(
            "SELECT count(*)::int8 FROM ingest.source_files WHERE state = 'processing' AND lease_until > now()").decode(Int64.self)
        { counts.inFlight = Int(count) }
        for try await (reason, count) in try await client.query("""
            SELECT COALESCE(error_reason, 'unknown'), count(*)::int8 FROM ingest.source_files WHERE state = 'quarantined' GROUP BY 1
            """).decode((String, Int64).self)
        { counts.quarantinedByReason[reason] = Int(count) }
        for try await (resolution, count) in try await client.query(
            "SELECT resolution, count(DISTINCT source_file_id)::int8 FROM ingest.uid_conflicts GROUP BY 1").decode((String, Int64).self)
        { counts.uidConflicts[resolution] = Int(count) }
        for try await (state, count) in try await client.query("SELECT state, count(*)::int8 FROM inference.jobs GROUP BY state").decode((String, Int64).self) {
            counts.jobs[state] = Int(count)
        }
        for try await (at, stage, detail) in try await client.query("""
            SELECT at, stage, COALESCE(detail, '') FROM ingest.stage_events
            WHERE to_state IN ('quarantined', 'failed') ORDER BY at DESC, id DESC LIMIT \(lastErrorCount)
            """).decode((Date, String, String).self)
        { counts.lastErrors.append((at: at, stage: stage, reason: detail)) }
        return counts
    }

    /// The ledger rows of files whose path is `name` or ends in `/name`, by id, each with its stage transitions.
    public func ledgerHistory(fileName name: String) async throws -> [LedgerFileHistory] {
        let suffix = "/" + name
        var rows: [LedgerFileHistory] = []
        for try await (id, state, attempts, reason, size, sha, created) in try await client.query("""
            SELECT id, state, attempts, error_reason, size, sha256, created_at FROM ingest.source_files
            WHERE right(path, \(suffix.count)::int4) = \(suffix) OR path = \(name) ORDER BY id
            """).decode((Int64, String, Int, String?, Int64, String, Date).self)
        {
            rows.append(LedgerFileHistory(
                id: id, state: state, attempts: attempts, errorReason: reason, size: size, sha256: sha, createdAt: created, events: []))
        }
        for index in rows.indices {
            for try await (at, stage, from, to, detail) in try await client.query("""
                SELECT at, stage, from_state, to_state, detail FROM ingest.stage_events WHERE source_file_id = \(rows[index].id) ORDER BY at, id
                """).decode((Date, String, String?, String?, String?).self)
            {
                rows[index].events.append(LedgerFileHistory.Event(at: at, stage: stage, fromState: from, toState: to, detail: detail))
            }
        }
        return rows
    }
}
