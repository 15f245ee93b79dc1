// Catalogue writes: idempotent upserts, series completion and re-opening, the outbox in the same
// transaction, atomic rollback.
import Catalog
import Foundation
import PostgresNIO
import Testing

@Suite(.enabled(if: TestDatabase.available, "needs DICOM_ETL_TEST_DATABASE_URL (scripts/with-services.sh)"))
struct CatalogWriteTests {
    @Test func theSameInstanceTwiceLeavesOneUpdatedRow() async throws {
        try await TestDatabase.withCatalog { catalog, _ in
            let fixture = Fixture()
            let first = try await catalog.upsert(fixture.batch(instances: [1]))
            #expect(first.insertedInstances == 1)
            #expect(first.updatedInstances == 0)

            var again = fixture.batch(instances: [1])
            again.instances[0].seriesDescription = "AXIAL 2"
            again.instances[0].tensor = StoredObject(key: "tensors/new.npy", sha256: String(repeating: "d", count: 64))
            let second = try await catalog.upsert(again)
            #expect(second.insertedInstances == 0)
            #expect(second.updatedInstances == 1)

            let client = catalog.client
            #expect(try await scalar(client, "SELECT count(*)::int FROM imaging.instances") == 1)
            #expect(try await scalar(client, "SELECT count(*)::int FROM imaging.patients") == 1)
            #expect(try await scalar(client, "SELECT count(*)::int FROM vault.instances") == 1)
            #expect(try await scalar(client, """
                SELECT count(*)::int FROM imaging.instances
                WHERE series_description = 'AXIAL 2' AND tensor_key = 'tensors/new.npy'
                  AND header->'00080060'->'Value'->>0 = 'CT' AND pixel_spacing = ARRAY[0.7, 0.7]::float8[]
                  AND study_date = DATE '2020-01-02'
                """) == 1)
            // A re-sent instance does not count twice into its series.
            let state = try #require(try await catalog.seriesState(fixture.seriesUID))
            #expect(state.instanceCount == 1)
        }
    }

    @Test func everyRecipesTensorIsCataloguedAndARecipeLeftOutGoes() async throws {
        try await TestDatabase.withCatalog { catalog, _ in
            let fixture = Fixture()
            func tensor(_ recipe: String, _ digit: Character) -> TensorRecord {
                TensorRecord(
                    recipe: recipe, tensor: StoredObject(key: "tensors/\(recipe)/1.npy", sha256: String(repeating: digit, count: 64)),
                    sidecar: StoredObject(key: "tensors/\(recipe)/1.json", sha256: String(repeating: "e", count: 64)),
                    preview: StoredObject(key: "previews/\(recipe)/1.png", sha256: String(repeating: "f", count: 64)))
            }
            var batch = fixture.batch(instances: [1])
            batch.instances[0].tensors = [tensor("cxr-28", "1"), tensor("cxr-224", "2"), tensor("cxr-28", "1")]
            try await catalog.upsert(batch)
            let client = catalog.client
            #expect(try await scalar(client, "SELECT count(*)::int FROM imaging.tensors WHERE sop_instance_uid = \(fixture.seriesUID + ".1")") == 2)
            #expect(try await scalar(client, """
                SELECT count(*)::int FROM imaging.tensors
                WHERE recipe = 'cxr-224' AND tensor_key = 'tensors/cxr-224/1.npy' AND sidecar_key = 'tensors/cxr-224/1.json'
                  AND preview_key = 'previews/cxr-224/1.png'
                """) == 1)
            // A new version with one recipe: the other recipe's row goes, the kept one is updated.
            batch.instances[0].tensors = [tensor("cxr-224", "3")]
            try await catalog.upsert(batch)
            #expect(try await scalar(client, "SELECT count(*)::int FROM imaging.tensors") == 1)
            #expect(try await scalar(client, "SELECT count(*)::int FROM imaging.tensors WHERE recipe = 'cxr-224' AND tensor_sha256 LIKE '3%'") == 1)
            // An instance written without a tensor list leaves its tensors alone.
            batch.instances[0].tensors = []
            try await catalog.upsert(batch)
            #expect(try await scalar(client, "SELECT count(*)::int FROM imaging.tensors") == 1)
        }
    }

    @Test func aBatchWithDuplicatesAndManySeriesIsOneWrite() async throws {
        try await TestDatabase.withCatalog { catalog, _ in
            var batch = CatalogBatch()
            for _ in 0..<3 {
                let fixture = Fixture()
                let part = fixture.batch(instances: Array(1...50))
                batch.patients += part.patients
                batch.studies += part.studies
                batch.series += part.series
                batch.instances += part.instances + part.instances.prefix(5)  // five sent twice
                batch.vaultPatients += part.vaultPatients
            }
            let summary = try await catalog.upsert(batch)
            #expect(summary.insertedInstances == 150)
            #expect(try await scalar(catalog.client, "SELECT count(*)::int FROM imaging.instances") == 150)
            #expect(try await scalar(catalog.client, "SELECT sum(instance_count)::int FROM imaging.series") == 150)
        }
    }

    @Test func seriesCompleteAfterQuietPeriodAndReopenWithANewRevision() async throws {
        try await TestDatabase.withCatalog { catalog, _ in
            let fixture = Fixture()
            let model = ModelRef(name: "pneumonia-cnn", version: "1.0.0")
            let t0 = Date(timeIntervalSince1970: 1_800_000_000)
            try await catalog.upsert(fixture.batch(instances: [1, 2]), arrivedAt: t0)
            try await catalog.upsert(fixture.batch(instances: [3]), arrivedAt: t0 + 5)

            // Not quiet yet: the last arrival is after the cut-off.
            let early = try await catalog.withTransaction { try await $0.completeQuietSeries(quietSince: t0 + 4) }
            #expect(early.isEmpty)

            let completed = try await catalog.withTransaction { tx in
                let done = try await tx.completeQuietSeries(quietSince: t0 + 15)
                for series in done {
                    try await tx.enqueue(JobRequest(seriesUID: series.seriesUID, seriesRevision: series.revision, model: model))
                }
                return done
            }
            #expect(completed.map(\.seriesUID) == [fixture.seriesUID])
            #expect(completed.first?.revision == 1)
            #expect(completed.first?.instanceCount == 3)
            #expect(completed.first?.modality == "CT")
            #expect(try await catalog.seriesState(fixture.seriesUID)?.state == .complete)
            // Completing again finds nothing.
            #expect(try await catalog.withTransaction { try await $0.completeQuietSeries(quietSince: t0 + 100) }.isEmpty)

            // A re-sent instance does not re-open; a new one does, with revision 2.
            let resent = try await catalog.upsert(fixture.batch(instances: [2]), arrivedAt: t0 + 60)
            #expect(resent.reopenedSeries.isEmpty)
            #expect(try await catalog.seriesState(fixture.seriesUID)?.state == .complete)
            let late = try await catalog.upsert(fixture.batch(instances: [4]), arrivedAt: t0 + 70)
            #expect(late.reopenedSeries == [fixture.seriesUID])
            let reopened = try #require(try await catalog.seriesState(fixture.seriesUID))
            #expect(reopened.state == .open)
            #expect(reopened.revision == 2)
            #expect(reopened.instanceCount == 4)

            let ids = try await catalog.withTransaction { tx in
                let done = try await tx.completeQuietSeries(quietSince: t0 + 90)
                #expect(done.first?.revision == 2)
                return [
                    try await tx.enqueue(JobRequest(seriesUID: fixture.seriesUID, seriesRevision: 2, model: model)),
                    // The same (series, model, revision) is never queued twice.
                    try await tx.enqueue(JobRequest(seriesUID: fixture.seriesUID, seriesRevision: 1, model: model)),
                    try await tx.enqueue(JobRequest(seriesUID: fixture.seriesUID, seriesRevision: 2, model: model)),
                ]
            }
            #expect(ids[0] != nil)
            #expect(ids[1] == nil)
            #expect(ids[2] == nil)
            #expect(try await scalar(catalog.client, "SELECT count(*)::int FROM inference.jobs") == 2)
        }
    }

    @Test func catalogueLedgerAndOutboxCommitTogetherOrNotAtAll() async throws {
        try await TestDatabase.withCatalog { catalog, _ in
            struct Crash: Error {}
            let fixture = Fixture()
            let file = SourceFile(path: "/drop/DOE^JANE/IM1.dcm", size: 1234, mtime: Date(timeIntervalSince1970: 1_700_000_000.25),
                                  sha256: String(repeating: "e", count: 64))
            guard case .claimed(let entry) = try await catalog.claimSourceFile(file, owner: "replica-a", lease: .seconds(60)) else {
                Issue.record("expected a claim")
                return
            }
            let write: @Sendable (CatalogTransaction, Bool) async throws -> Void = { tx, crash in
                try await tx.upsert(fixture.batch(instances: [1]))
                try await tx.transitionSourceFile(id: entry.id, to: .catalogued, stage: "catalog",
                                                  sopInstanceUID: "\(fixture.seriesUID).1", owner: "replica-a")
                try await tx.enqueue(JobRequest(seriesUID: fixture.seriesUID, seriesRevision: 1,
                                                model: ModelRef(name: "m", version: "1")))
                if crash { throw Crash() }
            }
            await #expect(throws: Crash.self) { try await catalog.withTransaction { try await write($0, true) } }
            #expect(try await scalar(catalog.client, "SELECT count(*)::int FROM imaging.instances") == 0)
            #expect(try await scalar(catalog.client, "SELECT count(*)::int FROM vault.patients") == 0)
            #expect(try await scalar(catalog.client, "SELECT count(*)::int FROM inference.jobs") == 0)
            #expect(try await catalog.ledgerEntry(id: entry.id)?.state == .processing)

            try await catalog.withTransaction { try await write($0, false) }
            #expect(try await scalar(catalog.client, "SELECT count(*)::int FROM imaging.instances") == 1)
            #expect(try await scalar(catalog.client, "SELECT count(*)::int FROM inference.jobs") == 1)
            let done = try #require(try await catalog.ledgerEntry(id: entry.id))
            #expect(done.state == .catalogued)
            #expect(done.sopInstanceUID == "\(fixture.seriesUID).1")
            #expect(done.leaseOwner == nil)
        }
    }

    @Test func modelsAndDiagnosesRoundTrip() async throws {
        try await TestDatabase.withCatalog { catalog, _ in
            let fixture = Fixture()
            let model = ModelRef(name: "pneumonia-cnn", version: "1.0.0")
            try await catalog.upsert(fixture.batch(instances: [1]))
            let created = Date(timeIntervalSince1970: 1_750_000_000.5)
            try await catalog.withTransaction { tx in
                try await tx.registerModel(ModelRecord(model: model, inputRecipe: "cxr-28", classes: ["normal", "pneumonia"], threshold: 0.42))
                try await tx.registerModel(ModelRecord(model: model, inputRecipe: "cxr-28", classes: ["normal", "pneumonia"], threshold: 0.5))
                try await tx.insertDiagnoses([DiagnosisRecord(
                    seriesUID: fixture.seriesUID, sopInstanceUID: "\(fixture.seriesUID).1", model: model, label: "pneumonia",
                    probabilities: ["normal": 0.1, "pneumonia": 0.9], threshold: 0.5, latencyMilliseconds: 3.5,
                    createdAt: created)])
            }
            #expect(try await scalar(catalog.client, "SELECT count(*)::int FROM inference.models WHERE threshold = 0.5") == 1)
            #expect(try await scalar(catalog.client, """
                SELECT count(*)::int FROM inference.diagnoses
                WHERE (probabilities->>'pneumonia')::float8 = 0.9 AND label = 'pneumonia' AND latency_ms = 3.5
                  AND created_at = to_timestamp(1750000000.5)
                """) == 1)
        }
    }
}
