// The inference worker against a real PostgreSQL (DICOM_ETL_TEST_DATABASE_URL) and a filesystem object store:
// TensorFlow's reference inputs stored as instance tensors come back as diagnosis rows with TensorFlow's
// probabilities; two workers share 20 jobs without duplicates; a job run again writes no second diagnosis; a job
// whose tensors are missing is retried, then dead.
import Catalog
import Foundation
import Logging
import ObjectStorage
import PostgresNIO
import Testing
import TestSupport
@testable import Inference

private let databaseURL = ProcessInfo.processInfo.environment["DICOM_ETL_TEST_DATABASE_URL"]

private let quietLogger: Logger = {
    var logger = Logger(label: "worker-tests")
    logger.logLevel = .critical
    return logger
}()

/// A fresh, migrated database with a running client, dropped afterwards.
private func withCatalog<Result: Sendable>(_ body: (PostgresClient) async throws -> Result) async throws -> Result {
    let admin = try DatabaseConfiguration.parse(databaseURL ?? "")
    let name = "w_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(16).lowercased()
    _ = try await Catalog.withRunningClient(admin, logger: quietLogger) { client in
        try await client.query("CREATE DATABASE \(unescaped: name)", logger: quietLogger)
    }
    func drop() async {
        _ = try? await Catalog.withRunningClient(admin, logger: quietLogger) { client in
            try await client.query("DROP DATABASE \(unescaped: name) WITH (FORCE)", logger: quietLogger)
        }
    }
    do {
        let result = try await Catalog.withRunningClient(admin.with(database: name), logger: quietLogger) { client in
            try await Catalog(client: client, logger: quietLogger).migrate()
            return try await body(client)
        }
        await drop()
        return result
    } catch {
        await drop()
        throw error
    }
}

/// A temporary filesystem object store, removed afterwards.
private func withStore<Result>(_ body: (FilesystemObjectStore) async throws -> Result) async throws -> Result {
    let root = FileManager.default.temporaryDirectory.appendingPathComponent("worker-tests-" + UUID().uuidString)
    defer { try? FileManager.default.removeItem(at: root) }
    return try await body(try FilesystemObjectStore(root: root))
}

/// A float32 C-order `.npy` (format 1.0) of `values` with `shape`.
private func npy(_ values: ArraySlice<Float>, shape: [Int]) -> Data {
    let dims = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
    var header = "{'descr': '<f4', 'fortran_order': False, 'shape': \(dims), }"
    while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
    header += "\n"
    var data = Data([0x93] + Array("NUMPY".utf8) + [1, 0])
    let length = UInt16(header.utf8.count)
    data.append(contentsOf: [UInt8(length & 0xFF), UInt8(length >> 8)])
    data.append(contentsOf: Array(header.utf8))
    for value in values { withUnsafeBytes(of: value.bitPattern.littleEndian) { data.append(contentsOf: $0) } }
    return data
}

/// One de-identified series of `count` instances whose tensors are reference images `first..<first+count`.
private struct SeriesFixture {
    let seriesUID: String
    let studyUID = "2.25.1" + String(UInt32.random(in: 1...UInt32.max))
    let patientID = "PSEUDO-P-" + UUID().uuidString.prefix(8)
    let count: Int
    let first: Int

    init(count: Int, first: Int = 0) {
        seriesUID = "2.25.2" + String(UInt64.random(in: 1...UInt64.max))
        self.count = count
        self.first = first
    }

    func sop(_ i: Int) -> String { "\(seriesUID).\(i + 1)" }
    func key(_ i: Int) -> String { "tensors/cxr-28/\(seriesUID)/\(i + 1).npy" }

