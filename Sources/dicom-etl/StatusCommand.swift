// `dicom-etl status [--file NAME]`: backlog, files in flight, quarantined files by reason, job queue
// depth by state and the last errors; with --file, that file's ledger rows and stage transitions.
import ArgumentParser
import Catalog
import Foundation
import Ingest
import Logging

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Show what the ingestion daemon has done and is doing.")

    @Option(name: .long, help: "Configuration file (YAML); default: $DICOM_ETL_CONFIG, else built-in defaults.") var config: String?
    @Option(name: .customLong("drop-folder"), help: "The drop folder (for the backlog).") var dropFolder: String?
    @Option(name: .customLong("data-dir"), help: "The daemon's data folder (embedded PostgreSQL).") var dataDir: String?
    @Option(name: .customLong("database-url"), help: "PostgreSQL URL; empty: the embedded cluster in the data folder.") var databaseURL: String?
    @Option(name: .long, help: "A file name: show its ledger rows and stage transitions.") var file: String?

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        var flags: [ConfigurationFlag] = []
        if let dropFolder { flags.append(ConfigurationFlag(DaemonConfiguration.Key.dropFolder, dropFolder)) }
        if let dataDir { flags.append(ConfigurationFlag(DaemonConfiguration.Key.dataDirectory, dataDir)) }
        if let databaseURL { flags.append(ConfigurationFlag(DaemonConfiguration.Key.databaseURL, databaseURL)) }
        let configuration: DaemonConfiguration
        do {
            configuration = try DaemonConfiguration.load(file: config ?? environment["DICOM_ETL_CONFIG"], environment: environment, flags: flags)
        } catch {
            throw ValidationError(error.description)
        }
        let logger = Logger(label: "dicom-etl.status")
        let database: DatabaseConfiguration
        if configuration.databaseURL.isEmpty {
            // The daemon's embedded cluster (started if it is down).
            let root = (URL(fileURLWithPath: configuration.dataDirectory).standardizedFileURL.path as NSString).appendingPathComponent("postgres")
            database = try await EmbeddedPostgres(configuration: EmbeddedPostgresConfiguration(root: root), logger: logger).start()
        } else {
            var variables = environment
            if let password = configuration.databasePassword { variables["DICOM_ETL_DATABASE_PASSWORD"] = password }
            database = try DatabaseConfiguration.parse(configuration.databaseURL, environment: variables)
        }
        let text = try await Catalog.withRunningClient(database, logger: logger) { client -> String in
            let catalog = Catalog(client: client, logger: logger)
            if let file { return try await IngestStatus.fileReport(catalog: catalog, name: file) }
            return try await IngestStatus.read(catalog: catalog, dropFolder: configuration.dropFolder).text
        }
        print(text)
    }
}
