// The burned-in text audit through the pipeline: secondary captures with names, IDs and dates drawn into their
// pixels (scripts/burned_in_text.py, synthetic backgrounds) go through real sandbox children under basic.yaml
// (redact_sensitive) and one batch commit. Each catalogued instance gets its audit row in the transaction that
// catalogues it (the same transaction time stamp), with box counts and categories and never a planted string.
import Catalog
import Foundation
@testable import Ingest
import OCR
import ObjectStorage
import Sandbox
import TestSupport
import Testing

@Suite(.serialized) struct PixelTextAuditIngestTests {
    static let python = ProcessInfo.processInfo.environment["DICOM_ETL_PYTHON"] ?? ""
    static var ready: Bool { DaemonEndToEndTests.ready && FileManager.default.isExecutableFile(atPath: python) }

    struct Manifest: Decodable {
        struct Planted: Decodable { let text: String; let identifying: Bool }
        struct Entry: Decodable { let path: String; let planted: [Planted] }
        let files: [Entry]
    }

    /// Writes `count` images with text (and `noText` without) into `folder`; returns the manifest.
    static func generate(into folder: String, count: Int, noText: Int) throws -> Manifest {
        let script = Process()
        script.executableURL = URL(fileURLWithPath: python)
        script.arguments = [DaemonEndToEndTests.packageRoot.path + "/scripts/burned_in_text.py", "--out", folder, "--count", "\(count)",
                            "--no-text", "\(noText)", "--seed", "18"]
        script.standardOutput = FileHandle.nullDevice
        try script.run()
        script.waitUntilExit()
        #expect(script.terminationStatus == 0)
        return try JSONDecoder().decode(Manifest.self, from: Data(contentsOf: URL(fileURLWithPath: folder + "/manifest.json")))
    }

    /// In one process, as in a sandbox child: the result of each image carries its audit under the instance's UID,
    /// crosses the wire unchanged, and one Tesseract engine serves every image.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: python), "needs DICOM_ETL_PYTHON (pydicom, Pillow)"))
    func childResultCarriesTheAuditAcrossTheWireAndOneEngineServesEveryImage() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("pixel-audit-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        let manifest = try Self.generate(into: root + "/set", count: 3, noText: 0)
        let key = root + "/key"
        try Data((0..<48).map { _ in UInt8.random(in: 0x41...0x5A) }).write(to: URL(fileURLWithPath: key))
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: key)
        let package = DaemonEndToEndTests.packageRoot.path
        let pool = TextRecognizerPool.shared(language: "eng")
        let loaded = pool.enginesLoaded  // other tests of this process may have loaded some
        for (i, entry) in manifest.files.enumerated() {
            let result = ProcessJob.run(ProcessRequest(
                sourcePath: root + "/set/" + entry.path, routesFile: package + "/etl/routes.yaml",
                profileFile: package + "/etl/deidentify/basic.yaml", keyFile: key, recipesDirectory: package + "/etl/normalize",
                stagingPrefix: root + "/staged-\(i)"))
            #expect(result.failure == nil)
            let instance = try #require(result.instance)
            let audit = try #require(instance.pixelText)
            #expect(audit.sopInstanceUID == instance.metadata.sopInstanceUID)
            #expect(audit.action == "redact_sensitive" && audit.outcome == "redacted" && !audit.boxes.isEmpty)
            #expect(try ProcessJob.decode(result: ProcessJob.encode(result)) == result)
        }
        #expect(pool.enginesLoaded == max(loaded, 1), "\(pool.enginesLoaded - loaded) engines loaded for \(manifest.files.count) images")
    }

    @Test(.enabled(if: ready, "needs DICOM_ETL_TEST_DATABASE_URL, the corpus and DICOM_ETL_PYTHON (pydicom, Pillow)"))
    func auditRowsAreWrittenWithTheirInstancesAndHoldNoText() async throws {
        let world = try DaemonEndToEndTests.World()
        defer { world.cleanUp() }
        let generated = world.root + "/generated"
        let manifest = try Self.generate(into: generated, count: 4, noText: 1)
        var discovered: [DiscoveredFile] = []
        for (i, entry) in manifest.files.enumerated() {
            let target = world.drop + "/\(i).dcm"
            try FileManager.default.copyItem(atPath: generated + "/" + entry.path, toPath: target)
            discovered.append(makeFile(target, root: world.drop))
        }

        let pool = SandboxPool(command: testWorkerCommand(), size: 1, timeout: .seconds(120), logger: testLogger)
        try await Catalog.withRunningClient(try DatabaseConfiguration.parse(world.databaseURL), logger: testLogger) { client in
            let catalog = Catalog(client: client, logger: testLogger)
            try await catalog.migrate()
            let store = try FilesystemObjectStore(root: URL(fileURLWithPath: world.data + "/objects"))
            let processor = try makeProcessor(world, catalog: catalog, store: store, sandbox: pool, lease: .seconds(120))
            let outcomes = try await processor.process(discovered)
            #expect(outcomes == Array(repeating: .ingested, count: manifest.files.count))
        }
        await pool.shutdown()

        // One audit row per catalogued instance, written in its transaction (now() is the transaction's start).
        #expect(try world.count("SELECT count(*) FROM imaging.instances") == manifest.files.count)
        #expect(try world.count("""
            SELECT count(*) FROM imaging.pixel_text_audit a JOIN imaging.instances i USING (sop_instance_uid)
            WHERE a.created_at = i.created_at AND a.action = 'redact_sensitive' AND a.engine LIKE 'tesseract %'
            """) == manifest.files.count)
        // Identifying strings were found and blanked; the image without text has none; counts agree with the boxes.
        #expect(try world.count("SELECT count(*) FROM imaging.pixel_text_audit WHERE outcome = 'redacted' AND box_count > 0") >= 3)
        #expect(try world.count("SELECT count(*) FROM imaging.pixel_text_audit WHERE outcome = 'clean' AND box_count = 0") >= 1)
        #expect(try world.count("""
            SELECT count(*) FROM imaging.pixel_text_audit
            WHERE box_count <> jsonb_array_length(boxes)
               OR box_count <> (SELECT coalesce(sum(value::int), 0) FROM jsonb_each_text(categories))
            """) == 0)
        let categories = try psql(world.databaseURL, """
            SELECT string_agg(DISTINCT c, ',' ORDER BY c) FROM imaging.pixel_text_audit, jsonb_object_keys(categories) c
            """)
        #expect(!categories.isEmpty && categories.split(separator: ",").allSatisfy {
            ["name", "id", "date", "accession", "institution", "other", "pattern", "text"].contains(String($0))
        }, "\(categories)")
        // Never the text: no planted string (identifying or not, 3+ characters) anywhere in the table.
        let table = try psql(world.databaseURL, "SELECT string_agg(row_to_json(a)::text, ' ') FROM imaging.pixel_text_audit a").uppercased()
        let planted = Set(manifest.files.flatMap { $0.planted.map { $0.text.uppercased() } }.filter { $0.count >= 3 })
        #expect(!planted.isEmpty)
        #expect(planted.filter { table.contains($0) }.isEmpty)
    }
}