    /// Writes the tensors (unless `writeTensors` is false) and catalogues the series.
    func store(in store: any ObjectStore, client: PostgresClient, inputs: NpyArray, writeTensors: Bool = true) async throws {
        // the recipe's single-channel image as the normaliser may write it: [28,28], [1,28,28] or [28,28,1]
        let shapes = [[28, 28], [1, 28, 28], [28, 28, 1]]
        var instances: [InstanceRecord] = []
        for i in 0..<count {
            let image = first + i
            let data = npy(inputs.values[(image * 784)..<((image + 1) * 784)], shape: shapes[i % 3])
            if writeTensors { _ = try await store.put(key(i), data: data, contentType: "application/x-npy") }
            instances.append(InstanceRecord(
                sopInstanceUID: sop(i), seriesUID: seriesUID, studyUID: studyUID, patientID: patientID,
                instanceNumber: i + 1, modality: "CR", bodyPart: "CHEST",
                tensors: [TensorRecord(recipe: "cxr-28", tensor: StoredObject(key: key(i), sha256: sha256Hex(data), size: Int64(data.count)))]))
        }
        try await Catalog(client: client, logger: quietLogger).upsert(CatalogBatch(
            patients: [PatientRecord(patientID: patientID)],
            studies: [StudyRecord(studyUID: studyUID, patientID: patientID)],
            series: [SeriesRecord(seriesUID: seriesUID, studyUID: studyUID, modality: "CR", bodyPart: "CHEST")],
            instances: instances))
    }
}

private func enqueue(_ series: [SeriesFixture], model: ModelRef, client: PostgresClient, maxAttempts: Int = 5) async throws {
    _ = try await Catalog(client: client, logger: quietLogger).withTransaction { transaction in
        try await transaction.enqueue(series.map {
            JobRequest(seriesUID: $0.seriesUID, seriesRevision: 1, model: model, maxAttempts: maxAttempts)
        })
    }
}

private func count(_ client: PostgresClient, _ query: PostgresQuery) async throws -> Int {
    for try await value in try await client.query(query, logger: quietLogger).decode(Int.self) { return value }
    return -1
}

private func makeWorker(
    _ model: InferenceModel, _ client: PostgresClient, _ store: any ObjectStore, batchSize: Int = 64,
    retry: RetryPolicy = RetryPolicy(), pollInterval: Duration = .seconds(5), maxBatchDelay: Duration = .milliseconds(5),
    clock: any Clock<Duration> = ContinuousClock()
) -> InferenceWorker {
    InferenceWorker(
        model: model,
        queue: JobQueue(client: client, configuration: JobQueueConfiguration(retry: retry), logger: quietLogger),
        store: store,
        configuration: InferenceWorkerConfiguration(batchSize: batchSize, maxBatchDelay: maxBatchDelay,
                                                    lease: .seconds(60), pollInterval: pollInterval),
        clock: clock, logger: quietLogger)
}

@Suite(.enabled(if: databaseURL != nil, "needs DICOM_ETL_TEST_DATABASE_URL (scripts/with-services.sh)"))
struct WorkerTests {
    @Test func tensorShapesOfTheRecipeAreAccepted() {
        #expect(InferenceWorker.matches([28, 28], [28, 28, 1]))
        #expect(InferenceWorker.matches([1, 28, 28], [28, 28, 1]))
        #expect(InferenceWorker.matches([28, 28, 1], [28, 28, 1]))
        #expect(!InferenceWorker.matches([28, 27], [28, 28, 1]))
        #expect(!InferenceWorker.matches([2, 28, 28], [28, 28, 1]))
        #expect(!InferenceWorker.matches([28, 28], [28, 28, 3]))
    }

