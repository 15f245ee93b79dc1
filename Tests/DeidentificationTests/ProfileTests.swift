// Profiles: the committed YAML files load, options switch, bad profiles fail with invalid_profile.
import Foundation
import Testing
@testable import Deidentification

@Suite struct ProfileTests {
    @Test func researchProfileLoads() throws {
        let p = try DeidentificationProfile.load(path: TestPaths.profile("basic.yaml"))
        #expect(p.options == [.retainLongitudinalModifiedDates, .retainPatientCharacteristics, .retainDeviceIdentity, .retainSafePrivate, .cleanDescriptors])
        #expect(p.dateShiftDays == -3650 ... -365)
        #expect(p.unlistedElements == .removeUnknown)
        #expect(p.combinedActions == .conformant)
        #expect(p.missingPatientID == .studyInstanceUID)
        #expect(p.safePrivate.contains(SafePrivateElement(creator: "SIEMENS MR HEADER", group: 0x0019, element: 0x0C)))
        #expect(p.burnedIn.reject && p.burnedIn.modalities == ["US", "SC"])
        #expect(p.burnedIn.sopClasses.contains("1.2.840.10008.5.1.4.1.1.7"))
    }

    @Test func basicOnlyProfileHasNoOption() throws {
        let p = try DeidentificationProfile.load(path: TestPaths.profile("basic-only.yaml"))
        #expect(p.options.isEmpty)
        #expect(p.missingPatientID == .reject)
        #expect(p.safePrivate.isEmpty)
    }

    @Test func signaturesParse() throws {
        let p = try DeidentificationProfile(yaml: """
            options: { cleanDescriptors: true }
            signatures:
              - name: banner
                conditions:
                  - { tag: "0008,0060", equals: "US" }
                  - { tag: "(0008,0070)", contains: "acme" }
                  - { tag: "00280011" }
                regions:
                  - { x: 0, y: 0, width: 640, height: 48 }
            """)
        #expect(p.options == [.cleanDescriptors])
        let s = try #require(p.signatures.first)
        #expect(s.conditions == [
            HeaderCondition(tag: TagNumber(0x0008, 0x0060), operation: .equals, value: "US"),
            HeaderCondition(tag: TagNumber(0x0008, 0x0070), operation: .contains, value: "acme"),
            HeaderCondition(tag: TagNumber(0x0028, 0x0011), operation: .present, value: ""),
        ])
        #expect(s.regions == [PixelRegion(x: 0, y: 0, width: 640, height: 48)])
    }

    @Test(arguments: [
        "options: { retainEverything: true }",
        "options: { retainLongitudinalFullDates: true, retainLongitudinalModifiedDates: true }",
        "options: { retainLongitudinalModifiedDates: true }\ndateShift: { minDays: -5, maxDays: 5 }",
        "dateShift: { minDays: 5, maxDays: -5 }",
        "safePrivate: [{ creator: X, group: \"0010\", element: \"01\" }]",
        "signatures: [{ name: s, conditions: [{ tag: \"nope\" }], regions: [] }]",
        "signatures: [{ name: s, conditions: [], regions: [{ x: 0, y: 0, width: 0, height: 4 }] }]",
        "combinedActions: sometimes",
        "unlistedElements: [1, 2]",
    ])
    func invalidProfilesAreRejected(yaml: String) {
        do {
            _ = try DeidentificationProfile(yaml: yaml)
            Issue.record("accepted: \(yaml)")
        } catch let e as DeidentificationError {
            #expect(e.code == .invalidProfile)
        } catch {
            Issue.record("unexpected error type")
        }
    }
}
