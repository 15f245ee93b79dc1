// Network intake end to end: the built `dicom-etl run` with its Storage SCP on, DCMTK's storescu sending
// corpus files over 4 associations (TCP_NODELAY=1). Every instance answered Success must end catalogued,
// quarantined or a duplicate exactly once in the ledger, with its source in ingest.received_files; a daemon
// SIGKILLed mid-association and restarted leaves every acknowledged instance catalogued once and nothing
// half-written.
#if canImport(Glibc)
import Glibc
#endif
import DICOM
import Foundation
import TestSupport
import Testing

@Suite(.serialized) struct NetworkIntakeTests {
    typealias E2E = DaemonEndToEndTests
    static var ready: Bool { E2E.ready && FileManager.default.fileExists(atPath: "/usr/bin/storescu") }

    /// Corpus files storescu can send: Part-10 files of a storage SOP class, one per SOP Instance UID.
    static func sendable() -> [(path: String, option: String?)] {
        var seen = Set<String>()
        return E2E.subset().map(\.1).sorted().compactMap { path in
            guard let bytes = FileManager.default.contents(atPath: path), let file = try? DicomFile.open(bytes: Array(bytes)),
                  file.hasFileMeta, let sopClass = file.dataset.string(.sopClassUID), sopClass.hasPrefix("1.2.840.10008.5.1.4.1.1."),
                  let instance = file.dataset.string(.sopInstanceUID), !seen.contains(instance),
                  let syntax = file.metaInformation.string(.transferSyntaxUID), let option = storescuOption(transferSyntax: syntax)
            else { return nil }
            seen.insert(instance)
            return (path, option)
        }
    }

    static func environment(port: Int) -> [String: String] {
        ["DICOM_ETL_DICOM_PORT": String(port), "DICOM_ETL_DICOM_HOST": "127.0.0.1", "DICOM_ETL_DICOM_ALLOWED_PEERS": "STORESCU@127.0.0.1",
         "DICOM_ETL_INTAKE_MIN_FREE_BYTES": "0"]
    }

    static func waitForSCP(port: Int, daemon: Process) async throws {
        for _ in 0..<300 where daemon.isRunning {
            if try storescu(port: port, files: [], echo: true).status == 0 { return }
            try await Task.sleep(for: .milliseconds(200))
        }
        Issue.record("the Storage SCP did not come up")
    }

    /// Runs storescu (or echoscu); returns its status and how many instances were answered Success.
    static func storescu(port: Int, files: [String], option: String? = nil, echo: Bool = false) throws -> (status: Int32, acknowledged: Int) {
        var environment = ProcessInfo.processInfo.environment
        environment["TCP_NODELAY"] = "1"
        let (status, output) = try runInterleaved(
            echo ? "/usr/bin/echoscu" : "/usr/bin/storescu",
            ["-v", "-aet", "STORESCU", "-aec", "DICOM_ETL"] + (echo ? [] : ["-R"]) + (option.map { [$0] } ?? []) + ["127.0.0.1", String(port)] + files,
            environment: environment)
        return (status, output.components(separatedBy: "Received Store Response (Success)").count - 1)
    }

    /// storescu on 4 associations at once, files dealt round-robin; total acknowledged.
    static func sendOverFour(port: Int, files: [(path: String, option: String?)]) async throws -> (acknowledged: Int, failures: Int) {
        try await withThrowingTaskGroup(of: (Int32, Int).self) { group in
            for lane in 0..<4 {
                let mine = files.enumerated().filter { $0.offset % 4 == lane }.map(\.element)
                group.addTask {
                    var status: Int32 = 0, acknowledged = 0
                    for (option, group) in Dictionary(grouping: mine, by: \.option) {
                        let result = try storescu(port: port, files: group.map(\.path), option: option)
                        if result.status != 0 { status = result.status }
                        acknowledged += result.acknowledged
                    }
                    return (status, acknowledged)
                }
            }
            var acknowledged = 0, failures = 0
            for try await (status, count) in group {
                acknowledged += count
                if status != 0 { failures += 1 }
            }
            return (acknowledged, failures)
        }
    }

