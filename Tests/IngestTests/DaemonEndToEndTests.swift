// End to end: the built `dicom-etl run` as a child process on a drop folder, with a fresh database in
// the test PostgreSQL (DICOM_ETL_TEST_DATABASE_URL), a filesystem store in a temporary data dir and
// real corpus files (DICOM_ETL_CORPUS). The subset is the corpus' pydicom folder (112 files: every
// transfer syntax family, truncated and odd files) plus the file that crashes DCMTK's tools and
// four chest radiographs (CR/DX, routed to the pneumonia model): ~11 s for three daemon runs on 2
// cores, where the whole corpus (324 files, larger images) would take minutes per run; every code path
// (each quarantine reason, routing, jobs, duplicates, crash recovery) is reached by the subset.
import Foundation
import Ingest
import TestSupport
import Testing

@Suite(.serialized) struct DaemonEndToEndTests {
    static let environment = ProcessInfo.processInfo.environment
    static let adminURL = environment["DICOM_ETL_TEST_DATABASE_URL"]
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let corpus = TestEnvironment.corpus
    static var daemonPath: String {
        URL(fileURLWithPath: testWorkerCommand().executable).deletingLastPathComponent().appendingPathComponent("dicom-etl").path
    }
    static var ready: Bool { adminURL != nil && FileManager.default.fileExists(atPath: corpus) }

    static let radiographs = [
        ("cr-chest.dcm", "dwv/gdcm-CR-MONO1-10-chest.dcm"), ("dx.dcm", "highdicom/dx_image.dcm"),
        ("cr-j2k.dcm", "pydicom-data/RG3_J2KI.dcm"), ("cr-jpeg.dcm", "torchxrayvision/Fake_MONOHR1.dcm"),
    ]

    /// The files dropped: relative name in the drop folder → source path.
    static func subset() -> [(String, String)] {
        let root = FileManager.default.fileExists(atPath: corpus + "/pydicom") ? corpus + "/pydicom" : corpus
        var files: [(String, String)] = []
        if let walker = FileManager.default.enumerator(atPath: root) {
            while let relative = walker.nextObject() as? String {
                if (walker.fileAttributes?[.type] as? FileAttributeType) == .typeRegular {
                    files.append((relative.replacingOccurrences(of: "/", with: "_"), (root as NSString).appendingPathComponent(relative)))
                }
            }
        }
        let nested = corpus + "/orthanc-tests/2026-05-06-Deeply-Nested-Sequence.dcm"
        if FileManager.default.fileExists(atPath: nested) { files.append(("nested.dcm", nested)) }
        // Chest radiographs (CR/DX) with pixels, so series are routed to the pneumonia model.
        for (name, relative) in radiographs where FileManager.default.fileExists(atPath: corpus + "/" + relative) {
            files.append((name, corpus + "/" + relative))
        }
        return files.shuffled()
    }

    /// A temporary world: drop folder, data dir, key, fresh database.
    struct World {
        let root: String
        let drop: String
        let data: String
        let key: String
        let databaseURL: String
        /// The database created in the test PostgreSQL (nil when the world brings its own cluster).
        let scratch: ScratchDatabase?

        /// A world whose database is a fresh one in the test PostgreSQL.
        init() throws {
            let scratch = try ScratchDatabase(prefix: "e2e")
            try self.init(databaseURL: scratch.url, scratch: scratch)
        }

