// WorkerCommand: `dicom-etl worker` runs inference workers on the job queue until SIGTERM/SIGINT, which
// finishes the batch in hand and exits 0; beside them, the operations server (/metrics, /healthz, /readyz).
import ArgumentParser
import Catalog
import Foundation
import Inference
import Logging
import Metrics
import ObjectStorage
import Operations
import Prometheus
import ServiceLifecycle

/// Claims queued series, runs the model on their tensors and writes diagnoses.
struct Worker: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Run the inference worker: claim queued series, run the model, write diagnoses.",
        discussion: """
            The database must be migrated (dicom-etl migrate). Several workers, in one process (--concurrency) \
            or many, may share a queue. S3 credentials come from the AWS_* environment variables.
            """)

    @Option(name: .customLong("database-url"), help: "PostgreSQL URL (default: $DICOM_ETL_DATABASE_URL).")
    var databaseURL: String?
    @Option(name: .customLong("storage-url"), help: "Object store URL, file:///… or s3://bucket/… (default: $DICOM_ETL_STORAGE_URL).")
    var storageURL: String?
    @Option(name: .customLong("model"), help: "Model version folder (default: models/trained_models/pneumonia-cnn/<highest version>).")
    var model: String?
    @Option(name: .customLong("batch-size"), help: "Images per forward pass and jobs claimed at once (B).")
    var batchSize: Int = 64
    @Option(name: .customLong("max-batch-delay-ms"), help: "How long to gather jobs for a fuller batch (T).")
    var maxBatchDelayMilliseconds: Int = 20
    @Option(name: .customLong("lease-seconds"), help: "How long a claim holds before another worker may take the job.")
    var leaseSeconds: Int = 120
    @Option(name: .customLong("poll-seconds"), help: "Polling interval beside LISTEN/NOTIFY.")
    var pollSeconds: Double = 5
    @Option(name: .customLong("concurrency"), help: "Worker loops in this process (each runs one BLAS thread).")
    var concurrency: Int = 1
    @Option(name: .customLong("log-level"), help: "Minimum log level.")
    var logLevel: Logger.Level = .info
    @Option(name: .customLong("log-format"), help: "Log line format (default: $DICOM_ETL_LOG_FORMAT, else text).")
    var logFormat: LogFormat?
    @Option(name: .customLong("ops-host"), help: "Address of /metrics, /healthz, /readyz (default: $DICOM_ETL_OPS_HOST, else 127.0.0.1).")
    var opsHost: String?
    @Option(name: .customLong("ops-port"), help: "Port of /metrics, /healthz, /readyz (default: $DICOM_ETL_OPS_PORT, else 9091; 0 picks a free one).")
    var opsPort: Int?

    /// The operations server's address: flag, else environment, else the default.
    var opsAddress: (host: String, port: Int) {
        let environment = ProcessInfo.processInfo.environment
        let host = opsHost ?? environment["DICOM_ETL_OPS_HOST"].flatMap { $0.isEmpty ? nil : $0 } ?? "127.0.0.1"
        let port = opsPort ?? environment["DICOM_ETL_OPS_PORT"].flatMap { Int($0) } ?? 9091
        return (host, port)
    }

    func validate() throws {
        let environment = ProcessInfo.processInfo.environment
        if databaseURL == nil && environment["DICOM_ETL_DATABASE_URL"] == nil {
            throw ValidationError("give --database-url or set DICOM_ETL_DATABASE_URL")
        }
        if storageURL == nil && environment["DICOM_ETL_STORAGE_URL"] == nil {
            throw ValidationError("give --storage-url or set DICOM_ETL_STORAGE_URL")
        }
        try refuseSecretFlag(databaseURL, key: "database_url")
        try refuseSecretFlag(storageURL, key: "storage_url")
        guard batchSize > 0, maxBatchDelayMilliseconds >= 0, leaseSeconds > 0, pollSeconds > 0, concurrency > 0 else {
            throw ValidationError("batch size, lease, poll interval and concurrency must be positive")
        }
        if logFormat == nil, let format = environment["DICOM_ETL_LOG_FORMAT"], LogFormat(rawValue: format.lowercased()) == nil {
            throw ValidationError("DICOM_ETL_LOG_FORMAT is not json or text")
        }
        if let port = environment["DICOM_ETL_OPS_PORT"], opsPort == nil, Int(port) == nil { throw ValidationError("DICOM_ETL_OPS_PORT is not a port") }
        guard (0...65535).contains(opsAddress.port) else { throw ValidationError("the ops port must be 0…65535") }
    }

    /// The highest semantic version folder under `base` (e.g. `1.0.0` before `0.9.3`).
    static func defaultModelDirectory(base: URL = URL(fileURLWithPath: "models/trained_models/pneumonia-cnn")) -> URL? {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: base.path)) ?? []
        let versions = names.compactMap { name -> (String, [Int])? in
            let parts = name.split(separator: ".").map { Int($0) }
            return parts.count == 3 && parts.allSatisfy({ $0 != nil }) ? (name, parts.map { $0! }) : nil
        }
        guard let best = versions.max(by: { $0.1.lexicographicallyPrecedes($1.1) }) else { return nil }
        return base.appendingPathComponent(best.0)
    }

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        let format = logFormat ?? environment["DICOM_ETL_LOG_FORMAT"].flatMap { LogFormat(rawValue: $0.lowercased()) } ?? .text
        format.bootstrap(level: logLevel)
        let logger = Logger(label: "dicom-etl.worker")
        let database = try DatabaseConfiguration.parse(databaseURL ?? environment["DICOM_ETL_DATABASE_URL"] ?? "")
        let store = try StorageLocation.parse(storageURL ?? environment["DICOM_ETL_STORAGE_URL"] ?? "").makeStore()
        // A refused certificate or login stops the start; a database that is down is waited for, as always.
        try await database.checkConnection(logger: logger, ignoringTransientFailures: true)
        guard let directory = model.map({ URL(fileURLWithPath: $0) }) ?? Self.defaultModelDirectory() else {
            throw ValidationError("no model version folder found; give --model")
        }
        let loaded = try InferenceModel.load(directory: directory)
        let configuration = InferenceWorkerConfiguration(
            batchSize: batchSize, maxBatchDelay: .milliseconds(maxBatchDelayMilliseconds),
            lease: .seconds(leaseSeconds), pollInterval: .milliseconds(Int64(pollSeconds * 1000)))
        let workers = concurrency
        logger.info("worker starting", metadata: [
            "database": "\(database.redactedDescription)", "model": "\(loaded.metadata.name)",
            "version": "\(loaded.metadata.version)", "concurrency": "\(workers)",
        ])
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        let address = opsAddress
        let client = try Catalog(database, logger: logger).client
        let queue = JobQueue(client: client, logger: logger)
        // Ready while the database answers within 2 s (a dead database can hold a query much longer).
        let ops = OpsServer(
            host: address.host, port: address.port, registry: registry,
            readiness: { await answers(within: .seconds(2)) { _ = try await queue.counts(); return true } },
            logger: logger)
        // The ops server first, so a graceful shutdown stops it last; then the database client, which stops after
        // the workers; the workers start once the client's `run()` has begun.
        let clientStarted = StartGate()
        let services: [ServiceGroupConfiguration.ServiceConfiguration] =
            [.init(service: ops), .init(service: StartingFirst(client, opens: clientStarted))] + (0..<workers).map { _ in
                .init(service: StartingAfter(
                    InferenceWorker(model: loaded, queue: queue, store: store, configuration: configuration, logger: logger),
                    after: clientStarted))
            }
        var group = ServiceGroupConfiguration(services: services, logger: logger)
        group.gracefulShutdownSignals = [.sigterm, .sigint]
        try await ServiceGroup(configuration: group).run()
    }
}
