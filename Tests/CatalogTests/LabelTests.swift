// Labels: keys resolved through the vault (accession number or original study UID) to study pseudonyms; an
// accession number on two studies is ambiguous, an absent one unknown; a later import replaces a study's label.
import Catalog
import Foundation
import Testing

@Suite(.enabled(if: TestDatabase.available, "needs DICOM_ETL_TEST_DATABASE_URL (scripts/with-services.sh)"))
struct LabelTests {
    @Test func keysResolveThroughTheVaultAndLabelsReplace() async throws {
        try await TestDatabase.withCatalog { catalog, _ in
            let fixtures = (0..<4).map { _ in Fixture() }
            let vault = [("ACC-1", "1.2.826.1"), ("ACC-2", "1.2.826.2"), ("ACC-DUP", "1.2.826.3"), ("ACC-DUP", "1.2.826.4")]
            for (fixture, (accession, original)) in zip(fixtures, vault) {
                var batch = fixture.batch(instances: [1])
                batch.vaultStudies = [VaultStudy(studyUID: fixture.studyUID, originalStudyUID: original, accessionNumber: accession)]
                try await catalog.upsert(batch)
            }
            let resolved = try await catalog.withTransaction { t in
                try await t.resolveStudies([.accessionNumber("ACC-1"), .originalStudyUID("1.2.826.2"),
                                            .accessionNumber("ACC-DUP"), .accessionNumber("NOPE"), .originalStudyUID("1.2.826.4")])
            }
            #expect(resolved == [.study(fixtures[0].studyUID), .study(fixtures[1].studyUID), .ambiguous, .unknown,
                                 .study(fixtures[3].studyUID)])

            let first = UUID(), second = UUID()
            let written = try await catalog.withTransaction { t in
                try await t.upsertLabels([(fixtures[0].studyUID, "normal"), (fixtures[1].studyUID, "pneumonia")],
                                         task: "pneumonia", source: "test", importID: first)
            }
            #expect(written == 2)
            try await catalog.withTransaction { t in
                _ = try await t.upsertLabels([(fixtures[0].studyUID, "pneumonia")], task: "pneumonia", source: nil, importID: second)
                _ = try await t.upsertLabels([(fixtures[0].studyUID, "yes")], task: "other-task", source: nil, importID: second)
            }
            #expect(try await scalar(catalog.client, "SELECT count(*) FROM inference.labels") == 3)
            #expect(try await scalar(catalog.client, """
                SELECT count(*) FROM inference.labels
                WHERE study_uid = \(fixtures[0].studyUID) AND task = 'pneumonia' AND label = 'pneumonia' AND import_id = \(second)
                """) == 1)
        }
    }
}
