// MigrateCommand: `dicom-etl migrate` applies the SQL migrations bundled from schemas/ to a database.
import ArgumentParser
import Catalog
import Foundation
import Logging

/// Applies pending database migrations (safe to run from several replicas at once).
struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Apply the database migrations (schemas, roles, views) to PostgreSQL."
    )

    @Option(name: .customLong("database-url"), help: "postgres://user@host:port/db?sslmode=verify-full&sslrootcert=… (default: $DICOM_ETL_DATABASE_URL; no password here: DICOM_ETL_DATABASE_PASSWORD(_FILE))")
    var databaseURL: String?

    func validate() throws {
        if databaseURL == nil && ProcessInfo.processInfo.environment["DICOM_ETL_DATABASE_URL"] == nil {
            throw ValidationError("give --database-url or set DICOM_ETL_DATABASE_URL")
        }
        try refuseSecretFlag(databaseURL, key: "database_url")
    }

    func run() async throws {
        let url = databaseURL ?? ProcessInfo.processInfo.environment["DICOM_ETL_DATABASE_URL"] ?? ""
        let configuration = try DatabaseConfiguration.parse(url)
        let logger = Logger(label: "dicom-etl.migrate")
        // One connection first: a refused certificate or login is reported now, with its reason.
        try await configuration.checkConnection(logger: logger)
        let report = try await Catalog.withRunningClient(configuration, logger: logger) { client in
            try await Migrator(client: client, logger: logger).migrate()
        }
        let applied = report.applied.map(String.init).joined(separator: ", ")
        print("database \(configuration.redactedDescription): applied \(report.applied.count) migration(s)"
              + (applied.isEmpty ? "" : " [\(applied)]") + ", \(report.alreadyApplied.count) already present")
    }
}
