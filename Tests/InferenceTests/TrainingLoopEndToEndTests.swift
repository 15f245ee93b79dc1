// The training loop end to end, on one daemon (`dicom-etl run --with-worker`) that runs from start to finish:
// the 624 official PneumoniaMNIST test images as DICOM → diagnoses by the served pneumonia-cnn 1.0.0; labels
// imported by accession number (a file with one unknown key first: reported, nothing imported); `dicom-etl
// export` → TFRecord shards that TensorFlow reads back equal to the stored tensors, no patient in two splits,
// the same bytes on a re-run and after a resumed run; a short training run from the export (models/train.py
// --export); `models register` of 1.0.0 (served) and of the new version as a shadow; a second batch of images
// gets both versions' rows (the shadow's hidden from clinical.diagnoses, equal to the new model run on the npz
// pixels); `models compare`; `models promote`; a third batch is diagnosed by the new version. No restart, every
// job done once, one served row per job and instance.
//
// Needs the test database, PneumoniaMNIST (DICOM_ETL_MEDMNIST) and TensorFlow: DICOM_ETL_TRAIN_PYTHON, else the
// package's .venv-train (make train-venv). Without them it is skipped with that reason.
import Foundation
import Inference
import TestSupport
import Testing

@Suite(.serialized) struct TrainingLoopEndToEndTests {
    typealias E2E = PneumoniaEndToEndTests
    static var trainPython: String {
        ProcessInfo.processInfo.environment["DICOM_ETL_TRAIN_PYTHON"].flatMap { $0.isEmpty ? nil : $0 }
            ?? E2E.packageRoot.appendingPathComponent(".venv-train/bin/python").path
    }
    static var hasTensorFlow: Bool { FileManager.default.isExecutableFile(atPath: trainPython) }

    /// Runs `dicom-etl` with the world's database and store.
    static func etl(_ world: E2E.World, _ arguments: [String]) throws -> CommandResult {
        try runCommand(E2E.daemonPath, arguments + ["--database-url", world.databaseURL, "--storage-url", "file://" + world.data + "/objects"])
    }

    static func json(_ text: String) throws -> [String: Any] {
        let line = text.split(separator: "\n").last.map(String.init) ?? ""
        return try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
    }

    /// Writes a batch of the test images (one encoding, its own patients) into the drop folder.
    static func drop(_ world: E2E.World, encoding: String, seed: Int, reference: String) throws -> [E2E.Exported] {
        let export = try runCommand(E2E.python, [
            E2E.packageRoot.path + "/scripts/medmnist-to-dicom.py", "--medmnist", try #require(E2E.medmnist), "--split", "test",
            "--out", world.drop, "--reference", reference, "--encodings", encoding, "--seed", "\(seed)",
        ])
        try #require(export.status == 0, "export script failed: \(export.error)")
        return try E2E.readManifest(reference + "/manifest.tsv")
    }

    static func waitFor(_ world: E2E.World, _ sql: String, atLeast n: Int, daemon: Process, seconds: Int = 300) async throws -> Int {
        let deadline = ContinuousClock.now + .seconds(seconds)
        var value = 0
        while ContinuousClock.now < deadline, daemon.isRunning {
            value = world.count(sql)
            if value >= n { break }
            try await Task.sleep(for: .milliseconds(500))
        }
        return value
    }

    static func labelsCSV(_ rows: [E2E.Exported], to path: String, extra: String = "") throws {
        let lines = ["accession_number,label"] + rows.map { "\($0.accessionNumber),\($0.label == 1 ? "pneumonia" : "normal")" }
        try (lines.joined(separator: "\n") + "\n" + extra).write(toFile: path, atomically: true, encoding: .utf8)
    }

    /// Every regular file under `folder` (relative path → bytes).
    static func files(_ folder: String) -> [String: Data] {
        var out: [String: Data] = [:]
        for name in (FileManager.default.subpaths(atPath: folder) ?? []) {
            var isDirectory: ObjCBool = false
            let path = folder + "/" + name
            if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue {
                out[name] = FileManager.default.contents(atPath: path)
            }
        }
        return out
    }

