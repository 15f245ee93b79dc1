// One SOP Instance UID, two different images: real radiographs rewritten so that two files claim the same
// SOP Instance UID — in the same series with other pixels, in another series of the same patient, in another
// patient — go through IngestProcessor (real sandbox children, the test PostgreSQL, a filesystem store) in
// either order, in one batch, and at the same moment on two replicas. Under each policy the ledger, the
// catalogue, the conflict audit, the stored objects and the jobs are what the policy says: `quarantine` keeps
// the first instance exactly as it was, `keep_both` catalogues the later file under a keyed UID of its own
// (the vault still names its real UID), `replace` leaves one instance with the later content and the earlier
// one's objects removed. A copy with the same content in another encoding is a duplicate under every policy.
// `status` and /metrics count each resolution.
import Catalog
import DICOM
import Foundation
@testable import Ingest
import Logging
import ObjectStorage
import Prometheus
import Sandbox
import TestSupport
import Testing

@Suite(.serialized) struct UIDConflictPolicyTests {
    static var ready: Bool { DaemonEndToEndTests.ready && images() != nil }

    enum Scenario: String, CaseIterable {
        /// The same patient, study and series; the pixels differ.
        case sameSeriesOtherPixels
        /// The same patient and study, another series and image.
        case otherSeries
        /// Another patient, study, series and image.
        case otherPatient
        /// The same image in another transfer syntax: the same content, so a duplicate.
        case sameContentOtherEncoding
    }

    enum Arrival: String, CaseIterable {
        case firstThenSecond, secondThenFirst
        /// Both in one batch, the first ahead.
        case oneBatch
        /// Each on its own replica (its own processor, lease owner and sandbox children), at the same moment.
        case twoReplicasAtOnce
    }

    /// Two chest radiographs of the corpus (routed to the model, so their series get jobs); where the corpus is
    /// pydicom's wheel, its CT and MR images relabelled as chest CR.
    static func images() -> (first: String, second: String, relabel: Bool)? {
        let corpus = DaemonEndToEndTests.corpus
        let chest = [corpus + "/dwv/gdcm-CR-MONO1-10-chest.dcm", corpus + "/highdicom/dx_image.dcm"]
        if chest.allSatisfy({ FileManager.default.fileExists(atPath: $0) }) { return (chest[0], chest[1], false) }
        let small = ["CT_small.dcm", "MR_small.dcm"].compactMap { IngestProcessorTests.corpusFile($0) }
        return small.count == 2 ? (small[0], small[1], true) : nil
    }

    /// A source image with the given identity; `tweakPixels` changes one sample.
    static func variant(_ source: String, relabel: Bool, patient: String, study: String, series: String, sop: String,
                        tweakPixels: Bool = false, transferSyntax: String? = nil) throws -> [UInt8] {
        let file = try DicomFile.open(path: source)
        let dataset = file.dataset
        try dataset.set(.patientID, string: patient)
        try dataset.set(.patientName, string: "Conflict^\(patient)")
        try dataset.set(.studyInstanceUID, string: study)
        try dataset.set(.seriesInstanceUID, string: series)
        try dataset.set(.sopInstanceUID, string: sop)
        try dataset.set(.instanceNumber, string: "1")
        if relabel {
            try dataset.set(.modality, string: "CR")
            try dataset.set(.bodyPartExamined, string: "CHEST")
        }
        if file.hasFileMeta { try file.metaInformation.set(.mediaStorageSOPInstanceUID, string: sop) }
        if tweakPixels {
            let pixels = try file.decodePixels()
            var bytes = pixels.bytes
            bytes[bytes.count / 2] ^= 0x01
            try file.replacePixelData(with: pixels.replacingBytes(bytes))
            return try file.serialized(transferSyntax: "1.2.840.10008.1.2.1")
        }
        return try file.serialized(transferSyntax: transferSyntax)
    }

