// `dicom-etl run`: the ingestion daemon (with `--with-worker`, the inference worker too), and
// `dicom-etl sandbox-worker`: its hidden crash-isolation child. Both are generic over the
// PipelineAssembly that builds the real pipeline; the @main registers
// `RunCommand<TheAssembly>.self` and `SandboxWorkerCommand<TheAssembly>.self`.
import ArgumentParser
import DicomNetwork
import Foundation
import Inference
import Ingest
import Logging
import Metrics
import Prometheus
import Sandbox
import Serving

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

    @OptionGroup var options: DaemonOptions

    func validate() throws {
        _ = try options.loadConfiguration()
    }

    func run() async throws {
        let configuration = try options.loadConfiguration()
        // Secrets others could read stop the start, before any file is taken or any server is started; so do a
        // refused certificate or login (a database that is down is waited for, as always).
        try configuration.checkSecretFiles()
        try await configuration.checkDatabaseConnection()
        DaemonOptions.bootstrapLogging(configuration)
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
        var daemon = DaemonService(configuration: configuration, pipeline: pipeline, registry: registry, metrics: metrics, logger: logger)
        // Instances received over the network (STOW-RS, C-STORE) go durably into the drop folder, refused while the
        // pipeline reports an outage.
        let intake = NetworkIntake.intake(configuration, backoff: daemon.backoff, catalog: pipeline.catalog)
        let networkMetrics = NetworkMetrics()
        if configuration.serve || configuration.dicomPort > 0 {
            let removed = try intake.prepare()
            if removed > 0 { logger.notice("removed unfinished received instances", metadata: ["count": .stringConvertible(removed)]) }
        }
        if configuration.serve {
            // After the database and the worker, before the runner and the watcher: it stops before the database.
            guard let catalog = pipeline.catalog, let store = pipeline.store else { throw ValidationError("the pipeline shares no database") }
            daemon.intakeServices.append(try ServeCommand.server(
                configuration, catalog: catalog, store: store, logger: logger, extraRoutes: [StowRoutes(intake: intake, metrics: networkMetrics)]))
        }
        if configuration.dicomPort > 0 {
            daemon.intakeServices.append(NetworkIntake.storageSCP(configuration, intake: intake, metrics: networkMetrics, logger: logger))
        }
        // The pool is a service of the daemon's group: its children end once the runner has drained.
        daemon.sandbox = sandbox
        try await daemon.run()
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
