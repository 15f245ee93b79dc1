// Crash safety at scale: ≥ 2,000 files made from small uncompressed corpus images with fresh Study,
// Series and SOP Instance UIDs and patient IDs (written with the DICOM module into a temporary folder),
// plus a single-image chest radiograph series per study (routed: one job each) and a truncated file now
// and then (quarantined). A crash-free run and a run whose daemon is SIGKILLed at 20 random moments and
// restarted each time must end equal: instances, series, jobs, store objects, catalogued and quarantined
// files; no duplicate rows, objects or jobs; every dropped file in processed/ or quarantine/ exactly once.
// A few pairs of files share a SOP Instance UID with different pixels (one catalogued, one `uid_conflict`).
// A second test lands a SIGKILL in each stage of a batch (mid-sandbox; objects durable, not catalogued; inside
// the catalogue transaction) through the daemon's failpoints. A third kills a file's batch once its objects are
// durable and has a byte-identical copy catalogued before the file is claimed again: the file ends a duplicate
// and leaves no object behind.
// DICOM_ETL_CRASH_TEST_FILES changes the file count (2,000 is what `make test` runs).
#if canImport(Glibc)
import Glibc
#endif
import DICOM
import Foundation
import Testing

@Suite(.serialized) struct DaemonCrashTests {
    typealias E2E = DaemonEndToEndTests
    static let fileCount = Int(ProcessInfo.processInfo.environment["DICOM_ETL_CRASH_TEST_FILES"] ?? "") ?? 2000
    static let kills = 20

    /// Small uncompressed images (bulk) and a chest radiograph (routed), by path relative to the corpus
    /// or to its pydicom folder; those present are used.
    static let bulkSeeds = ["CT_small.dcm", "MR_small.dcm", "dicomdirtests/98892003/MR1/5641", "dicomdirtests/77654033/CT2/17106"]
    static let routedSeeds = ["highdicom/dx_image.dcm"]

    static func existing(_ relatives: [String]) -> [String] {
        relatives.compactMap { relative in
            [E2E.corpus + "/pydicom/" + relative, E2E.corpus + "/" + relative].first { FileManager.default.fileExists(atPath: $0) }
        }
    }

    static var ready: Bool { E2E.ready && !existing(bulkSeeds).isEmpty }

    /// Writes `count` files under `folder` (`studyNNN/IMNNNN.dcm`): 20 files per study and patient, one
    /// series per seed in each study; a routed seed makes a single-image series; one file in 97 is cut
    /// in half. Returns the relative names.
    static func generate(count: Int, into folder: String) throws -> [String] {
        let bulk = try existing(bulkSeeds).map { Array(try Data(contentsOf: URL(fileURLWithPath: $0))) }
        let routed = try existing(routedSeeds).map { Array(try Data(contentsOf: URL(fileURLWithPath: $0))) }
        let token = UInt32.random(in: 1...999_999_999)
        let root = "1.2.826.0.1.3680043.8.498.\(token)"
        var names: [String] = []
        for index in 0..<count {
            let study = index / 20, slot = index % 20
            let isRouted = !routed.isEmpty && slot == 19
            let seedIndex = isRouted ? study % routed.count : index % bulk.count
            let file = try DicomFile.open(bytes: isRouted ? routed[seedIndex] : bulk[seedIndex])
            let dataset = file.dataset
            let sop = "\(root).3.\(index + 1)"
            try dataset.set(.studyInstanceUID, string: "\(root).1.\(study + 1)")
            try dataset.set(.seriesInstanceUID, string: isRouted ? "\(root).2.\(study + 1).99" : "\(root).2.\(study + 1).\(seedIndex + 1)")
            try dataset.set(.sopInstanceUID, string: sop)
            try dataset.set(.patientID, string: "CRASH-\(token)-\(study + 1)")
            try dataset.set(.patientName, string: "Crash^Patient\(study + 1)")
            try dataset.set(.instanceNumber, string: String(slot + 1))
            if file.hasFileMeta { try file.metaInformation.set(.mediaStorageSOPInstanceUID, string: sop) }
            var bytes = try file.serialized()
            if index % 97 == 13 { bytes = Array(bytes.prefix(bytes.count / 2)) }
            let name = String(format: "study%03d/IM%04d.dcm", study + 1, slot + 1)
            let path = folder + "/" + name
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            names.append(name)
        }
        // A few files that take the SOP Instance UID of another with other pixels, in another patient's series:
        // whichever of a pair comes first is catalogued, the other quarantined as `uid_conflict`.
        let studies = (count + 19) / 20
        for index in stride(from: 150, to: count, by: 500) where bulk.count > 1 && studies > 1 {
            let seedIndex = (index + 1) % bulk.count
            let other = (index / 20 + 1) % studies
            let file = try DicomFile.open(bytes: bulk[seedIndex])
            let dataset = file.dataset
            let sop = "\(root).3.\(index + 1)"
            try dataset.set(.studyInstanceUID, string: "\(root).1.\(other + 1)")
            try dataset.set(.seriesInstanceUID, string: "\(root).2.\(other + 1).\(seedIndex + 1)")
            try dataset.set(.sopInstanceUID, string: sop)
            try dataset.set(.patientID, string: "CRASH-\(token)-\(other + 1)")
            try dataset.set(.patientName, string: "Crash^Patient\(other + 1)")
            if file.hasFileMeta { try file.metaInformation.set(.mediaStorageSOPInstanceUID, string: sop) }
            let name = String(format: "conflicts/IM%04d.dcm", index + 1)
            try FileManager.default.createDirectory(atPath: folder + "/conflicts", withIntermediateDirectories: true)
            try Data(try file.serialized()).write(to: URL(fileURLWithPath: folder + "/" + name))
            names.append(name)
        }
        return names
    }

