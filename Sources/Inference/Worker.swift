// InferenceWorker: the service that turns queued series into diagnoses. It waits for work (LISTEN/NOTIFY with a
// polling fallback), claims jobs under a lease, loads each series' instance tensors from the object store, runs
// the model over up to B images at a time (gathering for at most T), and per job writes one diagnosis row per
// image and completes the job in one transaction; failures go back to the queue with backoff, then die. Before
// each round it reads inference.model_serving: the served version of its model (the one it was started with, or
// a registered one from the store) and a shadow version whose rows go to inference.shadow_diagnoses.
import CodedErrors
import Catalog
import Foundation
import Logging
import Metrics
import ObjectStorage
import ServiceLifecycle

/// Settings of an `InferenceWorker`.
public struct InferenceWorkerConfiguration: Sendable, Hashable {
    /// B: images per forward pass, and the most jobs claimed at once.
    public var batchSize: Int
    /// T: how long a worker that holds fewer than `batchSize` images keeps claiming more before it runs.
    public var maxBatchDelay: Duration
    /// How long a claim holds before another worker may take the job over.
    public var lease: Duration
    /// The polling fallback of LISTEN/NOTIFY (also picks up retries whose backoff ended and expired leases).
    public var pollInterval: Duration

    public init(
        batchSize: Int = 64, maxBatchDelay: Duration = .milliseconds(20), lease: Duration = .seconds(120),
        pollInterval: Duration = .seconds(5)
    ) {
        self.batchSize = max(1, batchSize)
        self.maxBatchDelay = maxBatchDelay
        self.lease = lease
        self.pollInterval = pollInterval
    }
}

/// Why a job failed in the worker: a machine-readable code recorded as the job's `last_error`.
public struct InferenceWorkerError: CodedError, Hashable {
    public struct Code: ErrorCode {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }

        /// The series has no instance with a tensor.
        public static let noTensors = Code(rawValue: "no_tensors")
        /// A tensor named by the catalogue is not in the object store.
        public static let tensorNotFound = Code(rawValue: "tensor_not_found")
        /// The object store failed while reading a tensor.
        public static let tensorUnreadable = Code(rawValue: "tensor_unreadable")
        /// A tensor is not a float32 array of the model's input shape.
        public static let tensorShapeMismatch = Code(rawValue: "tensor_shape_mismatch")
        /// The forward pass rejected the input.
        public static let inferenceFailed = Code(rawValue: "inference_failed")
    }

    public let code: Code
    public init(_ code: Code) { self.code = code }
    public var description: String { "inference worker error: \(code.rawValue)" }
}

/// Claims inference jobs for one model and writes their diagnoses. Run it as a ServiceLifecycle service
/// (`run()`), or drive it step by step with `processAvailable()`. Several workers (threads, processes or hosts)
/// may share a queue: a job is leased to one claimer, and only the claimer whose lease still holds can complete
/// it, so each job's diagnoses are written once.
public struct InferenceWorker: Service, Sendable {
    public let model: InferenceModel
    public let queue: JobQueue
    public let store: any ObjectStore
    public let configuration: InferenceWorkerConfiguration
    /// Registered versions the serving row may name instead of `model`, loaded from the store once each.
    public let registered: RegisteredModels
    /// The clock of the batch delay (T), the polling fallback and the pause after a failed round.
    public let clock: any Clock<Duration>
    let logger: Logger

    /// - Parameters:
    ///   - queue: the job queue (its client must be running).
    ///   - store: where the tensors named by `imaging.tensors` (per instance and recipe) live.
    public init(
        model: InferenceModel, queue: JobQueue, store: any ObjectStore,
        configuration: InferenceWorkerConfiguration = InferenceWorkerConfiguration(), clock: any Clock<Duration> = ContinuousClock(),
        logger: Logger = Logger(label: "dicom-etl.worker")
    ) {
        self.clock = clock
        self.model = model
        self.queue = queue
        self.store = store
        self.configuration = configuration
        self.registered = RegisteredModels(store: store)
        self.logger = logger
    }

    /// The model's name and version as jobs name it.
    public var modelRef: ModelRef { ModelRef(name: model.metadata.name, version: model.metadata.version) }

