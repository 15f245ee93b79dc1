// Labels: radiologists' labels per study and task, keyed on import by accession number or original study UID
// and resolved through the vault to the study's pseudonym (the only key analysts see in inference.labels).
import Foundation
import PostgresNIO

/// How a label file names its study.
public enum LabelKey: Sendable, Hashable {
    case accessionNumber(String)
    case originalStudyUID(String)
}

/// One label to import.
public struct LabelEntry: Sendable, Hashable {
    public var key: LabelKey
    public var label: String

    public init(key: LabelKey, label: String) {
        self.key = key
        self.label = label
    }
}

/// What resolving a key through the vault found.
public enum LabelResolution: Sendable, Hashable {
    /// The study's pseudonym.
    case study(String)
    /// No study carries the key.
    case unknown
    /// Several studies carry the key (an accession number reused): refused rather than guessed.
    case ambiguous
}

extension CatalogTransaction {
    /// Resolves each key to a study pseudonym through `vault.studies`, index-aligned with `keys`.
    public func resolveStudies(_ keys: [LabelKey]) async throws -> [LabelResolution] {
        var accessions: [String] = [], uids: [String] = []
        for key in keys {
            switch key {
            case let .accessionNumber(a): accessions.append(a)
            case let .originalStudyUID(u): uids.append(u)
            }
        }
        var byAccession: [String: [String]] = [:], byUID: [String: [String]] = [:]
        let rows = try await connection.query("""
            SELECT accession_number, original_study_uid, study_uid FROM vault.studies
            WHERE accession_number = ANY(\(accessions)::text[]) OR original_study_uid = ANY(\(uids)::text[])
            """, logger: logger)
        for try await (accession, original, study) in rows.decode((String?, String, String).self) {
            if let accession { byAccession[accession, default: []].append(study) }
            byUID[original, default: []].append(study)
        }
        return keys.map { key in
            let found: [String]
            switch key {
            case let .accessionNumber(a): found = byAccession[a] ?? []
            case let .originalStudyUID(u): found = byUID[u] ?? []
            }
            let distinct = Set(found)
            if distinct.isEmpty { return .unknown }
            return distinct.count == 1 ? .study(distinct.first!) : .ambiguous
        }
    }

    /// Writes labels of one task; a study's earlier label for the task is replaced.
    /// - Returns: the number of rows written.
    @discardableResult
    public func upsertLabels(_ labels: [(studyUID: String, label: String)], task: String, source: String?,
                             importID: UUID) async throws -> Int {
        guard !labels.isEmpty else { return 0 }
        let rows = try await connection.query("""
            INSERT INTO inference.labels (study_uid, task, label, source, import_id)
            SELECT study_uid, \(task), label, \(source), \(importID)
            FROM unnest(\(labels.map(\.studyUID))::text[], \(labels.map(\.label))::text[]) AS x(study_uid, label)
            ON CONFLICT (study_uid, task) DO UPDATE
            SET label = EXCLUDED.label, source = EXCLUDED.source, import_id = EXCLUDED.import_id, imported_at = now()
            RETURNING 1
            """, logger: logger)
        var count = 0
        for try await _ in rows.decode(Int.self) { count += 1 }
        return count
    }
}