    @Test func diagnosesReproduceTensorFlowsReferenceOutputs() async throws {
        let model = try InferenceModel.load(directory: modelDirectory)
        let (inputs, outputs) = try referenceIO()
        let n = inputs.shape[0]
        try await withStore { store in
            try await withCatalog { client in
                let series = SeriesFixture(count: n)
                try await series.store(in: store, client: client, inputs: inputs)
                // batch 16 < n: the series runs in several forward passes
                let worker = makeWorker(model, client, store, batchSize: 16)
                try await worker.registerModel()
                try await enqueue([series], model: worker.modelRef, client: client)
                #expect(try await worker.processUntilIdle() == 1)

                #expect(try await count(client, "SELECT count(*) FROM inference.jobs WHERE state = 'done' AND attempts = 1") == 1)
                #expect(try await count(client, "SELECT count(*) FROM inference.models WHERE name = 'pneumonia-cnn' AND input_recipe = 'cxr-28'") == 1)
                let rows = try await client.query("""
                    SELECT d.sop_instance_uid, d.label, (d.probabilities->>'normal')::float8,
                           (d.probabilities->>'pneumonia')::float8, d.threshold, d.model_name, d.model_version,
                           d.latency_ms, d.job_id = j.id
                    FROM inference.diagnoses d JOIN inference.jobs j ON j.series_uid = d.series_uid
                    """, logger: quietLogger)
                var seen: [String: Int] = [:]
                var worst = 0.0
                var labels: Set<String> = []
                for try await (sop, label, normal, pneumonia, threshold, name, version, latency, sameJob) in rows.decode(
                    (String, String, Double, Double, Double, String, String, Double, Bool).self)
                {
                    let index = Int(sop.split(separator: ".").last!)! - 1
                    seen[sop, default: 0] += 1
                    let expected = Double(outputs.values[index])
                    worst = max(worst, abs(pneumonia - expected))
                    #expect(abs(normal + pneumonia - 1) < 1e-6)
                    #expect(threshold == Double(model.metadata.threshold))
                    #expect(label == (pneumonia >= threshold ? "pneumonia" : "normal"))
                    #expect(name == model.metadata.name && version == model.metadata.version)
                    #expect(latency >= 0)
                    #expect(sameJob)
                    labels.insert(label)
                }
                #expect(seen.count == n)
                #expect(seen.values.allSatisfy { $0 == 1 })
                #expect(worst <= 1e-4, "max |Δp| = \(worst)")
                #expect(labels == ["normal", "pneumonia"])
            }
        }
    }

