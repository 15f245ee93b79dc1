// Tests of the "process" sandbox job: routing attributes of real corpus files, typed parse failures
// with their stage, and the file that crashes DCMTK's tools failing typed inside a real child.
import Foundation
@testable import Ingest
import Sandbox
import TestSupport
import Testing

@Suite struct ProcessJobTests {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let routesFile = packageRoot.appendingPathComponent("etl/routes.yaml").path
    static let corpus = TestEnvironment.corpus

    /// A corpus file by name, wherever the corpus keeps it (the shared corpus or pydicom's test files).
    static func corpusFile(_ name: String) -> String? { TestEnvironment.corpusFile(named: name) }

    static func request(_ path: String) -> ProcessRequest {
        ProcessRequest(sourcePath: path, routesFile: routesFile, stagingPrefix: FileManager.default.temporaryDirectory.path + "/process-job-test")
    }

    @Test(.enabled(if: corpusFile("CT_small.dcm") != nil)) func ctSliceIsReadAndTakesNoRoute() throws {
        let result = ProcessJob.run(Self.request(try #require(Self.corpusFile("CT_small.dcm"))))
        #expect(result.failure == nil)
        #expect(result.modality == "CT")
        #expect(result.routes.isEmpty)
        #expect(result.hasPixelData)
        #expect(result.transferSyntaxUID == "1.2.840.10008.1.2.1")
    }

    @Test(.enabled(if: corpusFile("MR_truncated.dcm") != nil)) func truncatedFileFailsAtParseOrLater() throws {
        let result = ProcessJob.run(Self.request(try #require(Self.corpusFile("MR_truncated.dcm"))))
        // DCMTK opens a file whose pixel data is cut short; the parse itself must not crash.
        if let failure = result.failure { #expect(failure.stage == .parse) } else { #expect(result.modality == "MR") }
    }

    @Test func nonDICOMFileIsATypedParseFailure() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("notdicom-\(UUID().uuidString).txt").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(FileManager.default.createFile(atPath: path, contents: Data(String(repeating: "plain text\n", count: 50).utf8)))
        let result = ProcessJob.run(Self.request(path))
        #expect(result.failure?.stage == .parse)
        #expect(result.failure?.reason == "not_dicom")
    }

    @Test func aRequestCrossesTheWireWithEveryField() throws {
        let full = ProcessRequest(
            sourcePath: "/drop/a b/ü.dcm", routesFile: "/etc/routes.yaml", profileFile: "/etc/basic.yaml", keyFile: "/etc/key",
            recipesDirectory: "/etc/recipes", stagingPrefix: "/store/tmp/staging/7-1", sopInstanceUIDOverride: "2.25.1", startWriteback: true)
        #expect(try ProcessRequest(encoded: full.encoded) == full)
        let bare = ProcessRequest(sourcePath: "/drop/x", routesFile: "/r", stagingPrefix: "/s")
        #expect(try ProcessRequest(encoded: bare.encoded) == bare)
        #expect(try ProcessRequest(encoded: bare.encoded).startWriteback == false)
        #expect(throws: (any Error).self) { try ProcessRequest(encoded: Array(full.encoded.dropLast())) }
    }

    /// The catalogue's study date: a DA value that names a day of the Gregorian calendar, else nothing.
    @Test func studyDateIsKeptOnlyWhenItNamesARealDay() {
        for valid in ["20240229", "20000229", "19991231", "00010101", "99991231", "20230131"] { #expect(validDate(valid) == valid) }
        for invalid in [
            "20230229", "19000229", "20240230", "20240431", "20241301", "20240001", "20240100", "00000101", "2024011", "202401011",
            "2024-01-01", "2024 101", "２０２４０１０１", "",
        ] {
            #expect(validDate(invalid) == nil, "\(invalid)")
        }
        #expect(validDate(nil) == nil)
    }

    @Test func unreadableRoutesAreASandboxFailure() {
        let result = ProcessJob.run(ProcessRequest(sourcePath: "/nonexistent.dcm", routesFile: "/nonexistent/routes.yaml", stagingPrefix: "/tmp/x"))
        #expect(result.failure == PipelineFailure(stage: .sandbox, reason: "routes_unreadable"))
    }

    @Test(.enabled(if: corpusFile("2026-05-06-Deeply-Nested-Sequence.dcm") != nil, "needs the corpus file that crashes DCMTK"))
    func crashingCorpusFileFailsTypedInTheChildAndTheChildServesOn() async throws {
        let pool = SandboxPool(command: testWorkerCommand(), size: 1, timeout: .seconds(60), logger: testLogger)
        let nested = try #require(Self.corpusFile("2026-05-06-Deeply-Nested-Sequence.dcm"))
        let result = try await ProcessJob.run(Self.request(nested), in: pool)
        #expect(result.failure?.stage == .parse)
        #expect(result.failure?.reason == "nesting_too_deep")
        if let ct = Self.corpusFile("CT_small.dcm") {
            #expect(try await ProcessJob.run(Self.request(ct), in: pool).modality == "CT")
        }
        await pool.shutdown()
    }

    @Test func lostChildIsASandboxFailureNotATransientError() async throws {
        // A FIFO without a writer blocks the child's read until the pool's timeout kills it.
        let fifo = FileManager.default.temporaryDirectory.appendingPathComponent("fifo-\(UUID().uuidString.prefix(8))").path
        #expect(mkfifo(fifo, 0o600) == 0)
        defer { try? FileManager.default.removeItem(atPath: fifo) }
        let pool = SandboxPool(command: testWorkerCommand(), size: 1, timeout: .milliseconds(500), logger: testLogger)
        let result = try await ProcessJob.run(Self.request(fifo), in: pool)
        #expect(result.failure == PipelineFailure(stage: .sandbox, reason: SandboxError(.timedOut).reason))
        await pool.shutdown()
    }
}