    @Test(
        .enabled(if: E2E.adminURL != nil, "needs DICOM_ETL_TEST_DATABASE_URL (scripts/with-services.sh)"),
        .enabled(if: E2E.hasImages, "needs PneumoniaMNIST (DICOM_ETL_MEDMNIST, ../shared/data/medmnist)"),
        .enabled(if: hasTensorFlow, "needs TensorFlow: DICOM_ETL_TRAIN_PYTHON or .venv-train (make train-venv)"),
        .timeLimit(.minutes(20)))
    func labelsExportTrainRegisterShadowCompareAndPromoteWithoutARestart() async throws {
        let world = try E2E.World()
        defer { world.cleanUp() }
        let daemon = try E2E.startDaemon(world)
        defer { if daemon.isRunning { daemon.terminate(); daemon.waitUntilExit() } }
        let started = ContinuousClock.now
        let n = 624

        // 1. The first batch, diagnosed by the served 1.0.0 (routes.yaml; no serving row yet).
        let first = try Self.drop(world, encoding: "u8-window", seed: 11, reference: world.root + "/ref1")
        try #require(first.count == n)
        var done = try await Self.waitFor(world, "SELECT count(*) FROM inference.diagnoses", atLeast: n, daemon: daemon)
        try #require(done == n, "first batch: \(done) of \(n) diagnosed")
        let firstBatch = ContinuousClock.now - started

        // 2. Labels: one unknown accession number makes the whole file fail, nothing imported; then the real file.
        let bad = world.root + "/labels-bad.csv", good = world.root + "/labels.csv"
        try Self.labelsCSV(first, to: bad, extra: "A000000000,normal\n")
        let refused = try Self.etl(world, ["labels", "import", "--task", "pneumonia", "--source", "test", bad])
        #expect(refused.status == 1)
        #expect(refused.error.contains("line \(n + 2): unknown_key"), "\(refused.error.suffix(300))")
        #expect(!refused.error.contains("A000000000"), "the key itself is not echoed")
        #expect(world.count("SELECT count(*) FROM inference.labels") == 0, "nothing half-imported")
        try Self.labelsCSV(first, to: good)
        let imported = try Self.etl(world, ["labels", "import", "--task", "pneumonia", "--source", "test", good])
        try #require(imported.status == 0, "\(imported.error.suffix(2000))")
        #expect(try Self.json(imported.output)["imported"] as? Int == n)
        let analystLabels = try psql(world.databaseURL, "SET ROLE analyst; SELECT count(*) FROM inference.labels l JOIN imaging.studies s USING (study_uid)")
        #expect(analystLabels == "\(n)", "analysts read labels by pseudonym")

        // 3. Export: TFRecord shards; the same bytes twice; a removed shard is rewritten, the others kept.
        let key = world.root + "/split-key"
        try Data("a split key for this test".utf8).write(to: URL(fileURLWithPath: key))
        let exportArgs = ["export", "--recipe", "cxr-28", "--task", "pneumonia", "--where", "i.modality = 'CR' AND i.body_part = 'CHEST'",
                          "--split-key-file", key, "--records-per-shard", "100"]
        let out1 = world.root + "/export1", out2 = world.root + "/export2"
        let exported = try Self.etl(world, exportArgs + ["--out", out1])
        try #require(exported.status == 0, "\(exported.error.suffix(2000))")
        let summary = try Self.json(exported.output)
        let again = try Self.etl(world, exportArgs + ["--out", out2])
        try #require(again.status == 0, "\(again.error.suffix(2000))")
        let bytes1 = Self.files(out1).filter { !$0.key.hasPrefix(".") }, bytes2 = Self.files(out2).filter { !$0.key.hasPrefix(".") }
        #expect(bytes1 == bytes2 && bytes1.count >= 6, "a re-run exports the same bytes (\(bytes1.count) files)")
        let shard = try #require(bytes1.keys.sorted().first { $0.hasPrefix("Split-train/") })
        try FileManager.default.removeItem(atPath: out1 + "/" + shard)
        let resumed = try Self.etl(world, exportArgs + ["--out", out1])
        try #require(resumed.status == 0, "\(resumed.error.suffix(2000))")
        let shardCount = bytes1.keys.filter { $0.hasPrefix("Split-") }.count
        #expect(try Self.json(resumed.output)["shards_kept"] as? Int == shardCount - 1)
        #expect(Self.files(out1).filter { !$0.key.hasPrefix(".") } == bytes1, "a resumed export ends in the same bytes")

        // TensorFlow reads every record back equal to the stored tensor; no patient in two splits.
        let keys = try psql(world.databaseURL, "SELECT sop_instance_uid || E'\\t' || tensor_key FROM imaging.tensors WHERE recipe = 'cxr-28'")
        try ("sop_instance_uid\ttensor_key\n" + keys + "\n").write(toFile: world.root + "/keys.tsv", atomically: true, encoding: .utf8)
        let check = try runCommand(Self.trainPython, [E2E.packageRoot.path + "/scripts/check_export.py", "--export", out1,
                                                   "--objects", world.data + "/objects", "--keys", world.root + "/keys.tsv"])
        #expect(check.status == 0, "\(check.output) \(check.error.suffix(1500))")
        let checked = try Self.json(check.output)
        #expect(checked["records"] as? Int == n && checked["patients_in_two_splits"] as? Int == 0)

        // 4. A short training run from the export.
        let version = "1.1.0-e2e"
        let modelDir = world.root + "/models/pneumonia-cnn/" + version
        let trained = try runCommand(Self.trainPython, [E2E.packageRoot.path + "/models/train.py", "--export", out1, "--out", modelDir,
                                                     "--version", version, "--epochs", "6", "--patience", "6", "--reference-count", "32"])
        try #require(trained.status == 0, "training failed: \(trained.error.suffix(2000))")
        let trainedAt = ContinuousClock.now - started

        // 5. Register 1.0.0 as served and the new version as its shadow.
        let served = try Self.etl(world, ["models", "register", E2E.packageRoot.path + "/models/trained_models/pneumonia-cnn/1.0.0", "--serve"])
        try #require(served.status == 0, "\(served.error.suffix(2000))")
        let shadowed = try Self.etl(world, ["models", "register", modelDir, "--shadow"])
        try #require(shadowed.status == 0, "\(shadowed.error.suffix(2000))")
        let registration = try Self.json(shadowed.output)
        #expect((registration["reference_max_abs_diff"] as? Double).map { $0 <= 1e-4 } == true)

        // 6. The second batch: served rows by 1.0.0, shadow rows by the new version on the same jobs.
        let second = try Self.drop(world, encoding: "u8", seed: 22, reference: world.root + "/ref2")
        done = try await Self.waitFor(world, "SELECT count(*) FROM inference.diagnoses", atLeast: 2 * n, daemon: daemon)
        #expect(done == 2 * n, "second batch: \(done - n) of \(n) diagnosed")
        #expect(world.count("SELECT count(*) FROM inference.shadow_diagnoses WHERE model_version = '\(version)'") == n)
        #expect(world.count("SELECT count(*) FROM clinical.diagnoses") == 2 * n, "shadow rows are not the clinician's")
        #expect(world.count("SELECT count(*) FROM inference.all_diagnoses WHERE shadow") == n)
        #expect(world.count("SELECT count(*) FROM inference.diagnoses WHERE model_version <> '1.0.0'") == 0)

        // The shadow's probabilities are the new model's on the npz pixels.
        let images = try NpyArray(contentsOf: URL(fileURLWithPath: world.root + "/ref2/images.npy"))
        let newModel = try InferenceModel.load(directory: URL(fileURLWithPath: modelDir))
        let direct = try newModel.predict(batch: images.values, count: n)
        let rows = try psql(world.databaseURL, """
            SELECT v.original_sop_instance_uid, (s.probabilities->>'pneumonia')::float8 FROM inference.shadow_diagnoses s
            JOIN vault.instances v USING (sop_instance_uid)
            """)
        let indexOf = Dictionary(uniqueKeysWithValues: second.map { ($0.sopInstanceUID, $0.index) })
        var worst = 0.0, matched = 0
        for line in rows.split(separator: "\n") {
            let f = line.split(separator: "|").map(String.init)
            guard f.count == 2, let i = indexOf[f[0]], let p = Double(f[1]) else { continue }
            worst = max(worst, abs(p - Double(direct[i][1])))
            matched += 1
        }
        #expect(matched == n && worst <= 1e-5, "shadow rows vs the new model on the npz pixels: \(matched) rows, max |Δp| \(worst)")

        // 7. Compare, with the second batch's labels.
        try Self.labelsCSV(second, to: good)
        let imported2 = try Self.etl(world, ["labels", "import", "--task", "pneumonia", good])
        try #require(imported2.status == 0, "\(imported2.error.suffix(2000))")
        let compared = try Self.etl(world, ["models", "compare", "pneumonia-cnn", "--task", "pneumonia"])
        try #require(compared.status == 0, "\(compared.error.suffix(2000))")
        let comparison = try Self.json(compared.output)
        let servedFigures = try #require(comparison["served"] as? [String: Any]), shadowFigures = try #require(comparison["shadow"] as? [String: Any])
        #expect(comparison["paired_instances"] as? Int == n)
        #expect(servedFigures["labelled"] as? Int == n && shadowFigures["labelled"] as? Int == n)
        let servedAUC = try #require(servedFigures["auc"] as? Double), shadowAUC = try #require(shadowFigures["auc"] as? Double)
        #expect(abs(servedAUC - 0.9809) <= 0.002, "1.0.0 on the second batch: AUC \(servedAUC)")
        let labels = (0..<n).map { i in second.first { $0.index == i }!.label }
        let directAUC = E2E.auc(scores: direct.map { Double($0[1]) }, labels: labels)
        #expect(abs(shadowAUC - directAUC) <= 1e-6, "shadow AUC \(shadowAUC), the new model on the npz pixels \(directAUC)")

        // 8. Promote: the third batch is served by the new version; no restart (the same daemon process).
        let promoted = try Self.etl(world, ["models", "promote", "pneumonia-cnn", version])
        try #require(promoted.status == 0, "\(promoted.error.suffix(2000))")
        _ = try Self.drop(world, encoding: "mono1", seed: 33, reference: world.root + "/ref3")
        done = try await Self.waitFor(world, "SELECT count(*) FROM inference.diagnoses", atLeast: 3 * n, daemon: daemon)
        #expect(done == 3 * n, "third batch: \(done - 2 * n) of \(n) diagnosed")
        #expect(daemon.isRunning, "the same daemon throughout")
        #expect(world.count("SELECT count(*) FROM inference.diagnoses WHERE model_version = '\(version)'") == n)
        #expect(world.count("SELECT count(*) FROM inference.diagnoses WHERE model_version = '1.0.0'") == 2 * n)
        #expect(world.count("SELECT count(*) FROM inference.shadow_diagnoses") == n, "the promoted shadow is no longer shadowed")
        // Every job done once; one served row per job and instance; no job with rows of two versions.
        #expect(world.count("SELECT count(*) FROM inference.jobs") == 3 * n)
        #expect(world.count("SELECT count(*) FROM inference.jobs WHERE state = 'done' AND attempts = 1") == 3 * n)
        #expect(world.count("SELECT count(DISTINCT (job_id, sop_instance_uid)) FROM inference.diagnoses") == 3 * n)
        #expect(world.count("SELECT count(*) FROM (SELECT job_id FROM inference.diagnoses GROUP BY 1 HAVING count(DISTINCT model_version) > 1) x") == 0)
        #expect(world.count("SELECT count(*) FROM inference.serving_events") == 3)

        print("""
            training loop end to end: first batch diagnosed in \(firstBatch); export \(summary["splits"] ?? "?"); TensorFlow read \
            \(checked["records"] ?? "?") records back equal; trained \(version) by \(trainedAt); compare: served 1.0.0 AUC \
            \(String(format: "%.4f", servedAUC)), shadow AUC \(String(format: "%.4f", shadowAUC)), agreement \
            \(comparison["agreement"] ?? "?"); shadow vs direct max |Δp| \(worst); total \(ContinuousClock.now - started)
            """)
    }
}
