// `dicom-etl worker` as a child process on a fresh database and a filesystem store: it serves /healthz and
// /readyz, diagnoses the queued series, counts its work in /metrics, and exits 0 on SIGTERM.
import Catalog
import Foundation
import Glibc
import Logging
import ObjectStorage
import PostgresNIO
import TestSupport
import Testing
@testable import Inference

private let adminURL = ProcessInfo.processInfo.environment["DICOM_ETL_TEST_DATABASE_URL"]

@Suite(.enabled(if: adminURL != nil, "needs DICOM_ETL_TEST_DATABASE_URL (scripts/with-services.sh)"))
struct WorkerCommandTests {
    /// The built `dicom-etl`, beside the test binary.
    static var executable: String {
        let binary = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: binary).deletingLastPathComponent().appendingPathComponent("dicom-etl").path
    }

    /// GET `path` on the worker's ops port: (HTTP status, body); status 0 when nothing answers.
    static func get(_ port: Int, _ path: String) -> (Int, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["curl", "-s", "--max-time", "5", "-w", "\n%{http_code}", "http://127.0.0.1:\(port)\(path)"]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return (0, "") }
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        return (Int(lines.last ?? "") ?? 0, lines.dropLast().joined(separator: "\n"))
    }

    /// The value of one sample line (`name{labels} value`), or nil when absent.
    static func sample(_ metrics: String, _ series: String) -> Double? {
        metrics.split(separator: "\n").first { $0.hasPrefix(series + " ") }.flatMap { $0.split(separator: " ").last }.flatMap { Double($0) }
    }

    @Test(.timeLimit(.minutes(3))) func servesOpsDiagnosesQueuedSeriesAndStopsOnSIGTERM() async throws {
        var logger = Logger(label: "worker-command-tests")
        logger.logLevel = .critical
        let adminText = try #require(adminURL)
        let admin = try DatabaseConfiguration.parse(adminText)
        let name = "wc_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(16).lowercased()
        _ = try await Catalog.withRunningClient(admin, logger: logger) { try await $0.query("CREATE DATABASE \(unescaped: name)", logger: logger) }
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("worker-command-" + UUID().uuidString)
        defer { try? FileManager.default.removeItem(at: root) }
        var components = try #require(URLComponents(string: adminText))
        components.path = "/" + name
        let databaseURL = try #require(components.string)
        do {
            try await exercise(admin: admin, name: name, databaseURL: databaseURL, root: root, logger: logger)
        } catch {
            _ = try? await Catalog.withRunningClient(admin, logger: logger) { try await $0.query("DROP DATABASE \(unescaped: name) WITH (FORCE)", logger: logger) }
            throw error
        }
        _ = try? await Catalog.withRunningClient(admin, logger: logger) { try await $0.query("DROP DATABASE \(unescaped: name) WITH (FORCE)", logger: logger) }
    }

    func exercise(admin: DatabaseConfiguration, name: String, databaseURL: String, root: URL, logger: Logger) async throws {

        // Three series of reference images, catalogued and queued for the model.
        let model = try InferenceModel.load(directory: modelDirectory)
        let (inputs, _) = try referenceIO()
        let store = try FilesystemObjectStore(root: root)
        let seriesUIDs = (0..<3).map { _ in "2.25.9" + String(UInt64.random(in: 1...UInt64.max)) }
        try await Catalog.withRunningClient(admin.with(database: name), logger: logger) { client in
            let catalog = Catalog(client: client, logger: logger)
            try await catalog.migrate()
            var instances: [InstanceRecord] = []
            for (s, series) in seriesUIDs.enumerated() {
                for i in 0..<4 {
                    let image = s * 4 + i
                    var data = Data([0x93] + Array("NUMPY".utf8) + [1, 0])
                    var header = "{'descr': '<f4', 'fortran_order': False, 'shape': (28, 28), }"
                    while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
                    header += "\n"
                    data.append(contentsOf: [UInt8(header.utf8.count & 0xFF), UInt8(header.utf8.count >> 8)] + Array(header.utf8))
                    for value in inputs.values[(image * 784)..<((image + 1) * 784)] {
                        withUnsafeBytes(of: value.bitPattern.littleEndian) { data.append(contentsOf: $0) }
                    }
                    let key = "tensors/cxr-28/\(series)/\(i).npy"
                    _ = try await store.put(key, data: data, contentType: "application/x-npy")
                    instances.append(InstanceRecord(
                        sopInstanceUID: "\(series).\(i + 1)", seriesUID: series, studyUID: "2.25.77", patientID: "PSEUDO-WC",
                        instanceNumber: i + 1, modality: "CR", bodyPart: "CHEST",
                        tensors: [TensorRecord(recipe: "cxr-28", tensor: StoredObject(key: key, sha256: "", size: Int64(data.count)))]))
                }
            }
            try await catalog.upsert(CatalogBatch(
                patients: [PatientRecord(patientID: "PSEUDO-WC")], studies: [StudyRecord(studyUID: "2.25.77", patientID: "PSEUDO-WC")],
                series: seriesUIDs.map { SeriesRecord(seriesUID: $0, studyUID: "2.25.77", modality: "CR", bodyPart: "CHEST") },
                instances: instances))
            _ = try await catalog.withTransaction { transaction in
                try await transaction.enqueue(seriesUIDs.map {
                    JobRequest(seriesUID: $0, seriesRevision: 1, model: ModelRef(name: model.metadata.name, version: model.metadata.version))
                })
            }
        }

        let port = try freeLocalPort()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.executable)
        process.arguments = [
            "worker", "--database-url", databaseURL, "--storage-url", root.absoluteString, "--model", modelDirectory.path,
            "--ops-port", String(port), "--poll-seconds", "0.5", "--log-level", "info", "--log-format", "json",
        ]
        let logPath = NSTemporaryDirectory() + "worker-\(UUID().uuidString).log"
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: logPath) }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle(forWritingAtPath: logPath)
        try process.run()
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }

        // Live and ready, then every queued series diagnosed and counted.
        let deadline = ContinuousClock.now + .seconds(90)
        var metrics = ""
        while ContinuousClock.now < deadline {
            metrics = Self.get(port, "/metrics").1
            if Self.sample(metrics, "dicom_etl_inference_jobs_total{outcome=\"done\"}") == 3 { break }
            try await Task.sleep(for: .milliseconds(250))
        }
        #expect(Self.get(port, "/healthz").0 == 200)
        #expect(Self.get(port, "/readyz").0 == 200)
        #expect(Self.sample(metrics, "dicom_etl_inference_jobs_total{outcome=\"done\"}") == 3, "\(metrics)")
        #expect(Self.sample(metrics, "dicom_etl_inference_diagnoses_total") == 12)
        #expect(Self.sample(metrics, "dicom_etl_inference_images_total") == 12)
        #expect((Self.sample(metrics, "dicom_etl_inference_forward_pass_seconds_count") ?? 0) >= 1)
        let diagnoses = try await Catalog.withRunningClient(admin.with(database: name), logger: logger) { client in
            var n = 0
            for try await value in try await client.query("SELECT count(*)::int FROM inference.diagnoses", logger: logger).decode(Int.self) { n = value }
            return n
        }
        #expect(diagnoses == 12)

        kill(process.processIdentifier, SIGTERM)
        let stopDeadline = ContinuousClock.now + .seconds(20)
        while process.isRunning && ContinuousClock.now < stopDeadline { try await Task.sleep(for: .milliseconds(50)) }
        #expect(!process.isRunning, "the worker stops on SIGTERM")
        if !process.isRunning { #expect(process.terminationStatus == 0) }

        // --log-format json: every line of standard error is one JSON object, the worker's start among them.
        let lines = (try String(contentsOfFile: logPath, encoding: .utf8)).split(separator: "\n")
        let objects = lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(!lines.isEmpty && objects.count == lines.count, "\(lines.count) lines, \(objects.count) JSON objects")
        #expect(objects.contains { $0["message"] as? String == "worker starting" && $0["label"] as? String == "dicom-etl.worker" })
    }
}
