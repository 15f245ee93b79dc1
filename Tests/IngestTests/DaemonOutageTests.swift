// Outage: `dicom-etl run` as a child process (as in DaemonEndToEndTests) on a private PostgreSQL cluster
// this test starts itself (Catalog's EmbeddedPostgres under a temporary folder; the shared test cluster is
// never stopped). Mid-run the cluster is stopped for 30 s (`pg_ctl stop -m fast`), more files arrive, and
// it is started again: the daemon keeps running, /readyz reports not-ready meanwhile, and the end state
// equals a run of the same files without the outage: every file catalogued once or quarantined with its
// true reason (never `attempts_exhausted`), none left in the drop folder.
#if canImport(Glibc)
import Glibc
#endif
import Catalog
import Foundation
import TestSupport
import Testing

@Suite(.serialized) struct DaemonOutageTests {
    typealias E2E = DaemonEndToEndTests
    static let pgBin = ProcessInfo.processInfo.environment["DICOM_ETL_TEST_PG_BIN"] ?? "/usr/lib/postgresql/15/bin"
    static var ready: Bool { E2E.ready && FileManager.default.fileExists(atPath: pgBin + "/pg_ctl") }

    /// Quarantine reasons with their counts, as `reason=n` sorted.
    static func reasons(_ world: E2E.World) throws -> String {
        try psql(world.databaseURL, """
            SELECT coalesce(string_agg(r || '=' || n, ' ' ORDER BY r), '')
            FROM (SELECT error_reason r, count(*) n FROM ingest.source_files WHERE state = 'quarantined' AND error_reason <> 'uid_conflict'
                  GROUP BY 1) x
            """)
    }

    /// A TCP port free on the loopback interface right now.
    /// The HTTP status of GET /readyz (0 when nothing answers).
    static func readiness(port: Int) -> Int {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        process.arguments = ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", "http://127.0.0.1:\(port)/readyz"]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return 0 }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Int(String(decoding: data, as: UTF8.self)) ?? 0
    }

    @Test(.enabled(if: ready, "needs DICOM_ETL_TEST_DATABASE_URL, the corpus and PostgreSQL's binaries"), .timeLimit(.minutes(6)))
    func theDaemonWaitsOutADatabaseOutageAndEndsAsWithoutIt() async throws {
        let files = E2E.subset()
        let (before, during) = (Array(files.prefix(files.count / 2)), Array(files.dropFirst(files.count / 2)))

        // The reference: the same files, no outage (on the shared test PostgreSQL).
        let reference = try E2E.World()
        defer { reference.cleanUp() }
        let referenceDaemon = try E2E.startDaemon(reference)
        try reference.drop(files)
        try await E2E.waitUntilSettled(reference, daemon: referenceDaemon)
        E2E.stop(referenceDaemon)
        let expected = try E2E.counts(reference)
        let expectedReasons = try Self.reasons(reference)

        // The outage world: its own cluster under its own folder, reached through a unix socket.
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("outage-\(UUID().uuidString.prefix(8))").path
        let postgres = EmbeddedPostgres(configuration: EmbeddedPostgresConfiguration(root: root + "/pg", binDirectory: Self.pgBin))
        let database = try await postgres.start()
        let socket = try #require(database.unixSocketDirectory)
        let world = try E2E.World(databaseURL: "postgres://postgres@/dicom_etl?host=\(socket)&port=\(database.port)&sslmode=disable", root: root)
        var daemon: Process?
        do {
            let port = try freeLocalPort()
            let running = try E2E.startDaemon(world, opsPort: port, logFile: root + "/daemon.log")
            daemon = running
            // A few files go through first; the rest of the first half arrives and the cluster stops at once, with
            // files waiting and in flight.
            try world.drop(Array(before.prefix(10)))
            let deadline = ContinuousClock.now + .seconds(60)
            while ContinuousClock.now < deadline, (try? world.count("SELECT count(*) FROM ingest.source_files WHERE state <> 'processing'")) ?? 0 < 10 {
                try await Task.sleep(for: .milliseconds(50))
            }
            try world.drop(Array(before.dropFirst(10)))
            #expect(!world.files(in: "").isEmpty, "the outage must begin mid-run")
            try await postgres.stop()
            let stopped = ContinuousClock.now
            try world.drop(during)   // files keep arriving during the outage

            var statuses: Set<Int> = []
            var leftDuringOutage = Int.max
            while ContinuousClock.now < stopped + .seconds(30) {
                #expect(running.isRunning, "the daemon keeps running through the outage")
                statuses.insert(Self.readiness(port: port))
                leftDuringOutage = min(leftDuringOutage, world.files(in: "").count)
                try await Task.sleep(for: .seconds(1))
            }
            #expect(running.isRunning)
            #expect(statuses == [503], "/readyz reports not-ready throughout the outage: \(statuses.sorted())")
            #expect(leftDuringOutage >= during.count, "nothing leaves the drop folder while the database is down")

            try await postgres.start()
            let restarted = ContinuousClock.now
            try await E2E.waitUntilSettled(world, daemon: running)
            let resumed = ContinuousClock.now - restarted
            #expect(running.isRunning)
            #expect(await eventually(within: 30) { Self.readiness(port: port) == 200 }, "ready again after the outage")

            // The same end as without the outage.
            #expect(world.files(in: "").isEmpty)
            let processed = world.files(in: "processed")
            let quarantined = world.files(in: "quarantine").filter { !$0.hasSuffix(".reason.json") }
            #expect(processed.count + quarantined.count == files.count)
            let counts = try E2E.counts(world)
            let reasons = try Self.reasons(world)
            print("outage: 30 s without PostgreSQL, settled \(resumed) after its restart; \(counts); quarantined \(reasons)")
            #expect(counts == expected, "\(counts) vs \(expected)")
            #expect(reasons == expectedReasons)
            #expect(!reasons.contains("attempts_exhausted") && !reasons.contains("interrupted_repeatedly"))
            #expect(try world.count("SELECT count(*) FROM ingest.source_files WHERE attempts > 0 AND error_reason LIKE '%unavailable'") == 0)
            #expect(try world.count("SELECT count(*) FROM (SELECT 1 FROM ingest.source_files WHERE state = 'catalogued' GROUP BY sop_instance_uid, sha256 HAVING count(*) > 1) d") == 0)
            // How the outage met the pipeline (timing-dependent: requests may also just wait in the pool).
            let log = (try? String(contentsOfFile: root + "/daemon.log", encoding: .utf8)) ?? ""
            let pauses = log.split(separator: "\n").filter { $0.contains("pausing the pipeline") }.count
            let deferred = try world.count("SELECT count(*) FROM ingest.stage_events WHERE stage = 'deferred' OR detail = 'interrupted'")
            print("outage: the pipeline paused \(pauses) time(s); \(deferred) file(s) released or taken back after the outage")
            E2E.stop(running)
            try await postgres.stop()
            world.cleanUp()
        } catch {
            if let daemon { E2E.stop(daemon) }
            try? await postgres.stop()
            world.cleanUp()
            throw error
        }
    }
}
