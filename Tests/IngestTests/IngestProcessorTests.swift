// Tests of IngestProcessor against a fresh database in the test PostgreSQL, a filesystem store and real
// sandbox children: a file that crashes its child costs one attempt per crash, stays in the drop folder
// until the attempts run out and is then quarantined with the crash as its reason (not
// `attempts_exhausted`); a good file is catalogued with nothing counted against it.
import Catalog
import Foundation
@testable import Ingest
import Logging
import ObjectStorage
import Testing

@Suite(.serialized) struct IngestProcessorTests {
    static var ready: Bool { DaemonEndToEndTests.ready }

    static func corpusFile(_ name: String) -> String? {
        let corpus = DaemonEndToEndTests.corpus
        return [corpus + "/pydicom/" + name, corpus + "/" + name].first { FileManager.default.fileExists(atPath: $0) }
    }

    @Test(.enabled(if: ready, "needs DICOM_ETL_TEST_DATABASE_URL and the corpus"))
    func aCrashingFileCostsOneAttemptPerCrashThenIsQuarantinedWithTheCrashAsReason() async throws {
        let source = try #require(Self.corpusFile("CT_small.dcm"))
        let world = try DaemonEndToEndTests.World()
        defer { world.cleanUp() }
        let root = DaemonEndToEndTests.packageRoot.path
        let pool = SandboxPool(command: testWorkerCommand(), size: 1, timeout: .seconds(60), logger: testLogger)
        try await Catalog.withRunningClient(try DatabaseConfiguration.parse(world.databaseURL), logger: testLogger) { client in
            let catalog = Catalog(client: client, logger: testLogger)
            try await catalog.migrate()
            let processor = IngestProcessor(
                catalog: catalog, store: try FilesystemObjectStore(root: URL(fileURLWithPath: world.data + "/objects")), sandbox: pool,
                inputs: .init(routesFile: root + "/etl/routes.yaml", profileFile: root + "/etl/deidentify/basic.yaml", keyFile: world.key,
                              recipesDirectory: root + "/etl/normalize"),
                scratchRoot: world.data + "/scratch", owner: "test", lease: .seconds(60), maxAttempts: 3, logger: testLogger)
            let crash = world.drop + "/crash.dcm", good = world.drop + "/good.dcm"
            try FileManager.default.copyItem(atPath: source, toPath: good)
            try Data(contentsOf: URL(fileURLWithPath: source)).dropLast(7).write(to: URL(fileURLWithPath: crash))

            for attempt in 1...2 {
                await #expect(throws: IngestProcessor.TransientFailure.self, "crash \(attempt): left for a retry") {
                    _ = try await processor.process(makeFile(crash, root: world.drop))
                }
                #expect(try world.count("SELECT attempts FROM ingest.source_files WHERE path LIKE '%/crash.dcm'") == attempt)
                #expect(try DaemonEndToEndTests.psql(world.databaseURL, "SELECT state || ' ' || error_reason FROM ingest.source_files WHERE path LIKE '%/crash.dcm'")
                    == "failed process_crashed")
            }
            let outcome = try await processor.process(makeFile(crash, root: world.drop))
            #expect(outcome == .rejected(PipelineFailure(stage: .sandbox, reason: "process_crashed")))
            #expect(try DaemonEndToEndTests.psql(world.databaseURL, "SELECT state || ' ' || error_reason || ' ' || attempts || ' ' || claims || ' ' || interruptions FROM ingest.source_files WHERE path LIKE '%/crash.dcm'")
                == "quarantined process_crashed 3 3 0")
            #expect(try world.count("SELECT count(*) FROM ingest.quarantine WHERE reason = 'process_crashed'") == 1)

            // The good file goes through on its first claim; nothing is counted against it.
            #expect(try await processor.process(makeFile(good, root: world.drop)) == .ingested)
            #expect(try DaemonEndToEndTests.psql(world.databaseURL, "SELECT state || ' ' || attempts || ' ' || claims FROM ingest.source_files WHERE path LIKE '%/good.dcm'")
                == "catalogued 0 1")
            #expect(try world.count("SELECT count(*) FROM imaging.instances") == 1)
        }
        await pool.shutdown()
    }
}