        /// A world on a database of its own (e.g. a private cluster the test starts under `root`).
        init(databaseURL: String?, scratch: ScratchDatabase? = nil, root: String? = nil) throws {
            self.root = root ?? FileManager.default.temporaryDirectory.appendingPathComponent("e2e-\(UUID().uuidString.prefix(8))").path
            drop = self.root + "/drop"
            data = self.root + "/var"
            key = self.root + "/key"
            for folder in [drop, data] { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) }
            try Data((0..<48).map { _ in UInt8.random(in: 0x41...0x5A) }).write(to: URL(fileURLWithPath: key))
            try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: key)  // a key must be owner-only
            self.scratch = scratch
            self.databaseURL = databaseURL ?? ""
        }

        /// The same world on another database URL.
        func with(databaseURL: String) -> World {
            World(root: root, drop: drop, data: data, key: key, databaseURL: databaseURL, scratch: scratch)
        }

        private init(root: String, drop: String, data: String, key: String, databaseURL: String, scratch: ScratchDatabase?) {
            self.root = root
            self.drop = drop
            self.data = data
            self.key = key
            self.databaseURL = databaseURL
            self.scratch = scratch
        }

        func drop(_ files: [(String, String)]) throws {
            for (name, source) in files {
                // Written under a temporary name, then renamed: as a PACS export would appear.
                let part = drop + "/." + name + ".part"
                try FileManager.default.copyItem(atPath: source, toPath: part)
                try FileManager.default.moveItem(atPath: part, toPath: drop + "/" + name)
            }
        }

        func count(_ sql: String) throws -> Int {
            Int(try psql(databaseURL, sql)) ?? -1
        }

        /// Files under a folder of the drop folder ("" for the drop folder itself, outside its own subfolders).
        func files(in folder: String) -> [String] {
            let base = folder.isEmpty ? drop : drop + "/" + folder
            var names: [String] = []
            guard let walker = FileManager.default.enumerator(atPath: base) else { return [] }
            while let relative = walker.nextObject() as? String {
                if folder.isEmpty, relative == "processed" || relative == "quarantine" { walker.skipDescendants(); continue }
                if (walker.fileAttributes?[.type] as? FileAttributeType) == .typeRegular { names.append(relative) }
            }
            return names.sorted()
        }

        /// Every regular file under `folder` of the drop folder (recursively), relative to it.
        func names(in folder: String) -> [String] { files(in: folder) }

        func cleanUp() {
            scratch?.drop()
            try? FileManager.default.removeItem(atPath: root)
        }
    }

    /// Starts `dicom-etl run` on the world.
    /// - Parameters:
    ///   - opsPort: the port of /metrics, /healthz and /readyz (0: any free port).
    ///   - logFile: where the daemon's log goes (discarded when nil).
    static func startDaemon(_ world: World, opsPort: Int = 0, logFile: String? = nil, environment extra: [String: String] = [:]) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: daemonPath)
        process.arguments = [
            "run", "--drop-folder", world.drop, "--data-dir", world.data, "--database-url", world.databaseURL,
            "--key-file", world.key, "--profile", packageRoot.path + "/etl/deidentify/basic.yaml",
            "--routes-file", packageRoot.path + "/etl/routes.yaml", "--stable-file-seconds", "0.3",
            "--rescan-interval-seconds", "1", "--series-quiet-seconds", "1", "--ops-port", String(opsPort), "--concurrency", "2",
            "--log-level", "warning",
        ]
        var environment = ProcessInfo.processInfo.environment
        environment["DICOM_ETL_RECIPES"] = packageRoot.path + "/etl/normalize"
        environment["DICOM_ETL_STORAGE_URL"] = nil
        environment["DICOM_ETL_FAILPOINT"] = nil
        environment.merge(extra) { $1 }
        process.environment = environment
        process.standardOutput = FileHandle.nullDevice
        if let logFile {
            if !FileManager.default.fileExists(atPath: logFile) { _ = FileManager.default.createFile(atPath: logFile, contents: nil) }
            let handle = FileHandle(forWritingAtPath: logFile)
            handle?.seekToEndOfFile()
            process.standardError = handle
        } else {
            process.standardError = FileHandle(forWritingAtPath: "/dev/null")
        }
        try process.run()
        return process
    }

    /// Waits until the drop folder is empty and no series is still open (or the time runs out).
    static func waitUntilSettled(_ world: World, daemon: Process, timeout: Duration = .seconds(180)) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if !daemon.isRunning { return }
            if world.files(in: "").isEmpty, (try? world.count("SELECT count(*) FROM imaging.series WHERE state = 'open'")) == 0 {
                return
            }
            try await Task.sleep(for: .milliseconds(300))
        }
    }

    /// A fresh world with a daemon running on it, both stopped and removed once `body` returns or throws.
    static func withDaemon(_ body: (World, Process) async throws -> Void) async throws {
        let world = try World()
        defer { world.cleanUp() }
        let daemon = try startDaemon(world)
        defer { stop(daemon) }
        try await body(world, daemon)
    }

    /// Complete series routed to a model by etl/routes.yaml: CR/DX, chest or no body part.
    static func routedSeriesCount(_ world: World) throws -> Int {
        try world.count("""
            SELECT count(*) FROM imaging.series WHERE state = 'complete' AND upper(modality) IN ('CR', 'DX')
              AND (body_part IS NULL OR body_part = '' OR upper(body_part) IN ('CHEST', 'THORAX', 'LUNG'))
            """)
    }

    static func stop(_ daemon: Process) {
        guard daemon.isRunning else { return }
        daemon.terminate()
        daemon.waitUntilExit()
    }

    /// Runs `dicom-etl verify-deid` over the de-identified DICOM objects in the world's filesystem store,
    /// each paired (under the same name) with the processed source file it was made from.
    static func verifyDeidentification(_ world: World) throws -> (status: Int32, output: String) {
        let pairs = try psql(world.databaseURL, """
            SELECT f.id || '|' || f.path || '|' || regexp_replace(i.file_key, '\\.[0-9a-f]{16}\\.dcm$', '.' || left(f.sha256, 16) || '.dcm')
            FROM ingest.source_files f JOIN imaging.instances i ON i.sop_instance_uid = f.sop_instance_uid
            WHERE f.state = 'catalogued' ORDER BY f.id
            """).split(separator: "\n").map { $0.split(separator: "|", maxSplits: 2).map(String.init) }
        let originals = world.root + "/verify/originals", outputs = world.root + "/verify/outputs"
        for folder in [originals, outputs] { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) }
        for pair in pairs where pair.count == 3 {
            // The source moved from drop/NAME to drop/processed/NAME.
            let relative = String(pair[1].dropFirst(world.drop.count + 1))
            try FileManager.default.copyItem(atPath: world.drop + "/processed/" + relative, toPath: originals + "/\(pair[0]).dcm")
            try FileManager.default.copyItem(atPath: world.data + "/objects/data/" + pair[2], toPath: outputs + "/\(pair[0]).dcm")
        }
        let result = try runCommand(
            daemonPath, ["verify-deid", "--originals", originals, "--outputs", outputs, "--profile", packageRoot.path + "/etl/deidentify/basic.yaml"])
        return (result.status, result.output)
    }

    /// The lines of `dicom-etl status` for the world.
    static func status(_ world: World) throws -> [Substring] {
        try runCommand(daemonPath, ["status", "--drop-folder", world.drop, "--database-url", world.databaseURL]).output.split(separator: "\n")
    }

    /// What a run ends with, independent of the order files arrived in. Of several files with one SOP Instance UID,
    /// one is catalogued, and each later one is a duplicate (same content) or a `uid_conflict` (other content),
    /// depending on which came first: together they are `repeats`, apart from the other quarantined files.
    struct Counts: Equatable, CustomStringConvertible {
        var instances, series, jobs, catalogued, quarantined, repeats, objects: Int
        var description: String {
            "instances=\(instances) series=\(series) jobs=\(jobs) catalogued=\(catalogued) quarantined=\(quarantined) repeats=\(repeats) objects=\(objects)"
        }
    }

    static func counts(_ world: World) throws -> Counts {
        // The store's data/ folder (tmp/ holds writes a kill interrupted; they are not objects).
        let objects = regularFileCount(under: world.data + "/objects/data")
        return Counts(
            instances: try world.count("SELECT count(*) FROM imaging.instances"),
            series: try world.count("SELECT count(*) FROM imaging.series"),
            jobs: try world.count("SELECT count(*) FROM inference.jobs"),
            catalogued: try world.count("SELECT count(*) FROM ingest.source_files WHERE state = 'catalogued'"),
            quarantined: try world.count("SELECT count(*) FROM ingest.source_files WHERE state = 'quarantined' AND error_reason <> 'uid_conflict'"),
            repeats: try world.count("SELECT count(*) FROM ingest.source_files WHERE state = 'duplicate' OR error_reason = 'uid_conflict'"),
            objects: objects)
    }

    @Test(.enabled(if: ready, "needs DICOM_ETL_TEST_DATABASE_URL and the corpus"), .timeLimit(.minutes(6)))
    func dropFolderIsIngestedOnceRedropIsDuplicateAndKilledDaemonRecovers() async throws {
        let files = Self.subset()
        try await Self.withDaemon { world, daemon in
            let started = ContinuousClock.now
            try world.drop(files)
            try await Self.waitUntilSettled(world, daemon: daemon)
            let elapsed = ContinuousClock.now - started
            #expect(daemon.isRunning, "the daemon keeps running through every file, the DCMTK-crashing one included")

            // Every file went somewhere: processed/ or quarantine/ beside a reason file; none left.
            #expect(world.files(in: "").isEmpty)
            let processed = world.files(in: "processed")
            let quarantined = world.files(in: "quarantine").filter { !$0.hasSuffix(".reason.json") }
            let reasons = world.files(in: "quarantine").filter { $0.hasSuffix(".reason.json") }
            #expect(processed.count + quarantined.count == files.count)
            #expect(Set(reasons) == Set(quarantined.map { $0 + ".reason.json" }))
            if files.contains(where: { $0.0 == "nested.dcm" }) { #expect(quarantined.contains("nested.dcm")) }
            if files.contains(where: { $0.0 == "CT_small.dcm" }) { #expect(processed.contains("CT_small.dcm")) }

            // Catalogued once: each processed file is a catalogued (or duplicate) ledger row; every
            // instance row comes from a catalogued row; quarantined rows match quarantined files.
            let first = try Self.counts(world)
            print("quarantined by reason: " + (try psql(world.databaseURL, "SELECT string_agg(r || '=' || n, ' ') FROM (SELECT error_reason r, count(*) n FROM ingest.source_files WHERE state = 'quarantined' GROUP BY 1 ORDER BY 2 DESC) x")))
            print("end to end: \(files.count) files dropped, \(processed.count) processed, \(quarantined.count) quarantined in \(elapsed) (drop to settled, incl. the 1 s quiet period); \(first)")
            let duplicates = try world.count("SELECT count(*) FROM ingest.source_files WHERE state = 'duplicate'")
            #expect(first.catalogued + duplicates == processed.count)
            #expect(first.quarantined + (try world.count("SELECT count(*) FROM ingest.source_files WHERE error_reason = 'uid_conflict'")) == quarantined.count)
            #expect(first.instances == (try world.count("SELECT count(DISTINCT sop_instance_uid) FROM ingest.source_files WHERE state = 'catalogued'")))
            #expect(first.instances > 0)
            // A job per complete series routed to a model (CR/DX, chest or no body part), one per revision.
            let routed = try Self.routedSeriesCount(world)
            #expect(first.jobs == routed)
            if processed.contains(where: { name in Self.radiographs.contains { $0.0 == name } }) {
                #expect(first.jobs > 0, "a catalogued chest radiograph's series gets a job once complete")
                #expect(try world.count("SELECT count(*) FROM imaging.instances WHERE tensor_key IS NOT NULL") > 0)
                // Every recipe's tensor is catalogued; the instance row keeps the first recipe's.
                #expect(try world.count("SELECT count(*) FROM imaging.instances i JOIN imaging.tensors t USING (sop_instance_uid) WHERE t.tensor_key = i.tensor_key")
                    == (try world.count("SELECT count(*) FROM imaging.instances WHERE tensor_key IS NOT NULL")))
            }
            #expect(try world.count("SELECT count(*) FROM (SELECT 1 FROM inference.jobs GROUP BY series_uid, model_name, series_revision HAVING count(*) > 1) d") == 0)
            // No PHI in the analyst tables: no original UID appears among the catalogued ones.
            #expect(try world.count("SELECT count(*) FROM imaging.instances i JOIN vault.instances v ON v.original_sop_instance_uid = i.sop_instance_uid") == 0)

            // `dicom-etl status` once drained: nothing in the backlog or in flight, one ledger row per dropped file.
            let status = try Self.status(world)
            #expect(status.contains("backlog: 0") && status.contains("in flight: 0"), "\(status)")
            let ledgerLine = status.first { $0.hasPrefix("ledger: ") } ?? ""
            let ledgerTotal = ledgerLine.dropFirst("ledger: ".count).split(separator: " ").compactMap { Int($0.split(separator: "=").last ?? "") }.reduce(0, +)
            #expect(ledgerTotal == files.count, "\(status)")

            // verify-deid over the stored de-identified objects, each paired with the source file it came from.
            let verified = try Self.verifyDeidentification(world)
            #expect(verified.status == 0, "\(verified.output)")
            #expect(verified.output.contains("verified \(first.catalogued) files: 0 with leaks"), "\(verified.output)")
            print("verify-deid: " + (verified.output.split(separator: "\n").first.map(String.init) ?? ""))

            // Re-dropping the same files: all duplicates (or quarantined again), no new rows.
            let processedBefore = processed.count
            try world.drop(files)
            try await Self.waitUntilSettled(world, daemon: daemon)
            #expect(world.files(in: "").isEmpty)
            let second = try Self.counts(world)
            #expect(second.instances == first.instances && second.series == first.series && second.jobs == first.jobs)
            #expect(second.catalogued == first.catalogued)
            #expect(try world.count("SELECT count(*) FROM ingest.source_files WHERE state = 'duplicate'") >= duplicates + processedBefore)
            Self.stop(daemon)

            // The same files into a fresh world, SIGKILLed mid-run and restarted: same final counts.
            let crashed = try World()
            defer { crashed.cleanUp() }
            var victim = try Self.startDaemon(crashed)
            try crashed.drop(files)
            let killAt = ContinuousClock.now + .seconds(20)
            while ContinuousClock.now < killAt, (try? crashed.count("SELECT count(*) FROM ingest.source_files WHERE state = 'catalogued'")) ?? 0 < max(1, first.catalogued / 3) {
                try await Task.sleep(for: .milliseconds(50))
            }
            kill(victim.processIdentifier, SIGKILL)
            victim.waitUntilExit()
            victim = try Self.startDaemon(crashed)
            defer { Self.stop(victim) }
            try await Self.waitUntilSettled(crashed, daemon: victim)
            #expect(crashed.files(in: "").isEmpty)
            let recovered = try Self.counts(crashed)
            print("after SIGKILL and restart: \(recovered)")
            #expect(recovered.instances == first.instances)
            #expect(recovered.series == first.series)
            #expect(recovered.jobs == first.jobs)
            #expect(recovered.catalogued == first.catalogued)
            #expect(recovered.quarantined == first.quarantined)
            #expect(recovered.repeats == first.repeats)
            #expect(recovered.objects == first.objects, "\(recovered) vs \(first); objects nothing refers to: \((try? Self.unreferencedObjects(crashed)) ?? [])")
        }
    }

    /// Stored objects that no catalogued instance or tensor names, each with the state and reason of the ledger row
    /// its key names (`<sop>.<ledger id>.<ext>`).
    static func unreferencedObjects(_ world: World) throws -> [String] {
        let referenced = Set(try psql(world.databaseURL, """
            SELECT k FROM imaging.instances i, unnest(ARRAY[i.file_key, i.tensor_key, i.preview_key]) AS k WHERE k IS NOT NULL
            UNION SELECT k FROM imaging.tensors t, unnest(ARRAY[t.tensor_key, t.sidecar_key, t.preview_key]) AS k WHERE k IS NOT NULL
            """).split(separator: "\n").map { String($0).trimmingCharacters(in: .whitespaces) })
        var out: [String] = []
        let root = world.data + "/objects/data/"
        guard let walker = FileManager.default.enumerator(atPath: root) else { return [] }
        while let relative = walker.nextObject() as? String {
            guard (walker.fileAttributes?[.type] as? FileAttributeType) == .typeRegular, !referenced.contains(relative) else { continue }
            let parts = (relative as NSString).lastPathComponent.split(separator: ".")
            let row = parts.count >= 3 ? String(parts[parts.count - 2]) : "?"
            let state = Int(row) == nil ? "?" : (try? psql(world.databaseURL,
                "SELECT state || ' ' || coalesce(error_reason, '') || ' claims=' || claims || ' interruptions=' || interruptions FROM ingest.source_files WHERE id = \(row)")) ?? "?"
            out.append("\(relative) (ledger row \(row): \(state))")
        }
        return out
    }

    /// Every file of the corpus, relative name flattened → source path.
    static func wholeCorpus() -> [(String, String)] {
        var files: [(String, String)] = []
        if let walker = FileManager.default.enumerator(atPath: corpus) {
            while let relative = walker.nextObject() as? String {
                if (walker.fileAttributes?[.type] as? FileAttributeType) == .typeRegular {
                    files.append((relative.replacingOccurrences(of: "/", with: "_"), (corpus as NSString).appendingPathComponent(relative)))
                }
            }
        }
        return files.shuffled()
    }

    /// Writes `source` to `target` in 64 KiB pieces with a pause between them, as a slow export would.
    static func writeSlowly(_ source: String, to target: String) async throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: source))
        guard FileManager.default.createFile(atPath: target, contents: nil), let handle = FileHandle(forWritingAtPath: target) else {
            throw POSIXError(.EIO)
        }
        defer { try? handle.close() }
        var offset = 0
        while offset < data.count {
            let end = min(offset + 65_536, data.count)
            try handle.write(contentsOf: data[offset..<end])
            offset = end
            try await Task.sleep(for: .milliseconds(40))
        }
    }

    @Test(.enabled(if: ready, "needs DICOM_ETL_TEST_DATABASE_URL and the corpus"), .timeLimit(.minutes(6)))
    func wholeCorpusInRandomOrderSomeStillBeingWritten() async throws {
        let files = Self.wholeCorpus()
        try await Self.withDaemon { world, daemon in
            let started = ContinuousClock.now
            // Twenty files (the larger ones among the first forty) are written in place, slowly, while the rest
            // arrive by rename: each must be taken only once complete.
            let slow = Array(files.prefix(40).sorted { (Self.size($0.1)) > (Self.size($1.1)) }.prefix(20))
            let slowNames = Set(slow.map(\.0))
            async let slowWrites: Void = {
                for (name, source) in slow { try await Self.writeSlowly(source, to: world.drop + "/" + name) }
            }()
            try world.drop(files.filter { !slowNames.contains($0.0) })
            try await slowWrites
            try await Self.waitUntilSettled(world, daemon: daemon, timeout: .seconds(240))
            let elapsed = ContinuousClock.now - started
            #expect(daemon.isRunning, "the daemon keeps running through the whole corpus")

            #expect(world.files(in: "").isEmpty, "nothing left in the drop folder")
            let processed = world.files(in: "processed")
            let quarantined = world.files(in: "quarantine").filter { !$0.hasSuffix(".reason.json") }
            #expect(processed.count + quarantined.count == files.count)
            #expect(Set(world.files(in: "quarantine").filter { $0.hasSuffix(".reason.json") }) == Set(quarantined.map { $0 + ".reason.json" }))
            let counts = try Self.counts(world)
            let duplicates = try world.count("SELECT count(*) FROM ingest.source_files WHERE state = 'duplicate'")
            #expect(counts.catalogued + duplicates == processed.count)
            #expect(counts.catalogued + counts.quarantined + counts.repeats == files.count)
            #expect(try world.count("SELECT count(*) FROM ingest.source_files") == files.count, "one ledger row per file")
            #expect(counts.instances == (try world.count("SELECT count(DISTINCT sop_instance_uid) FROM ingest.source_files WHERE state = 'catalogued'")))
            // Each slowly written file was read whole: its ledger size is its source's.
            for (name, source) in slow {
                let recorded = try world.count("SELECT size FROM ingest.source_files WHERE path = $p$\(world.drop)/\(name)$p$")
                #expect(recorded == Self.size(source), "a slowly written file was taken before it was complete")
            }
            // A job per complete series routed to a model; no duplicate jobs.
            let routed = try Self.routedSeriesCount(world)
            // (A series whose instance arrived after it completed is re-opened and gets a job for its new revision.)
            #expect(try world.count("SELECT count(DISTINCT series_uid) FROM inference.jobs") == routed)
            #expect(try world.count("""
                SELECT count(*) FROM imaging.series s WHERE s.state = 'complete' AND EXISTS (SELECT 1 FROM inference.jobs j WHERE j.series_uid = s.series_uid)
                  AND NOT EXISTS (SELECT 1 FROM inference.jobs j WHERE j.series_uid = s.series_uid AND j.series_revision = s.revision)
                """) == 0, "each routed series has a job for its last revision")
            #expect(try world.count("SELECT count(*) FROM (SELECT 1 FROM inference.jobs GROUP BY series_uid, model_name, series_revision HAVING count(*) > 1) d") == 0)
            let verified = try Self.verifyDeidentification(world)
            #expect(verified.status == 0 && verified.output.contains("verified \(counts.catalogued) files: 0 with leaks"), "\(verified.output)")
            let reasons = try psql(world.databaseURL, "SELECT string_agg(r || '=' || n, ' ') FROM (SELECT error_reason r, count(*) n FROM ingest.source_files WHERE state = 'quarantined' GROUP BY 1 ORDER BY 2 DESC) x")
            let verifiedLine = verified.output.split(separator: "\n").first.map(String.init) ?? ""
            print("whole corpus: \(files.count) files (\(slow.count) written slowly in place) in \(elapsed); \(counts); duplicates=\(duplicates)")
            print("whole corpus: quarantined by reason: \(reasons); verify-deid: \(verifiedLine)")
        }
    }

    static func size(_ path: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.intValue ?? -1
    }
}
