// Table E.1-1 as generated: complete, current with its generator, and resolved as PS3.15 says.
import DICOM
import Foundation
import Testing
@testable import Deidentification

@Suite struct ProfileTableTests {
    @Test func tableHasAll621Rows() {
        #expect(BasicProfileTable.rows.count == 621)
        #expect(Set(BasicProfileTable.rows.map(\.pattern)).count == 621)
    }

    @Test(.enabled(if: TestPaths.standardTable != nil, "needs ../shared/data/dicom-standard"))
    func generatedFileIsCurrent() throws {
        let script = TestPaths.repo.appendingPathComponent("scripts/generate_deid_profile.py").path
        let result = try run(TestPaths.python, [script, "--input", TestPaths.standardTable!, "--stdout"])
        #expect(result.status == 0)
        let committed = try Data(contentsOf: TestPaths.repo.appendingPathComponent("Sources/Deidentification/Generated/BasicProfileTable.swift"))
        #expect(result.stdout == committed, "re-run scripts/generate_deid_profile.py and commit the result")
    }

    @Test(.enabled(if: TestPaths.standardTable != nil, "needs ../shared/data/dicom-standard"))
    func everyRowMatchesTheStandardJSON() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: TestPaths.standardTable!))
        let json = try #require(try JSONSerialization.jsonObject(with: data) as? [[String: String]])
        #expect(json.count == BasicProfileTable.rows.count)
        let columns: [(String, ProfileOption)] = [
            ("rtnSafePrivOpt", .retainSafePrivate), ("rtnUIDsOpt", .retainUIDs), ("rtnDevIdOpt", .retainDeviceIdentity),
            ("rtnInstIdOpt", .retainInstitutionIdentity), ("rtnPatCharsOpt", .retainPatientCharacteristics),
            ("rtnLongFullDatesOpt", .retainLongitudinalFullDates), ("rtnLongModifDatesOpt", .retainLongitudinalModifiedDates),
            ("cleanDescOpt", .cleanDescriptors), ("cleanStructContOpt", .cleanStructuredContent), ("cleanGraphOpt", .cleanGraphics),
        ]
        for (row, source) in zip(BasicProfileTable.rows, json) {
            #expect(row.name == source["name"])
            #expect(row.basic.rawValue == source["basicProfile"])
            #expect(row.inStandardCompositeIOD == (source["stdCompIOD"] == "Y"))
            for (key, option) in columns { #expect(row.options[option]?.rawValue == source[key], "\(source["tag"]!) \(key)") }
            if let tag = source["tag"], tag.count == 11, !tag.uppercased().contains("X") {
                let g = UInt16(tag.dropFirst().prefix(4), radix: 16)!, e = UInt16(tag.dropFirst(6).prefix(4), radix: 16)!
                #expect(BasicProfileTable.row(group: g, element: e) == row)
            }
        }
    }

    @Test func patternsCoverRepeatingGroupsAndPrivateAttributes() {
        #expect(BasicProfileTable.row(group: 0x6002, element: 0x3000)?.name == "Overlay Data")
        #expect(BasicProfileTable.row(group: 0x601E, element: 0x4000)?.name == "Overlay Comments")
        #expect(BasicProfileTable.row(group: 0x5010, element: 0x3000)?.name == "Curve Data")
        #expect(BasicProfileTable.row(group: 0x6000, element: 0x0010) == nil)  // overlay rows: not listed
        #expect(BasicProfileTable.row(group: 0x0029, element: 0x1010)?.name == "Private Attributes")
        #expect(BasicProfileTable.row(group: 0x6001, element: 0x3000)?.name == "Private Attributes")
        #expect(BasicProfileTable.row(group: 0x0028, element: 0x0010) == nil)  // Rows: not listed
    }

    @Test func combinedCodesResolveByPolicy() {
        let expectations: [(ActionCode, ResolvedAction, ResolvedAction)] = [
            (.zd, .dummy, .zeroLength), (.xz, .zeroLength, .remove), (.xd, .dummy, .remove),
            (.xzd, .dummy, .remove), (.xzu, .uid, .remove), (.d, .dummy, .dummy), (.z, .zeroLength, .zeroLength),
            (.x, .remove, .remove), (.k, .keep, .keep), (.c, .clean, .clean), (.u, .uid, .uid),
        ]
        for (code, conformant, minimal) in expectations {
            #expect(BasicProfileTable.single(code, policy: .conformant) == conformant, "\(code.rawValue)")
            #expect(BasicProfileTable.single(code, policy: .minimal) == minimal, "\(code.rawValue)")
        }
    }

    /// The standard's rule: the alternative the attribute's Type needs (Type 3 → first, 2 → Z, 1 → D), X/Z/U* → U.
    @Test func combinedCodesResolveByType() {
        let expectations: [(ActionCode, ResolvedAction, ResolvedAction, ResolvedAction)] = [  // Type 3, 2, 1
            (.zd, .zeroLength, .zeroLength, .dummy), (.xz, .remove, .zeroLength, .zeroLength), (.xd, .remove, .dummy, .dummy),
            (.xzd, .remove, .zeroLength, .dummy), (.xzu, .uid, .uid, .uid), (.x, .remove, .remove, .remove),
        ]
        for (code, type3, type2, type1) in expectations {
            #expect(BasicProfileTable.single(code, policy: .conformant, requirement: .optional) == type3, "\(code.rawValue)")
            #expect(BasicProfileTable.single(code, policy: .conformant, requirement: .presence) == type2, "\(code.rawValue)")
            #expect(BasicProfileTable.single(code, policy: .conformant, requirement: .value) == type1, "\(code.rawValue)")
            #expect(BasicProfileTable.single(code, policy: .minimal, requirement: .value) == BasicProfileTable.single(code, policy: .minimal))
        }
        // No plan removes or empties what the IOD requires; a Type 3 sequence is removed, never left empty.
        #expect(Planner.conformant(.remove, isSequence: false, requirement: .presence) == .zeroLength)
        #expect(Planner.conformant(.remove, isSequence: false, requirement: .value) == .dummy)
        #expect(Planner.conformant(.zeroLength, isSequence: false, requirement: .value) == .dummy)
        #expect(Planner.conformant(.remove, isSequence: true, requirement: .value) == .remove)
        #expect(Planner.conformant(.remove, isSequence: true, requirement: .presence) == .zeroLength)
        #expect(Planner.conformant(.zeroLength, isSequence: true, requirement: .optional) == .remove)
        #expect(Planner.conformant(.zeroLength, isSequence: true, requirement: .value) == .dummy)
        #expect(Planner.conformant(.remove, isSequence: false, requirement: .optional) == .remove)
    }

    /// The IOD tables know the Types of PS3.3 that the corpus needed.
    @Test func iodRequirementsFollowPS33() {
        let ct = IODRequirements(sopClassUID: "1.2.840.10008.5.1.4.1.1.2")
        #expect(ct.iodName == "ct-image")
        #expect(ct.requirement(of: Tags.studyInstanceUID, parent: nil) == .value)
        #expect(ct.requirement(of: DICOM.Tag(0x0008, 0x0020), parent: nil) == .presence)  // Study Date, Type 2
        #expect(ct.requirement(of: DICOM.Tag(0x0010, 0x2297), parent: nil) == .presence)  // Responsible Person, 2C
        #expect(ct.requirement(of: DICOM.Tag(0x0008, 0x1110), parent: nil) == .optional)  // Referenced Study Sequence, 3
        let rtstruct = IODRequirements(sopClassUID: "1.2.840.10008.5.1.4.1.1.481.3")
        #expect(rtstruct.requirement(of: DICOM.Tag(0x3006, 0x0002), parent: nil) == .value)  // Structure Set Label
        #expect(IODRequirements(sopClassUID: "1.2.3.4").requirement(of: Tags.studyInstanceUID, parent: nil) == nil)
        #expect(IODRequirements(sopClassUID: nil).iodName == nil)
        // In items: Referenced SOP Instance UID of a Source Image Sequence is Type 1 in every IOD.
        #expect(ct.requirement(of: DICOM.Tag(0x0008, 0x1155), parent: DICOM.Tag(0x0008, 0x2112)) == .value)
    }

    @Test(.enabled(if: TestPaths.standardTable != nil && TestPaths.pythonHas("highdicom"), "needs ../shared/data/dicom-standard and highdicom"))
    func generatedIODTablesAreCurrent() throws {
        let script = TestPaths.repo.appendingPathComponent("scripts/generate_iod_requirements.py").path
        let result = try run(TestPaths.python, [script, "--profile", TestPaths.standardTable!, "--stdout"])
        #expect(result.status == 0, "\(String(decoding: result.stderr.prefix(500), as: UTF8.self))")
        let committed = try Data(contentsOf: TestPaths.repo.appendingPathComponent("Sources/Deidentification/Generated/IODRequirementTables.swift"))
        #expect(result.stdout == committed, "re-run scripts/generate_iod_requirements.py and commit the result")
    }

    @Test func enabledOptionsOverrideTheBasicColumn() {
        let studyDate = BasicProfileTable.row(group: 0x0008, element: 0x0020)!
        #expect(BasicProfileTable.resolve(studyDate, options: [], policy: .conformant).action == .zeroLength)
        let modified = BasicProfileTable.resolve(studyDate, options: [.retainLongitudinalModifiedDates], policy: .conformant)
        #expect(modified.action == .clean && modified.option == .retainLongitudinalModifiedDates)
        #expect(BasicProfileTable.resolve(studyDate, options: [.retainLongitudinalFullDates], policy: .conformant).action == .keep)
        let sop = BasicProfileTable.row(group: 0x0008, element: 0x0018)!
        #expect(BasicProfileTable.resolve(sop, options: [], policy: .conformant).action == .uid)
        #expect(BasicProfileTable.resolve(sop, options: [.retainUIDs], policy: .conformant).action == .keep)
        // Allergies: C under both Retain Patient Characteristics and Clean Descriptors; an option off says nothing.
        let allergies = BasicProfileTable.row(group: 0x0010, element: 0x2110)!
        #expect(BasicProfileTable.resolve(allergies, options: [.retainUIDs], policy: .conformant).action == .remove)
        #expect(BasicProfileTable.resolve(allergies, options: [.cleanDescriptors], policy: .conformant).action == .clean)
        // Station AE Title: Retain Device Identity says C.
        let ae = BasicProfileTable.row(group: 0x0008, element: 0x0055)!
        #expect(BasicProfileTable.resolve(ae, options: [.retainDeviceIdentity], policy: .conformant).action == .clean)
        // A retaining K wins over a cleaning C when both options are on (Device Serial Number has only K).
        let age = BasicProfileTable.row(group: 0x0010, element: 0x1010)!
        #expect(BasicProfileTable.resolve(age, options: [.retainPatientCharacteristics, .cleanDescriptors], policy: .conformant).action == .keep)
    }

    @Test func optionCodesAreCID7050() {
        #expect(Set(ProfileOption.allCases.map(\.codeValue)).count == ProfileOption.allCases.count)
        #expect(ProfileOption.retainLongitudinalModifiedDates.codeValue == "113107")
        #expect(ProfileOption.cleanDescriptors.codeValue == "113105")
        #expect(ProfileOption.retainSafePrivate.codeValue == "113111")
    }
}
