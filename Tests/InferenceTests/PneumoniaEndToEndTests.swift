// End to end, drop folder to diagnosis: the 624 official PneumoniaMNIST test images, written as a PACS export
// of DICOM CR files (scripts/medmnist-to-dicom.py) in every encoding of its ENCODINGS table — 8-bit MONOCHROME2
// without a window (uncompressed, RLE, JPEG-LS lossless, JPEG lossless), with Window 128/256, 12- and 16-bit with
// rescale slope/intercept and a window, MONOCHROME1, non-square 2× images with borders — each encoding for its own
// patients and series, all dropped into the folder of one built `dicom-etl run --with-worker` (child process,
// database in the test PostgreSQL, filesystem store), come back as one diagnosis row each, through a SIGTERM
// mid-run (both stop cleanly, exit 0) and a restart. For every encoding: the stored cxr-28 tensors equal the
// images (grey level / 255), the probabilities equal the Swift model's on the npz pixels, and the AUC computed
// from the rows equals the committed model's evaluation_metrics.json. The clinician's view joins each row back to
// the patient ID written into the file; the analyst role cannot read that view or the vault.
//
// cxr-28 keeps stored meaning: a file without a window is displayed over its stored bit range (grey / 255 for
// 8-bit data, the training pixels), recorded as `bit-range` in the tensor's sidecar; a file with a window is
// displayed through it. Before that fallback, files without a window were stretched to their own min–max.
//
// The images come from DICOM_ETL_MEDMNIST (../shared/data/medmnist, exported by scripts/test.sh). A fresh clone
// without ../shared has no copy of them, and this test does not download one: it is skipped with that reason.
import Foundation
import Inference
import ObjectStorage
import TestSupport
import Testing

@Suite(.serialized) struct PneumoniaEndToEndTests {
    static let environment = ProcessInfo.processInfo.environment
    static let adminURL = environment["DICOM_ETL_TEST_DATABASE_URL"]
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let medmnist = environment["DICOM_ETL_MEDMNIST"].flatMap { $0.isEmpty ? nil : $0 }
    static var python: String { environment["DICOM_ETL_PYTHON"] ?? packageRoot.appendingPathComponent(".venv/bin/python").path }
    static var hasImages: Bool {
        guard let medmnist else { return false }
        return FileManager.default.fileExists(atPath: medmnist + "/MANIFEST.tsv")
    }

    /// The built `dicom-etl`, beside the test binary.
    static var daemonPath: String {
        let binary = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var directory = URL(fileURLWithPath: binary).deletingLastPathComponent()
        // macOS runs the tests inside the .xctest bundle.
        if directory.path.contains(".xctest") { directory = directory.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent() }
        return directory.appendingPathComponent("dicom-etl").path
    }

    /// Drop folder, data dir, key and reference folder under a temporary root, and a fresh database.
    struct World {
        let root: String
        var drop: String { root + "/drop" }
        var data: String { root + "/var" }
        var key: String { root + "/key" }
        var reference: String { root + "/reference" }
        var log: String { root + "/daemon.log" }
        let scratch: ScratchDatabase
        var databaseURL: String { scratch.url }

        /// /dev/shm when writable: the run leaves ~20,000 files and folders (sources moved to processed/, the
        /// store's objects), and removing them from a busy 2-core machine's disk took 45 s, from memory 0.1 s.
        static var base: URL {
            FileManager.default.isWritableFile(atPath: "/dev/shm") ? URL(fileURLWithPath: "/dev/shm") : FileManager.default.temporaryDirectory
        }

