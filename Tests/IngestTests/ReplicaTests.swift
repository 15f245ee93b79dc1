// Replicas: two `dicom-etl run` processes on one drop folder, one database and one object store (each
// with its own data dir, as two pods would be) ingest the corpus subset of DaemonEndToEndTests plus
// byte-identical copies under other names. The outcome must equal a single daemon's on the same files:
// every file in processed/ or quarantine/ exactly once, claimed once, counted once across both
// daemons' /metrics, and no duplicate instances, objects or jobs. Both daemons must have done work.
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Ingest
import TestSupport
import Testing

@Suite(.serialized) struct ReplicaTests {
    typealias E2E = DaemonEndToEndTests

    /// A port free at the time of asking (the daemon binds it a moment later).
    struct Daemon {
        let process: Process
        let opsPort: Int
    }

    /// Starts `dicom-etl run` on the world's drop folder and database with its own data dir and the
    /// shared filesystem store `storeRoot`.
    static func startDaemon(_ world: E2E.World, dataDirectory: String, storeRoot: String) throws -> Daemon {
        try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true)
        let port = try freeLocalPort()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: E2E.daemonPath)
        process.arguments = [
            "run", "--drop-folder", world.drop, "--data-dir", dataDirectory, "--database-url", world.databaseURL,
            "--storage-url", "file://" + storeRoot, "--key-file", world.key,
            "--profile", E2E.packageRoot.path + "/etl/deidentify/basic.yaml",
            "--routes-file", E2E.packageRoot.path + "/etl/routes.yaml", "--stable-file-seconds", "0.3",
            "--rescan-interval-seconds", "1", "--series-quiet-seconds", "1", "--ops-port", String(port),
            "--concurrency", "2", "--log-level", "warning",
        ]
        var environment = ProcessInfo.processInfo.environment
        environment["DICOM_ETL_RECIPES"] = E2E.packageRoot.path + "/etl/normalize"
        environment["DICOM_ETL_STORAGE_URL"] = nil
        process.environment = environment
        process.standardOutput = FileHandle.nullDevice
        _ = FileManager.default.createFile(atPath: dataDirectory + "/daemon.log", contents: nil)
        process.standardError = FileHandle(forWritingAtPath: dataDirectory + "/daemon.log")
        try process.run()
        return Daemon(process: process, opsPort: port)
    }

    /// Waits until the drop folder is empty and no series is open, while every daemon runs.
    static func waitUntilSettled(_ world: E2E.World, daemons: [Process], timeout: Duration = .seconds(240)) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if daemons.contains(where: { !$0.isRunning }) { return }
            if world.files(in: "").isEmpty, (try? world.count("SELECT count(*) FROM imaging.series WHERE state = 'open'")) == 0,
               (try? world.count("SELECT count(*) FROM ingest.source_files WHERE state IN ('discovered', 'processing', 'failed')")) == 0 {
                return
            }
            try await Task.sleep(for: .milliseconds(300))
        }
    }

    /// One daemon's Prometheus text from /metrics (through curl, as a scraper would fetch it).
    static func scrape(_ port: Int) throws -> String {
        let result = try runCommand("/usr/bin/env", ["curl", "-sf", "--max-time", "5", "http://127.0.0.1:\(port)/metrics"])
        guard result.status == 0 else { throw POSIXError(.ECONNREFUSED) }
        return result.output
    }

    /// The sum of every sample of a metric (all label sets).
    static func sample(_ text: String, _ name: String) -> Double {
        text.split(separator: "\n").reduce(0) { total, line in
            guard line.hasPrefix(name + " ") || line.hasPrefix(name + "{"), let value = line.split(separator: " ").last.flatMap({ Double($0) })
            else { return total }
            return total + value
        }
    }

    /// Peak resident memory of a process in MiB (VmHWM), while it runs.
    static func peakRSS(_ pid: Int32) -> Double? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
              let kilobytes = Double(line.split(separator: " ").dropFirst().first ?? "")
        else { return nil }
        return kilobytes / 1024
    }

    /// The end of a run, independent of arrival order: files that repeat a catalogued SOP Instance UID are
    /// duplicates or `uid_conflict`s by which came first, and are counted with the duplicates.
    struct Outcome: Equatable, CustomStringConvertible {
        var instances, series, jobs, done, quarantined, objects: Int
        var description: String {
            "instances=\(instances) series=\(series) jobs=\(jobs) catalogued+duplicate+uid_conflict=\(done) other quarantined=\(quarantined) objects=\(objects)"
        }
    }

    static func outcome(_ world: E2E.World, storeRoot: String) throws -> Outcome {
        let objects = regularFileCount(under: storeRoot + "/data")
        return Outcome(
            instances: try world.count("SELECT count(*) FROM imaging.instances"),
            series: try world.count("SELECT count(*) FROM imaging.series"),
            jobs: try world.count("SELECT count(*) FROM inference.jobs"),
            done: try world.count("SELECT count(*) FROM ingest.source_files WHERE state IN ('catalogued', 'duplicate') OR error_reason = 'uid_conflict'"),
            quarantined: try world.count("SELECT count(*) FROM ingest.source_files WHERE state = 'quarantined' AND error_reason <> 'uid_conflict'"),
            objects: objects)
    }

    /// The subset, plus byte-identical copies of a few files under other names (duplicates across replicas).
    static func files() -> [(String, String)] {
        let subset = E2E.subset()
        let copies = subset.filter { !$0.0.hasPrefix("nested") }.prefix(8).map { ("copy-" + $0.0, $0.1) }
        return (subset + copies).shuffled()
    }

    @Test(.enabled(if: E2E.ready, "needs DICOM_ETL_TEST_DATABASE_URL and the corpus"), .timeLimit(.minutes(8)))
    func twoDaemonsOnOneDropFolderIngestEachFileOnce() async throws {
        let files = Self.files()
        let names = Set(files.map(\.0))

        // The reference: one daemon on the same files.
        let single = try E2E.World()
        defer { single.cleanUp() }
        let singleStore = single.root + "/objects"
        let alone = try Self.startDaemon(single, dataDirectory: single.root + "/var-a", storeRoot: singleStore)
        defer { E2E.stop(alone.process) }
        try single.drop(files)
        try await Self.waitUntilSettled(single, daemons: [alone.process])
        #expect(alone.process.isRunning)
        let reference = try Self.outcome(single, storeRoot: singleStore)
        E2E.stop(alone.process)

        // Two replicas.
        let world = try E2E.World()
        defer { world.cleanUp() }
        let store = world.root + "/objects"
        let a = try Self.startDaemon(world, dataDirectory: world.root + "/var-a", storeRoot: store)
        defer { E2E.stop(a.process) }
        let b = try Self.startDaemon(world, dataDirectory: world.root + "/var-b", storeRoot: store)
        defer { E2E.stop(b.process) }
        // Both ready (migrated, serving) before the files arrive, so both see them.
        let ready = await eventually(within: 60) { (try? Self.scrape(a.opsPort)) != nil && (try? Self.scrape(b.opsPort)) != nil }
        #expect(ready)
        let started = ContinuousClock.now
        try world.drop(files)
        try await Self.waitUntilSettled(world, daemons: [a.process, b.process])
        let elapsed = ContinuousClock.now - started
        #expect(a.process.isRunning && b.process.isRunning, "both replicas keep running")

        // Every file exactly once in processed/ or quarantine/, none left.
        #expect(world.files(in: "").isEmpty)
        let processed = world.files(in: "processed")
        let quarantined = world.files(in: "quarantine").filter { !$0.hasSuffix(".reason.json") }
        #expect(processed.count + quarantined.count == files.count)
        #expect(Set(processed).union(quarantined) == names)
        #expect(Set(processed).isDisjoint(with: quarantined))

        // One ledger row per file, each claimed once, each terminal.
        #expect(try world.count("SELECT count(*) FROM ingest.source_files") == files.count)
        #expect(try world.count("SELECT count(*) FROM ingest.source_files WHERE state NOT IN ('catalogued', 'duplicate', 'quarantined')") == 0)
        let claimedTwice = try world.count("""
            SELECT count(*) FROM (SELECT source_file_id FROM ingest.stage_events WHERE stage = 'claim' AND to_state = 'processing'
                                  GROUP BY source_file_id HAVING count(*) > 1) x
            """)
        // What happened to such files, for the failure message: each one's events in order.
        let history = claimedTwice == 0 ? "" : (try? psql(world.databaseURL, """
            SELECT string_agg(e, E'\\n') FROM (
                SELECT source_file_id || ': ' || string_agg(stage || ' ' || COALESCE(from_state, '-') || '→' || COALESCE(to_state, '-')
                       || COALESCE(' (' || detail || ')', ''), ', ' ORDER BY at, id) AS e
                FROM ingest.stage_events WHERE source_file_id IN (
                    SELECT source_file_id FROM ingest.stage_events WHERE stage = 'claim' AND to_state = 'processing'
                    GROUP BY source_file_id HAVING count(*) > 1 LIMIT 5)
                GROUP BY source_file_id) x
            """)) ?? ""
        let warnings = ["var-a", "var-b"].map { (try? String(contentsOfFile: world.root + "/\($0)/daemon.log", encoding: .utf8)) ?? "" }
            .joined(separator: "\n").split(separator: "\n").filter { $0.contains("warning") || $0.contains("error") }.prefix(10)
        #expect(claimedTwice == 0, "\(claimedTwice) files were claimed by more than one worker:\n\(history)\n\(warnings.joined(separator: "\n"))")

        // No duplicate instances or jobs; the same outcome as one daemon, objects included.
        #expect(try world.count("SELECT count(*) FROM imaging.instances") ==
                (try world.count("SELECT count(DISTINCT sop_instance_uid) FROM ingest.source_files WHERE state = 'catalogued'")))
        #expect(try world.count("SELECT count(*) FROM (SELECT 1 FROM inference.jobs GROUP BY series_uid, model_name, series_revision HAVING count(*) > 1) d") == 0)
        let replicated = try Self.outcome(world, storeRoot: store)
        #expect(replicated == reference, "two replicas: \(replicated); one daemon: \(reference)")
        #expect(replicated.instances > 0)

        // Counted once across both daemons' metrics, and both did work.
        let metricsA = try Self.scrape(a.opsPort), metricsB = try Self.scrape(b.opsPort)
        let ingested = (Self.sample(metricsA, "dicom_etl_files_ingested_total"), Self.sample(metricsB, "dicom_etl_files_ingested_total"))
        let duplicates = Self.sample(metricsA, "dicom_etl_files_duplicate_total") + Self.sample(metricsB, "dicom_etl_files_duplicate_total")
        let rejected = (Self.sample(metricsA, "dicom_etl_files_quarantined_total"), Self.sample(metricsB, "dicom_etl_files_quarantined_total"))
        let catalogued = try world.count("SELECT count(*) FROM ingest.source_files WHERE state = 'catalogued'")
        let duplicateRows = try world.count("SELECT count(*) FROM ingest.source_files WHERE state = 'duplicate'")
        // Each outcome is counted once, by the replica that decided it (a replica that finds a file another
        // has just finished disposes of it without counting it again).
        #expect(Int(ingested.0 + ingested.1) == catalogued)
        #expect(Int(duplicates) == duplicateRows)
        #expect(Int(rejected.0 + rejected.1) == (try world.count("SELECT count(*) FROM ingest.source_files WHERE state = 'quarantined'")))
        // Stage latencies of the pipeline's steps, and the inference queue's depth, as the daemons publish them.
        for stage in ["claim", "sandbox", "store", "catalog", "dispose"] {
            #expect(Self.sample(metricsA + metricsB, "dicom_etl_stage_duration_seconds_count{stage=\"\(stage)\"}") > 0, "stage \(stage)")
        }
        let queued = Double(try world.count("SELECT count(*) FROM inference.jobs"))
        var published: [Double] = []
        for _ in 0..<20 {  // refreshed every 5 s and after each completion
            published = [try Self.scrape(a.opsPort), try Self.scrape(b.opsPort)].map { Self.sample($0, "dicom_etl_job_queue_depth") }
            if published.contains(queued) { break }
            try await Task.sleep(for: .milliseconds(500))
        }
        // (No job where the corpus is pydicom's wheel: none of its files is a routed chest radiograph.)
        #expect(published.contains(queued), "job queue depth: \(queued) jobs, published \(published)")
        #expect(ingested.0 + rejected.0 > 0 && ingested.1 + rejected.1 > 0,
                "both replicas took files: a \(ingested.0)+\(rejected.0), b \(ingested.1)+\(rejected.1)")
        let rss = [a, b].compactMap { Self.peakRSS($0.process.processIdentifier) }.map { String(format: "%.0f", $0) }
        print("replicas: \(files.count) files, 2 daemons settled in \(elapsed) (incl. the 1 s quiet period); "
              + "daemon a took \(Int(ingested.0 + rejected.0)), b \(Int(ingested.1 + rejected.1)); \(replicated); "
              + "peak RSS of each daemon process (MiB, sandbox helpers not included): \(rss.joined(separator: ", "))")
    }
}
