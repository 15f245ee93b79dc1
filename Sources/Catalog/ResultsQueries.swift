// ResultsQueries: the identified reads behind the results API (as the `clinician` role, through
// `clinical.diagnoses`), each written to `audit.identified_reads` in the same transaction: a read whose audit
// row cannot be written returns nothing. Also the de-identified preview behind a diagnosis and the audit itself.
import Foundation
import Logging
import PostgresNIO

/// Filters of a diagnosis search. Identifiers are the original ones (a clinician's), not pseudonyms.
public struct DiagnosisFilter: Sendable, Hashable {
    public var diagnosisID: Int64?
    /// Original PatientID.
    public var patientID: String?
    /// Original StudyInstanceUID.
    public var studyUID: String?
    public var accessionNumber: String?
    public var modelName: String?
    public var modelVersion: String?
    public var label: String?
    /// Diagnoses written at or after this time.
    public var since: Date?
    /// Diagnoses written before this time.
    public var until: Date?
    /// 1…1,000.
    public var limit: Int
    public var offset: Int

    public init(
        diagnosisID: Int64? = nil, patientID: String? = nil, studyUID: String? = nil, accessionNumber: String? = nil,
        modelName: String? = nil, modelVersion: String? = nil, label: String? = nil, since: Date? = nil, until: Date? = nil,
        limit: Int = 100, offset: Int = 0
    ) {
        self.diagnosisID = diagnosisID
        self.patientID = patientID
        self.studyUID = studyUID
        self.accessionNumber = accessionNumber
        self.modelName = modelName
        self.modelVersion = modelVersion
        self.label = label
        self.since = since
        self.until = until
        self.limit = limit
        self.offset = offset
    }
}

/// A diagnosis with the original identifiers of its patient and study (a row of `clinical.diagnoses`).
public struct IdentifiedDiagnosis: Sendable, Hashable {
    public var id: Int64
    public var patientID: String?
    public var patientName: String?
    public var accessionNumber: String?
    public var studyUID: String?
    public var seriesUID: String?
    public var sopInstanceUID: String?
    /// The study date as catalogued (shifted by de-identification), `YYYYMMDD`.
    public var shiftedStudyDate: String?
    public var modality: String?
    public var bodyPart: String?
    public var seriesDescription: String?
    public var modelName: String
    public var modelVersion: String
    public var label: String
    public var probabilities: [String: Double]
    public var threshold: Double?
    public var createdAt: Date
}

/// Who reads identified data, and through which request: what the audit row records besides the rows read.
public struct AuditContext: Sendable, Hashable {
    /// The token's name.
    public var principal: String
    /// The token's role.
    public var role: String
    /// e.g. `GET /diagnoses`.
    public var action: String
    /// The request's filters as given.
    public var parameters: [String: String]
    /// The peer address.
    public var client: String?

    public init(principal: String, role: String, action: String, parameters: [String: String] = [:], client: String? = nil) {
        self.principal = principal
        self.role = role
        self.action = action
        self.parameters = parameters
        self.client = client
    }
}

/// A row of `audit.identified_reads`.
public struct AuditRecord: Sendable, Hashable {
    public var id: Int64
    public var at: Date
    public var principal: String
    public var role: String
    public var action: String
    public var parameters: [String: String]
    public var diagnosisIDs: [Int64]
    public var resultCount: Int
    public var client: String?
}

