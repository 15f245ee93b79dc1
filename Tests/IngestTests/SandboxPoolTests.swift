// Tests of the sandbox pool with a real child executable (sandbox-test-worker) whose jobs echo,
// fail, crash or hang on purpose.
#if canImport(Glibc)
import Glibc
#endif
import Foundation
@testable import Ingest
import Sandbox
import TestSupport
import Testing

func testWorkerCommand() -> SandboxCommand {
    let testBinary = SandboxCommand.currentExecutable(arguments: []).executable
    var directory = URL(fileURLWithPath: testBinary).deletingLastPathComponent()
    // On Linux the test binary sits in the build folder; on macOS inside the .xctest bundle.
    if directory.path.contains(".xctest") { directory = directory.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent() }
    return SandboxCommand(executable: directory.appendingPathComponent("sandbox-test-worker").path, arguments: [])
}

@Suite(.serialized) struct SandboxPoolTests {
    @Test func jobsRunInLongLivedChildren() async throws {
        let (metrics, _) = makeMetrics()
        let pool = SandboxPool(command: testWorkerCommand(), size: 1, timeout: .seconds(30), events: metrics.sandboxEvents, logger: testLogger)
        let payload = Array((0..<100_000).map { UInt8($0 % 251) })
        #expect(try await pool.run(kind: "echo", payload: payload) == payload)
        let first = try await pool.run(kind: "pid", payload: [])
        let second = try await pool.run(kind: "pid", payload: [])
        #expect(first == second)   // the same child serves every job
        #expect(String(decoding: first, as: UTF8.self) != String(getpid()))
        #expect(try await pool.run(kind: "print", payload: [1, 2, 3]) == [1, 2, 3])   // stray stdout is harmless
        await pool.shutdown()
        await #expect(throws: SandboxError(.shutDown)) { try await pool.run(kind: "echo", payload: []) }
    }

    @Test func childrenGetNoneOfTheDaemonsCredentials() async throws {
        // Variables of the kinds the daemon's credentials come in, set in this (the parent) process.
        let secrets = ["PG_SANDBOX_TEST_PASSWORD", "AWS_SANDBOX_TEST_SECRET", "DICOM_ETL_DATABASE_PASSWORD_FILE"]
        let harmless = "SANDBOX_TEST_HARMLESS"
        for name in secrets + [harmless] where getenv(name) == nil { setenv(name, "value", 1) }
        defer { for name in secrets + [harmless] { unsetenv(name) } }
        let pool = SandboxPool(command: testWorkerCommand(), size: 1, timeout: .seconds(30), logger: testLogger)
        let names = Set(String(decoding: try await pool.run(kind: "environment", payload: []), as: UTF8.self).split(separator: "\n").map(String.init))
        await pool.shutdown()
        #expect(names.contains(harmless))
        #expect(names.isDisjoint(with: secrets))
        #expect(names.contains("SWIFT_BACKTRACE"))
    }

    @Test func handlerErrorsComeBackTyped() async throws {
        let pool = SandboxPool(command: testWorkerCommand(), size: 1, timeout: .seconds(30), logger: testLogger)
        defer { Task { await pool.shutdown() } }
        let before = try await pool.run(kind: "pid", payload: [])
        await #expect(throws: SandboxError(.jobFailed, jobReason: "test_reason")) { try await pool.run(kind: "fail", payload: []) }
        await #expect(throws: SandboxError(.jobFailed, jobReason: "unknown_job_kind")) { try await pool.run(kind: "nope", payload: []) }
        #expect(try await pool.run(kind: "pid", payload: []) == before)   // a failed job does not cost the child
        #expect(SandboxError(.jobFailed, jobReason: "test_reason").reason == "test_reason")
    }

    @Test func crashingChildFailsTheJobAndIsReplaced() async throws {
        let (metrics, registry) = makeMetrics()
        let pool = SandboxPool(command: testWorkerCommand(), size: 1, timeout: .seconds(30), events: metrics.sandboxEvents, logger: testLogger)
        defer { Task { await pool.shutdown() } }
        let before = try await pool.run(kind: "pid", payload: [])
        await #expect(throws: SandboxError(.processCrashed, signal: SIGSEGV)) { try await pool.run(kind: "segfault", payload: []) }
        let after = try await pool.run(kind: "pid", payload: [])
        #expect(after != before)
        await #expect(throws: SandboxError(.processCrashed, signal: SIGABRT)) { try await pool.run(kind: "abort", payload: []) }
        #expect(try await pool.run(kind: "echo", payload: [42]) == [42])
        #expect(SandboxError(.processCrashed).reason == "process_crashed")
        let text = registry.emitToString()
        #expect(text.contains(#"dicom_etl_sandbox_crashes_total{reason="process_crashed"} 2"#))
        #expect(text.contains("dicom_etl_sandbox_restarts_total 2"))
    }

