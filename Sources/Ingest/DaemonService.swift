// The daemon as one ServiceGroup: operations server, embedded PostgreSQL, database client, the pipeline's
// supporting services (series completion …), the sandbox pool, the pipeline runner and the watcher. Shutdown
// runs in reverse: the watcher stops, the pipeline drains the files in flight, the sandbox's children end, then
// the rest stop, the database client and the embedded PostgreSQL after everything that queries them.
#if canImport(Glibc)
import Glibc
#endif
import Catalog
import Foundation
import Logging
import ObjectStorage
import Operations
import Prometheus
import ServiceLifecycle
import Sandbox

/// The pipeline's parts built by a `PipelineAssembly`: the processor and what it needs to run.
public struct AssembledPipeline: Sendable {
    /// The work on a batch of files.
    public var processor: any BatchProcessor
    /// Services the processor depends on; started before the pipeline, stopped after it drained.
    public var services: [any Service]
    /// The database's services, in the group before `services` (so stopped after them), in this order: the
    /// embedded cluster's, if any, then the database client. The client's `run()` has begun before every later
    /// service of the group starts, so it precedes the first query.
    public var databaseServices: [any Service]
    /// Readiness of `/readyz` (database reachable, store reachable, …).
    public var readiness: @Sendable () async -> Bool
    /// Key material for path hashes in logs and reason files.
    public var pathHashSecret: [UInt8]
    /// The database the pipeline writes (its client runs while `services` run), for services that share it.
    public var catalog: Catalog?
    /// The object store the pipeline writes, for services that share it.
    public var store: (any ObjectStore)?

    public init(
        processor: any BatchProcessor, services: [any Service] = [], databaseServices: [any Service] = [],
        readiness: @escaping @Sendable () async -> Bool, pathHashSecret: [UInt8], catalog: Catalog? = nil, store: (any ObjectStore)? = nil
    ) {
        self.processor = processor
        self.services = services
        self.databaseServices = databaseServices
        self.readiness = readiness
        self.pathHashSecret = pathHashSecret
        self.catalog = catalog
        self.store = store
    }
}

/// What an assembly gets to build the pipeline with.
public struct PipelineContext: Sendable {
    public let configuration: DaemonConfiguration
    public let metrics: IngestMetrics
    public let logger: Logger
    /// Crash-isolated children running `sandboxJobs` of the same assembly.
    public let sandbox: SandboxPool

    public init(configuration: DaemonConfiguration, metrics: IngestMetrics, logger: Logger, sandbox: SandboxPool) {
        self.configuration = configuration
        self.metrics = metrics
        self.logger = logger
        self.sandbox = sandbox
    }
}

/// The seam between the daemon's shell and the pipeline's stages: one type builds the real processor
/// (ledger claim → parse → de-identify → normalise → store → catalog) and names the jobs its sandbox
/// children can run. `dicom-etl run` and `dicom-etl sandbox-worker` are generic over it.
public protocol PipelineAssembly {
    /// Builds the processor and its services for a configuration.
    static func assemble(_ context: PipelineContext) async throws -> AssembledPipeline
    /// Jobs a sandbox child runs, by kind (e.g. `"parse"`: bytes in, a summary out).
    static var sandboxJobs: [String: SandboxWorker.Handler] { get }
}

/// The daemon's services, composed. Build it with an assembled pipeline, then `run()`.
public struct DaemonService: Sendable {
    public let configuration: DaemonConfiguration
    public let pipeline: AssembledPipeline
    public let registry: PrometheusCollectorRegistry
    public let metrics: IngestMetrics
    public let queue: FileQueue
    /// Outage state: pauses the pipeline's workers and makes `/readyz` report not-ready.
    public let backoff: OutageBackoff
    public let logger: Logger
    /// Services that feed the drop folder from the network (Storage SCP): started after the pipeline's own
    /// services, stopped before them.
    public var intakeServices: [any Service] = []
    /// The sandbox pool the processor sends its batches to, when the daemon owns it: a service of the group just
    /// before the runner, so its children end once the runner has drained the files in flight.
    public var sandbox: SandboxPool?
    /// Only for tests: replaces inotify (nil keeps inotify; rescans always run).
    let eventSourceOverride: (@Sendable () -> (any DirectoryEventSource)?)?

    /// - Parameters:
    ///   - configuration: the merged configuration.
    ///   - pipeline: processor, supporting services, readiness.
    ///   - registry: the Prometheus registry behind `metrics` (served at `/metrics`).
    ///   - metrics: the daemon's metrics.
    public init(
        configuration: DaemonConfiguration, pipeline: AssembledPipeline, registry: PrometheusCollectorRegistry, metrics: IngestMetrics,
        logger: Logger
    ) {
        self.init(configuration: configuration, pipeline: pipeline, registry: registry, metrics: metrics, logger: logger, eventSource: nil)
    }

    init(
        configuration: DaemonConfiguration, pipeline: AssembledPipeline, registry: PrometheusCollectorRegistry, metrics: IngestMetrics,
        logger: Logger, eventSource: (@Sendable () -> (any DirectoryEventSource)?)?
    ) {
        self.configuration = configuration
        self.pipeline = pipeline
        self.registry = registry
        self.metrics = metrics
        self.logger = logger
        self.eventSourceOverride = eventSource
        // Room for a batch in each lane, so batches form while the lanes work.
        queue = FileQueue(capacity: max(2 * configuration.batchSize, 4))
        backoff = OutageBackoff(clock: ContinuousClock())
    }

