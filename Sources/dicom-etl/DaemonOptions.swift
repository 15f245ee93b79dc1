// DaemonOptions: the options `dicom-etl run` and `dicom-etl serve` share, one per configuration key, merged with
// the configuration file and the DICOM_ETL_<KEY> environment variables.
import ArgumentParser
import Catalog
import DicomNetwork
import Foundation
import Ingest
import Logging
import Operations

struct DaemonOptions: ParsableArguments {
    @Option(name: .long, help: "Configuration file (YAML); default: $DICOM_ETL_CONFIG, else built-in defaults.")
    var config: String?
    @Option(name: .customLong("drop-folder"), help: "Folder the PACS exports into.") var dropFolder: String?
    @Option(name: .customLong("data-dir"), help: "The daemon's own data (embedded PostgreSQL, filesystem store).") var dataDir: String?
    @Option(name: .customLong("database-url"), help: "PostgreSQL URL; empty: embedded cluster in the data folder.") var databaseURL: String?
    @Option(name: .customLong("storage-url"), help: "Object store URL; empty: filesystem store in the data folder.") var storageURL: String?
    @Option(name: .customLong("key-file"), help: "Pseudonymisation key file.") var keyFile: String?
    @Option(name: .customLong("profile"), help: "De-identification profile.") var profile: String?
    @Option(name: .customLong("routes-file"), help: "Series-to-model routes.") var routesFile: String?
    @Option(name: .customLong("recipes"), help: "Normalisation recipes' folder; empty: normalize/ beside the routes file.")
    var recipes: String?
    @Option(name: .customLong("concurrency"), help: "Files processed at once (0: one per core).") var concurrency: Int?
    @Option(name: .customLong("file-arrival"), help: "How a file is known to be completely written.")
    var fileArrival: DaemonConfiguration.FileArrival?
    @Option(name: .customLong("stable-file-seconds"), help: "Seconds a file must stay unchanged.") var stableFileSeconds: Double?
    @Option(name: .customLong("batch-size"), help: "Most files per batch.") var batchSize: Int?
    @Option(name: .customLong("uid-conflict-policy"), help: "What to do with a known SOP Instance UID with other content.")
    var uidConflictPolicy: UIDConflictPolicy?
    @Option(name: .customLong("rescan-interval-seconds"), help: "Seconds between full rescans.") var rescanIntervalSeconds: Double?
    @Option(name: .customLong("series-quiet-seconds"), help: "Quiet seconds after which a series is complete.") var seriesQuietSeconds: Double?
    @Option(name: .customLong("processed-files"), help: "What happens to ingested source files.")
    var processedFiles: DaemonConfiguration.ProcessedFilePolicy?
    @Option(name: .customLong("ops-host"), help: "Address of /metrics, /healthz, /readyz.") var opsHost: String?
    @Option(name: .customLong("ops-port"), help: "Port of /metrics, /healthz, /readyz.") var opsPort: Int?
    @Option(name: .customLong("log-level"), help: "Minimum log level.") var logLevel: Logger.Level?
    @Option(name: .customLong("log-format"), help: "Log line format.") var logFormat: DaemonConfiguration.LogFormat?
    @Option(name: .customLong("sandbox-workers"), help: "Sandbox processes (0: one per concurrent file).") var sandboxWorkers: Int?
    @Option(name: .customLong("sandbox-timeout-seconds"), help: "Per-file sandbox timeout.") var sandboxTimeoutSeconds: Double?
    @Flag(name: .customLong("with-worker"), inversion: .prefixedNo,
          help: "Also run the inference worker on the daemon's database and object store.")
    var withWorker: Bool?
    @Option(name: .customLong("models-dir"), help: "Trained models, as <dir>/<model>/<version>/.") var modelsDir: String?
    @Flag(name: .customLong("serve"), inversion: .prefixedNo, help: "Also run the archive's HTTP server (DICOMweb, results).")
    var serve: Bool?
    @Option(name: .customLong("serve-host"), help: "Address of the archive's HTTP server.") var serveHost: String?
    @Option(name: .customLong("serve-port"), help: "Port of the archive's HTTP server (0: a free one).") var servePort: Int?
    @Option(name: .customLong("serve-tokens-file"), help: "Bearer tokens file (hashes and roles).") var serveTokensFile: String?
    @Option(name: .customLong("serve-cors-origins"), help: "Origins allowed to call the server (comma-separated, * for any).",
            transform: parsed(DaemonConfiguration.Key.serveCORSOrigins))
    var serveCORSOrigins: [String]?
    @Option(name: .customLong("serve-tls-certificate"), help: "PEM certificate chain for native TLS.") var serveTLSCertificate: String?
    @Option(name: .customLong("serve-tls-key"), help: "PEM private key for native TLS.") var serveTLSKey: String?
    @Option(name: .customLong("dicom-port"), help: "Port of the DICOM Storage SCP (0: off).") var dicomPort: Int?
    @Option(name: .customLong("dicom-host"), help: "Address the Storage SCP binds to.") var dicomHost: String?
    @Option(name: .customLong("ae-title"), help: "The Storage SCP's AE title.") var aeTitle: String?
    @Option(name: .customLong("dicom-allowed-peers"), help: "Calling AE titles and their hosts (AE@host,AE2@*).",
            transform: parsed(DaemonConfiguration.Key.dicomAllowedPeers))
    var dicomAllowedPeers: [AllowedPeer]?
    @Option(name: .customLong("dicom-max-associations"), help: "Associations served at once.") var dicomMaxAssociations: Int?
    @Option(name: .customLong("intake-min-free-bytes"), help: "Refuse received instances below this free space.")
    var intakeMinFreeBytes: UInt64?

