// Every row of Table E.1-1 found in a real file is handled as its (resolved) action code says:
// one test per action code, and one that walks the whole table over the corpus.
import DICOM
import Foundation
import Testing
@testable import Deidentification

/// A profile whose option columns all speak K where they can (to see K on real files).
func retainingProfile() -> DeidentificationProfile {
    var p = DeidentificationProfile()
    p.name = "retain-all"
    p.options = [.retainUIDs, .retainLongitudinalFullDates, .retainPatientCharacteristics, .retainDeviceIdentity, .retainInstitutionIdentity]
    p.missingPatientID = .studyInstanceUID
    p.burnedIn.reject = false
    return p
}

func researchProfile() throws -> DeidentificationProfile {
    var p = try loadProfile("basic.yaml")
    p.burnedIn.reject = false
    return p
}

func basicOnlyProfile() throws -> DeidentificationProfile {
    var p = try loadProfile("basic-only.yaml")
    p.missingPatientID = .studyInstanceUID
    p.burnedIn.reject = false
    return p
}

/// Attributes the de-identifier writes itself after applying the table.
let recordedTags: Set<DICOM.Tag> = [Tags.patientIdentityRemoved, Tags.deidentificationMethod, Tags.deidentificationMethodCodeSequence,
                              Tags.longitudinalTemporalInformationModified, Tags.burnedInAnnotation]

