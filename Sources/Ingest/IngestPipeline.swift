// The real pipeline behind `dicom-etl run`: database (configured URL, or the embedded cluster in the
// data dir), migrations, object store (configured URL, or a filesystem store in the data dir), the
// processor and the series completion service; and the sandbox job the children serve.
import CodedErrors
import Catalog
import Crypto
import Foundation
import Logging
import ObjectStorage
import Sandbox
import ServiceLifecycle

/// Why the pipeline cannot be assembled. Carries no paths or secrets.
public struct PipelineSetupError: CodedError, Equatable {
    /// Machine-readable reason.
    public struct Code: ErrorCode {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        /// The pseudonym key file cannot be read or holds fewer than 32 bytes.
        public static let keyFileUnreadableOrShort = Code(rawValue: "key_file_unreadable_or_short")
        /// The de-identification profile cannot be read.
        public static let profileUnreadable = Code(rawValue: "profile_unreadable")
        /// The staging folder cannot be created or written.
        public static let stagingUnwritable = Code(rawValue: "staging_unwritable")
    }

    /// The code; a routes file's refusal keeps that error's code (`routes_malformed`, …).
    public let code: Code
    public init(_ code: Code) { self.code = code }
    /// The pipeline cannot start because `error` stopped one of its inputs; its code becomes this error's.
    public init(_ error: some CodedError) { self.code = Code(rawValue: error.reason) }
    public var description: String { "pipeline setup failed: \(code.rawValue)" }
}

/// `PipelineAssembly` of the ingestion daemon.
public enum IngestPipeline: PipelineAssembly {
    public static var sandboxJobs: [String: SandboxWorker.Handler] { [ProcessJob.kind: ProcessJob.handler] }

    public static func assemble(_ context: PipelineContext) async throws -> AssembledPipeline {
        let configuration = context.configuration
        let logger = context.logger
        let dataDirectory = URL(fileURLWithPath: configuration.dataDirectory).standardizedFileURL.path
        try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true)

        // Inputs the children load; checked here so a bad file stops the start, not every job.
        let routesFile = absolute(configuration.routesFile)
        let routes: SeriesRoutes
        do { routes = try SeriesRoutes.load(path: routesFile) } catch let error as RoutesError { throw PipelineSetupError(error) }
        let keyFile = absolute(configuration.effectiveKeyFile)
        guard let keyBytes = FileManager.default.contents(atPath: keyFile), keyBytes.count >= 32 else {
            throw PipelineSetupError(.keyFileUnreadableOrShort)
        }
        let profileFile = absolute(configuration.profile)
        guard FileManager.default.isReadableFile(atPath: profileFile) else { throw PipelineSetupError(.profileUnreadable) }
        let recipesDirectory = absolute(configuration.effectiveRecipesDirectory)

        // Database.
        var embedded: EmbeddedPostgres?
        let database: DatabaseConfiguration
        if configuration.databaseURL.isEmpty {
            let postgres = EmbeddedPostgres(
                configuration: EmbeddedPostgresConfiguration(root: (dataDirectory as NSString).appendingPathComponent("postgres")), logger: logger)
            database = try await postgres.start()
            embedded = postgres
        } else {
            var environment = ProcessInfo.processInfo.environment
            if let password = configuration.databasePassword { environment["DICOM_ETL_DATABASE_PASSWORD"] = password }
            database = try DatabaseConfiguration.parse(configuration.databaseURL, environment: environment)
        }
        // The daemon's client is a service of the group, which starts once the set-up below is done; the set-up
        // (migrations, then the removal of leftover objects) runs on a client of its own that lives just as long.
        let catalog = try Catalog(database, logger: logger)
        do {
            try await Catalog.withRunningClient(database, logger: logger) { client in
                try await retryingUntilReachable(logger: logger, clock: ContinuousClock()) { try await Catalog(client: client, logger: logger).migrate() }
            }
        } catch {
            try? await embedded?.stop()
            throw error
        }

        // Object store.
        let store: any ObjectStore
        if configuration.storageURL.isEmpty {
            store = try FilesystemObjectStore(root: URL(fileURLWithPath: dataDirectory).appendingPathComponent("objects", isDirectory: true))
        } else {
            let credentials = configuration.storageAccessKeyID.flatMap { id in
                configuration.storageSecretAccessKey.map { AWSCredentials(accessKeyID: id, secretAccessKey: $0) }
            }
            store = try StorageLocation.parse(configuration.storageURL).makeStore(credentials: credentials)
        }