    /// The flags given, each as its key's type; the keys check them as they check the file and the environment.
    var flags: [ConfigurationFlag] {
        typealias Key = DaemonConfiguration.Key
        func flag<Value>(_ key: ConfigurationKey<Value>, _ value: Value?) -> ConfigurationFlag? {
            value.map { ConfigurationFlag(key, $0) }
        }
        let all: [ConfigurationFlag?] = [
            flag(Key.dropFolder, dropFolder), flag(Key.dataDirectory, dataDir), flag(Key.databaseURL, databaseURL),
            flag(Key.storageURL, storageURL), flag(Key.keyFile, keyFile), flag(Key.profile, profile),
            flag(Key.routesFile, routesFile), flag(Key.recipesDirectory, recipes), flag(Key.concurrency, concurrency),
            flag(Key.fileArrival, fileArrival), flag(Key.stableFileSeconds, stableFileSeconds), flag(Key.batchSize, batchSize),
            flag(Key.uidConflictPolicy, uidConflictPolicy), flag(Key.rescanIntervalSeconds, rescanIntervalSeconds),
            flag(Key.seriesQuietSeconds, seriesQuietSeconds), flag(Key.processedFiles, processedFiles),
            flag(Key.opsHost, opsHost), flag(Key.opsPort, opsPort), flag(Key.logLevel, logLevel), flag(Key.logFormat, logFormat),
            flag(Key.sandboxWorkers, sandboxWorkers), flag(Key.sandboxTimeoutSeconds, sandboxTimeoutSeconds),
            flag(Key.withWorker, withWorker), flag(Key.modelsDirectory, modelsDir), flag(Key.serve, serve),
            flag(Key.serveHost, serveHost), flag(Key.servePort, servePort), flag(Key.serveTokensFile, serveTokensFile),
            flag(Key.serveCORSOrigins, serveCORSOrigins), flag(Key.serveTLSCertificate, serveTLSCertificate),
            flag(Key.serveTLSKey, serveTLSKey), flag(Key.dicomPort, dicomPort), flag(Key.dicomHost, dicomHost),
            flag(Key.aeTitle, aeTitle), flag(Key.dicomAllowedPeers, dicomAllowedPeers),
            flag(Key.dicomMaxAssociations, dicomMaxAssociations), flag(Key.intakeMinFreeBytes, intakeMinFreeBytes),
        ]
        return all.compactMap { $0 }
    }

    func loadConfiguration() throws -> DaemonConfiguration {
        let environment = ProcessInfo.processInfo.environment
        let file = config ?? environment["DICOM_ETL_CONFIG"]
        do {
            return try DaemonConfiguration.load(file: file, environment: environment, flags: flags)
        } catch {
            throw ValidationError(error.description)
        }
    }

    /// JSON or text log lines at the configured level.
    static func bootstrapLogging(_ configuration: DaemonConfiguration) {
        configuration.logFormat.bootstrap(level: configuration.logLevel)
    }
}

/// An option's text parsed as its key parses the file and the environment (`invalid_value` naming the key).
private func parsed<Value>(_ key: ConfigurationKey<Value>) -> @Sendable (String) throws -> Value {
    { text in try key.value(parsing: text) }
}

// The choices' flags take their key's text, as the file and the environment give it (any case).
extension DaemonConfiguration.FileArrival: ExpressibleByArgument {
    public init?(argument: String) {
        guard let value = try? DaemonConfiguration.Key.fileArrival.value(parsing: argument) else { return nil }
        self = value
    }
}

extension DaemonConfiguration.ProcessedFilePolicy: ExpressibleByArgument {
    public init?(argument: String) {
        guard let value = try? DaemonConfiguration.Key.processedFiles.value(parsing: argument) else { return nil }
        self = value
    }
}

extension DaemonConfiguration.LogFormat: ExpressibleByArgument {
    public init?(argument: String) {
        guard let value = try? DaemonConfiguration.Key.logFormat.value(parsing: argument) else { return nil }
        self = value
    }
}

extension UIDConflictPolicy: ExpressibleByArgument {
    public init?(argument: String) {
        guard let value = try? DaemonConfiguration.Key.uidConflictPolicy.value(parsing: argument) else { return nil }
        self = value
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {
    public init?(argument: String) {
        guard let value = try? DaemonConfiguration.Key.logLevel.value(parsing: argument) else { return nil }
        self = value
    }
}

/// Refuses a URL flag that carries a password or a secret parameter: every user of the host can read flags in the
/// process list (the error names the key, never the value).
func refuseSecretFlag(_ url: String?, key: String) throws {
    if let url, DaemonConfiguration.urlCarriesSecret(url) {
        throw ValidationError(ConfigurationError(.secretOnCommandLine, key: key).description)
    }
}