        init() throws {
            root = Self.base.appendingPathComponent("cxr-e2e-\(UUID().uuidString.prefix(8))").path
            scratch = try ScratchDatabase(prefix: "cxr")
            for folder in [drop, data, reference] { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) }
            try Data((0..<48).map { _ in UInt8.random(in: 0x41...0x5A) }).write(to: URL(fileURLWithPath: key))
            try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: key)  // a key must be owner-only
        }

        func count(_ sql: String) -> Int { Int((try? psql(databaseURL, sql)) ?? "") ?? -1 }

        func regularFiles(under folder: String, skipping: Set<String> = []) -> [String] {
            var names: [String] = []
            guard let walker = FileManager.default.enumerator(atPath: folder) else { return [] }
            while let relative = walker.nextObject() as? String {
                if skipping.contains(relative) { walker.skipDescendants(); continue }
                if (walker.fileAttributes?[.type] as? FileAttributeType) == .typeRegular { names.append(relative) }
            }
            return names
        }

        func cleanUp() {
            scratch.drop()
            // rm, not FileManager.removeItem (slower still); see `base` for why the world lives in memory.
            _ = try? runCommand("/bin/rm", ["-rf", root])
        }
    }

    static func startDaemon(_ world: World) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: daemonPath)
        let root = packageRoot.path
        process.arguments = [
            "run", "--with-worker", "--models-dir", root + "/models/trained_models",
            "--drop-folder", world.drop, "--data-dir", world.data, "--database-url", world.databaseURL,
            "--key-file", world.key, "--profile", root + "/etl/deidentify/basic.yaml", "--routes-file", root + "/etl/routes.yaml",
            "--stable-file-seconds", "0.3", "--rescan-interval-seconds", "1", "--series-quiet-seconds", "1",
            "--ops-port", "0", "--concurrency", "2", "--log-level", "warning",
        ]
        var environment = ProcessInfo.processInfo.environment
        environment["DICOM_ETL_RECIPES"] = root + "/etl/normalize"
        environment["DICOM_ETL_STORAGE_URL"] = nil
        environment["DICOM_ETL_WITH_WORKER"] = nil
        environment["OPENBLAS_NUM_THREADS"] = "1"
        process.environment = environment
        _ = FileManager.default.createFile(atPath: world.log, contents: nil)
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle(forWritingAtPath: world.log)
        try process.run()
        return process
    }

    /// One row of the reference manifest the export script writes.
    struct Exported {
        /// The image's index in the npz split.
        var index: Int
        var label: Int
        var patientID: String
        var accessionNumber: String
        var studyUID: String
        var sopInstanceUID: String
        var encoding: String
    }

    static func readManifest(_ path: String) throws -> [Exported] {
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").dropFirst()
        return try lines.map { line in
            let f = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            guard f.count == 9, let index = Int(f[0]), let label = Int(f[1]) else { throw TestFailure("bad manifest line") }
            return Exported(index: index, label: label, patientID: f[2], accessionNumber: f[3], studyUID: f[4], sopInstanceUID: f[6],
                            encoding: f[8])
        }
    }

    /// The encodings the export writes (scripts/medmnist-to-dicom.py ENCODINGS), in its order.
    static let encodings = [
        "u8-window", "u8", "u8-rle", "u8-jpegls", "u8-jpeg", "u12-rescale-window", "s16-rescale-window", "mono1", "u8-borders",
    ]

    /// Area under the ROC curve by its definition: the share of (positive, negative) pairs the scores put in the
    /// right order, a tie counting one half. Pair by pair on purpose, so that it checks the catalogue's rank-sum
    /// form (`ModelRegistry`) rather than repeating it.
    static func auc(scores: [Double], labels: [Int]) -> Double {
        let positives = zip(scores, labels).filter { $0.1 == 1 }.map(\.0)
        let negatives = zip(scores, labels).filter { $0.1 != 1 }.map(\.0)
        var ordered = 0.0
        for positive in positives {
            for negative in negatives {
                ordered += positive > negative ? 1 : positive == negative ? 0.5 : 0
            }
        }
        return ordered / Double(positives.count * negatives.count)
    }

    @Test(
        .enabled(if: adminURL != nil, "needs DICOM_ETL_TEST_DATABASE_URL (scripts/with-services.sh)"),
        .enabled(if: hasImages, """
            needs PneumoniaMNIST's official test split: DICOM_ETL_MEDMNIST (../shared/data/medmnist, exported by \
            scripts/test.sh) is not set or has no MANIFEST.tsv; a fresh clone has no copy and the test downloads none
            """),
        .timeLimit(.minutes(20)))
    func officialTestImagesInEveryEncodingComeBackAsDiagnosesWithTheModelsAUC() async throws {
        let world = try World()
        defer { world.cleanUp() }
        var daemon = try Self.startDaemon(world)
        defer {
            if daemon.isRunning { daemon.terminate(); daemon.waitUntilExit() }
        }
        let started = ContinuousClock.now
        let export = try runCommand(Self.python, [
            Self.packageRoot.path + "/scripts/medmnist-to-dicom.py", "--medmnist", try #require(Self.medmnist),
            "--split", "test", "--out", world.drop, "--reference", world.reference,
            "--encodings", Self.encodings.joined(separator: ","),
        ])
        try #require(export.status == 0, "export script failed: \(export.error)")
        let exported = try Self.readManifest(world.reference + "/manifest.tsv")
        let images = 624
        let n = exported.count
        try #require(n == images * Self.encodings.count)
        let written = ContinuousClock.now - started

        // Until every image has its diagnosis, the daemon dies, or the time runs out. Once the first diagnoses are
        // in, while files are still arriving and series completing, SIGTERM stops the daemon and its worker
        // mid-run (exit 0: files in flight drained, the worker's round finished) and a new daemon carries on.
        let deadline = ContinuousClock.now + .seconds(900)
        var diagnosed = 0
        var stoppedAt: Int?
        var midRunStop = Duration.zero
        while ContinuousClock.now < deadline, daemon.isRunning {
            diagnosed = world.count("SELECT count(*) FROM inference.diagnoses")
            if diagnosed >= n { break }
            if stoppedAt == nil, diagnosed >= 30 {
                let stopping = ContinuousClock.now
                daemon.terminate()
                daemon.waitUntilExit()
                midRunStop = ContinuousClock.now - stopping
                #expect(daemon.terminationReason == .exit && daemon.terminationStatus == 0, "mid-run exit status \(daemon.terminationStatus)")
                stoppedAt = world.count("SELECT count(*) FROM inference.diagnoses")
                #expect(world.count("SELECT count(*) FROM inference.jobs WHERE state = 'running'") == 0,
                        "no job is left to its lease by a graceful stop")
                daemon = try Self.startDaemon(world)
            }
            try await Task.sleep(for: .milliseconds(500))
        }
        let elapsed = ContinuousClock.now - started
        let log = (try? String(contentsOfFile: world.log, encoding: .utf8)) ?? ""
        try #require(daemon.isRunning, "the daemon exited early: \(log.suffix(2000))")
        #expect(diagnosed == n, "diagnoses \(diagnosed) of \(n); jobs: \((try? psql(world.databaseURL, "SELECT string_agg(state || '=' || c, ' ') FROM (SELECT state, count(*) c FROM inference.jobs GROUP BY 1) x")) ?? "?"); quarantined: \(world.count("SELECT count(*) FROM ingest.source_files WHERE state = 'quarantined'"))")

        // SIGTERM stops the daemon and its worker gracefully.
        let stopping = ContinuousClock.now
        daemon.terminate()
        daemon.waitUntilExit()
        let stopTime = ContinuousClock.now - stopping
        let checking = ContinuousClock.now
        #expect(daemon.terminationReason == .exit && daemon.terminationStatus == 0, "exit status \(daemon.terminationStatus)")

        // Every file ingested and moved to processed/; one job per series, all done; one diagnosis per image.
        #expect(world.regularFiles(under: world.drop, skipping: ["processed", "quarantine"]).isEmpty)
        #expect(world.regularFiles(under: world.drop + "/processed").count == n)
        #expect(world.regularFiles(under: world.drop + "/quarantine").isEmpty)
        #expect(world.count("SELECT count(*) FROM imaging.instances WHERE tensor_key IS NOT NULL") == n)
        #expect(world.count("SELECT count(*) FROM inference.jobs WHERE state = 'done'") == n)
        #expect(world.count("SELECT count(*) FROM inference.jobs WHERE state <> 'done'") == 0)
        #expect(stoppedAt.map { $0 > 0 && $0 < n } == true, "the daemon was stopped mid-run")
        #expect(world.count("SELECT count(DISTINCT (job_id, sop_instance_uid)) FROM inference.diagnoses") == n)

        // The rows as a clinician sees them: original patient ID, accession number, study and SOP Instance UIDs.
        let rowOf = Dictionary(uniqueKeysWithValues: exported.enumerated().map { ($1.sopInstanceUID, $0) })
        let clinical = try psql(world.databaseURL, """
            SET ROLE clinician;
            SELECT sop_instance_uid, patient_id, accession_number, study_uid, (probabilities->>'pneumonia')::float8,
                   label, threshold, model_name, model_version
            FROM clinical.diagnoses
            """)
        var probability = [Double](repeating: .nan, count: n)
        var predictedPositive = [Bool](repeating: false, count: n)
        var linked = 0
        var modelName = "", modelVersion = ""
        for line in clinical.split(separator: "\n") {
            let f = line.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
            guard f.count == 9, let r = rowOf[f[0]], let p = Double(f[4]), let threshold = Double(f[6]) else { continue }
            let row = exported[r]
            if f[1] == row.patientID && f[2] == row.accessionNumber && f[3] == row.studyUID { linked += 1 }
            probability[r] = p
            predictedPositive[r] = f[5] == "pneumonia"
            #expect(f[5] == (p >= threshold ? "pneumonia" : "normal"))
            modelName = f[7]
            modelVersion = f[8]
        }
        #expect(linked == n, "rows joined to the patient, accession and study written into the files")
        try #require(probability.allSatisfy { !$0.isNaN }, "every exported image has a row in clinical.diagnoses")

        // The analyst sees the diagnoses, pseudonymised, but neither the clinician's view nor the vault.
        for table in ["clinical.diagnoses", "vault.patients", "vault.instances"] {
            let error = #expect(throws: QueryFailed.self, "analyst reads \(table)") {
                try psql(world.databaseURL, "SET ROLE analyst; SELECT count(*) FROM \(table)")
            }
            #expect(error?.message.contains("permission denied") == true)
        }
        let analystRows = try psql(world.databaseURL, """
            SET ROLE analyst;
            SELECT count(*) FROM inference.diagnoses d JOIN imaging.series se ON se.series_uid = d.series_uid
            JOIN imaging.studies st ON st.study_uid = se.study_uid JOIN imaging.patients p ON p.patient_id = st.patient_id
            """)
        #expect(analystRows == "\(n)")
        let idList = exported.map { "'\($0.patientID)'" }.joined(separator: ",")
        #expect(world.count("SELECT count(*) FROM imaging.patients WHERE patient_id IN (\(idList))") == 0,
                "analyst-visible patient IDs are pseudonyms")

        // The model the rows name, as committed: its evaluation on the npz, and its weights run here on the npz pixels.
        let directory = Self.packageRoot.appendingPathComponent("models/trained_models/\(modelName)/\(modelVersion)")
        let evaluation = try JSONSerialization.jsonObject(with: Data(contentsOf: directory.appendingPathComponent("evaluation_metrics.json")))
        let test = try #require((evaluation as? [String: Any])?["test"] as? [String: Any])
        let expectedAUC = try #require(test["auc"] as? Double)
        let expectedAccuracy = try #require(test["accuracy"] as? Double)
        let pixels = try NpyArray(contentsOf: URL(fileURLWithPath: world.reference + "/images.npy"))
        try #require(pixels.shape == [images, 28, 28, 1])
        let model = try InferenceModel.load(directory: directory)
        let direct = try model.predict(batch: pixels.values, count: images)
        let positive = try #require(model.metadata.classes.firstIndex(of: model.metadata.positiveClass))
        let directAUC = Self.auc(scores: direct.map { Double($0[positive]) }, labels: (0..<images).map { i in
            exported.first { $0.index == i }!.label
        })

        // The stored tensors and their sidecars, per instance (original SOP Instance UID through the vault).
        let store = try FilesystemObjectStore(root: URL(fileURLWithPath: world.data + "/objects"))
        let tensors = try psql(world.databaseURL, """
            SELECT v.original_sop_instance_uid, t.tensor_key, t.sidecar_key FROM imaging.tensors t
            JOIN vault.instances v USING (sop_instance_uid) WHERE t.recipe = 'cxr-28'
            """)
        var tensorDifference = [String: Float]()
        var windowSources = [String: Set<String>]()
        var compared = 0
        for line in tensors.split(separator: "\n") {
            let f = line.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
            guard f.count == 3, let r = rowOf[f[0]] else { continue }
            let row = exported[r]
            let tensor = try NpyArray(bytes: [UInt8](try await store.get(f[1])))
            try #require(tensor.values.count == 784)
            var largest = tensorDifference[row.encoding] ?? 0
            for (a, b) in zip(tensor.values, pixels.values[(row.index * 784)..<((row.index + 1) * 784)]) { largest = max(largest, abs(a - b)) }
            tensorDifference[row.encoding] = largest
            let sidecar = try JSONSerialization.jsonObject(with: try await store.get(f[2])) as? [String: Any]
            let window = sidecar?["window"] as? [String: Any]
            windowSources[row.encoding, default: []].insert((window?["source"] as? String ?? "?") + ((window?["inverted"] as? Bool) == true ? "+inverted" : ""))
            compared += 1
        }
        #expect(compared == n)

        // Per encoding: tensors = grey / 255, probabilities = the model on the npz pixels, the AUC and accuracy of
        // the evaluation, and the window the sidecar records.
        let expectedWindow: [String: String] = [
            "u8-window": "dicom-window", "u12-rescale-window": "dicom-window", "s16-rescale-window": "dicom-window",
            "mono1": "bit-range+inverted",
        ]
        var lines: [String] = []
        for encoding in Self.encodings {
            let rows = exported.indices.filter { exported[$0].encoding == encoding }.sorted { exported[$0].index < exported[$1].index }
            try #require(rows.count == images && rows.map { exported[$0].index } == Array(0..<images))
            let scores = rows.map { probability[$0] }
            let labels = rows.map { exported[$0].label }
            let auc = Self.auc(scores: scores, labels: labels)
            let accuracy = Double(rows.filter { predictedPositive[$0] == (exported[$0].label == 1) }.count) / Double(images)
            let worst = rows.map { abs(probability[$0] - Double(direct[exported[$0].index][positive])) }.max() ?? .infinity
            let tensorWorst = tensorDifference[encoding] ?? .infinity
            #expect(tensorWorst <= 1.0 / 255, "\(encoding): max |tensor − grey/255| = \(tensorWorst)")
            #expect(tensorWorst <= 1e-6, "\(encoding): max |tensor − grey/255| = \(tensorWorst)")
            #expect(worst <= 1e-5, "\(encoding): max |p(row) − p(model on the npz pixels)| = \(worst)")
            #expect(abs(auc - expectedAUC) <= 0.002, "\(encoding): AUC from diagnosis rows \(auc), evaluation_metrics.json \(expectedAUC)")
            #expect(abs(accuracy - expectedAccuracy) <= 2.0 / Double(images), "\(encoding): accuracy \(accuracy), evaluation_metrics.json \(expectedAccuracy)")
            let want = expectedWindow[encoding] ?? "bit-range"
            #expect(windowSources[encoding] == [want], "\(encoding): sidecar windows \(windowSources[encoding] ?? [])")
            lines.append("  \(encoding): AUC \(String(format: "%.4f", auc)), accuracy \(String(format: "%.4f", accuracy)), max |Δp| \(worst), max |tensor − grey/255| \(tensorWorst), window \(want)")
        }

        print("""
            pneumonia end to end: \(n) CR files (\(images) images × \(Self.encodings.count) encodings) written in \(written), \
            all diagnosed \(elapsed) after the export began (ingest, 1 s quiet period, worker; SIGTERM at \(stoppedAt ?? -1) \
            diagnoses took \(midRunStop), then a restart), stopped by SIGTERM in \(stopTime), checked in \
            \(ContinuousClock.now - checking); model \(modelName) \(modelVersion): the Swift model on the npz pixels AUC \
            \(String(format: "%.4f", directAUC)), evaluation_metrics.json AUC \(String(format: "%.4f", expectedAUC)) accuracy \
            \(String(format: "%.4f", expectedAccuracy))
            \(lines.joined(separator: "\n"))
            """)
    }
}
