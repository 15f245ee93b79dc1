// EmbeddedPostgres: a private cluster is initialised, started, migrated, stopped and started again with
// its data intact.
import Catalog
import Foundation
import PostgresNIO
import Testing

@Suite(.enabled(if: FileManager.default.fileExists(atPath: "/usr/lib/postgresql")
                    || ProcessInfo.processInfo.environment["DICOM_ETL_TEST_PG_BIN"] != nil,
                "needs PostgreSQL's binaries"))
struct EmbeddedPostgresTests {
    @Test func initialisesStartsStopsAndRestartsAPrivateCluster() async throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("embedded-pg-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        chmod(root.path, 0o755)
        defer { try? FileManager.default.removeItem(at: root) }
        let postgres = EmbeddedPostgres(configuration: EmbeddedPostgresConfiguration(
            root: root.path, binDirectory: ProcessInfo.processInfo.environment["DICOM_ETL_TEST_PG_BIN"], port: 5499))
        do {
            let configuration = try await postgres.start()
            #expect(configuration.unixSocketDirectory == root.path + "/socket")
            try await Catalog.withRunningClient(configuration, logger: TestDatabase.logger) { client async throws in
                let report = try await Migrator(client: client, logger: TestDatabase.logger).migrate()
                #expect(report.applied == Migration.bundled.map(\.version))
                try await Catalog(client: client, logger: TestDatabase.logger).upsert(Fixture().batch(instances: [1, 2]))
            }
            try await postgres.stop()
            #expect(!FileManager.default.fileExists(atPath: root.path + "/cluster/postmaster.pid"))

            let again = try await postgres.start()
            try await Catalog.withRunningClient(again, logger: TestDatabase.logger) { client async throws in
                #expect(try await Migrator(client: client, logger: TestDatabase.logger).migrate().applied == [])
                #expect(try await scalar(client, "SELECT count(*)::int FROM imaging.instances") == 2)
            }
            try await postgres.stop()
        } catch {
            try? await postgres.stop()
            throw error
        }
    }
}
