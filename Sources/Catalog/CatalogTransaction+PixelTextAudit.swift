// The burned-in text audit of instances (imaging.pixel_text_audit): written in the transaction that catalogues
// the instances (`commitIngestBatch` writes those of its batch in one statement), read back by SOP Instance UID.
import Foundation
import PostgresNIO

extension CatalogTransaction {
    /// Writes the audit of each instance read by OCR (the instances must be upserted first, in this transaction or
    /// before); a re-sent instance's row is replaced. Records are keyed by pseudonymous SOP Instance UID.
    public func recordPixelTextAudits(_ audits: [PixelTextAuditRecord]) async throws {
        try await writePixelTextAudits(CatalogRows.lastByKey(audits, \.sopInstanceUID), clearing: [])
    }

    /// One statement: the audits written (replacing a re-sent instance's row), and the rows of `clearing` (instances
    /// replaced by a version OCR did not read) removed.
    func writePixelTextAudits(_ audits: [PixelTextAuditRecord], clearing: [String]) async throws {
        guard !audits.isEmpty || !clearing.isEmpty else { return }
        try await connection.query("""
            WITH cleared AS (DELETE FROM imaging.pixel_text_audit WHERE sop_instance_uid = ANY(\(clearing)::text[]))
            INSERT INTO imaging.pixel_text_audit AS a (sop_instance_uid, action, outcome, unreadable_reason, frames_checked,
                words_read, box_count, categories, boxes, engine)
            SELECT sop_instance_uid, action, outcome, unreadable_reason, frames_checked, words_read, box_count, categories,
                   boxes, engine
            FROM jsonb_to_recordset(\(CatalogRows.pixelTextAudits(audits))::jsonb) AS x(sop_instance_uid text, action text,
                outcome text, unreadable_reason text, frames_checked integer, words_read integer, box_count integer,
                categories jsonb, boxes jsonb, engine text)
            ORDER BY sop_instance_uid
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

extension CatalogRows {
    /// `imaging.pixel_text_audit` rows.
    static func pixelTextAudits(_ audits: [PixelTextAuditRecord]) -> String {
        var rows = JSONRows(capacity: audits.reduce(0) { $0 + 256 + 96 * $1.boxes.count })
        for a in audits {
            rows.row { row in
                row.string("sop_instance_uid", a.sopInstanceUID)
                row.string("action", a.action)
                row.string("outcome", a.outcome)
                row.string("unreadable_reason", a.unreadableReason)
                row.int("frames_checked", a.framesChecked)
                row.int("words_read", a.wordsRead)
                row.int("box_count", a.boxes.count)
                var categories = JSONRows()
                categories.row { object in
                    for (category, count) in a.categories.sorted(by: { $0.key < $1.key }) { object.int(category, count) }
                }
                row.json("categories", String(categories.finished().dropFirst().dropLast()))
                var boxes = JSONRows(capacity: 96 * a.boxes.count)
                for b in a.boxes {
                    boxes.row { box in
                        box.int("frame", b.frame)
                        box.int("x", b.x)
                        box.int("y", b.y)
                        box.int("width", b.width)
                        box.int("height", b.height)
                        box.string("category", b.category)
                    }
                }
                row.json("boxes", boxes.finished())
                row.string("engine", a.engine)
            }
        }
        return rows.finished()
    }
}
