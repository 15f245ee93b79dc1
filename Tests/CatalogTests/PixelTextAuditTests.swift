// The burned-in text audit: written with the instance it describes, replaced when the instance is re-sent, never
// the text; an audit of an instance not catalogued is refused.
import Catalog
import Foundation
import PostgresNIO
import Testing

@Suite(.enabled(if: TestDatabase.available, "needs DICOM_ETL_TEST_DATABASE_URL (scripts/with-services.sh)"))
struct PixelTextAuditTests {
    func audit(_ sop: String, boxes: [PixelTextBoxRecord], outcome: String = "redacted") -> PixelTextAuditRecord {
        PixelTextAuditRecord(sopInstanceUID: sop, action: "redact_sensitive", outcome: outcome, framesChecked: 2, wordsRead: 7,
                             boxes: boxes, engine: "tesseract 5.3.0")
    }

    @Test func auditIsWrittenWithItsInstanceAndReplacedWhenResent() async throws {
        try await TestDatabase.withCatalog { catalog, _ in
            let fixture = Fixture()
            let sop = fixture.seriesUID + ".1"
            let boxes = [PixelTextBoxRecord(frame: 0, x: 4, y: 3, width: 120, height: 18, category: "name"),
                         PixelTextBoxRecord(frame: 1, x: 4, y: 30, width: 90, height: 18, category: "date"),
                         PixelTextBoxRecord(frame: 1, x: 200, y: 30, width: 40, height: 18, category: "name")]
            try await catalog.withTransaction { tx in
                try await tx.upsert(fixture.batch(instances: [1]))
                try await tx.recordPixelTextAudits([audit(sop, boxes: boxes)])
            }
            let read = try #require(try await catalog.withTransaction { try await $0.pixelTextAudit(sopInstanceUID: sop) })
            #expect(read == audit(sop, boxes: boxes))
            #expect(read.categories == ["name": 2, "date": 1])
            let client = catalog.client
            #expect(try await scalar(client, """
                SELECT count(*)::int FROM imaging.pixel_text_audit
                WHERE box_count = 3 AND categories = '{"name": 2, "date": 1}'::jsonb AND outcome = 'redacted'
                  AND boxes->1->>'category' = 'date' AND (boxes->0->>'width')::int = 120
                """) == 1)

            // Re-sent: one row, the new audit.
            try await catalog.withTransaction { tx in
                try await tx.upsert(fixture.batch(instances: [1]))
                try await tx.recordPixelTextAudits([audit(sop, boxes: [], outcome: "clean")])
            }
            #expect(try await scalar(client, "SELECT count(*)::int FROM imaging.pixel_text_audit") == 1)
            #expect(try await catalog.withTransaction { try await $0.pixelTextAudit(sopInstanceUID: sop) }?.outcome == "clean")
            #expect(try await catalog.withTransaction { try await $0.pixelTextAudit(sopInstanceUID: "2.25.9") } == nil)
        }
    }

    @Test func auditOfAnInstanceNotCataloguedIsRefusedAndRolledBack() async throws {
        try await TestDatabase.withCatalog { catalog, _ async throws in
            let fixture = Fixture()
            await #expect(throws: (any Error).self) {
                try await catalog.withTransaction { tx in
                    try await tx.upsert(fixture.batch(instances: [1]))
                    try await tx.recordPixelTextAudits([audit("2.25.404", boxes: [])])
                }
            }
            // The whole transaction rolled back with it.
            #expect(try await scalar(catalog.client, "SELECT count(*)::int FROM imaging.instances") == 0)
        }
    }
}