    /// Registers (or updates) the model's row in `inference.models`.
    public func registerModel() async throws {
        let metadata = model.metadata
        try await Catalog(client: queue.client, logger: logger).withTransaction { transaction in
            try await transaction.registerModel(ModelRecord(
                model: modelRef, inputRecipe: metadata.input.recipe, classes: metadata.classes,
                threshold: Double(metadata.threshold)))
        }
    }

    /// Registers the model, then processes jobs whenever work may be available until cancelled or shut down
    /// gracefully. A graceful shutdown lets the round in hand finish (its jobs are completed, not left to their
    /// lease) and claims nothing more.
    public func run() async throws {
        try await registerModel()
        logger.info("inference worker started", metadata: ["model": "\(modelRef.name)", "version": "\(modelRef.version)"])
        let wakeups = queue.wakeups(pollInterval: configuration.pollInterval, clock: clock)
        for await _ in wakeups.cancelOnGracefulShutdown() {
            if Task.isCancelled || Task.isShuttingDownGracefully { break }
            do {
                while try await processAvailable() > 0 {
                    if Task.isCancelled || Task.isShuttingDownGracefully { break }
                }
            } catch {
                if Task.isCancelled { break }
                logger.error("inference worker round failed", metadata: ["error": "\(String(describing: error))"])
                // A pause before the next round, so a failing database or store is not hammered on every wake-up.
                do { try await clock.sleep(for: Self.failedRoundPause) } catch { break }
            }
        }
        logger.info("inference worker stopped")
    }

    /// One round: reads which version of the model is served (and which runs as its shadow) from
    /// `inference.model_serving`, claims up to `batchSize` jobs (claiming more for up to `maxBatchDelay` while they
    /// hold fewer than `batchSize` images), runs them and completes or fails each.
    /// - Returns: the number of jobs claimed (0 when none was runnable).
    @discardableResult
    public func processAvailable() async throws -> Int {
        let plan = try await registered.plan(for: model, catalog: Catalog(client: queue.client))
        let limit = configuration.batchSize
        let clock = self.clock
        let elapsed = Self.stopwatch(clock)
        var loaded: [LoadedJob] = []
        var images = 0
        var jobs = 0
        var deadline: Duration?   // since the round began
        while jobs < limit && images < limit {
            let claimed: [ClaimedJob]
            do {
                claimed = try await queue.claim(limit - jobs, lease: configuration.lease, models: [modelRef],
                                                anyVersionOf: plan.fromServingRow ? [modelRef.name] : [])
            } catch {
                // jobs already in hand are run rather than left to their lease
                if jobs == 0 { throw error }
                logger.warning("claiming more jobs failed; running those in hand", metadata: ["error": "\(error)"])
                break
            }
            if claimed.isEmpty {
                guard let deadline, elapsed() < deadline else { break }
                try await clock.sleep(for: min(.milliseconds(2), deadline - elapsed()))
                continue
            }
            if deadline == nil { deadline = elapsed() + configuration.maxBatchDelay }
            jobs += claimed.count
            for job in claimed {
                do {
                    let job = try await load(job, recipe: plan.served.metadata.input.recipe, shape: plan.served.metadata.input.shape)
                    images += job.instances.count
                    loaded.append(job)
                } catch {
                    await fail(job, error)
                }
            }
            if let deadline, elapsed() >= deadline { break }
        }
        if !loaded.isEmpty { try await infer(loaded, plan: plan) }
        return jobs
    }

    /// The pause after a failed round.
    static var failedRoundPause: Duration { .seconds(1) }

    /// The time passed on `clock` since this call, each time it is asked.
    static func stopwatch<C: Clock<Duration>>(_ clock: C) -> @Sendable () -> Duration {
        let origin = clock.now
        return { origin.duration(to: clock.now) }
    }

    /// Runs rounds until no job is runnable. Returns the number of jobs claimed in all.
    @discardableResult
    public func processUntilIdle() async throws -> Int {
        var total = 0
        while true {
            let n = try await processAvailable()
            if n == 0 { return total }
            total += n
        }
    }

    // MARK: Steps

