// Tests of IngestProcessor against a fresh database in the test PostgreSQL, a filesystem store and real
// sandbox children: a file that crashes its child costs one attempt per crash and nothing to the other files
// of its batch, stays in the drop folder until the attempts run out and is then quarantined with the crash as
// its reason (not `attempts_exhausted`); a good file is catalogued with nothing counted against it.
import Catalog
import Foundation
@testable import Ingest
import Logging
import ObjectStorage
import Sandbox
import TestSupport
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
        let pool = SandboxPool(command: testWorkerCommand(), size: 1, timeout: .seconds(60), logger: testLogger)
        try await Catalog.withRunningClient(try DatabaseConfiguration.parse(world.databaseURL), logger: testLogger) { client in
            let catalog = Catalog(client: client, logger: testLogger)
            try await catalog.migrate()
            let store = try FilesystemObjectStore(root: URL(fileURLWithPath: world.data + "/objects"))
            let processor = try makeProcessor(world, catalog: catalog, store: store, sandbox: pool)
            let crash = world.drop + "/crash.dcm", good = world.drop + "/good.dcm"
            try FileManager.default.copyItem(atPath: source, toPath: good)
            try Data(contentsOf: URL(fileURLWithPath: source)).dropLast(7).write(to: URL(fileURLWithPath: crash))

            // One batch: the crash costs its own file one attempt; the good file beside it goes through.
            let first = try await processor.process([makeFile(crash, root: world.drop), makeFile(good, root: world.drop)])
            #expect(first == [.retry(reason: "process_crashed", soon: true), .ingested])
            #expect(try world.count("SELECT attempts FROM ingest.source_files WHERE path LIKE '%/crash.dcm'") == 1)
            #expect(try psql(world.databaseURL, "SELECT state || ' ' || attempts || ' ' || claims FROM ingest.source_files WHERE path LIKE '%/good.dcm'")
                == "catalogued 0 1")
            #expect(try world.count("SELECT count(*) FROM imaging.instances") == 1)

            let second = try await processor.process([makeFile(crash, root: world.drop)])
            #expect(second == [.retry(reason: "process_crashed", soon: true)])
            #expect(try psql(world.databaseURL, "SELECT state || ' ' || error_reason FROM ingest.source_files WHERE path LIKE '%/crash.dcm'")
                == "failed process_crashed")
            let third = try await processor.process([makeFile(crash, root: world.drop)])
            #expect(third == [.rejected(PipelineFailure(stage: .sandbox, reason: "process_crashed"))])
            #expect(try psql(world.databaseURL, "SELECT state || ' ' || error_reason || ' ' || attempts || ' ' || claims || ' ' || interruptions FROM ingest.source_files WHERE path LIKE '%/crash.dcm'")
                == "quarantined process_crashed 3 3 0")
            #expect(try world.count("SELECT count(*) FROM ingest.quarantine WHERE reason = 'process_crashed'") == 1)
            // The good file's objects, written once, by rename from the staging folder: nothing left there.
            #expect(try world.count("SELECT count(*) FROM imaging.instances WHERE file_key LIKE 'dicom/%.dcm' AND content_sha256 IS NOT NULL") == 1)
            #expect(try FileManager.default.contentsOfDirectory(atPath: try #require(try store.stagingDirectory(named: "test"))).isEmpty)
        }
        await pool.shutdown()
    }
}
