// TrainingExport: the catalogue side of `dicom-etl export`: every instance tensor of one recipe that an analyst's
// predicate on the imaging schema selects, with its pseudonymous identifiers and the study's label of a task,
// in a stable order (patient, study, series, instance number, instance), read in a read-only transaction.
import Foundation
import PostgresNIO

/// One tensor to export.
public struct ExportRow: Sendable, Hashable {
    public var patientID: String
    public var studyUID: String
    public var seriesUID: String
    public var sopInstanceUID: String
    public var instanceNumber: Int?
    public var modality: String?
    public var bodyPart: String?
    public var tensorKey: String
    public var tensorSHA256: String
    public var sidecarKey: String?
    /// The study's label of the task, when known.
    public var label: String?
}

extension Catalog {
    /// The tensors of `recipe` whose instance matches `predicate`, with labels of `task`.
    /// - Parameters:
    ///   - predicate: SQL over `imaging.instances i`, `imaging.series se`, `imaging.studies st`,
    ///     `imaging.patients p` (and `inference.labels l`), e.g. `i.modality = 'CR' AND st.study_date >= '2025-01-01'`.
    ///     It runs in a READ ONLY transaction with the caller's database role: it can select, never write.
    public func exportRows(recipe: String, predicate: String?, task: String) async throws -> [ExportRow] {
        let logger = self.logger
        var query: PostgresQuery = """
            SELECT p.patient_id, st.study_uid, se.series_uid, i.sop_instance_uid, i.instance_number, i.modality,
                   i.body_part, t.tensor_key, t.tensor_sha256, t.sidecar_key, l.label
            FROM imaging.tensors t
            JOIN imaging.instances i ON i.sop_instance_uid = t.sop_instance_uid
            JOIN imaging.series se ON se.series_uid = i.series_uid
            JOIN imaging.studies st ON st.study_uid = se.study_uid
            JOIN imaging.patients p ON p.patient_id = st.patient_id
            LEFT JOIN inference.labels l ON l.study_uid = st.study_uid AND l.task = \(task)
            WHERE t.recipe = \(recipe)
            """
        if let predicate, !predicate.trimmingCharacters(in: .whitespaces).isEmpty {
            query.sql += " AND (" + predicate + ")"
        }
        query.sql += " ORDER BY p.patient_id, st.study_uid, se.series_uid, i.instance_number NULLS LAST, i.sop_instance_uid"
        return try await inTransaction(client, logger: logger) { connection in
            try await connection.query("SET TRANSACTION READ ONLY", logger: logger)
            let rows = try await connection.query(query, logger: logger)
            var out: [ExportRow] = []
            for try await (patient, study, series, sop, number, modality, body, key, sha, sidecar, label) in rows.decode(
                (String, String, String, String, Int?, String?, String?, String, String, String?, String?).self)
            {
                out.append(ExportRow(patientID: patient, studyUID: study, seriesUID: series, sopInstanceUID: sop,
                                     instanceNumber: number, modality: modality, bodyPart: body, tensorKey: key,
                                     tensorSHA256: sha, sidecarKey: sidecar, label: label))
            }
            return out
        }
    }
}
