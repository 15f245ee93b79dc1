// Roles: an analyst reads imaging but not the vault or the ledger; a clinician sees the original patient ID
// through clinical.diagnoses. Login roles are created per test as members of the group roles.
import Catalog
import Foundation
import PostgresNIO
import Testing

@Suite(.enabled(if: TestDatabase.available, "needs DICOM_ETL_TEST_DATABASE_URL (scripts/with-services.sh)"))
struct RoleTests {
    /// Creates a login role in `group`, runs `body` connected as it, and drops it.
    func asMember<Result: Sendable>(
        of group: String, _ configuration: DatabaseConfiguration, admin: PostgresClient,
        _ body: (PostgresClient) async throws -> Result
    ) async throws -> Result {
        let login = TestDatabase.randomName(group)
        try await admin.query("CREATE ROLE \(unescaped: login) LOGIN IN ROLE \(unescaped: group)", logger: TestDatabase.logger)
        do {
            let result = try await Catalog.withRunningClient(
                configuration.with(username: login, password: nil), logger: TestDatabase.logger, body)
            try await admin.query("DROP ROLE \(unescaped: login)", logger: TestDatabase.logger)
            return result
        } catch {
            _ = try? await admin.query("DROP ROLE \(unescaped: login)", logger: TestDatabase.logger)
            throw error
        }
    }

    func sqlStateOf(_ body: () async throws -> Void) async -> String? {
        do {
            try await body()
            return nil
        } catch let error as PSQLError {
            return error.serverInfo?[.sqlState]
        } catch {
            return "unexpected"
        }
    }

    func seed(_ catalog: Catalog) async throws -> Fixture {
        let fixture = Fixture()
        let model = ModelRef(name: "pneumonia-cnn", version: "1.0.0")
        try await catalog.withTransaction { tx in
            try await tx.upsert(fixture.batch(instances: [1, 2]))
            try await tx.insertDiagnoses([DiagnosisRecord(
                seriesUID: fixture.seriesUID, model: model, label: "pneumonia",
                probabilities: ["normal": 0.2, "pneumonia": 0.8], threshold: 0.5)])
            _ = try await tx.claimSourceFile(
                SourceFile(path: "/drop/DOE^JANE/1.dcm", size: 1, mtime: Date(), sha256: "ab"), owner: "a", lease: .seconds(5))
        }
        return fixture
    }

    @Test func analystReadsImagingButNotTheVaultOrTheLedger() async throws {
        try await TestDatabase.withCatalog { catalog, configuration in
            _ = try await seed(catalog)
            try await asMember(of: "analyst", configuration, admin: catalog.client) { analyst async throws in
                #expect(try await scalar(analyst, "SELECT count(*)::int FROM imaging.instances WHERE modality = 'CT'") == 2)
                #expect(try await scalar(analyst, "SELECT count(*)::int FROM inference.diagnoses") == 1)
                #expect(try await scalar(analyst, "SELECT count(*)::int FROM imaging.tensors") == 0)
                #expect(try await scalar(analyst, "SELECT count(*)::int FROM imaging.pixel_text_audit") == 0)
                for table in ["vault.patients", "vault.studies", "vault.instances", "ingest.source_files", "clinical.diagnoses"] {
                    let state = await sqlStateOf { _ = try await scalar(analyst, "SELECT count(*)::int FROM \(unescaped: table)") }
                    #expect(state == "42501", "\(table) must be denied")
                }
                let write = await sqlStateOf {
                    try await analyst.query("UPDATE imaging.patients SET sex = 'M'", logger: TestDatabase.logger)
                }
                #expect(write == "42501")
            }
        }
    }

    @Test func clinicianSeesTheOriginalPatientIDThroughTheView() async throws {
        try await TestDatabase.withCatalog { catalog, configuration in
            let fixture = try await seed(catalog)
            try await asMember(of: "clinician", configuration, admin: catalog.client) { clinician async throws in
                let rows = try await clinician.query(
                    "SELECT patient_id, accession_number, study_uid, label FROM clinical.diagnoses",
                    logger: TestDatabase.logger)
                var seen: [(String?, String?, String?, String)] = []
                for try await row in rows.decode((String?, String?, String?, String).self) { seen.append(row) }
                #expect(seen.count == 1)
                #expect(seen.first?.0 == "MRN-0042")
                #expect(seen.first?.1 == "ACC-77")
                #expect(seen.first?.2 == "1.2.3.4.5")
                #expect(seen.first?.3 == "pneumonia")
                let vault = await sqlStateOf { _ = try await scalar(clinician, "SELECT count(*)::int FROM vault.patients") }
                #expect(vault == "42501")
            }
            #expect(!fixture.patientID.isEmpty)
        }
    }

    @Test func workerRoleClaimsJobsButCannotReadTheVault() async throws {
        try await TestDatabase.withCatalog { catalog, configuration in
            let fixture = try await seed(catalog)
            _ = try await catalog.withTransaction {
                try await $0.enqueue(JobRequest(seriesUID: fixture.seriesUID, seriesRevision: 1, model: ModelRef(name: "m", version: "1")))
            }
            try await asMember(of: "dicom_etl_worker", configuration, admin: catalog.client) { worker in
                let queue = JobQueue(client: worker, logger: TestDatabase.logger)
                let job = try #require(try await queue.claim(1, lease: .seconds(30)).first)
                try await queue.complete(job, diagnoses: [DiagnosisRecord(
                    seriesUID: job.seriesUID, model: job.model, label: "normal", probabilities: ["normal": 1])])
                let vault = await sqlStateOf { _ = try await scalar(worker, "SELECT count(*)::int FROM vault.patients") }
                #expect(vault == "42501")
            }
        }
    }
}