    @Test func hangingJobIsKilledAtItsTimeout() async throws {
        let pool = SandboxPool(command: testWorkerCommand(), size: 1, timeout: .seconds(30), logger: testLogger)
        defer { Task { await pool.shutdown() } }
        let before = try await pool.run(kind: "pid", payload: [])
        await #expect(throws: SandboxError(.timedOut)) { try await pool.run(kind: "hang", payload: [], timeout: .milliseconds(300)) }
        let after = try await pool.run(kind: "pid", payload: [])
        #expect(after != before)
        // The killed child is gone (reaped).
        #expect(kill(Int32(String(decoding: before, as: UTF8.self))!, 0) != 0)
    }

    @Test func jobsQueueForAFreeChild() async throws {
        let pool = SandboxPool(command: testWorkerCommand(), size: 2, timeout: .seconds(30), logger: testLogger)
        defer { Task { await pool.shutdown() } }
        let results = try await withThrowingTaskGroup(of: [UInt8].self) { group in
            for index in 0..<20 { group.addTask { try await pool.run(kind: "echo", payload: [UInt8(index)]) } }
            var all: [UInt8] = []
            for try await result in group { all += result }
            return all
        }
        #expect(results.sorted() == (0..<20).map(UInt8.init))
        #expect(pool.childProcessIDs.count == 2)
    }

    static let deeplyNested: String? = {
        let path = TestEnvironment.corpus + "/orthanc-tests/2026-05-06-Deeply-Nested-Sequence.dcm"
        return FileManager.default.fileExists(atPath: path) ? path : nil
    }()

    @Test(.enabled(if: deeplyNested != nil, "needs the corpus file that crashes DCMTK"))
    func dcmtkCrashOnAHostileFileCostsOnlyTheJob() async throws {
        let path = try #require(Self.deeplyNested)
        let pool = SandboxPool(command: testWorkerCommand(), size: 1, timeout: .seconds(60), logger: testLogger)
        defer { Task { await pool.shutdown() } }
        // Guarded (the DICOM layer's nesting limit): a typed error, the child survives.
        let before = try await pool.run(kind: "pid", payload: [])
        await #expect(throws: SandboxError(.jobFailed, jobReason: "nesting_too_deep")) {
            try await pool.run(kind: "parse", payload: Array(path.utf8))
        }
        #expect(try await pool.run(kind: "pid", payload: []) == before)
        // Unguarded: DCMTK itself crashes; only the child dies, the job fails typed, the next job runs.
        do {
            _ = try await pool.run(kind: "parse-unguarded", payload: Array(path.utf8))
            Issue.record("DCMTK parsed the deeply nested file without the guard")
        } catch {
            #expect(error.code == .processCrashed)
        }
        #expect(try await pool.run(kind: "echo", payload: [1]) == [1])
    }

    @Test func aBatchStreamsItsResultsAndACrashCostsOnlyTheJobInHand() async throws {
        let (metrics, registry) = makeMetrics()
        let pool = SandboxPool(command: testWorkerCommand(), size: 2, timeout: .seconds(30), events: metrics.sandboxEvents, logger: testLogger)
        defer { Task { await pool.shutdown() } }
        // 40 jobs, one of which takes its child down: it alone fails; every other answer comes back once,
        // those sent with it to the dead child run again on its replacement.
        let payloads: [[UInt8]] = (0..<40).map { $0 == 17 ? Array("crash".utf8) : [UInt8($0)] }
        var answers: [Int: Result<[UInt8], SandboxError>] = [:]
        for await answer in pool.run(kind: "echo-or-crash", payloads: payloads) {
            #expect(answers[answer.index] == nil, "an answer came twice")
            answers[answer.index] = answer.result
        }
        #expect(answers.count == 40)
        for index in 0..<40 where index != 17 { #expect(try answers[index]?.get() == [UInt8(index)]) }
        #expect(throws: SandboxError(.processCrashed, signal: SIGABRT)) { try answers[17]?.get() }
        #expect(registry.emitToString().contains(#"dicom_etl_sandbox_crashes_total{reason="process_crashed"} 1"#))
    }

    @Test func aHangingJobInABatchTimesOutAloneAndTheRestGoOn() async throws {
        let pool = SandboxPool(command: testWorkerCommand(), size: 1, timeout: .milliseconds(400), logger: testLogger)
        defer { Task { await pool.shutdown() } }
        let payloads: [[UInt8]] = [[1], [2], Array("hang".utf8), [4], [5]]
        var answers: [Int: Result<[UInt8], SandboxError>] = [:]
        for await answer in pool.run(kind: "echo-or-hang", payloads: payloads) { answers[answer.index] = answer.result }
        #expect(answers.count == 5)
        #expect(throws: SandboxError(.timedOut)) { try answers[2]?.get() }
        for index in [0, 1, 3, 4] { #expect(try answers[index]?.get() == payloads[index]) }
    }

    @Test func missingExecutableIsASpawnError() async {
        let pool = SandboxPool(command: SandboxCommand(executable: "/nonexistent/worker", arguments: []), size: 1, timeout: .seconds(5), logger: testLogger)
        await #expect(throws: SandboxError.self) { try await pool.run(kind: "echo", payload: []) }
    }
}