    /// Ledger rows of received files: (received files, rows in a final state, rows per file at most, files without a row).
    static func ledger(_ world: E2E.World) throws -> (received: Int, final: Int, maxRows: Int, unclaimed: Int) {
        let received = try world.count("SELECT count(*) FROM ingest.received_files")
        let final = try world.count("""
            SELECT count(*) FROM ingest.source_files WHERE path LIKE '%/network/%' AND state IN ('catalogued', 'quarantined', 'duplicate')
            """)
        let maxRows = try world.count("""
            SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM ingest.received_sources GROUP BY file_name) AS rows
            """)
        let unclaimed = try world.count("SELECT count(*) FROM ingest.received_sources WHERE source_file_id IS NULL")
        return (received, final, maxRows, unclaimed)
    }

    @Test(.enabled(if: ready)) func storescuInstancesAreCataloguedOnce() async throws {
        let files = Self.sendable()
        try #require(files.count >= 20)
        let world = try E2E.World()
        defer { world.cleanUp() }
        let port = try freeLocalPort()
        let daemon = try E2E.startDaemon(world, environment: Self.environment(port: port))
        defer { E2E.stop(daemon) }
        try await Self.waitForSCP(port: port, daemon: daemon)
        let start = ContinuousClock.now
        let (acknowledged, failures) = try await Self.sendOverFour(port: port, files: files)
        let sent = ContinuousClock.now - start
        #expect(failures == 0)
        #expect(acknowledged == files.count)
        try await E2E.waitUntilSettled(world, daemon: daemon)
        let ledger = try Self.ledger(world)
        print("storescu ×4 → dicom-etl: \(acknowledged) of \(files.count) acknowledged in \(sent); ledger \(ledger)")
        #expect(ledger.received == acknowledged)
        #expect(ledger.final == acknowledged)
        #expect(ledger.maxRows == 1)
        #expect(ledger.unclaimed == 0)
        #expect(try world.count("SELECT count(*) FROM ingest.received_files WHERE sender = 'STORESCU' AND peer_address = '127.0.0.1'") == acknowledged)
        #expect(try world.count("SELECT count(*) FROM ingest.source_files WHERE path LIKE '%/network/%' AND state = 'catalogued'") > 0)
        #expect(!world.files(in: "network").contains { $0.hasPrefix(".") })
    }

    @Test(.enabled(if: ready)) func killedMidAssociationKeepsEveryAcknowledgedInstance() async throws {
        let files = Self.sendable()
        try #require(files.count >= 20)
        let world = try E2E.World()
        defer { world.cleanUp() }
        let port = try freeLocalPort()
        var daemon = try E2E.startDaemon(world, environment: Self.environment(port: port))
        try await Self.waitForSCP(port: port, daemon: daemon)
        // Send the files six times over (later copies are duplicates) so the kill lands mid-association.
        let sending = Task { try await Self.sendOverFour(port: port, files: Array(repeating: files, count: 6).flatMap { $0 }) }
        // Killed once a sixth of the instances are in (received, or already processed or quarantined).
        let landed = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < landed {
            let arrived = ["network", "processed/network", "quarantine/network"].map { world.files(in: $0).count }.reduce(0, +)
            if arrived >= files.count { break }
            try await Task.sleep(for: .milliseconds(10))
        }
        kill(daemon.processIdentifier, SIGKILL)
        daemon.waitUntilExit()
        let (acknowledged, _) = try await sending.value
        daemon = try E2E.startDaemon(world, environment: Self.environment(port: port))
        defer { E2E.stop(daemon) }
        try await Self.waitForSCP(port: port, daemon: daemon)
        try await E2E.waitUntilSettled(world, daemon: daemon)
        let ledger = try Self.ledger(world)
        print("SIGKILL mid-association: \(acknowledged) acknowledged before the kill; ledger \(ledger)")
        #expect(acknowledged > 0)
        #expect(acknowledged < 6 * files.count, "the kill landed after the last instance")
        // Durable before acknowledged: at least every acknowledged instance is in the ledger, once, in a final state.
        #expect(ledger.final >= acknowledged)
        #expect(ledger.maxRows == 1)
        // A source recorded just before the kill whose file was never renamed in (at most one per association).
        #expect(ledger.received - ledger.final == ledger.unclaimed)
        #expect(ledger.unclaimed <= 4)
        #expect(try world.count("SELECT count(*) FROM ingest.source_files WHERE state = 'processing'") == 0)
        #expect(!world.files(in: "network").contains { $0.contains("/.") || $0.hasPrefix(".") })
    }
}
