// The whole corpus through `dicom-etl run` into a real S3 server (the test moto, signature checking on):
// the children's outputs are uploaded from their staging files (nothing written twice locally), every file
// ends catalogued or quarantined once, every catalogued instance's objects are in the bucket with the
// SHA-256 the catalogue holds, and verify-deid finds no leak in what the bucket holds.
import Foundation
import Ingest
import ObjectStorage
import TestSupport
import Testing

@Suite(.serialized) struct DaemonS3Tests {
    typealias E2E = DaemonEndToEndTests
    static let environment = ProcessInfo.processInfo.environment
    static var ready: Bool {
        E2E.ready && environment["DICOM_ETL_TEST_S3_ENDPOINT"] != nil && environment["DICOM_ETL_TEST_S3_ACCESS_KEY"] != nil
    }

    @Test(.enabled(if: ready, "needs the test PostgreSQL, the test S3 server and the corpus"), .timeLimit(.minutes(10)))
    func wholeCorpusIntoS3() async throws {
        let endpoint = try #require(Self.environment["DICOM_ETL_TEST_S3_ENDPOINT"])
        let credentials = AWSCredentials(
            accessKeyID: try #require(Self.environment["DICOM_ETL_TEST_S3_ACCESS_KEY"]),
            secretAccessKey: try #require(Self.environment["DICOM_ETL_TEST_S3_SECRET_KEY"]))
        let bucket = "e2e-\(UUID().uuidString.prefix(8).lowercased())"
        // No key prefix: the test's moto checks a listing's signature against the query as its web server decoded it,
        // so a `/` in `prefix=` fails there (see S3ObjectStoreTests).
        let storageURL = "s3://\(bucket)?endpoint=\(endpoint)&region=us-east-1"
        guard case .s3(let configuration) = try StorageLocation.parse(storageURL) else { Issue.record("not an S3 URL"); return }
        let store = try S3ObjectStore(configuration: configuration, credentials: credentials)
        try await store.createBucket()

        let files = E2E.wholeCorpus()
        let world = try E2E.World()
        defer { world.cleanUp() }
        let daemon = try E2E.startDaemon(world, environment: [
            "DICOM_ETL_STORAGE_URL": storageURL, "DICOM_ETL_STORAGE_ACCESS_KEY_ID": credentials.accessKeyID,
            "DICOM_ETL_STORAGE_SECRET_ACCESS_KEY": credentials.secretAccessKey,
        ])
        defer { E2E.stop(daemon) }
        let started = ContinuousClock.now
        try world.drop(files)
        try await E2E.waitUntilSettled(world, daemon: daemon, timeout: .seconds(300))
        let elapsed = ContinuousClock.now - started
        #expect(daemon.isRunning)

        #expect(world.files(in: "").isEmpty, "nothing left in the drop folder")
        let processed = world.files(in: "processed")
        let quarantined = world.files(in: "quarantine").filter { !$0.hasSuffix(".reason.json") }
        #expect(processed.count + quarantined.count == files.count)
        #expect(try world.count("SELECT count(*) FROM ingest.source_files") == files.count, "one ledger row per file")
        let instances = try world.count("SELECT count(*) FROM imaging.instances")
        #expect(instances > 0)
        #expect(instances == (try world.count("SELECT count(DISTINCT sop_instance_uid) FROM ingest.source_files WHERE state = 'catalogued'")))

        // Every object the catalogue names is in the bucket, with its hash; nothing else is.
        let keys = try psql(world.databaseURL, """
            SELECT k || ' ' || h FROM (
              SELECT file_key k, file_sha256 h FROM imaging.instances
              UNION ALL SELECT tensor_key, tensor_sha256 FROM imaging.tensors
              UNION ALL SELECT preview_key, preview_sha256 FROM imaging.tensors) x ORDER BY 1
            """).split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        let sidecars = try world.count("SELECT count(*) FROM imaging.tensors WHERE sidecar_key IS NOT NULL")
        for pair in keys where pair.count == 2 {
            let head = try await store.head(pair[0])
            #expect(head?.sha256 == pair[1], "object \(pair[0])")
        }
        let listed = try await store.list(prefix: "")
        #expect(listed.count == keys.count + sidecars, "\(listed.count) objects for \(keys.count) + \(sidecars) sidecars")
        let staging = world.data + "/scratch/staging"
        #expect((try? FileManager.default.contentsOfDirectory(atPath: staging))?.isEmpty ?? true, "no upload left its staging file")

        // verify-deid over the de-identified files as the bucket holds them.
        let pairs = try psql(world.databaseURL, """
            SELECT f.id || '|' || f.path || '|' || i.file_key FROM ingest.source_files f
            JOIN imaging.instances i ON i.sop_instance_uid = f.sop_instance_uid WHERE f.state = 'catalogued' ORDER BY f.id
            """).split(separator: "\n").map { $0.split(separator: "|", maxSplits: 2).map(String.init) }
        let originals = world.root + "/verify/originals", outputs = world.root + "/verify/outputs"
        for folder in [originals, outputs] { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) }
        for pair in pairs where pair.count == 3 {
            try FileManager.default.copyItem(atPath: world.drop + "/processed/" + String(pair[1].dropFirst(world.drop.count + 1)),
                                             toPath: originals + "/\(pair[0]).dcm")
            try await store.get(pair[2]).write(to: URL(fileURLWithPath: outputs + "/\(pair[0]).dcm"))
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: E2E.daemonPath)
        process.arguments = ["verify-deid", "--originals", originals, "--outputs", outputs, "--profile", E2E.packageRoot.path + "/etl/deidentify/basic.yaml"]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0 && output.contains("verified \(pairs.count) files: 0 with leaks"), "\(output)")
        print("whole corpus into S3: \(files.count) files in \(elapsed); \(instances) instances, \(listed.count) objects in the bucket; "
              + (output.split(separator: "\n").first.map(String.init) ?? ""))
        for object in listed { try await store.delete(object.key) }
    }
}