    @Test func twoWorkersShareTwentyJobsWithoutDuplicates() async throws {
        let model = try InferenceModel.load(directory: modelDirectory)
        let (inputs, _) = try referenceIO()
        try await withStore { store in
            try await withCatalog { client in
                let series = (0..<20).map { SeriesFixture(count: 3, first: ($0 * 3) % (inputs.shape[0] - 3)) }
                for s in series { try await s.store(in: store, client: client, inputs: inputs) }
                let a = makeWorker(model, client, store, batchSize: 4)
                let b = makeWorker(model, client, store, batchSize: 4)
                try await enqueue(series, model: a.modelRef, client: client)
                async let claimedA = a.processUntilIdle()
                async let claimedB = b.processUntilIdle()
                let claimed = try await [claimedA, claimedB]
                #expect(claimed.reduce(0, +) == 20, "each job claimed exactly once: \(claimed)")
                #expect(try await count(client, "SELECT count(*) FROM inference.jobs WHERE state = 'done' AND attempts = 1") == 20)
                #expect(try await count(client, "SELECT count(*) FROM inference.diagnoses") == 60)
                #expect(try await count(client, """
                    SELECT count(*) FROM (SELECT sop_instance_uid FROM inference.diagnoses
                                          GROUP BY sop_instance_uid HAVING count(*) > 1) x
                    """) == 0)
                #expect(try await count(client, """
                    SELECT count(*) FROM inference.diagnoses d JOIN inference.jobs j ON j.id = d.job_id
                    WHERE j.series_uid <> d.series_uid
                    """) == 0)
            }
        }
    }

    @Test func aJobRunAgainWritesNoSecondDiagnosis() async throws {
        let model = try InferenceModel.load(directory: modelDirectory)
        let (inputs, _) = try referenceIO()
        try await withStore { store in
            try await withCatalog { client in
                let series = SeriesFixture(count: 3)
                try await series.store(in: store, client: client, inputs: inputs)
                let worker = makeWorker(model, client, store)
                try await enqueue([series], model: worker.modelRef, client: client)
                #expect(try await worker.processUntilIdle() == 1)
                #expect(try await count(client, "SELECT count(*) FROM inference.diagnoses") == 3)

                // The same job delivered again after its diagnoses were written (requeued by hand, or a
                // completion whose acknowledgement was lost): it completes and its first rows stay the only ones.
                try await client.query(
                    "UPDATE inference.jobs SET state = 'queued', run_at = now(), completed_at = NULL", logger: quietLogger)
                #expect(try await worker.processUntilIdle() == 1)
                #expect(try await count(client, "SELECT count(*) FROM inference.jobs WHERE state = 'done' AND attempts = 2") == 1)
                #expect(try await count(client, "SELECT count(*) FROM inference.diagnoses") == 3)

                // The key itself: a second row for the same job and instance is refused.
                await #expect(throws: (any Error).self) {
                    try await client.query("""
                        INSERT INTO inference.diagnoses (job_id, series_uid, sop_instance_uid, model_name, model_version,
                                                         label, probabilities)
                        SELECT job_id, series_uid, sop_instance_uid, model_name, model_version, label, probabilities
                        FROM inference.diagnoses LIMIT 1
                        """, logger: quietLogger)
                }
                #expect(try await count(client, "SELECT count(*) FROM inference.diagnoses") == 3)
            }
        }
    }

    /// T on the worker's clock: a round that holds fewer than B images keeps claiming until T has passed, so a job
    /// queued meanwhile joins the batch; then it runs what it holds.
    @Test(.timeLimit(.minutes(1))) func aRoundGathersJobsForTheBatchDelay() async throws {
        let model = try InferenceModel.load(directory: modelDirectory)
        let (inputs, _) = try referenceIO()
        try await withStore { store in
            try await withCatalog { client in
                let first = SeriesFixture(count: 2), second = SeriesFixture(count: 2, first: 2)
                for series in [first, second] { try await series.store(in: store, client: client, inputs: inputs) }
                let clock = ManualClock()
                let worker = makeWorker(model, client, store, batchSize: 8, maxBatchDelay: .seconds(1), clock: clock)
                try await enqueue([first], model: worker.modelRef, client: client)
                let round = Task { try await worker.processAvailable() }
                try await clock.waitForSleepers()            // one job in hand, waiting for more
                try await enqueue([second], model: worker.modelRef, client: client)
                clock.advance(by: .milliseconds(999))
                try await clock.waitForSleepers()            // took the second, still within T
                #expect(try await count(client, "SELECT count(*) FROM inference.jobs WHERE state = 'running'") == 2)
                #expect(try await count(client, "SELECT count(*) FROM inference.diagnoses") == 0)
                clock.advance(by: .milliseconds(1))
                #expect(try await round.value == 2)
                #expect(try await count(client, "SELECT count(*) FROM inference.jobs WHERE state = 'done'") == 2)
                #expect(try await count(client, "SELECT count(*) FROM inference.diagnoses") == 4)
            }
        }
    }

    @Test func missingTensorsFailRetryThenDie() async throws {
        let model = try InferenceModel.load(directory: modelDirectory)
        let (inputs, _) = try referenceIO()
        try await withStore { store in
            try await withCatalog { client in
                let series = SeriesFixture(count: 2)
                try await series.store(in: store, client: client, inputs: inputs, writeTensors: false)
                let worker = makeWorker(model, client, store,
                                        retry: RetryPolicy(base: .seconds(1), multiplier: 1, maximum: .seconds(1)))
                try await enqueue([series], model: worker.modelRef, client: client, maxAttempts: 3)

                #expect(try await worker.processAvailable() == 1)
                #expect(try await count(client, """
                    SELECT count(*) FROM inference.jobs
                    WHERE state = 'queued' AND attempts = 1 AND last_error = 'tensor_not_found' AND run_at > now()
                    """) == 1)
                let deadline = ContinuousClock.now + .seconds(20)
                var rounds = 1
                while try await count(client, "SELECT count(*) FROM inference.jobs WHERE state = 'dead'") == 0 {
                    guard ContinuousClock.now < deadline else { break }
                    rounds += try await worker.processAvailable()
                    try await Task.sleep(for: .milliseconds(20))
                }
                #expect(rounds == 3)
                #expect(try await count(client, """
                    SELECT count(*) FROM inference.jobs WHERE state = 'dead' AND attempts = 3 AND last_error = 'tensor_not_found'
                    """) == 1)
                #expect(try await count(client, "SELECT count(*) FROM inference.diagnoses") == 0)
            }
        }
    }

    @Test func serviceWakesOnNotifyAndStopsOnCancel() async throws {
        let model = try InferenceModel.load(directory: modelDirectory)
        let (inputs, outputs) = try referenceIO()
        try await withStore { store in
            try await withCatalog { client in
                let series = SeriesFixture(count: 4)
                try await series.store(in: store, client: client, inputs: inputs)
                // polling every minute: within the test's wait only the listener can wake the worker
                let worker = makeWorker(model, client, store, pollInterval: .seconds(60))
                let running = Task { try await worker.run() }
                // the model row is registered at start
                let deadline = ContinuousClock.now + .seconds(20)
                while try await count(client, "SELECT count(*) FROM inference.models") == 0, ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(20))
                }
                try await Task.sleep(for: .milliseconds(300))
                try await enqueue([series], model: worker.modelRef, client: client)
                while try await count(client, "SELECT count(*) FROM inference.jobs WHERE state = 'done'") == 0,
                      ContinuousClock.now < deadline
                {
                    try await Task.sleep(for: .milliseconds(20))
                }
                running.cancel()
                _ = try? await running.value
                #expect(try await count(client, "SELECT count(*) FROM inference.jobs WHERE state = 'done'") == 1)
                let rows = try await client.query(
                    "SELECT (probabilities->>'pneumonia')::float8 FROM inference.diagnoses ORDER BY sop_instance_uid",
                    logger: quietLogger)
                var values: [Double] = []
                for try await p in rows.decode(Double.self) { values.append(p) }
                #expect(values.count == 4)
                for (i, p) in values.enumerated() { #expect(abs(p - Double(outputs.values[i])) <= 1e-4) }
            }
        }
    }
}

/// A copy of the shipped model registered under another version (same weights): what `models register` stores.
private func registerCopy(of directory: URL, version: String, store: any ObjectStore, client: PostgresClient) async throws -> ModelRef {
    var metadata = try JSONSerialization.jsonObject(with: Data(contentsOf: directory.appendingPathComponent("model_metadata.json"))) as! [String: Any]
    metadata["version"] = version
    let weights = try Data(contentsOf: directory.appendingPathComponent("weights.bin"))
    let name = metadata["name"] as! String
    let prefix = "models/\(name)/\(version)/"
    _ = try await store.put(prefix + "weights.bin", data: weights, contentType: "application/octet-stream")
    _ = try await store.put(prefix + "model_metadata.json", data: try JSONSerialization.data(withJSONObject: metadata), contentType: "application/json")
    let reference = ModelRef(name: name, version: version)
    try await Catalog(client: client, logger: quietLogger).withTransaction { t in
        try await t.registerModelVersion(ModelRegistration(
            record: ModelRecord(model: reference, inputRecipe: "cxr-28", classes: ["normal", "pneumonia"]), recipeHash: nil,
            weightsKey: prefix + "weights.bin", weightsSHA256: sha256Hex(weights), metadataKey: prefix + "model_metadata.json",
            referenceMaxAbsDiff: 0))
    }
    return reference
}

@Suite(.enabled(if: databaseURL != nil, "needs DICOM_ETL_TEST_DATABASE_URL (scripts/with-services.sh)"))
struct WorkerServingTests {
    /// One worker, never restarted: with a serving row it runs the shadow beside the served version (shadow rows in
    /// their own table, the same probabilities for the same weights), follows a promotion at its next round, and
    /// with a served version it cannot load claims nothing (the jobs wait, none is lost).
    @Test func workerFollowsTheServingRowBetweenRounds() async throws {
        let model = try InferenceModel.load(directory: modelDirectory)
        let (inputs, _) = try referenceIO()
        try await withStore { store in
            try await withCatalog { client in
                let worker = makeWorker(model, client, store, batchSize: 8)
                try await worker.registerModel()
                let base = worker.modelRef
                let catalog = Catalog(client: client, logger: quietLogger)
                let copy = try await registerCopy(of: modelDirectory, version: "9.0.0-copy", store: store, client: client)
                try await catalog.withTransaction { t in
                    try await t.registerModelVersion(ModelRegistration(
                        record: ModelRecord(model: base, inputRecipe: "cxr-28", classes: ["normal", "pneumonia"]), recipeHash: nil,
                        weightsKey: "models/unused", weightsSHA256: "", metadataKey: "models/unused", referenceMaxAbsDiff: 0))
                    try await t.setServing(base, asShadow: false)
                    try await t.setServing(copy, asShadow: true)
                }

                let first = (0..<3).map { SeriesFixture(count: 4, first: $0 * 4) }
                for s in first { try await s.store(in: store, client: client, inputs: inputs) }
                try await enqueue(first, model: base, client: client)
                #expect(try await worker.processUntilIdle() == 3)
                #expect(try await count(client, "SELECT count(*) FROM inference.diagnoses WHERE model_version = \(base.version)") == 12)
                #expect(try await count(client, "SELECT count(*) FROM inference.shadow_diagnoses WHERE model_version = \(copy.version)") == 12)
                #expect(try await count(client, """
                    SELECT count(*) FROM inference.diagnoses d JOIN inference.shadow_diagnoses s USING (job_id, sop_instance_uid)
                    WHERE d.probabilities = s.probabilities AND d.label = s.label
                    """) == 12, "the same weights give the same rows")

                // Promotion: the next round serves the copy, for jobs queued under the route's version.
                _ = try await catalog.withTransaction { try await $0.setServing(copy, asShadow: false) }
                let second = [SeriesFixture(count: 5, first: 20)]
                try await second[0].store(in: store, client: client, inputs: inputs)
                try await enqueue(second, model: base, client: client)
                #expect(try await worker.processUntilIdle() == 1)
                #expect(try await count(client, "SELECT count(*) FROM inference.diagnoses WHERE model_version = \(copy.version)") == 5)
                #expect(try await count(client, "SELECT count(*) FROM inference.shadow_diagnoses") == 12, "no shadow after the promotion")

                // A served version whose files are gone: the round fails before claiming; the job waits.
                _ = try await catalog.withTransaction { try await $0.setServing(base, asShadow: false) }
                try await catalog.withTransaction { t in
                    try await t.registerModelVersion(ModelRegistration(
                        record: ModelRecord(model: ModelRef(name: base.name, version: "9.9.9"), inputRecipe: "cxr-28", classes: ["normal", "pneumonia"]),
                        recipeHash: nil, weightsKey: "models/missing/weights.bin", weightsSHA256: "0", metadataKey: "models/missing/m.json",
                        referenceMaxAbsDiff: 0))
                    try await t.setServing(ModelRef(name: base.name, version: "9.9.9"), asShadow: false)
                }
                let third = [SeriesFixture(count: 2, first: 30)]
                try await third[0].store(in: store, client: client, inputs: inputs)
                try await enqueue(third, model: base, client: client)
                await #expect(throws: RegisteredModelError(.unreadable)) { try await worker.processAvailable() }
                #expect(try await count(client, "SELECT count(*) FROM inference.jobs WHERE state = 'queued' AND attempts = 0") == 1)
                _ = try await catalog.withTransaction { try await $0.setServing(copy, asShadow: false) }
                #expect(try await worker.processUntilIdle() == 1)
                #expect(try await count(client, "SELECT count(*) FROM inference.jobs WHERE state = 'done' AND attempts = 1") == 5)
                #expect(try await count(client, "SELECT count(*) FROM inference.serving_events") == 6)
            }
        }
    }
}