    /// One case's two files, written under `folder`: the first and its conflicting (or same-content) second.
    static func writePair(_ scenario: Scenario, case name: String, into folder: String, root: String) throws -> (first: String, second: String) {
        let (image, other, relabel) = try #require(images())
        let (patient, study, series, sop) = ("P-\(name)", "\(root).1", "\(root).2", "\(root).3")
        let first = try variant(image, relabel: relabel, patient: patient, study: study, series: series, sop: sop)
        let second: [UInt8]
        switch scenario {
        case .sameSeriesOtherPixels:
            second = try variant(image, relabel: relabel, patient: patient, study: study, series: series, sop: sop, tweakPixels: true)
        case .otherSeries:
            second = try variant(other, relabel: relabel, patient: patient, study: study, series: "\(root).4", sop: sop)
        case .otherPatient:
            second = try variant(other, relabel: relabel, patient: "Q-\(name)", study: "\(root).5", series: "\(root).6", sop: sop)
        case .sameContentOtherEncoding:
            second = try variant(image, relabel: relabel, patient: patient, study: study, series: series, sop: sop,
                                 transferSyntax: "1.2.840.10008.1.2")
        }
        try FileManager.default.createDirectory(atPath: folder + "/" + name, withIntermediateDirectories: true)
        let paths = (folder + "/" + name + "/first.dcm", folder + "/" + name + "/second.dcm")
        try Data(first).write(to: URL(fileURLWithPath: paths.0))
        try Data(second).write(to: URL(fileURLWithPath: paths.1))
        #expect(first != second)
        return paths
    }

    /// What the catalogue holds of one instance and everything hanging from it, as JSON text.
    static func snapshot(_ world: DaemonEndToEndTests.World, sop: String) throws -> String {
        try psql(world.databaseURL, """
            SELECT jsonb_build_object(
              'instance', (SELECT to_jsonb(i) FROM imaging.instances i WHERE sop_instance_uid = '\(sop)'),
              'tensors', (SELECT jsonb_agg(to_jsonb(t) ORDER BY recipe) FROM imaging.tensors t WHERE sop_instance_uid = '\(sop)'),
              'vault', (SELECT to_jsonb(v) FROM vault.instances v WHERE sop_instance_uid = '\(sop)'),
              'series', (SELECT to_jsonb(s) FROM imaging.series s JOIN imaging.instances i USING (series_uid) WHERE i.sop_instance_uid = '\(sop)'),
              'patient', (SELECT to_jsonb(p) FROM imaging.patients p JOIN imaging.studies st USING (patient_id)
                          JOIN imaging.series s USING (study_uid) JOIN imaging.instances i USING (series_uid) WHERE i.sop_instance_uid = '\(sop)'))
            """)
    }

    /// Keys of the stored objects with their SHA-256.
    static func objects(_ store: FilesystemObjectStore) async throws -> [String: String] {
        var objects: [String: String] = [:]
        for object in try await store.list(prefix: "") { objects[object.key] = object.sha256 ?? "" }
        return objects
    }

