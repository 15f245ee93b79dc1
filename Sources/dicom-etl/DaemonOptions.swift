// DaemonOptions: the options `dicom-etl run` and `dicom-etl serve` share, one per configuration key, merged with
// the configuration file and the DICOM_ETL_<KEY> environment variables.
import ArgumentParser
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
    @Option(name: .customLong("concurrency"), help: "Files processed at once (0: one per core).") var concurrency: String?
    @Option(name: .customLong("file-arrival"), help: "auto | events | stability") var fileArrival: String?
    @Option(name: .customLong("stable-file-seconds"), help: "Seconds a file must stay unchanged.") var stableFileSeconds: String?
    @Option(name: .customLong("batch-size"), help: "Most files per batch.") var batchSize: String?
    @Option(name: .customLong("uid-conflict-policy"), help: "quarantine | keep_both | replace") var uidConflictPolicy: String?
    @Option(name: .customLong("rescan-interval-seconds"), help: "Seconds between full rescans.") var rescanIntervalSeconds: String?
    @Option(name: .customLong("series-quiet-seconds"), help: "Quiet seconds after which a series is complete.") var seriesQuietSeconds: String?
    @Option(name: .customLong("processed-files"), help: "move | delete") var processedFiles: String?
    @Option(name: .customLong("ops-host"), help: "Address of /metrics, /healthz, /readyz.") var opsHost: String?
    @Option(name: .customLong("ops-port"), help: "Port of /metrics, /healthz, /readyz.") var opsPort: String?
    @Option(name: .customLong("log-level"), help: "trace … critical") var logLevel: String?
    @Option(name: .customLong("log-format"), help: "json | text") var logFormat: String?
    @Option(name: .customLong("sandbox-workers"), help: "Sandbox processes (0: one per concurrent file).") var sandboxWorkers: String?
    @Option(name: .customLong("sandbox-timeout-seconds"), help: "Per-file sandbox timeout.") var sandboxTimeoutSeconds: String?
    @Flag(name: .customLong("with-worker"), inversion: .prefixedNo,
          help: "Also run the inference worker on the daemon's database and object store.")
    var withWorker: Bool?
    @Option(name: .customLong("models-dir"), help: "Trained models, as <dir>/<model>/<version>/.") var modelsDir: String?
    @Flag(name: .customLong("serve"), inversion: .prefixedNo, help: "Also run the archive's HTTP server (DICOMweb, results).")
    var serve: Bool?
    @Option(name: .customLong("serve-host"), help: "Address of the archive's HTTP server.") var serveHost: String?
    @Option(name: .customLong("serve-port"), help: "Port of the archive's HTTP server (0: a free one).") var servePort: String?
    @Option(name: .customLong("serve-tokens-file"), help: "Bearer tokens file (hashes and roles).") var serveTokensFile: String?
    @Option(name: .customLong("serve-cors-origins"), help: "Origins allowed to call the server (comma-separated, * for any).")
    var serveCORSOrigins: String?
    @Option(name: .customLong("serve-tls-certificate"), help: "PEM certificate chain for native TLS.") var serveTLSCertificate: String?
    @Option(name: .customLong("serve-tls-key"), help: "PEM private key for native TLS.") var serveTLSKey: String?
    @Option(name: .customLong("dicom-port"), help: "Port of the DICOM Storage SCP (0: off).") var dicomPort: String?
    @Option(name: .customLong("dicom-host"), help: "Address the Storage SCP binds to.") var dicomHost: String?
    @Option(name: .customLong("ae-title"), help: "The Storage SCP's AE title.") var aeTitle: String?
    @Option(name: .customLong("dicom-allowed-peers"), help: "Calling AE titles and their hosts (AE@host,AE2@*).")
    var dicomAllowedPeers: String?
    @Option(name: .customLong("dicom-max-associations"), help: "Associations served at once.") var dicomMaxAssociations: String?
    @Option(name: .customLong("intake-min-free-bytes"), help: "Refuse received instances below this free space.")
    var intakeMinFreeBytes: String?

    /// The flags given, by configuration key name.
    var flagValues: [String: String] {
        let all: [(String, String?)] = [
            ("drop_folder", dropFolder), ("data_dir", dataDir), ("database_url", databaseURL), ("storage_url", storageURL),
            ("key_file", keyFile), ("profile", profile), ("routes_file", routesFile), ("concurrency", concurrency),
            ("file_arrival", fileArrival), ("stable_file_seconds", stableFileSeconds), ("batch_size", batchSize),
            ("uid_conflict_policy", uidConflictPolicy), ("rescan_interval_seconds", rescanIntervalSeconds),
            ("series_quiet_seconds", seriesQuietSeconds), ("processed_files", processedFiles), ("ops_host", opsHost),
            ("ops_port", opsPort), ("log_level", logLevel), ("log_format", logFormat), ("sandbox_workers", sandboxWorkers),
            ("sandbox_timeout_seconds", sandboxTimeoutSeconds), ("with_worker", withWorker.map { $0 ? "true" : "false" }),
            ("models_dir", modelsDir), ("serve", serve.map { $0 ? "true" : "false" }), ("serve_host", serveHost),
            ("serve_port", servePort), ("serve_tokens_file", serveTokensFile), ("serve_cors_origins", serveCORSOrigins),
            ("serve_tls_certificate", serveTLSCertificate), ("serve_tls_key", serveTLSKey), ("dicom_port", dicomPort),
            ("dicom_host", dicomHost), ("ae_title", aeTitle), ("dicom_allowed_peers", dicomAllowedPeers),
            ("dicom_max_associations", dicomMaxAssociations), ("intake_min_free_bytes", intakeMinFreeBytes),
        ]
        return Dictionary(uniqueKeysWithValues: all.compactMap { name, value in value.map { (name, $0) } })
    }

    func loadConfiguration() throws -> DaemonConfiguration {
        let environment = ProcessInfo.processInfo.environment
        let file = config ?? environment["DICOM_ETL_CONFIG"]
        do {
            return try DaemonConfiguration.load(file: file, environment: environment, flags: flagValues)
        } catch {
            throw ValidationError(error.description)
        }
    }


    /// JSON or text log lines at the configured level.
    static func bootstrapLogging(_ configuration: DaemonConfiguration) {
        let level = configuration.logLevel
        switch configuration.logFormat {
        case .json: LoggingSystem.bootstrap { JSONLogHandler(label: $0, level: level) }
        case .text:
            LoggingSystem.bootstrap {
                var handler = StreamLogHandler.standardError(label: $0)
                handler.logLevel = level
                return handler
            }
        }
    }
}

/// Refuses a URL flag that carries a password or a secret parameter: every user of the host can read flags in the
/// process list (the error names the key, never the value).
func refuseSecretFlag(_ url: String?, key: String) throws {
    if let url, DaemonConfiguration.urlCarriesSecret(url) {
        throw ValidationError(ConfigurationError(.secretOnCommandLine, key: key).description)
    }
}
