// Matching OCR lines against a header's identifying values: which words of a line hold one, and how many characters
// of the whole value the line does not hold (the part of a name or an institution OCR did not read), which the
// redaction blanks beside the words read.
import DICOM
import Foundation
import Testing
@testable import Deidentification

@Suite struct PixelTextMatcherTests {
    func needles() throws -> IdentifyingText {
        let ds = try DicomFile.open(bytes: SafeHarborAgeTests().minimalFile).dataset
        try ds.set(Tags.patientName, string: "YILMAZ^FEMI", vr: .PN)
        try ds.set(Tag(0x0008, 0x0080), string: "NORTHGATE MEDICAL", vr: .LO)
        try ds.set(Tags.patientBirthDate, string: "19610302", vr: .DA)
        return IdentifyingText(ds, planner: Planner(profile: try loadProfile("basic.yaml")))
    }

    @Test func aWholeValueReadLeavesNothingUnread() throws {
        let found = try needles().matches(line: ["Yilmaz,", "Femi"])
        #expect(found.categories == [.name, .name])
        #expect(found.unread == 0)
        #expect(try needles().matches(line: ["DOB", "03/02/1961"]).categories == [.date, .date], "the label beside a value too")
    }

    @Test func aPartReadCountsTheRestOfItsValue() throws {
        // "MEDICAL" alone: 9 of the 16 folded characters of NORTHGATE MEDICAL unread.
        let institution = try needles().matches(line: ["MEDICAL"])
        #expect(institution.categories == [.institution])
        #expect(institution.unread == 9)
        // The given name alone (a value of its own too: the whole it is part of counts), and a name whose first glyph
        // OCR lost.
        #expect(try needles().matches(line: ["Femi"]).unread == 6)
        #expect(try needles().matches(line: ["ilmaz,", "Femi"]).unread == 1)
    }

    @Test func aLineWithoutAValueMatchesNothing() throws {
        let found = try needles().matches(line: ["PORTABLE", "AP"])
        #expect(found.categories == [nil, nil] && found.unread == 0)
    }
}