    /// Copies the files into the drop folder as a PACS export would: a temporary name, then a rename.
    static func drop(_ names: [String], from folder: String, into world: E2E.World) throws {
        for name in names {
            let target = world.drop + "/" + name
            let directory = (target as NSString).deletingLastPathComponent
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let part = directory + "/." + (target as NSString).lastPathComponent + ".part"
            try FileManager.default.copyItem(atPath: folder + "/" + name, toPath: part)
            try FileManager.default.moveItem(atPath: part, toPath: target)
        }
    }

    /// Rows of `sql` that must not exist (duplicates), counted.
    static func duplicates(_ world: E2E.World) throws -> [String: Int] {
        let checks = [
            "instances": "SELECT sop_instance_uid FROM imaging.instances GROUP BY 1 HAVING count(*) > 1",
            "series": "SELECT series_uid FROM imaging.series GROUP BY 1 HAVING count(*) > 1",
            "catalogued files per instance": "SELECT sop_instance_uid FROM ingest.source_files WHERE state = 'catalogued' GROUP BY 1 HAVING count(*) > 1",
            "ledger rows per path": "SELECT path FROM ingest.source_files GROUP BY 1 HAVING count(*) > 1",
            "quarantine rows per file": "SELECT source_file_id FROM ingest.quarantine GROUP BY 1 HAVING count(*) > 1",
            "jobs": "SELECT series_uid FROM inference.jobs GROUP BY series_uid, model_name, model_version, series_revision HAVING count(*) > 1",
            "jobs per routed series": "SELECT series_uid FROM inference.jobs GROUP BY series_uid, model_name HAVING count(*) > 1",
            "object keys": "SELECT k FROM (SELECT file_key k FROM imaging.instances UNION ALL SELECT tensor_key FROM imaging.instances WHERE tensor_key IS NOT NULL) x GROUP BY 1 HAVING count(*) > 1",
        ]
        var found: [String: Int] = [:]
        for (name, sql) in checks { found[name] = try world.count("SELECT count(*) FROM (\(sql)) d") }
        return found
    }

    /// Where each dropped name ended: its count in processed/ and in quarantine/.
    static func fates(_ world: E2E.World) -> (processed: [String: Int], quarantined: [String: Int]) {
        var processed: [String: Int] = [:], quarantined: [String: Int] = [:]
        for name in world.files(in: "processed") { processed[name, default: 0] += 1 }
        for name in world.files(in: "quarantine") where !name.hasSuffix(".reason.json") { quarantined[name, default: 0] += 1 }
        return (processed, quarantined)
    }