        // The lease owner names this replica: host, drop folder and data dir (each replica has its own data
        // dir), so two replicas on one host never take each other's claims, and a restart reclaims its own.
        let host = ProcessInfo.processInfo.hostName
        let replica = URL(fileURLWithPath: configuration.dropFolder).standardizedFileURL.path + "\u{0}" + dataDirectory
        let replicaHash = SHA256.hash(data: Data(replica.utf8)).prefix(6).map { String(format: "%02x", $0) }.joined()
        // The children write their outputs where the store takes them by rename: its own staging folder (one per
        // replica), else a folder in the data dir. What a killed predecessor left there was never catalogued.
        let staging: String
        let stagedObjectsKept: Bool
        do {
            let storeStaging = try store.stagingDirectory(named: "staging-" + replicaHash)
            stagedObjectsKept = storeStaging != nil
            staging = storeStaging ?? (dataDirectory as NSString).appendingPathComponent("scratch/staging")
        } catch {
            throw PipelineSetupError(.stagingUnwritable)
        }
        try? FileManager.default.removeItem(atPath: staging)
        try? FileManager.default.removeItem(atPath: (dataDirectory as NSString).appendingPathComponent("scratch"))
        do { try FileManager.default.createDirectory(atPath: staging, withIntermediateDirectories: true) } catch {
            throw PipelineSetupError(.stagingUnwritable)
        }
        let processor = IngestProcessor(
            catalog: catalog, store: store, sandbox: context.sandbox,
            inputs: .init(routesFile: routesFile, profileFile: profileFile, keyFile: keyFile, recipesDirectory: recipesDirectory),
            stagingDirectory: staging, stagedObjectsKept: stagedObjectsKept, owner: "\(host)/\(replicaHash)",
            lease: configuration.sandboxTimeout + .seconds(120), conflictPolicy: configuration.uidConflictPolicy, metrics: context.metrics, logger: logger)
        do {
            try await Catalog.withRunningClient(database, logger: logger) { client in
                try await processor.removeLeftoverObjects(in: Catalog(client: client, logger: logger))
            }
        } catch {
            logger.warning("objects left for removal by an earlier run could not all be removed", metadata: LogRedaction.metadata(for: error))
        }
        let completion = SeriesCompletionService(
            catalog: catalog, routes: routes, defaultQuietPeriod: configuration.seriesQuietPeriod, clock: ContinuousClock(),
            metrics: context.metrics, logger: logger)
        return AssembledPipeline(
            processor: processor, services: [completion],
            databaseServices: (embedded.map { [EmbeddedDatabaseService(postgres: $0, logger: logger)] } ?? []) + [catalog.client],
            readiness: {
                (try? await catalog.withTransaction { _ in true }) ?? false
            },
            pathHashSecret: Array(keyBytes), catalog: catalog, store: store)
    }

    static func absolute(_ path: String) -> String {
        URL(fileURLWithPath: path).standardizedFileURL.path
    }

    /// Runs `body`, retrying every second on `clock` for up to a minute while the database is not reachable yet.
    static func retryingUntilReachable<C: Clock<Duration>>(logger: Logger, clock: C, _ body: () async throws -> Void) async throws {
        let deadline = clock.now.advanced(by: .seconds(60))
        while true {
            do { return try await body() } catch {
                if clock.now > deadline { throw error }
                logger.warning("database not ready; retrying", metadata: LogRedaction.metadata(for: error))
                try await clock.sleep(for: .seconds(1))
            }
        }
    }
}

/// Stops the embedded cluster at shutdown: listed before the database client, so the service group stops it
/// after the client, which it stops after the pipeline, the completion service and the worker.
struct EmbeddedDatabaseService: Service {
    let postgres: EmbeddedPostgres
    let logger: Logger

    func run() async throws {
        // Returns at graceful shutdown, or at once when the group is cancelled: either way the cluster stops.
        try? await gracefulShutdown()
        do { try await postgres.stop() } catch {
            logger.warning("embedded PostgreSQL did not stop", metadata: LogRedaction.metadata(for: error))
        }
    }
}
