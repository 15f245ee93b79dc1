// `dicom-etl status`: what the daemon has done and is doing, read from the ledger, the audit trail
// and the job queue (and the drop folder for the backlog). Paths are never printed: a file is named
// by what the operator typed.
import Catalog
import Foundation

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
    /// Files whose SOP Instance UID was catalogued with other content, by resolution.
    public var uidConflicts: [String: Int] = [:]
    /// Inference jobs by state.
    public var jobs: [String: Int]
    /// The most recent failures: time, stage, reason.
    public var lastErrors: [(at: Date, stage: String, reason: String)]

    /// Reads the snapshot.
    public static func read(catalog: Catalog, dropFolder: String?, lastErrorCount: Int = 10) async throws -> IngestStatus {
        let counts = try await catalog.ingestCounts(lastErrorCount: lastErrorCount)
        return IngestStatus(
            backlog: dropFolder.map(Self.countBacklog) ?? 0, inFlight: counts.inFlight, ledger: counts.ledger,
            quarantinedByReason: counts.quarantinedByReason, uidConflicts: counts.uidConflicts, jobs: counts.jobs,
            lastErrors: counts.lastErrors)
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
        lines.append("uid conflicts by resolution: " + Self.format(uidConflicts))
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
        let rows = try await catalog.ledgerHistory(fileName: name)
        guard !rows.isEmpty else { return "no ledger row for a file of that name" }
        let formatter = ISO8601DateFormatter()
        var lines: [String] = []
        for row in rows {
            lines.append("file #\(row.id): state=\(row.state) attempts=\(row.attempts) size=\(row.size) sha256=\(row.sha256) first seen \(formatter.string(from: row.createdAt))"
                + (row.errorReason.map { " reason=\($0)" } ?? ""))
            for event in row.events {
                var line = "  \(formatter.string(from: event.at))  \(event.stage)"
                if event.fromState != nil || event.toState != nil { line += "  \(event.fromState ?? "-") -> \(event.toState ?? "-")" }
                if let detail = event.detail { line += "  \(detail)" }
                lines.append(line)
            }
        }
        return lines.joined(separator: "\n")
    }
}
