// TestDatabase: each test gets its own database on the PostgreSQL of scripts/with-services.sh
// (DICOM_ETL_TEST_DATABASE_URL), so tests run in parallel; the database is dropped afterwards.
import Catalog
import Foundation
import Logging
import PostgresNIO

enum TestDatabase {
    static let url = ProcessInfo.processInfo.environment["DICOM_ETL_TEST_DATABASE_URL"]
    static var available: Bool { url != nil }

    static let logger: Logger = {
        var logger = Logger(label: "catalog-tests")
        logger.logLevel = .critical
        return logger
    }()

    static func adminConfiguration() throws -> DatabaseConfiguration {
        guard let url else { throw CatalogError(.invalidDatabaseURL) }
        return try DatabaseConfiguration.parse(url)
    }

    static func randomName(_ prefix: String = "t") -> String {
        prefix + "_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(16).lowercased()
    }

    /// Runs `body` with a fresh, empty database (not migrated) and its configuration.
    static func withFreshDatabase<Result: Sendable>(
        _ body: (DatabaseConfiguration) async throws -> Result
    ) async throws -> Result {
        let admin = try adminConfiguration()
        let name = randomName()
        _ = try await withAdmin(admin) { client async throws in try await client.query("CREATE DATABASE \(unescaped: name)", logger: logger) }
        do {
            let result = try await body(admin.with(database: name))
            _ = try await withAdmin(admin) { client async throws in try await client.query("DROP DATABASE \(unescaped: name) WITH (FORCE)", logger: logger) }
            return result
        } catch {
            _ = try? await withAdmin(admin) { client async throws in try await client.query("DROP DATABASE \(unescaped: name) WITH (FORCE)", logger: logger) }
            throw error
        }
    }

    /// Runs `body` with a migrated fresh database and a running client on it.
    static func withCatalog<Result: Sendable>(
        _ body: (Catalog, DatabaseConfiguration) async throws -> Result
    ) async throws -> Result {
        try await withFreshDatabase { configuration in
            try await Catalog.withRunningClient(configuration, logger: logger) { client in
                let catalog = Catalog(client: client, logger: logger)
                try await catalog.migrate()
                return try await body(catalog, configuration)
            }
        }
    }

    static func withAdmin<Result: Sendable>(
        _ configuration: DatabaseConfiguration, _ body: (PostgresClient) async throws -> Result
    ) async throws -> Result {
        try await Catalog.withRunningClient(configuration, logger: logger, body)
    }
}

/// Reads one integer from a query.
func scalar(_ client: PostgresClient, _ query: PostgresQuery) async throws -> Int {
    let rows = try await client.query(query, logger: TestDatabase.logger)
    for try await value in rows.decode(Int.self) { return value }
    return -1
}

/// A small, complete chain of records for one instance.
struct Fixture {
    var patientID = "PSEUDO-P-" + UUID().uuidString.prefix(8)
    var studyUID = "2.25.1" + String(UInt32.random(in: 1...UInt32.max))
    var seriesUID = "2.25.2" + String(UInt32.random(in: 1...UInt32.max))

    func instance(_ number: Int, description: String = "AXIAL") -> InstanceRecord {
        InstanceRecord(
            sopInstanceUID: "\(seriesUID).\(number)", seriesUID: seriesUID, studyUID: studyUID, patientID: patientID,
            sopClassUID: "1.2.840.10008.5.1.4.1.1.2", instanceNumber: number, modality: "CT", bodyPart: "CHEST",
            studyDate: "20200102", seriesDescription: description, manufacturer: "ACME", rows: 512, columns: 512,
            pixelSpacing: [0.7, 0.7], sliceThickness: 1.25, numberOfFrames: 1,
            transferSyntaxUID: "1.2.840.10008.1.2.1",
            file: StoredObject(key: "dicom/\(seriesUID)/\(number).dcm", sha256: String(repeating: "a", count: 64), size: 1000),
            tensor: StoredObject(key: "tensors/\(seriesUID)/\(number).npy", sha256: String(repeating: "b", count: 64)),
            preview: StoredObject(key: "previews/\(seriesUID)/\(number).png", sha256: String(repeating: "c", count: 64)),
            headerJSON: #"{"00080060": {"vr": "CS", "Value": ["CT"]}, "00200013": {"vr": "IS", "Value": [\#(number)]}}"#)
    }

    func batch(instances: [Int], vault: Bool = true) -> CatalogBatch {
        CatalogBatch(
            patients: [PatientRecord(patientID: patientID, sex: "F", ageYears: 61)],
            studies: [StudyRecord(studyUID: studyUID, patientID: patientID, studyDate: "20200102", studyDescription: "CT CHEST")],
            series: [SeriesRecord(seriesUID: seriesUID, studyUID: studyUID, modality: "CT", bodyPart: "CHEST",
                                  seriesNumber: 3, seriesDescription: "AXIAL", manufacturer: "ACME")],
            instances: instances.map { instance($0) },
            vaultPatients: vault ? [VaultPatient(patientID: patientID, originalPatientID: "MRN-0042",
                                                 patientName: "Doe^Jane", birthDate: "19590101")] : [],
            vaultStudies: vault ? [VaultStudy(studyUID: studyUID, originalStudyUID: "1.2.3.4.5", accessionNumber: "ACC-77")] : [],
            vaultSeries: vault ? [VaultSeries(seriesUID: seriesUID, originalSeriesUID: "1.2.3.4.5.6")] : [],
            vaultInstances: vault ? instances.map {
                VaultInstance(sopInstanceUID: "\(seriesUID).\($0)", originalSOPInstanceUID: "1.2.3.4.5.6.\($0)")
            } : [])
    }
}