/// Checks every top-level listed element of every corpus file under `profile`; returns how many elements of
/// rows whose code (the one that decided) is in `codes` were checked, per code.
func checkTable(profile: DeidentificationProfile, codes: Set<ActionCode>) throws -> [ActionCode: Int] {
    let deidentifier = Deidentifier(profile: profile, key: testKey)
    let planner = Planner(profile: profile)
    let pseudonymizer = Pseudonymizer(key: testKey)
    var checked: [ActionCode: Int] = [:]
    for (rel, path) in Corpus.files {
        guard let out = try? deidentified(path, deidentifier) else { continue }
        let before = out.original.dataset, after = out.output.dataset
        let requirements = IODRequirements(out.original)
        for element in before.elements {
            let tag = element.tag
            guard !recordedTags.contains(tag), let row = BasicProfileTable.row(group: tag.group, element: tag.element) else { continue }
            let requirement = requirements.requirement(of: tag, parent: nil)
            let resolution = BasicProfileTable.resolve(row, options: profile.options, policy: profile.combinedActions, requirement: requirement)
            guard codes.contains(resolution.code) else { continue }
            let plan = planner.plan(element, in: before, requirement: requirement)
            let where_ = "\(rel) \(tag) \(row.name) \(resolution.code.rawValue)"
            let old = Deidentifier.value(tag, before)
            let new = after.element(tag)
            /// What is left of a value that cannot be kept: nothing, or what the IOD requires (empty, a dummy).
            func dropped() -> Bool {
                switch requirement {
                case .value?: return new.map { $0.length > 0 } ?? false
                case .presence?: return new?.length == 0
                default: return new == nil
                }
            }
            switch plan {
            case .remove:
                #expect(new == nil, "\(where_): not removed")
            case .zeroLength:
                #expect(new != nil && (new!.isSequence ? new!.itemCount == 0 : new!.length == 0), "\(where_): not emptied")
            case .dummy:
                #expect(new != nil, "\(where_): dummy missing")
                if let new, !new.isSequence {
                    #expect(new.length > 0, "\(where_): dummy empty")
                    if let old, !old.isEmpty, trimmed(old) != trimmed(Deidentifier.value(tag, after)) { } else if let old, !old.isEmpty {
                        #expect(Deidentifier.dummy(for: element.vr) != nil && trimmed(Deidentifier.value(tag, after)) == trimmed(old), "\(where_)")
                    }
                }
            case .uid:
                #expect(new != nil, "\(where_): missing")
                if element.vr == .UI {
                    #expect(after.strings(tag) == before.strings(tag).map { pseudonymizer.uid(Pseudonymizer.trimUID($0)) }, "\(where_): UIDs not replaced")
                }
            case .keep, .keepByOption:
                #expect(new != nil, "\(where_): not kept")
                if !element.isSequence { #expect(Deidentifier.value(tag, after) == old, "\(where_): changed") }
            case .shiftDate:
                let shift = DateShift(days: try #require(out.result.dateShiftDays))
                if let old, !trimmed(old).isEmpty {
                    let expected = element.vr == .DA ? shift.shiftDA(old) : shift.shiftDT(old)
                    if let expected { #expect(trimmed(Deidentifier.value(tag, after)) == expected, "\(where_): not shifted") } else { #expect(dropped(), "\(where_)") }
                }
            case .cleanText:
                if element.vr == .LT || element.vr == .UT { #expect(dropped(), "\(where_): free text kept") }
                else if let v = Deidentifier.value(tag, after) {
                    // Cleaned to nothing: what the IOD requires is left (empty for Type 2, a dummy for Type 1).
                    let floor = (requirement == .presence && v.isEmpty) || (requirement == .value && v == "DEIDENTIFIED")
                    if !floor { #expect(!v.isEmpty && v.count <= (old ?? "").count + 1, "\(where_)") }
                }
            case .cleanDevice:
                if let v = Deidentifier.value(tag, after), !v.isEmpty { #expect(v.hasPrefix("DEV") && v != old, "\(where_)") }
            case .cleanSequence:
                #expect(new != nil && new!.isSequence, "\(where_)")
            case .patientID:
                #expect(trimmed(Deidentifier.value(tag, after)).hasPrefix("P") && trimmed(Deidentifier.value(tag, after)).count == 20, "\(where_)")
            case .patientName:
                #expect(trimmed(Deidentifier.value(tag, after)).hasPrefix("ANON^P"), "\(where_)")
            case .accessionNumber:
                if !trimmed(old).isEmpty { #expect(trimmed(Deidentifier.value(tag, after)) == pseudonymizer.accessionNumber(trimmed(old)), "\(where_)") }
            }
            checked[resolution.code, default: 0] += 1
        }
    }
    return checked
}

/// The corpus of ../shared (with its manifest) has a file for each code; pydicom's wheel files may not.
var fullCorpus: Bool { Corpus.root.map { FileManager.default.fileExists(atPath: $0 + "/MANIFEST.tsv") } ?? false }

@Suite(.serialized, .enabled(if: Corpus.available, "needs DICOM_ETL_CORPUS"))
struct TableActionTests {
    @Test(arguments: [ActionCode.d, .z, .x, .u, .zd, .xz, .xd, .xzd, .xzu])
    func basicColumnCode(code: ActionCode) throws {
        let checked = try checkTable(profile: try basicOnlyProfile(), codes: [code])
        if fullCorpus { #expect((checked[code] ?? 0) > 0, "no element of a row coded \(code.rawValue) in the corpus") }
    }

    @Test func keepCodeOfOptions() throws {
        let checked = try checkTable(profile: retainingProfile(), codes: [.k])
        if fullCorpus { #expect((checked[.k] ?? 0) > 0) }
    }

    @Test func cleanCodeOfOptions() throws {
        let checked = try checkTable(profile: try researchProfile(), codes: [.c])
        if fullCorpus { #expect((checked[.c] ?? 0) > 0) }
    }

    /// Every row, every code, under the research profile and the Basic Profile alone.
    @Test func wholeTable() throws {
        var rowsSeen = Set<String>()
        for profile in [try researchProfile(), try basicOnlyProfile()] {
            let checked = try checkTable(profile: profile, codes: Set(ActionCode.allCases))
            #expect(checked.values.reduce(0, +) > 0 || !fullCorpus)
        }
        for (_, path) in Corpus.files {
            let ds = try DicomFile.open(path: path).dataset
            for e in ds.elements { if let r = BasicProfileTable.row(group: e.tag.group, element: e.tag.element) { rowsSeen.insert(r.name) } }
        }
        if fullCorpus { #expect(rowsSeen.count > 40, "rows present in the corpus: \(rowsSeen.count)") }
    }
}