extension Catalog {
    /// Diagnoses matching `filter`, newest first, read as `clinician`; the read is audited in the same transaction.
    public func readDiagnoses(_ filter: DiagnosisFilter, audit: AuditContext) async throws -> [IdentifiedDiagnosis] {
        var sql = SQLBuilder()
        var conditions: [String] = []
        if let id = filter.diagnosisID { conditions.append("diagnosis_id = \(sql.bind(Int(id)))") }
        if let value = filter.patientID { conditions.append("patient_id = \(sql.bind(value))") }
        if let value = filter.studyUID { conditions.append("study_uid = \(sql.bind(value))") }
        if let value = filter.accessionNumber { conditions.append("accession_number = \(sql.bind(value))") }
        if let value = filter.modelName { conditions.append("model_name = \(sql.bind(value))") }
        if let value = filter.modelVersion { conditions.append("model_version = \(sql.bind(value))") }
        if let value = filter.label { conditions.append("label = \(sql.bind(value))") }
        if let value = filter.since { conditions.append("created_at >= \(sql.bind(iso8601(value)))::timestamptz") }
        if let value = filter.until { conditions.append("created_at < \(sql.bind(iso8601(value)))::timestamptz") }
        let query = sql.finish("""
            SELECT diagnosis_id, patient_id, patient_name, accession_number, study_uid, series_uid, sop_instance_uid,
                   to_char(shifted_study_date, 'YYYYMMDD'), modality, body_part, series_description, model_name, model_version,
                   label, probabilities::text, threshold, created_at
            FROM clinical.diagnoses
            \(conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND "))
            ORDER BY created_at DESC, diagnosis_id DESC
            """, limit: min(filter.limit, 1000), offset: filter.offset)
        return try await inTransaction(client, logger: logger) { connection in
            try await connection.query("SET LOCAL ROLE clinician", logger: logger)
            var found: [IdentifiedDiagnosis] = []
            let rows = try await connection.query(query, logger: logger)
            for try await row in rows {
                let c = try row.decode(
                    (Int64, String?, String?, String?, String?, String?, String?, String?, String?, String?, String?, String, String,
                     String, String, Double?, Date).self)
                let probabilities = (try? JSONDecoder().decode([String: Double].self, from: Data(c.14.utf8))) ?? [:]
                found.append(IdentifiedDiagnosis(
                    id: c.0, patientID: c.1, patientName: c.2, accessionNumber: c.3, studyUID: c.4, seriesUID: c.5, sopInstanceUID: c.6,
                    shiftedStudyDate: c.7, modality: c.8, bodyPart: c.9, seriesDescription: c.10, modelName: c.11, modelVersion: c.12,
                    label: c.13, probabilities: probabilities, threshold: c.15, createdAt: c.16))
            }
            // Back to the server's own role, which alone may append to the audit.
            try await connection.query("SET LOCAL ROLE NONE", logger: logger)
            let ids = found.map(\.id)
            let parameters = try json(audit.parameters)
            try await connection.query("""
                INSERT INTO audit.identified_reads (principal, role, action, parameters, diagnosis_ids, result_count, client)
                VALUES (\(audit.principal), \(audit.role), \(audit.action), \(parameters)::jsonb, \(ids), \(found.count), \(audit.client))
                """, logger: logger)
            return found
        }
    }

    /// The store key of the preview image behind a diagnosis (its instance's, else the series' first instance's),
    /// read as `analyst`: a preview is de-identified pixel data.
    public func previewKey(diagnosisID: Int64) async throws -> String? {
        try await reading(as: .analyst) { connection in
            let rows = try await connection.query("""
                SELECT COALESCE(i.preview_key, (SELECT t.preview_key FROM imaging.tensors t
                                                WHERE t.sop_instance_uid = i.sop_instance_uid AND t.preview_key IS NOT NULL
                                                ORDER BY t.recipe LIMIT 1))
                FROM inference.diagnoses d
                JOIN imaging.instances i ON i.sop_instance_uid = COALESCE(d.sop_instance_uid, (
                    SELECT f.sop_instance_uid FROM imaging.instances f WHERE f.series_uid = d.series_uid
                    ORDER BY f.instance_number NULLS LAST, f.sop_instance_uid LIMIT 1))
                WHERE d.id = \(diagnosisID)
                """, logger: logger)
            for try await key in rows.decode(String?.self) { return key }
            return nil
        }
    }

    /// Audit rows, newest first, read as `operator`.
    /// - Parameter principal: only this token's reads.
    public func auditRecords(principal: String? = nil, since: Date? = nil, limit: Int = 100, offset: Int = 0) async throws -> [AuditRecord] {
        let sinceText = since.map(iso8601)
        return try await reading(as: .operator) { connection in
            let rows = try await connection.query("""
                SELECT id, at, principal, role, action, parameters::text, diagnosis_ids, result_count, client
                FROM audit.identified_reads
                WHERE (\(principal)::text IS NULL OR principal = \(principal))
                  AND (\(sinceText)::text IS NULL OR at >= \(sinceText)::timestamptz)
                ORDER BY at DESC, id DESC
                LIMIT \(max(1, min(limit, 1000))) OFFSET \(max(0, offset))
                """, logger: logger)
            var found: [AuditRecord] = []
            for try await (id, at, principal, role, action, parameters, ids, count, client) in rows.decode(
                (Int64, Date, String, String, String, String, [Int64], Int, String?).self)
            {
                let decoded = (try? JSONDecoder().decode([String: String].self, from: Data(parameters.utf8))) ?? [:]
                found.append(AuditRecord(
                    id: id, at: at, principal: principal, role: role, action: action, parameters: decoded, diagnosisIDs: ids,
                    resultCount: count, client: client))
            }
            return found
        }
    }
}

private func iso8601(_ date: Date) -> String {
    let formatter = ISO8601DateFormatter()
    formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    return formatter.string(from: date)
}
