// Consistency across files and runs: references point at the de-identified targets, a patient's dates
// move together, the mapping reports what was written, and two processes with one key agree byte for byte.
import DICOM
import Foundation
import Testing
@testable import Deidentification

private func pathKey(_ path: [(DICOM.Tag, Int)], _ tag: DICOM.Tag) -> String {
    path.map { "\($0.0)#\($0.1)" }.joined(separator: "/") + "/" + tag.description
}

/// UI values inside sequences (references), by position.
private func referenceUIDs(_ ds: DataSet, planner: Planner) -> [String: [String]] {
    var out: [String: [String]] = [:]
    ds.walk { path, element, owner in
        guard !path.isEmpty, element.vr == .UI, !planner.isClassUID(element.tag) else { return }
        let values = owner.strings(element.tag).map(Pseudonymizer.trimUID).filter { !$0.isEmpty && !$0.hasPrefix("1.2.840.10008.") }
        if !values.isEmpty { out[pathKey(path, element.tag)] = values }
    }
    return out
}

@Suite(.serialized, .enabled(if: Corpus.available, "needs DICOM_ETL_CORPUS"))
struct ConsistencyTests {
    /// SEG, RTSTRUCT, SR and PR files: every reference UID becomes the pseudonym of the UID it held, and
    /// when the referenced object is in the corpus, that is exactly the UID its own de-identification wrote.
    @Test func referencesPointToTheDeidentifiedObjects() throws {
        let profile = try researchProfile()
        let deidentifier = Deidentifier(profile: profile, key: testKey)
        let planner = Planner(profile: profile)
        let pseudonymizer = Pseudonymizer(key: testKey)
        let referencing: Set<String> = ["SEG", "RTSTRUCT", "SR", "PR"]
        var written: [String: String] = [:]  // original instance-level UID → what its own de-identification wrote
        var referrers: [(String, DicomFile, DicomFile)] = []
        for (rel, path) in Corpus.files {
            guard let out = try? deidentified(path, deidentifier) else { continue }
            for tag in [Tags.sopInstanceUID, Tags.seriesInstanceUID, Tags.studyInstanceUID, Tag(0x0020, 0x0052)] {
                if let o = out.original.dataset.string(tag).map(Pseudonymizer.trimUID), !o.isEmpty {
                    written[o] = out.output.dataset.string(tag).map(Pseudonymizer.trimUID)
                }
            }
            if referencing.contains(trimmed(out.original.dataset.string(Tags.modality)).uppercased()) { referrers.append((rel, out.original, out.output)) }
        }
        if fullCorpus { #expect(referrers.count >= 4, "SEG/RTSTRUCT/SR/PR files found: \(referrers.count)") }
        var checked = 0, resolved = 0
        for (rel, original, output) in referrers {
            let before = referenceUIDs(original.dataset, planner: planner)
            let after = referenceUIDs(output.dataset, planner: planner)
            for (key, values) in before {
                guard let now = after[key] else { continue }  // a removed reference cannot dangle
                #expect(now == values.map { pseudonymizer.uid($0) }, "\(rel) \(key)")
                checked += values.count
                for (v, n) in zip(values, now) {
                    if let target = written[v] { #expect(target == n, "\(rel) \(key)"); resolved += 1 }
                }
            }
        }
        #expect(checked > 0 || referrers.isEmpty)
        if fullCorpus { #expect(resolved > 0, "no reference resolved to a de-identified corpus object") }
    }

    /// One patient with several studies (real files given one PatientID): one shift for all, intervals kept.
    @Test func datesOfAMultiStudyPatientKeepTheirIntervals() throws {
        let profile = try researchProfile()
        let deidentifier = Deidentifier(profile: profile, key: testKey)
        var byStudy: [String: (path: String, date: String)] = [:]
        for (_, path) in Corpus.files {
            let ds = try DicomFile.open(path: path).dataset
            let study = Pseudonymizer.trimUID(ds.string(Tags.studyInstanceUID) ?? "")
            let date = trimmed(ds.string(Tag(0x0008, 0x0020)))
            guard !study.isEmpty, date.count == 8, DateShift(days: 0).shiftDA(date) != nil, byStudy[study] == nil,
                  !byStudy.values.contains(where: { $0.date == date }) else { continue }
            byStudy[study] = (path, date)
        }
        let studies = Array(byStudy.values.sorted { $0.date < $1.date }.prefix(4))
        try #require(studies.count >= 2, "needs two studies with different dates")
        let setPatient: (DicomFile) throws -> Void = { try $0.dataset.set(Tags.patientID, string: "MULTI-STUDY-PATIENT") }
        var shifts = Set<Int>(), ids = Set<String>(), names = Set<String>()
        var pairs: [(Int, Int)] = []  // (original day, shifted day) of each StudyDate
        for s in studies {
            let out = try deidentified(s.path, deidentifier, prepare: setPatient)
            let shift = try #require(out.result.dateShiftDays)
            #expect(profile.dateShiftDays.contains(shift))
            shifts.insert(shift)
            ids.insert(trimmed(out.output.dataset.string(Tags.patientID)))
            names.insert(trimmed(out.output.dataset.string(Tags.patientName)))
            let before = out.original.dataset, after = out.output.dataset
            let day = { (s: String) -> Int in DateShift.days(fromCivil: Int(s.prefix(4))!, Int(s.dropFirst(4).prefix(2))!, Int(s.suffix(2))!) }
            pairs.append((day(s.date), day(trimmed(after.string(Tag(0x0008, 0x0020))))))
            // Within the file, every DA moves by the same days.
            for e in before.elements where e.vr == .DA {
                let o = trimmed(before.string(e.tag)), n = trimmed(after.string(e.tag))
                if o.count == 8, n.count == 8, DateShift(days: 0).shiftDA(o) != nil { #expect(day(n) - day(o) == shift, "\(e.tag)") }
            }
        }
        #expect(shifts.count == 1)
        #expect(ids.count == 1 && names.count == 1)
        for (a, b) in zip(pairs, pairs.dropFirst()) { #expect(b.1 - a.1 == b.0 - a.0) }
        #expect(pairs.allSatisfy { $0.0 != $0.1 })
    }

    /// The result reports the values written, and the original values.
    @Test func mappingReportsOriginalsAndPseudonyms() throws {
        let deidentifier = Deidentifier(profile: try researchProfile(), key: testKey)
        let pseudonymizer = Pseudonymizer(key: testKey)
        var checked = 0
        for (_, path) in Corpus.files.prefix(60) {
            guard let out = try? deidentified(path, deidentifier) else { continue }
            let m = out.result.mapping, before = out.original.dataset, after = out.output.dataset
            let pid = trimmed(before.string(Tags.patientID))
            if !pid.isEmpty {
                #expect(m.patientID == IdentifierMapping(original: pid, pseudonym: pseudonymizer.patientID(pid)))
                #expect(trimmed(after.string(Tags.patientID)) == pseudonymizer.patientID(pid))
            }
            let sop = Pseudonymizer.trimUID(before.string(Tags.sopInstanceUID) ?? "")
            if !sop.isEmpty {
                #expect(m.sopInstanceUID == IdentifierMapping(original: sop, pseudonym: pseudonymizer.uid(sop)))
                #expect(m.uids.contains(IdentifierMapping(original: sop, pseudonym: pseudonymizer.uid(sop))))
                #expect(Pseudonymizer.trimUID(out.output.metaInformation.string(Tags.mediaStorageSOPInstanceUID) ?? "") == pseudonymizer.uid(sop))
            }
            if let name = before.string(Tags.patientName) {
                #expect(m.patientName?.original == name && m.patientName?.pseudonym == trimmed(after.string(Tags.patientName)))
            }
            checked += 1
        }
        #expect(checked > 0)
    }

    /// No PatientID: rejected by basic-only.yaml, keyed on the study by basic.yaml.
    @Test func missingPatientID() throws {
        let path = try #require(Corpus.files.first { (try? deidentified($0.path, Deidentifier(profile: try researchProfile(), key: testKey))) != nil }?.path)
        let removePatientID: (DicomFile) throws -> Void = { try $0.dataset.remove(Tags.patientID) }
        var strict = try loadProfile("basic-only.yaml")
        strict.burnedIn.reject = false
        #expect(throws: DeidentificationError(.missingPatientID)) { try deidentified(path, Deidentifier(profile: strict, key: testKey), prepare: removePatientID) }
        let out = try deidentified(path, Deidentifier(profile: try researchProfile(), key: testKey), prepare: removePatientID)
        #expect(out.result.patientKeyFromStudy)
        #expect(trimmed(out.output.dataset.string(Tags.patientID)).hasPrefix("P"))
    }

    /// Two processes, one key: byte-identical outputs for every corpus file (burned-in text let through), and for
    /// copies without a SOP Instance UID, whose UID is derived from their content with the key; the file meta
    /// names the data set's instance and class. Another key: other UIDs and IDs.
    @Test func twoProcessesWithOneKeyWriteTheSameBytes() throws {
        let binary = try #require(Executables.dicomETL, "dicom-etl is not built (swift build --build-tests builds it)")
        let dir = NSTemporaryDirectory() + "deid-determinism-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/in/no-uid", withIntermediateDirectories: true)
        try Data("dicom-etl test key, not a secret: 0123456789".utf8).write(to: URL(fileURLWithPath: dir + "/a.key"))
        try Data("another dicom-etl test key, not secret either".utf8).write(to: URL(fileURLWithPath: dir + "/b.key"))
        for key in ["a.key", "b.key"] { try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: dir + "/" + key) }
        let profile = dir + "/research.yaml"
        let yaml = try String(contentsOfFile: TestPaths.profile("basic.yaml"), encoding: .utf8)
        try yaml.replacingOccurrences(of: "\n  reject: true", with: "\n  reject: false").write(toFile: profile, atomically: true, encoding: .utf8)
        // Copies without SOP Instance UID in the data set (every 10th file that has one), half of them without a
        // MediaStorageSOPInstanceUID either: their UID comes from their content.
        var withoutUID = 0
        var noUID: [String] = []
        let research = Deidentifier(profile: try researchProfile(), key: testKey)
        for (i, (_, path)) in Corpus.files.enumerated() where i % 10 == 0 {
            // A file the profile rejects as it is (e.g. neither PatientID nor a study to key one on: two JPEG-LS
            // files of pydicom's wheel) is rejected without its UID too.
            guard (try? deidentified(path, research)) != nil else { continue }
            let f = try DicomFile.open(path: path)
            guard try f.dataset.remove(Tags.sopInstanceUID) else { continue }
            if i % 20 == 0 { try f.metaInformation.remove(Tags.mediaStorageSOPInstanceUID) }
            guard let bytes = try? f.serialized() else { continue }
            try Data(bytes).write(to: URL(fileURLWithPath: dir + "/in/no-uid/\(i).dcm"))
            noUID.append("\(i).dcm")
            withoutUID += 1
        }
        #expect(withoutUID > 0)
        let inputs = Corpus.files.map(\.path) + [dir + "/in"]
        var env = ProcessInfo.processInfo.environment
        env["DICOM_ETL_KEY"] = nil
        env["DICOM_ETL_KEY_FILE"] = nil
        for (out, key) in [("run1", "a.key"), ("run2", "a.key"), ("run3", "b.key")] {
            let r = try run(binary, ["deidentify"] + inputs + ["--out", dir + "/" + out, "--profile", profile, "--key-file", dir + "/" + key, "--jobs", "2"], environment: env)
            #expect(r.status == 0, "\(String(decoding: r.stderr.prefix(500), as: UTF8.self))")
        }
        let files1 = DeidentifyTestFiles.list(dir + "/run1"), files2 = DeidentifyTestFiles.list(dir + "/run2"), files3 = DeidentifyTestFiles.list(dir + "/run3")
        #expect(files1.count * 10 >= Corpus.files.count * 8, "\(files1.count) outputs of \(Corpus.files.count) files")
        let missing = Set(noUID).subtracting(files1.filter { $0.contains("no-uid/") }.map { ($0 as NSString).lastPathComponent })
        #expect(missing.isEmpty, "copies without SOP Instance UID not written: \(missing.sorted())")
        #expect(files1 == files2 && files1 == files3)
        var differing = 0
        for rel in files1 {
            let a = try Data(contentsOf: URL(fileURLWithPath: dir + "/run1/" + rel))
            let b = try Data(contentsOf: URL(fileURLWithPath: dir + "/run2/" + rel))
            if a != b { differing += 1 }
            #expect(a == b, "\(rel) differs between two runs with one key")
            let file = try DicomFile.open(path: dir + "/run1/" + rel)
            let x = file.dataset, y = try DicomFile.open(path: dir + "/run3/" + rel).dataset
            for tag in [Tags.sopInstanceUID, Tags.studyInstanceUID, Tags.patientID] where x.contains(tag) {
                #expect(x.string(tag) != y.string(tag), "\(rel) \(tag) is the same under another key")
            }
            let meta = file.metaInformation
            let sopClass = trimmed(x.string(Tags.sopClassUID))
            if sopClass.isEmpty, trimmed(meta.string(Tags.mediaStorageSOPClassUID)) == FileIdentity.directoryStorage { continue }
            #expect(x.contains(Tags.patientID))
            #expect(!trimmed(x.string(Tags.sopInstanceUID)).isEmpty, "\(rel): no SOP Instance UID")
            #expect(trimmed(meta.string(Tags.mediaStorageSOPInstanceUID)) == trimmed(x.string(Tags.sopInstanceUID)), "\(rel)")
            // Without a SOP Class UID in the data set, the writer keeps the input's file meta class (never invents one).
            if !sopClass.isEmpty { #expect(trimmed(meta.string(Tags.mediaStorageSOPClassUID)) == sopClass, "\(rel)") }
        }
        print("deidentify twice: \(files1.count) outputs (\(withoutUID) without SOP Instance UID in the input), \(differing) differ")
    }
}

enum Executables {
    /// The dicom-etl binary of this build: next to the test bundle, else under .build/debug.
    static var dicomETL: String? {
        let fm = FileManager.default
        var candidates: [String] = []
        if let exe = Bundle.main.executableURL { candidates.append(exe.deletingLastPathComponent().appendingPathComponent("dicom-etl").path) }
        let arg0 = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        candidates.append(arg0.appendingPathComponent("dicom-etl").path)
        candidates.append(arg0.deletingLastPathComponent().appendingPathComponent("dicom-etl").path)
        candidates.append(TestPaths.repo.appendingPathComponent(".build/debug/dicom-etl").path)
        return candidates.first { fm.isExecutableFile(atPath: $0) }
    }
}

enum DeidentifyTestFiles {
    static func list(_ root: String) -> [String] {
        guard let e = FileManager.default.enumerator(atPath: root) else { return [] }
        var out: [String] = []
        while let rel = e.nextObject() as? String {
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: root + "/" + rel, isDirectory: &isDir), !isDir.boolValue { out.append(rel) }
        }
        return out.sorted()
    }
}
