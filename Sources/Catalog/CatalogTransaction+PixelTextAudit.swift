// The burned-in text audit of instances (imaging.pixel_text_audit): written in the transaction that catalogues
// the instances, read back by SOP Instance UID.
import Foundation
import PostgresNIO

extension CatalogTransaction {
    /// Writes the audit of each instance read by OCR (the instances must be upserted first, in this transaction or
    /// before); a re-sent instance's row is replaced. Records are keyed by pseudonymous SOP Instance UID.
    public func recordPixelTextAudits(_ audits: [PixelTextAuditRecord]) async throws {
        let rows = unique(audits, by: \.sopInstanceUID).map(PixelTextAuditRow.init)
        guard !rows.isEmpty else { return }
        try await connection.query("""
            INSERT INTO imaging.pixel_text_audit AS a (sop_instance_uid, action, outcome, unreadable_reason, frames_checked,
                words_read, box_count, categories, boxes, engine)
            SELECT sop_instance_uid, action, outcome, unreadable_reason, frames_checked, words_read, box_count, categories,
                   boxes, engine
            FROM jsonb_to_recordset(\(try json(rows))::jsonb) AS x(sop_instance_uid text, action text, outcome text,
                unreadable_reason text, frames_checked integer, words_read integer, box_count integer, categories jsonb,
                boxes jsonb, engine text)
            ON CONFLICT (sop_instance_uid) DO UPDATE
            SET action = EXCLUDED.action, outcome = EXCLUDED.outcome, unreadable_reason = EXCLUDED.unreadable_reason,
                frames_checked = EXCLUDED.frames_checked, words_read = EXCLUDED.words_read, box_count = EXCLUDED.box_count,
                categories = EXCLUDED.categories, boxes = EXCLUDED.boxes, engine = EXCLUDED.engine, updated_at = now()
            WHERE (a.action, a.outcome, a.unreadable_reason, a.frames_checked, a.words_read, a.box_count, a.categories,
                   a.boxes, a.engine) IS DISTINCT FROM
                  (EXCLUDED.action, EXCLUDED.outcome, EXCLUDED.unreadable_reason, EXCLUDED.frames_checked,
                   EXCLUDED.words_read, EXCLUDED.box_count, EXCLUDED.categories, EXCLUDED.boxes, EXCLUDED.engine)
            """, logger: logger)
    }

    /// The audit of one instance, or nil when it was not read by OCR.
    public func pixelTextAudit(sopInstanceUID: String) async throws -> PixelTextAuditRecord? {
        let rows = try await connection.query("""
            SELECT action, outcome, unreadable_reason, frames_checked, words_read, boxes::text, engine
            FROM imaging.pixel_text_audit WHERE sop_instance_uid = \(sopInstanceUID)
            """, logger: logger)
        for try await (action, outcome, reason, frames, words, boxes, engine) in rows.decode(
            (String, String, String?, Int, Int, String, String).self)
        {
            let decoded = try JSONDecoder().decode([PixelTextBoxRecord].self, from: Data(boxes.utf8))
            return PixelTextAuditRecord(
                sopInstanceUID: sopInstanceUID, action: action, outcome: outcome, unreadableReason: reason, framesChecked: frames,
                wordsRead: words, boxes: decoded, engine: engine)
        }
        return nil
    }
}

/// The flat row shape `jsonb_to_recordset` reads for `imaging.pixel_text_audit`.
struct PixelTextAuditRow: Encodable {
    let sop_instance_uid: String, action: String, outcome: String, unreadable_reason: String?
    let frames_checked: Int, words_read: Int, box_count: Int, categories: [String: Int], boxes: [PixelTextBoxRecord], engine: String

    init(_ a: PixelTextAuditRecord) {
        sop_instance_uid = a.sopInstanceUID; action = a.action; outcome = a.outcome; unreadable_reason = a.unreadableReason
        frames_checked = a.framesChecked; words_read = a.wordsRead; box_count = a.boxes.count; categories = a.categories
        boxes = a.boxes; engine = a.engine
    }
}