    @Test(.enabled(if: ready, "needs DICOM_ETL_TEST_DATABASE_URL and the corpus"), .timeLimit(.minutes(15)))
    func twentySIGKILLsEndAsACrashFreeRun() async throws {
        let source = FileManager.default.temporaryDirectory.appendingPathComponent("crash-src-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: source) }
        var clock = ContinuousClock.now
        let names = try Self.generate(count: Self.fileCount, into: source)
        let generated = ContinuousClock.now - clock

        // The crash-free run.
        let reference = try E2E.World()
        defer { reference.cleanUp() }
        clock = ContinuousClock.now
        let daemon = try E2E.startDaemon(reference)
        try Self.drop(names, from: source, into: reference)
        try await E2E.waitUntilSettled(reference, daemon: daemon, timeout: .seconds(600))
        let referenceTime = ContinuousClock.now - clock
        #expect(daemon.isRunning)
        E2E.stop(daemon)
        let expected = try E2E.counts(reference)
        let expectedReasons = try DaemonOutageTests.reasons(reference)
        #expect(reference.files(in: "").isEmpty)

        // The same files, the daemon SIGKILLed at 20 random moments and restarted each time.
        let crashed = try E2E.World()
        defer { crashed.cleanUp() }
        clock = ContinuousClock.now
        var victim = try E2E.startDaemon(crashed)
        let dropping = Task.detached { try Self.drop(names, from: source, into: crashed) }
        let longestGap = max(1.0, 1.5 * Double(referenceTime.components.seconds) / Double(Self.kills))
        var killedAt: [Double] = []
        for _ in 0..<Self.kills {
            try await Task.sleep(for: .milliseconds(Int(Double.random(in: 0.3...longestGap) * 1000)))
            killedAt.append(Double((ContinuousClock.now - clock).components.seconds))
            kill(victim.processIdentifier, SIGKILL)
            victim.waitUntilExit()
            victim = try E2E.startDaemon(crashed)
        }
        try await dropping.value
        let leftAtLastKill = crashed.files(in: "").count
        try await E2E.waitUntilSettled(crashed, daemon: victim, timeout: .seconds(600))
        let crashedTime = ContinuousClock.now - clock
        #expect(victim.isRunning)
        E2E.stop(victim)

        let recovered = try E2E.counts(crashed)
        let reasons = try DaemonOutageTests.reasons(crashed)
        print("""
            crash test: \(names.count) files generated in \(generated); crash-free run \(referenceTime): \(expected); \
            with \(Self.kills) SIGKILLs (at s \(killedAt.map { String(Int($0)) }.joined(separator: ",")); \(leftAtLastKill) files still in \
            the drop folder at the last kill) \(crashedTime): \(recovered); quarantined \(reasons)
            """)
        #expect(recovered == expected, "\(recovered) vs \(expected)")
        #expect(reasons == expectedReasons)
        #expect(expected.instances > 0 && expected.quarantined > 0)
        #expect(try Self.duplicates(crashed).filter { $0.value != 0 } == [:])
        #expect(try Self.duplicates(reference).filter { $0.value != 0 } == [:])
        #expect(try crashed.count("SELECT count(*) FROM ingest.source_files WHERE NOT state IN ('catalogued', 'quarantined')") == 0)

        // No file lost: every dropped name in processed/ or quarantine/, exactly once, and nothing else there.
        #expect(crashed.files(in: "").isEmpty)
        let (processed, quarantined) = Self.fates(crashed)
        #expect(processed.values.allSatisfy { $0 == 1 } && quarantined.values.allSatisfy { $0 == 1 })
        #expect(Set(processed.keys).isDisjoint(with: quarantined.keys))
        #expect(Set(processed.keys).union(quarantined.keys) == Set(names))
        #expect(processed.count + quarantined.count == names.count)
        #expect(recovered.repeats == expected.repeats && expected.repeats == names.filter { $0.hasPrefix("conflicts/") }.count)
    }

    @Test(.enabled(if: ready, "needs DICOM_ETL_TEST_DATABASE_URL and the corpus"), .timeLimit(.minutes(15)))
    func aSIGKILLInEachStageOfABatchLosesAndDuplicatesNothing() async throws {
        let source = FileManager.default.temporaryDirectory.appendingPathComponent("crash-stage-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: source) }
        let names = try Self.generate(count: 400, into: source)

        let reference = try E2E.World()
        defer { reference.cleanUp() }
        try Self.drop(names, from: source, into: reference)
        let daemon = try E2E.startDaemon(reference)
        try await E2E.waitUntilSettled(reference, daemon: daemon, timeout: .seconds(300))
        E2E.stop(daemon)
        let expected = try E2E.counts(reference)
        #expect(expected.instances > 0 && expected.repeats > 0)

        // The files wait in the drop folder, so the first batch is a large one; the daemon kills itself at the
        // named place of its first batch; a daemon started again ends as the crash-free run did.
        for stage in ["sandbox", "durable", "commit"] {
            let world = try E2E.World()
            defer { world.cleanUp() }
            try Self.drop(names, from: source, into: world)
            let victim = try E2E.startDaemon(world, environment: ["DICOM_ETL_FAILPOINT": stage])
            let deadline = ContinuousClock.now + .seconds(120)
            while victim.isRunning && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
            #expect(!victim.isRunning && victim.terminationReason == .uncaughtSignal && victim.terminationStatus == SIGKILL,
                    "the daemon killed itself at \(stage)")
            let inFlight = try world.count("SELECT count(*) FROM ingest.source_files WHERE state = 'processing'")
            let committed = try world.count("SELECT count(*) FROM ingest.source_files WHERE state IN ('catalogued', 'quarantined', 'duplicate')")
            let restarted = try E2E.startDaemon(world)
            try await E2E.waitUntilSettled(world, daemon: restarted, timeout: .seconds(300))
            #expect(restarted.isRunning)
            E2E.stop(restarted)
            let recovered = try E2E.counts(world)
            print("crash at \(stage): \(inFlight) files in flight, \(committed) recorded when killed; after restart \(recovered)")
            #expect(inFlight > 0, "killed with a batch in flight at \(stage)")
            if stage == "commit" { #expect(committed == 0, "nothing of the killed transaction was committed") }
            #expect(recovered == expected, "\(stage): \(recovered) vs \(expected)")
            #expect(try Self.duplicates(world).filter { $0.value != 0 } == [:], "\(stage)")
            // A group of files killed together counts none of them an interruption (a file alone in its batch at the
            // kill, say the first one the start-up scan found, counts one).
            #expect(try world.count("SELECT count(*) FROM ingest.source_files WHERE interruptions > 1") == 0, "\(stage)")
            #expect(try world.count("SELECT count(*) FROM ingest.source_files WHERE interruptions > 0") <= 2, "\(stage)")
            let (processed, quarantined) = Self.fates(world)
            #expect(processed.values.allSatisfy { $0 == 1 } && quarantined.values.allSatisfy { $0 == 1 })
            #expect(Set(processed.keys).union(quarantined.keys) == Set(names) && processed.count + quarantined.count == names.count)
        }
    }

    @Test(.enabled(if: ready, "needs DICOM_ETL_TEST_DATABASE_URL and the corpus"), .timeLimit(.minutes(5)))
    func aFileKilledWithDurableObjectsThatEndsADuplicateLeavesNoObject() async throws {
        // A routed radiograph where the corpus has one: its tensors, sidecars and previews are objects too.
        let seed = try #require(Self.existing(Self.routedSeeds).first ?? Self.existing(Self.bulkSeeds).first)
        let world = try E2E.World()
        defer { world.cleanUp() }

        // The file alone in the first batch, the daemon killed once its objects are durable: nothing catalogued.
        try world.drop([("first.dcm", seed)])
        let victim = try E2E.startDaemon(world, environment: ["DICOM_ETL_FAILPOINT": "durable"])
        let deadline = ContinuousClock.now + .seconds(60)
        while victim.isRunning && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
        #expect(!victim.isRunning && victim.terminationStatus == SIGKILL, "the daemon killed itself with the file's objects durable")
        #expect(try world.count("SELECT count(*) FROM ingest.source_files WHERE state = 'processing'") == 1)
        let left = try E2E.counts(world).objects
        #expect(left > 0, "the killed batch left its objects in the store")

        // The file set aside (a rename keeps its ledger identity) while a byte-identical copy is catalogued.
        let aside = world.root + "/aside.dcm"
        try FileManager.default.moveItem(atPath: world.drop + "/first.dcm", toPath: aside)
        try world.drop([("copy.dcm", seed)])
        let daemon = try E2E.startDaemon(world)
        defer { E2E.stop(daemon) }
        try await E2E.waitUntilSettled(world, daemon: daemon)
        #expect(try world.count("SELECT count(*) FROM ingest.source_files WHERE state = 'catalogued'") == 1)
        let catalogued = try E2E.counts(world).objects
        #expect(catalogued == 2 * left, "the copy's objects beside those the kill left")

        // Back in the drop folder: a duplicate of the copy at its claim, and the objects of its killed batch removed.
        try FileManager.default.moveItem(atPath: aside, toPath: world.drop + "/first.dcm")
        let settle = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < settle, try world.count("SELECT count(*) FROM ingest.source_files WHERE state = 'duplicate'") == 0 {
            try await Task.sleep(for: .milliseconds(100))
        }
        try await E2E.waitUntilSettled(world, daemon: daemon)
        #expect(try world.count("SELECT count(*) FROM ingest.source_files WHERE state = 'duplicate' AND claims = 1") == 1)
        let unreferenced = try E2E.unreferencedObjects(world)
        print("killed with durable objects, then a duplicate at its claim: \(left) objects left by the kill, \(catalogued) after the copy, "
              + "\(try E2E.counts(world).objects) in the end; unreferenced: \(unreferenced)")
        #expect(unreferenced == [])
        #expect(try E2E.counts(world).objects == left, "the copy's objects only")
    }
}
