// `dicom-etl status`: what the daemon has done and is doing, read from the ledger, the audit trail
// and the job queue (and the drop folder for the backlog). Paths are never printed: a file is named
// by what the operator typed.
import Catalog
import Foundation
import PostgresNIO

/// A snapshot of the ingest state.
public struct IngestStatus: Sendable {
    /// Files in the drop folder not yet disposed of (outside processed/ and quarantine/).
    public var backlog: Int
    /// Ledger rows being processed under a live lease.
    public var inFlight: Int
    /// Ledger rows by state.
    public var ledger: [String: Int]
    /// Quarantined files by reason.
    public var quarantinedByReason: [String: Int]
    /// Inference jobs by state.
    public var jobs: [String: Int]
    /// The most recent failures: time, stage, reason.
    public var lastErrors: [(at: Date, stage: String, reason: String)]

    /// Reads the snapshot.
    public static func read(catalog: Catalog, dropFolder: String?, lastErrorCount: Int = 10) async throws -> IngestStatus {
        let client = catalog.client
        var ledger: [String: Int] = [:]
        for try await (state, count) in try await client.query("SELECT state, count(*)::int8 FROM ingest.source_files GROUP BY state").decode((String, Int64).self) {
            ledger[state] = Int(count)
        }
        var inFlight = 0
        for try await count in try await client.query(
            "SELECT count(*)::int8 FROM ingest.source_files WHERE state = 'processing' AND lease_until > now()").decode(Int64.self)
        { inFlight = Int(count) }
        var reasons: [String: Int] = [:]
        for try await (reason, count) in try await client.query("""
            SELECT COALESCE(error_reason, 'unknown'), count(*)::int8 FROM ingest.source_files WHERE state = 'quarantined' GROUP BY 1
            """).decode((String, Int64).self)
        { reasons[reason] = Int(count) }
        var jobs: [String: Int] = [:]
        for try await (state, count) in try await client.query("SELECT state, count(*)::int8 FROM inference.jobs GROUP BY state").decode((String, Int64).self) {
            jobs[state] = Int(count)
        }
        var errors: [(Date, String, String)] = []
        for try await (at, stage, detail) in try await client.query("""
            SELECT at, stage, COALESCE(detail, '') FROM ingest.stage_events
            WHERE to_state IN ('quarantined', 'failed') ORDER BY at DESC, id DESC LIMIT \(lastErrorCount)
            """).decode((Date, String, String).self)
        { errors.append((at, stage, detail)) }
        return IngestStatus(
            backlog: dropFolder.map(Self.countBacklog) ?? 0, inFlight: inFlight, ledger: ledger, quarantinedByReason: reasons, jobs: jobs,
            lastErrors: errors.map { (at: $0.0, stage: $0.1, reason: $0.2) })
    }

    /// Regular files under the drop folder, outside processed/ and quarantine/, not temporary names.
    public static func countBacklog(_ dropFolder: String) -> Int {
        let layout = DropFolderLayout(root: URL(fileURLWithPath: dropFolder).standardizedFileURL.path)
        guard let walker = FileManager.default.enumerator(atPath: layout.root) else { return 0 }
        var count = 0
        while let relative = walker.nextObject() as? String {
            let first = relative.split(separator: "/").first.map(String.init) ?? relative
            if first == "processed" || first == "quarantine" {
                walker.skipDescendants()
                continue
            }
            let name = (relative as NSString).lastPathComponent
            if name.hasPrefix(".") || name.hasSuffix(".part") { continue }
            if (walker.fileAttributes?[.type] as? FileAttributeType) == .typeRegular { count += 1 }
        }
        return count
    }

    /// The printable report.
    public var text: String {
        var lines = ["backlog: \(backlog)", "in flight: \(inFlight)"]
        lines.append("ledger: " + Self.format(ledger))
        lines.append("quarantined by reason: " + Self.format(quarantinedByReason))
        lines.append("jobs by state: " + Self.format(jobs))
        lines.append("last errors:" + (lastErrors.isEmpty ? " none" : ""))
        let formatter = ISO8601DateFormatter()
        for error in lastErrors { lines.append("  \(formatter.string(from: error.at))  \(error.stage)  \(error.reason)") }
        return lines.joined(separator: "\n")
    }

    static func format(_ counts: [String: Int]) -> String {
        counts.isEmpty ? "none" : counts.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
    }

    /// The ledger rows of files whose name (last path component) is `name`, each with its stage
    /// transitions, as printable text. Paths are not printed.
    public static func fileReport(catalog: Catalog, name: String) async throws -> String {
        let client = catalog.client
        let suffix = "/" + name
        var rows: [(Int64, String, Int, String?, Int64, String, Date)] = []
        for try await row in try await client.query("""
            SELECT id, state, attempts, error_reason, size, sha256, created_at FROM ingest.source_files
            WHERE right(path, \(suffix.count)::int4) = \(suffix) OR path = \(name) ORDER BY id
            """).decode((Int64, String, Int, String?, Int64, String, Date).self)
        { rows.append(row) }
        guard !rows.isEmpty else { return "no ledger row for a file of that name" }
        let formatter = ISO8601DateFormatter()
        var lines: [String] = []
        for (id, state, attempts, reason, size, sha, created) in rows {
            lines.append("file #\(id): state=\(state) attempts=\(attempts) size=\(size) sha256=\(sha) first seen \(formatter.string(from: created))"
                + (reason.map { " reason=\($0)" } ?? ""))
            for try await (at, stage, from, to, detail) in try await client.query("""
                SELECT at, stage, from_state, to_state, detail FROM ingest.stage_events WHERE source_file_id = \(id) ORDER BY at, id
                """).decode((Date, String, String?, String?, String?).self)
            {
                var line = "  \(formatter.string(from: at))  \(stage)"
                if from != nil || to != nil { line += "  \(from ?? "-") -> \(to ?? "-")" }
                if let detail { line += "  \(detail)" }
                lines.append(line)
            }
        }
        return lines.joined(separator: "\n")
    }
}