    struct LoadedJob: Sendable {
        var job: ClaimedJob
        var instances: [String]
        var tensors: [Float]
    }

    /// Reads the job's instances (by instance number) and their tensors of `recipe`, each of `shape`.
    func load(_ job: ClaimedJob, recipe: String, shape: [Int]) async throws -> LoadedJob {
        // The tensor of this model's input recipe: a series several routes take has one per recipe.
        let entries = try await queue.instanceTensors(seriesUID: job.seriesUID, recipe: recipe, logger: logger)
        guard !entries.isEmpty else { throw InferenceWorkerError(.noTensors) }
        var tensors = [Float]()
        tensors.reserveCapacity(entries.count * shape.reduce(1, *))
        for (_, key) in entries {
            let data: Data
            do { data = try await store.get(key) } catch let error as ObjectStoreError where error.code == .notFound {
                throw InferenceWorkerError(.tensorNotFound)
            } catch {
                throw InferenceWorkerError(.tensorUnreadable)
            }
            let array: NpyArray
            do { array = try NpyArray(bytes: [UInt8](data)) } catch { throw InferenceWorkerError(.tensorShapeMismatch) }
            guard Self.matches(array.shape, shape) else {
                throw InferenceWorkerError(.tensorShapeMismatch)
            }
            tensors.append(contentsOf: array.values)
        }
        return LoadedJob(job: job, instances: entries.map(\.0), tensors: tensors)
    }

    /// Whether a tensor's shape holds one image of the input shape (H, W, C): equal once unit axes are dropped,
    /// so a single-channel image may come as [H, W], [H, W, 1] or [1, H, W].
    static func matches(_ shape: [Int], _ input: [Int]) -> Bool {
        shape == input || (shape.filter { $0 != 1 } == input.filter { $0 != 1 } && input.last == 1)
    }

    /// Runs the jobs' images in passes of up to `batchSize` through the served version (and the shadow, when the
    /// plan has one whose input contract is the served one's) and completes each job with its diagnoses, the
    /// shadow's rows beside them in the same transaction. A shadow that fails costs its rows, never the job.
    func infer(_ jobs: [LoadedJob], plan: ServingPlan) async throws {
        var inputs: [Float] = []
        inputs.reserveCapacity(jobs.reduce(0) { $0 + $1.tensors.count })
        for job in jobs { inputs.append(contentsOf: job.tensors) }
        let served: [[DiagnosisRecord]]
        do {
            served = try diagnose(jobs, inputs: inputs, with: plan.served, recordTimes: true)
        } catch {
            for job in jobs { await fail(job.job, InferenceWorkerError(.inferenceFailed)) }
            return
        }
        var shadow: [[DiagnosisRecord]] = Array(repeating: [], count: jobs.count)
        if let model = plan.shadow {
            if model.metadata.input.recipe == plan.served.metadata.input.recipe && model.inputSize == plan.served.inputSize {
                do { shadow = try diagnose(jobs, inputs: inputs, with: model, recordTimes: false) } catch {
                    WorkerMetrics.failures(reason: "shadow_inference_failed").increment()
                    logger.warning("shadow model failed; its rows are skipped", metadata: ["version": "\(model.metadata.version)"])
                }
            } else {
                WorkerMetrics.failures(reason: "shadow_input_mismatch").increment()
            }
        }
        for (index, job) in jobs.enumerated() {
            do {
                try await queue.complete(job.job, diagnoses: served[index], shadowDiagnoses: shadow[index])
                WorkerMetrics.jobs(outcome: "done").increment()
                WorkerMetrics.diagnoses.increment(by: served[index].count)
                WorkerMetrics.shadowDiagnoses.increment(by: shadow[index].count)
            } catch let error as CatalogError where error.code == .leaseLost {
                WorkerMetrics.jobs(outcome: "lease_lost").increment()
                logger.warning("job lease lost before completion; its result is discarded", metadata: ["job": "\(job.job.id)"])
            } catch {
                await fail(job.job, error)
            }
        }
    }