    /// The operations server (exposed so callers can ask for its bound port).
    public func makeOpsServer() -> OpsServer {
        let backoff = self.backoff, readiness = pipeline.readiness
        return OpsServer(
            host: configuration.opsHost, port: configuration.opsPort, registry: registry,
            // Ready while the database answers within 2 s (a dead database can hold a query much longer).
            readiness: { backoff.isAvailable ? await answers(within: .seconds(2)) { await readiness() } : false },
            logger: logger.component("ops"))
    }

    /// The service group: ops server, supporting services, pipeline, watcher (shut down in reverse).
    /// - Parameters:
    ///   - opsServer: the server to run (from `makeOpsServer()`).
    ///   - handleSignals: true to start a graceful shutdown on SIGTERM and SIGINT (the daemon; not tests).
    public func makeServiceGroup(opsServer: OpsServer, handleSignals: Bool) throws -> ServiceGroup {
        let layout = DropFolderLayout(root: absolutePath(configuration.dropFolder))
        for folder in [layout.root, layout.processedRoot, layout.quarantineRoot] {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        }
        let eventSource: (any DirectoryEventSource)?
        if let eventSourceOverride {
            eventSource = eventSourceOverride()
        } else {
            do {
                eventSource = try InotifyEventSource()
            } catch {
                logger.warning("inotify unavailable; relying on periodic rescans", metadata: LogRedaction.metadata(for: error))
                eventSource = nil
            }
        }
        let readyOnEvent: Bool
        switch configuration.fileArrival {
        case .events: readyOnEvent = eventSource != nil
        case .stability: readyOnEvent = false
        case .auto:
            readyOnEvent = eventSource != nil && !FilesystemKind.isNetworked(layout.root)
            if eventSource != nil && !readyOnEvent {
                logger.notice("the drop folder is on a network filesystem: files are taken once stable, not on events")
            }
        }
        let watcher = DropFolderWatcher(
            layout: layout,
            timing: .init(stableTime: configuration.stableFileTime, rescanInterval: configuration.rescanInterval, readyOnEvent: readyOnEvent),
            queue: queue, eventSource: eventSource, clock: ContinuousClock(),
            hasher: PathHasher(secret: pipeline.pathHashSecret), metrics: metrics, logger: logger.component("watcher"))
        let disposer = FileDisposer(layout: layout, processedFiles: configuration.processedFiles)
        let interrupted = disposer.removeInterruptedReasonFiles()
        if interrupted > 0 {
            logger.notice("removed reason files a stopped daemon left unfinished in quarantine/", metadata: ["files": .stringConvertible(interrupted)])
        }
        let runner = PipelineRunner(
            queue: queue, processor: pipeline.processor,
            disposer: disposer,
            lanes: 2, batchSize: configuration.batchSize, metrics: metrics, backoff: backoff, logger: logger.component("pipeline"))
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [.init(service: opsServer)]
        // The database client last of the database's services: the services after it start once its `run()` has
        // begun, and stop before it.
        let clientStarted: StartGate? = pipeline.databaseServices.isEmpty ? nil : StartGate()
        for (index, service) in pipeline.databaseServices.enumerated() {
            let opens = index == pipeline.databaseServices.count - 1 ? clientStarted : nil
            services.append(.init(service: opens.map { StartingFirst(service, opens: $0) } ?? service))
        }
        // The pipeline and the watcher end only at shutdown; if one ends early the group stops.
        let pool: [any Service] = sandbox.map { [SandboxPoolService(pool: $0)] } ?? []
        let later: [any Service] = pipeline.services + intakeServices + pool + [runner, watcher]
        services += later.map { service in .init(service: clientStarted.map { StartingAfter(service, after: $0) } ?? service) }
        var groupConfiguration = ServiceGroupConfiguration(services: services, logger: logger.component("services"))
        groupConfiguration.gracefulShutdownSignals = handleSignals ? [.sigterm, .sigint] : []
        groupConfiguration.cancellationSignals = []
        return ServiceGroup(configuration: groupConfiguration)
    }

    /// Runs the daemon until SIGTERM or SIGINT, then drains and returns.
    public func run() async throws {
        let opsServer = makeOpsServer()
        let group = try makeServiceGroup(opsServer: opsServer, handleSignals: true)
        logger.info(
            "daemon starting",
            metadata: [
                "concurrency": .stringConvertible(configuration.effectiveConcurrency),
                "batch_size": .stringConvertible(configuration.batchSize),
                "processed_files": .string(configuration.processedFiles.rawValue),
            ])
        try await group.run()
        logger.info("daemon stopped")
    }

    private func absolutePath(_ path: String) -> String {
        URL(fileURLWithPath: path).standardizedFileURL.path
    }
}

/// Ends the sandbox pool's children at shutdown (or when the group is cancelled): listed just before the runner,
/// so the group stops it once the runner has drained the batches it sent there.
struct SandboxPoolService: Service {
    let pool: SandboxPool

    func run() async throws {
        try? await gracefulShutdown()
        await pool.shutdown()
    }
}

extension Logger {
    /// This logger with a `component` metadata value.
    func component(_ name: String) -> Logger {
        var copy = self
        copy[metadataKey: "component"] = .string(name)
        return copy
    }
}
