// `dicom-etl run`: the ingestion daemon (with `--with-worker`, the inference worker too), and
// `dicom-etl sandbox-worker`: its hidden crash-isolation child. Both are generic over the
// PipelineAssembly that builds the real pipeline; the @main registers
// `RunCommand<TheAssembly>.self` and `SandboxWorkerCommand<TheAssembly>.self`.
import ArgumentParser
import Foundation
import Inference
import Ingest
import Logging
import Metrics
import Prometheus
import Sandbox

/// `dicom-etl run [--config FILE] [--drop-folder DIR] …`: watch the drop folder and ingest every file.
struct RunCommand<Assembly: PipelineAssembly>: AsyncParsableCommand {
    static var configuration: CommandConfiguration {
        CommandConfiguration(
            commandName: "run",
            abstract: "Run the ingestion daemon on the drop folder.",
            discussion: """
                Every option overrides the configuration file and the DICOM_ETL_<KEY> environment variable of \
                the same name (e.g. --drop-folder, DICOM_ETL_DROP_FOLDER, drop_folder). SIGTERM drains the \
                files in flight and exits 0. --with-worker also runs the inference worker on the daemon's \
                database and object store, so complete series come back as diagnoses. Secrets are never flags: \
                DICOM_ETL_DATABASE_PASSWORD(_FILE), AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY(_FILE) and the key \
                file (chmod 600) come from the environment.
                """)
    }

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
            ("models_dir", modelsDir),
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

    func validate() throws {
        _ = try loadConfiguration()
    }

    func run() async throws {
        let configuration = try loadConfiguration()
        // Secrets others could read stop the start, before any file is taken or any server is started; so do a
        // refused certificate or login (a database that is down is waited for, as always).
        try configuration.checkSecretFiles()
        try await configuration.checkDatabaseConnection()
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
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        let logger = Logger(label: "dicom-etl")
        // The models first: a missing or mismatched model stops the start before any file is taken.
        var models: [InferenceModel] = []
        if configuration.withWorker {
            let routes = try SeriesRoutes.load(path: configuration.routesFile)
            models = try DaemonWorkers.loadModels(routes: routes, modelsDirectory: configuration.modelsDirectory)
        }
        let metrics = IngestMetrics()
        let sandbox = SandboxPool(
            command: .currentExecutable(arguments: ["sandbox-worker"]), size: configuration.effectiveSandboxWorkers,
            timeout: configuration.sandboxTimeout, events: metrics.sandboxEvents, logger: logger)
        let context = PipelineContext(configuration: configuration, metrics: metrics, logger: logger, sandbox: sandbox)
        var pipeline = try await Assembly.assemble(context)
        if configuration.withWorker {
            // After the pipeline's services (database, series completion), before the runner and the watcher:
            // a graceful shutdown stops the watcher, drains the pipeline, stops the worker, then the database.
            pipeline.services += try DaemonWorkers.services(models: models, pipeline: pipeline, logger: logger)
            logger.info("inference worker enabled", metadata: [
                "models": .string(models.map { "\($0.metadata.name)@\($0.metadata.version)" }.joined(separator: ",")),
            ])
        }
        let daemon = DaemonService(configuration: configuration, pipeline: pipeline, registry: registry, metrics: metrics, logger: logger)
        do {
            try await daemon.run()
        } catch {
            await sandbox.shutdown()
            throw error
        }
        await sandbox.shutdown()
    }
}

/// `dicom-etl sandbox-worker` (hidden): serves the assembly's sandbox jobs over stdin/stdout until
/// stdin closes. Started by the daemon's SandboxPool, never by hand.
struct SandboxWorkerCommand<Assembly: PipelineAssembly>: ParsableCommand {
    static var configuration: CommandConfiguration {
        CommandConfiguration(commandName: "sandbox-worker", abstract: "Internal: crash-isolated worker process.", shouldDisplay: false)
    }

    func run() throws {
        let status = SandboxWorker.serve(handlers: Assembly.sandboxJobs)
        if status != 0 { throw ExitCode(status) }
    }
}