    @Test(.enabled(if: ready, "needs DICOM_ETL_TEST_DATABASE_URL and the corpus"),
          arguments: [UIDConflictPolicy.quarantine, .keepBoth, .replace])
    func eachPolicyInEveryScenarioAndOrder(_ policy: UIDConflictPolicy) async throws {
        let world = try DaemonEndToEndTests.World()
        defer { world.cleanUp() }
        let pools = [SandboxPool(command: testWorkerCommand(), size: 2, timeout: .seconds(60), logger: testLogger),
                     SandboxPool(command: testWorkerCommand(), size: 2, timeout: .seconds(60), logger: testLogger)]
        let token = UInt32.random(in: 1...UInt32.max)
        var summary: [String] = []
        try await Catalog.withRunningClient(try DatabaseConfiguration.parse(world.databaseURL), logger: testLogger) { client in
            let catalog = Catalog(client: client, logger: testLogger)
            try await catalog.migrate()
            let store = try FilesystemObjectStore(root: URL(fileURLWithPath: world.data + "/objects"))
            let (metrics, registry) = makeMetrics()
            let replicas = try ["replica-a", "replica-b"].enumerated().map { index, owner in
                try makeProcessor(world, catalog: catalog, store: store, sandbox: pools[index], owner: owner, conflictPolicy: policy, metrics: metrics)
            }
            func ledger(_ path: String) throws -> (id: Int, state: String, reason: String, sop: String, duplicateOf: String) {
                let row = try psql(world.databaseURL, """
                    SELECT id || '|' || state || '|' || coalesce(error_reason, '') || '|' || coalesce(sop_instance_uid, '') || '|' || coalesce(duplicate_of::text, '')
                    FROM ingest.source_files WHERE path = '\(path)'
                    """).split(separator: "|", omittingEmptySubsequences: false).map(String.init)
                try #require(row.count == 5, "no ledger row for \(path)")
                return (Int(row[0]) ?? -1, row[1], row[2], row[3], row[4])
            }
            func conflictRows(_ id: Int) throws -> [String] {
                try psql(world.databaseURL, """
                    SELECT resolution || '|' || sop_instance_uid || '|' || coalesce(existing_content_sha256, '') || '|' || incoming_content_sha256
                           || '|' || coalesce(new_sop_instance_uid, '') FROM ingest.uid_conflicts WHERE source_file_id = \(id)
                    """).split(separator: "\n").map(String.init)
            }
            func content(_ sop: String) throws -> String {
                try psql(world.databaseURL, "SELECT content_sha256 FROM imaging.instances WHERE sop_instance_uid = '\(sop)'")
            }

            for scenario in Scenario.allCases {
                for arrival in Arrival.allCases {
                    let name = "\(scenario.rawValue)-\(arrival.rawValue)"
                    let uidRoot = "2.25.\(token).\(Scenario.allCases.firstIndex(of: scenario)! + 1)\(Arrival.allCases.firstIndex(of: arrival)! + 1)"
                    let (first, second) = try Self.writePair(scenario, case: name, into: world.drop, root: uidRoot)
                    let file = { (path: String) in makeFile(path, root: world.drop, size: Int64(DaemonEndToEndTests.size(path))) }

                    // The arrival; `earlier` is the file catalogued first, `later` the one that meets its UID.
                    var earlier = first, later = second
                    var before: (catalogue: String, objects: [String: String])?
                    switch arrival {
                    case .firstThenSecond, .secondThenFirst:
                        if arrival == .secondThenFirst { (earlier, later) = (second, first) }
                        #expect(try await replicas[0].process([file(earlier)]) == [.ingested], "\(name)")
                        before = (try Self.snapshot(world, sop: try ledger(earlier).sop), try await Self.objects(store))
                        _ = try await replicas[0].process([file(later)])
                    case .oneBatch:
                        _ = try await replicas[0].process([file(first), file(second)])
                    case .twoReplicasAtOnce:
                        let (one, two) = (file(first), file(second))
                        async let a = replicas[0].process([one])
                        async let b = replicas[1].process([two])
                        _ = try await (a, b)
                        // Whichever committed second met the other's UID.
                        if try !conflictRows(try ledger(first).id).isEmpty || (try ledger(first).state == "duplicate") { (earlier, later) = (second, first) }
                    }

                    let kept = try ledger(earlier), met = try ledger(later)
                    #expect(kept.state == "catalogued" && !kept.sop.isEmpty, "\(name): \(kept)")
                    let conflicts = try conflictRows(met.id)
                    let instances = try world.count("""
                        SELECT count(*) FROM imaging.instances WHERE sop_instance_uid IN ('\(kept.sop)', '\(met.sop)')
                        """)
                    let conflictingUID = try world.count("""
                        SELECT count(*) FROM ingest.quarantine q WHERE q.source_file_id = \(met.id) AND q.reason = 'uid_conflict'
                        """)

                    if scenario == .sameContentOtherEncoding {
                        // The same content: a duplicate naming the row that catalogued it, whatever the policy.
                        #expect(met.state == "duplicate" && met.duplicateOf == String(kept.id), "\(name): \(met)")
                        #expect(conflicts.isEmpty && instances == 1, "\(name)")
                        if let before { #expect(try Self.snapshot(world, sop: kept.sop) == before.catalogue, "\(name): the instance changed") }
                        summary.append("\(name): duplicate")
                        continue
                    }
                    switch policy {
                    case .quarantine:
                        #expect(met.state == "quarantined" && met.reason == "uid_conflict" && conflictingUID == 1, "\(name): \(met)")
                        #expect(instances == 1, "\(name)")
                        let row = try #require(conflicts.first, "\(name): no conflict recorded").split(separator: "|", omittingEmptySubsequences: false)
                        let keptContent = try content(kept.sop)
                        #expect(conflicts.count == 1 && row[0] == "quarantined" && row[1] == kept.sop && row[2] == keptContent
                                && row[3] != row[2] && row[4].isEmpty, "\(name): \(conflicts)")
                        // Nothing earlier changed: the instance, its tensors, vault, series and patient rows, and the objects.
                        if let before {
                            #expect(try Self.snapshot(world, sop: kept.sop) == before.catalogue, "\(name): the first instance changed")
                            #expect(try await Self.objects(store) == before.objects, "\(name): the stored objects changed")
                        }
                    case .keepBoth:
                        #expect(met.state == "catalogued" && !met.sop.isEmpty && met.sop != kept.sop, "\(name): \(met)")
                        #expect(instances == 2 && conflictingUID == 0, "\(name)")
                        let row = try #require(conflicts.first, "\(name): no conflict recorded").split(separator: "|", omittingEmptySubsequences: false)
                        #expect(conflicts.count == 1 && row[0] == "kept_both" && row[1] == kept.sop && row[4] == met.sop, "\(name): \(conflicts)")
                        // Both instances lead back to the one real UID the two files carried.
                        #expect(try psql(world.databaseURL, """
                            SELECT count(DISTINCT original_sop_instance_uid) || ' ' || count(*) FROM vault.instances
                            WHERE sop_instance_uid IN ('\(kept.sop)', '\(met.sop)')
                            """) == "1 2", "\(name)")
                        #expect(try psql(world.databaseURL, """
                            SELECT original_sop_instance_uid FROM vault.instances WHERE sop_instance_uid = '\(met.sop)'
                            """) == "\(uidRoot).3", "\(name)")
                        if let before {
                            let now = try Self.snapshot(world, sop: kept.sop)
                            // The first instance, its tensors and vault row as they were (its series counts one more
                            // instance when the later file joined it).
                            for part in ["instance", "tensors", "vault"] {
                                let (after, earlier) = (try Self.part(now, part), try Self.part(before.catalogue, part))
                                #expect(after == earlier, "\(name): \(part) changed")
                            }
                        }
                    case .replace:
                        #expect(met.state == "catalogued" && met.sop == kept.sop, "\(name): \(met)")
                        #expect(instances == 1 && conflictingUID == 0, "\(name)")
                        let row = try #require(conflicts.first, "\(name): no conflict recorded").split(separator: "|", omittingEmptySubsequences: false)
                        let nowContent = try content(kept.sop)
                        #expect(conflicts.count == 1 && row[0] == "replaced" && row[1] == kept.sop && row[3] == nowContent
                                && !row[2].isEmpty && row[2] != row[3], "\(name): \(conflicts)")
                        #expect(try world.count("""
                            SELECT count(*) FROM ingest.stage_events WHERE source_file_id = \(met.id) AND detail = 'uid_conflict_replaced'
                            """) == 1, "\(name)")
                        if let before {
                            #expect(try Self.snapshot(world, sop: kept.sop) != before.catalogue, "\(name): nothing was replaced")
                            let gone = try Self.part(before.catalogue, "instance").flatMap { instance -> String? in
                                (try? JSONSerialization.jsonObject(with: Data(instance.utf8)) as? [String: Any])?["file_key"] as? String
                            }
                            let stored = try await Self.objects(store)
                            #expect(gone != nil && stored[gone ?? ""] == nil, "\(name): the replaced instance's file is still stored")
                        }
                    }
                    summary.append("\(name): \(met.state)\(met.reason.isEmpty ? "" : " " + met.reason)")
                }
            }

            // The objects: exactly those the catalogue refers to, none left behind by a conflict or a replacement.
            let referenced = Set(try psql(world.databaseURL, """
                SELECT k FROM imaging.instances i, unnest(ARRAY[i.file_key, i.tensor_key, i.preview_key]) AS k WHERE k IS NOT NULL
                UNION SELECT k FROM imaging.tensors t, unnest(ARRAY[t.tensor_key, t.sidecar_key, t.preview_key]) AS k WHERE k IS NOT NULL
                """).split(separator: "\n").map(String.init))
            let stored = Set(try await Self.objects(store).keys)
            #expect(stored == referenced, "stored but not referenced: \(stored.subtracting(referenced).sorted()); referenced, not stored: \(referenced.subtracting(stored).sorted())")
            #expect(try world.count("SELECT count(*) FROM ingest.object_deletions") == 0)

            // The jobs: once the series are quiet, one per series that holds an instance, none for any other.
            let completion = SeriesCompletionService(
                catalog: catalog, routes: try SeriesRoutes.load(path: DaemonEndToEndTests.packageRoot.path + "/etl/routes.yaml"), defaultQuietPeriod: .seconds(10),
                clock: ContinuousClock(), now: { Date().addingTimeInterval(3600) }, logger: testLogger)
            while !(try await completion.completeQuietSeries()).isEmpty {}
            let jobs = try world.count("SELECT count(*) FROM inference.jobs")
            #expect(jobs > 0)
            #expect(try world.count("""
                SELECT count(*) FROM imaging.series s WHERE EXISTS (SELECT 1 FROM imaging.instances i WHERE i.series_uid = s.series_uid)
                AND NOT EXISTS (SELECT 1 FROM inference.jobs j WHERE j.series_uid = s.series_uid)
                """) == 0, "a series with instances has no job")
            #expect(try world.count("""
                SELECT count(*) FROM inference.jobs j WHERE NOT EXISTS (SELECT 1 FROM imaging.instances i WHERE i.series_uid = j.series_uid)
                """) == 0, "a job for a series without instances")
            #expect(try world.count("SELECT count(*) FROM (SELECT series_uid FROM inference.jobs GROUP BY 1 HAVING count(*) > 1) x") == 0)
            #expect(try world.count("""
                SELECT count(*) FROM imaging.series s WHERE instance_count <> (SELECT count(*) FROM imaging.instances i WHERE i.series_uid = s.series_uid)
                """) == 0, "a series counts instances it does not hold")
            // What the operator sees: `status` and /metrics name the resolution of each of the 12 conflicting pairs.
            let resolution = ["quarantine": "quarantined", "keep_both": "kept_both", "replace": "replaced"][policy.rawValue] ?? "?"
            let status = try await IngestStatus.read(catalog: catalog, dropFolder: nil)
            #expect(status.uidConflicts == [resolution: 12], "\(status.uidConflicts)")
            #expect(status.text.contains("uid conflicts by resolution: \(resolution)=12"), "\(status.text)")
            let exposition = registry.emitToString()
            #expect(exposition.contains("dicom_etl_uid_conflicts_total{resolution=\"\(resolution)\"} 12"),
                    "\(exposition.split(separator: "\n").filter { $0.contains("uid_conflicts") })")
            let instances = try world.count("SELECT count(*) FROM imaging.instances")
            print("uid conflicts, policy \(policy.rawValue): \(instances) instances, \(stored.count) objects, \(jobs) jobs; " + summary.joined(separator: "; "))
        }
        for pool in pools { await pool.shutdown() }
    }

    /// One top-level member of a snapshot, as JSON text.
    static func part(_ snapshot: String, _ key: String) throws -> String? {
        let object = try JSONSerialization.jsonObject(with: Data(snapshot.utf8)) as? [String: Any]
        guard let value = object?[key], !(value is NSNull) else { return nil }
        return String(decoding: try JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .fragmentsAllowed]), as: UTF8.self)
    }
}
