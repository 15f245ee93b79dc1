// HIPAA Safe Harbor: ages over 89 written 090Y (and the birth date of such a patient emptied), and the report of
// the eighteen identifiers (`dicom-etl verify-deid --safe-harbor`) on the outputs of real corpus files.
import DICOM
import Foundation
import Testing
@testable import Deidentification

@Suite struct SafeHarborAgeTests {
    /// Preamble, "DICM", the transfer syntax (explicit VR little endian) and Modality OT.
    let minimalFile: [UInt8] = {
        func element(_ group: UInt16, _ element: UInt16, _ vr: String, _ value: String) -> [UInt8] {
            var v = Array(value.utf8)
            if v.count % 2 == 1 { v.append(vr == "UI" ? 0 : 0x20) }
            return [UInt8(group & 0xff), UInt8(group >> 8), UInt8(element & 0xff), UInt8(element >> 8)] + Array(vr.utf8)
                + [UInt8(v.count & 0xff), UInt8(v.count >> 8)] + v
        }
        return [UInt8](repeating: 0, count: 128) + Array("DICM".utf8) + element(0x0002, 0x0010, "UI", "1.2.840.10008.1.2.1")
            + element(0x0008, 0x0060, "CS", "OT")
    }()

    func dataset(age: String?, birth: String, study: String) throws -> DataSet {
        let ds = try DicomFile.open(bytes: minimalFile).dataset
        if let age { try ds.set(SafeHarborAges.patientAge, string: age, vr: .AS) }
        try ds.set(Tags.patientBirthDate, string: birth, vr: .DA)
        try ds.set(Tag(0x0008, 0x0020), string: study, vr: .DA)
        return ds
    }

    @Test func ageIsReadFromPatientAgeElseFromBirthAndStudyDates() throws {
        #expect(SafeHarborAges.years("095Y") == 95)
        #expect(SafeHarborAges.years("018M") == 1.5)
        #expect(SafeHarborAges.years("95Y") == nil)
        #expect(SafeHarborAges.over89(try dataset(age: "090Y", birth: "20000101", study: "20200101")))
        #expect(!SafeHarborAges.over89(try dataset(age: "089Y", birth: "19000101", study: "20200101")))
        // No age: the birth date and the study date, to the day.
        #expect(SafeHarborAges.over89(try dataset(age: nil, birth: "19200315", study: "20100315")))
        #expect(!SafeHarborAges.over89(try dataset(age: nil, birth: "19200315", study: "20100314")))
    }

    @Test func agesOverEightyNineAreCappedAndTheBirthDateEmptied() throws {
        let old = try dataset(age: "102Y", birth: "19080101", study: "20100101")
        try SafeHarborAges.cap(old, over89: SafeHarborAges.over89(old))
        #expect(old.string(SafeHarborAges.patientAge) == "090Y")
        #expect(trimmed(old.string(Tags.patientBirthDate)).isEmpty)
        let young = try dataset(age: "089Y", birth: "19210101", study: "20100101")
        try SafeHarborAges.cap(young, over89: SafeHarborAges.over89(young))
        #expect(young.string(SafeHarborAges.patientAge) == "089Y")
        #expect(young.string(Tags.patientBirthDate) == "19210101")
    }
}

@Suite(.enabled(if: Corpus.available, "needs DICOM_ETL_CORPUS"))
struct SafeHarborReportTests {
    /// Every corpus file (identifying attributes added where absent) under the research and the Basic-only profile:
    /// eighteen findings per output, in order; no name, record number or address left; with the original at hand
    /// no value of it found; dates shifted under the research profile, never under Basic-only.
    @Test func everyCorpusOutputIsReportedWithNoNameRecordOrAddressLeft() throws {
        for (name, profile) in [("research", try researchProfile()), ("basic-only", try basicOnlyProfile())] {
            let checker = SafeHarborChecker(profile: profile)
            let verifier = PHIVerifier(profile: profile)
            let deidentifier = Deidentifier(profile: profile, key: testKey)
            var reported = 0
            var tally: [SafeHarborIdentifier: [SafeHarborStatus: Int]] = [:]
            for (i, (_, path)) in Corpus.files.enumerated() {
                guard let out = try? deidentified(path, deidentifier, prepare: SyntheticPHI.add) else { continue }
                let leaks = verifier.verify(original: out.original, output: out.output, outputBytes: out.bytes)
                let report = checker.check(output: out.output, leaks: leaks)
                reported += 1
                #expect(report.findings.map(\.identifier) == SafeHarborIdentifier.allCases, "file \(i)")
                // (Numbers that look like a social security or telephone number are reported where they stand: a corpus
                // protocol name reads like one.)
                for identifier in [SafeHarborIdentifier.names, .medicalRecord, .geographic, .healthPlan, .account] {
                    #expect(report.finding(identifier)?.status != .present, "file \(i) [\(name)]: \(identifier.title) \(report.finding(identifier).map { "\($0.tags)" } ?? "")")
                }
                for f in report.findings { tally[f.identifier, default: [:]][f.status, default: 0] += 1 }
            }
            #expect(reported * 10 >= Corpus.files.count * 9, "\(reported) of \(Corpus.files.count)")
            let dates = tally[.dates] ?? [:]
            if name == "research" { #expect(dates[.shifted, default: 0] > 0) } else { #expect(dates[.shifted] == nil) }
            #expect(tally[.names]?[.pseudonymised, default: 0] ?? 0 > 0)
            let summary = SafeHarborIdentifier.allCases.map { id in
                "\(id.rawValue) " + (tally[id] ?? [:]).sorted { $0.key.rawValue < $1.key.rawValue }.map { "\($0.key.rawValue) \($0.value)" }.joined(separator: ", ")
            }
            print("safe harbor [\(name)]: \(reported) outputs; " + summary.joined(separator: "; "))
        }
    }

    /// A planted age over 89 is written 090Y, and C is generalised once dates are gone; with the cap turned off the
    /// report finds the age.
    @Test func plantedOldAgeIsGeneralisedAndReportedWhenLeft() throws {
        let path = try #require(Corpus.files.first { (try? DicomFile.open(path: $0.path).dataset.contains(Tags.pixelData)) == true }?.path)
        var profile = try researchProfile()
        profile.options.remove(.retainLongitudinalModifiedDates)
        func plant(_ age: String) -> (DicomFile) throws -> Void {
            { file in
                try SyntheticPHI.add(file)
                try file.dataset.set(SafeHarborAges.patientAge, string: age, vr: .AS)
            }
        }
        let capped = try deidentified(path, Deidentifier(profile: profile, key: testKey), prepare: plant("097Y"))
        #expect(capped.output.dataset.string(SafeHarborAges.patientAge) == "090Y")
        let report = SafeHarborChecker(profile: profile).check(output: capped.output)
        #expect(report.finding(.dates)?.status == .generalised, "\(String(describing: report.finding(.dates)))")
        let kept = try deidentified(path, Deidentifier(profile: profile, key: testKey), prepare: plant("089Y"))
        #expect(kept.output.dataset.string(SafeHarborAges.patientAge) == "089Y")

        profile.capAgesOver89 = false
        let uncapped = try deidentified(path, Deidentifier(profile: profile, key: testKey), prepare: plant("097Y"))
        #expect(uncapped.output.dataset.string(SafeHarborAges.patientAge) == "097Y")
        let leftReport = SafeHarborChecker(profile: profile).check(output: uncapped.output)
        #expect(leftReport.finding(.dates)?.status == .present)
        #expect(!leftReport.meetsSafeHarbor)
    }
}