    /// One model's diagnosis rows per job, from the jobs' images concatenated in `inputs`.
    func diagnose(_ jobs: [LoadedJob], inputs: [Float], with model: InferenceModel, recordTimes: Bool) throws -> [[DiagnosisRecord]] {
        let metadata = model.metadata
        let reference = ModelRef(name: metadata.name, version: metadata.version)
        let size = model.inputSize
        let batch = configuration.batchSize
        let total = inputs.count / size
        var probabilities: [[Float]] = []
        var latencies: [Double] = []
        probabilities.reserveCapacity(total)
        var start = 0
        while start < total {
            let n = min(batch, total - start)
            let began = ContinuousClock.now
            let chunk = Array(inputs[(start * size)..<((start + n) * size)])
            probabilities.append(contentsOf: try model.predict(batch: chunk, count: n))
            let elapsed = ContinuousClock.now - began
            if recordTimes {
                WorkerMetrics.forwardPass.recordNanoseconds(elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
                WorkerMetrics.images.increment(by: n)
            }
            let ms = Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
            latencies.append(contentsOf: repeatElement(ms, count: n))
            start += n
        }
        let positive = metadata.classes.firstIndex(of: metadata.positiveClass) ?? 0
        var offset = 0
        return jobs.map { job in
            var diagnoses: [DiagnosisRecord] = []
            for (i, sop) in job.instances.enumerated() {
                let p = probabilities[offset + i]
                let label: String
                if metadata.output.activation == "sigmoid" {
                    label = p[positive] >= metadata.threshold
                        ? metadata.positiveClass : metadata.classes[positive == 0 ? 1 : 0]
                } else {
                    label = metadata.classes[p.indices.max { p[$0] < p[$1] } ?? 0]
                }
                var byClass: [String: Double] = [:]
                for (c, name) in metadata.classes.enumerated() { byClass[name] = Double(p[c]) }
                diagnoses.append(DiagnosisRecord(
                    jobID: job.job.id, seriesUID: job.job.seriesUID, sopInstanceUID: sop, model: reference, label: label,
                    probabilities: byClass, threshold: Double(metadata.threshold),
                    latencyMilliseconds: latencies[offset + i]))
            }
            offset += job.instances.count
            return diagnoses
        }
    }

    /// Records a failed attempt with a machine-readable reason.
    func fail(_ job: ClaimedJob, _ error: any Error) async {
        let reason: String
        switch error {
        case let error as InferenceWorkerError: reason = error.code.rawValue
        case let error as CatalogError: reason = error.code.rawValue
        case let error as InferenceError: reason = error.code.rawValue
        default: reason = "internal_error"
        }
        WorkerMetrics.failures(reason: reason).increment()
        do {
            let outcome = try await queue.fail(job, reason: reason)
            WorkerMetrics.jobs(outcome: outcome == .dead ? "dead" : "failed").increment()
            logger.warning("job failed", metadata: ["job": "\(job.id)", "reason": "\(reason)", "outcome": "\(outcome)"])
        } catch {
            logger.error("could not record a job failure", metadata: ["job": "\(job.id)", "reason": "\(reason)"])
        }
    }
}

/// The worker's metrics (swift-metrics; Prometheus names): `dicom_etl_inference_jobs_total{outcome}`
/// (`done`, `failed` — to be retried, `dead`, `lease_lost`), `dicom_etl_inference_failures_total{reason}`,
/// `dicom_etl_inference_images_total`, `dicom_etl_inference_diagnoses_total`,
/// `dicom_etl_inference_shadow_diagnoses_total` and
/// `dicom_etl_inference_forward_pass_seconds` (one batch's forward pass).
enum WorkerMetrics {
    static let images = Counter(label: "dicom_etl_inference_images_total")
    static let diagnoses = Counter(label: "dicom_etl_inference_diagnoses_total")
    static let shadowDiagnoses = Counter(label: "dicom_etl_inference_shadow_diagnoses_total")
    static let forwardPass = Metrics.Timer(label: "dicom_etl_inference_forward_pass_seconds")
    static func jobs(outcome: String) -> Counter { Counter(label: "dicom_etl_inference_jobs_total", dimensions: [("outcome", outcome)]) }
    static func failures(reason: String) -> Counter {
        Counter(label: "dicom_etl_inference_failures_total", dimensions: [("reason", reason)])
    }
}
