// Reading, changing and writing elements of real files.
import DICOM
import Foundation
import TestSupport
import Testing

@Suite("DataSet")
struct DataSetTests {
    func ctSmall() throws -> DicomFile {
        try DicomFile.open(path: try #require(Corpus.file(named: "CT_small.dcm")).path)
    }

    @Test("reads strings, numbers and sequences of CT_small.dcm")
    func readsValues() throws {
        let file = try ctSmall()
        let ds = file.dataset
        #expect(file.hasFileMeta)
        #expect(file.transferSyntaxUID == TransferSyntax.explicitVRLittleEndian)
        #expect(ds.integer(.rows) == 128)
        #expect(ds.integer(.columns) == 128)
        #expect(ds.string(.modality) == "CT")
        #expect(ds.string(.patientName) == "CompressedSamples^CT1")
        #expect(ds.doubles(.imagePositionPatient).count == 3)
        #expect(ds.doubles(.pixelSpacing).count == 2)
        #expect(ds.double(.rescaleSlope) == 1)
        #expect(ds.string(.sopClassUID) == "1.2.840.10008.5.1.4.1.1.2")
        #expect(ds.element(.pixelData)?.vr == .OW)
        #expect(Tag.patientName.keyword == "PatientName")
        #expect(Tag.patientName.dictionaryVR == .PN)
        #expect(file.metaInformation.string(.transferSyntaxUID) == TransferSyntax.explicitVRLittleEndian)
    }

    @Test("walk visits every element, into sequences and private tags")
    func walkReachesNestedAndPrivate() throws {
        let file = try ctSmall()
        var depthMax = 0, privateCount = 0, total = 0
        file.dataset.walk { path, element, _ in
            total += 1
            depthMax = max(depthMax, path.count)
            if element.tag.isPrivate { privateCount += 1 }
        }
        #expect(total > file.dataset.elements.count)
        #expect(depthMax >= 1)
        #expect(privateCount > 0)
    }

    @Test("a value is found by its tag whatever the order of asking, absent tags between present ones are absent, and changes are seen")
    func lookUpInAnyOrder() throws {
        let ds = try ctSmall().dataset
        let tags = ds.elements.map(\.tag)
        #expect(tags == tags.sorted() && tags.count > 40)
        // What each tag reads when asked alone, from a freshly opened file: the reference.
        func read(_ d: DataSet, _ tag: DICOM.Tag) -> String { "\(String(describing: d.element(tag))) \(String(describing: d.rawString(tag)))" }
        let reference = try Dictionary(uniqueKeysWithValues: tags.map { tag in (tag, read(try ctSmall().dataset, tag)) })
        let absent = tags.flatMap { [Tag($0.group, $0.element &+ 1), Tag($0.group &- 1, 0xFFFF)] }.filter { !reference.keys.contains($0) }
        #expect(absent.count > 40)
        var generator = SplitMix64(seed: 0x5EED_1234)   // the same orders on every run
        for order in [tags, tags.reversed(), tags.shuffled(using: &generator), (tags + absent).sorted(), (tags + absent).shuffled(using: &generator)] {
            for tag in order {
                if let expected = reference[tag] { #expect(read(ds, tag) == expected, "\(tag)") } else { #expect(ds.element(tag) == nil, "\(tag)") }
            }
            // The last tag, then the first, then one past the end.
            #expect(read(ds, tags.last!) == reference[tags.last!]!)
            #expect(read(ds, tags.first!) == reference[tags.first!]!)
            #expect(ds.element(Tag(0xFFFF, 0xFFFF)) == nil)
            #expect(read(ds, tags[tags.count / 2]) == reference[tags[tags.count / 2]]!)
        }
        // Changes: a removed element is gone, an inserted one is found, from any position of the reading.
        let middle = Tag.patientName, inserted = Tag(0x0010, 0x0011)   // (0010,0011): no attribute of the standard
        #expect(reference[middle] != nil && reference[inserted] == nil)
        _ = ds.element(tags.last!)
        #expect(try ds.remove(middle))
        #expect(ds.element(middle) == nil)
        _ = ds.element(tags.first!)
        try ds.set(inserted, string: "INSERTED", vr: .LO)
        #expect(ds.string(inserted) == "INSERTED")
        _ = ds.element(tags.last!)
        #expect(ds.string(inserted) == "INSERTED")
        #expect(ds.element(middle) == nil)
        for tag in tags where tag != middle { #expect(read(ds, tag) == reference[tag]!, "\(tag)") }

        // Removals in ascending order, values read between them, then in descending order: each removes its own
        // element, and the rest read as before.
        for removals in [tags.enumerated().filter { $0.offset % 3 == 1 }.map(\.element),
                         tags.enumerated().filter { $0.offset % 3 == 2 }.map(\.element).reversed()] {
            let other = try ctSmall().dataset
            for tag in removals {
                #expect(try other.remove(tag), "\(tag)")
                #expect(other.element(tag) == nil)
                #expect(try !other.remove(tag))
            }
            #expect(other.elements.map(\.tag) == tags.filter { !removals.contains($0) })
            for tag in tags where !removals.contains(tag) { #expect(read(other, tag) == reference[tag]!, "\(tag)") }
        }
    }

    @Test("round trip: modify three elements, write, read back: values changed, pixels untouched, dcmdump accepts it")
    func roundTrip() throws {
        let file = try ctSmall()
        let before = try file.decodePixels().bytes
        try file.dataset.set(.patientName, string: "Anonymous^Round^Trip")
        try file.dataset.set(.studyDescription, string: "ROUND TRIP")
        #expect(try file.dataset.remove(.patientBirthDate))
        let item = try file.dataset.appendItem(to: .referencedImageSequence)
        try item.set(.referencedSOPInstanceUID, string: "2.25.1234")
        try file.dataset.set(Tag(0x0029, 0x0010), string: "DICOM-ETL TEST", vr: .LO)
        try file.dataset.set(Tag(0x0029, 0x1001), numbers: [1, 2, 3], vr: .US)
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("dicom-etl-roundtrip-\(UUID().uuidString).dcm")
        defer { try? FileManager.default.removeItem(at: url) }
        try file.write(to: url.path)

        let back = try DicomFile.open(path: url.path)
        #expect(back.dataset.string(.patientName) == "Anonymous^Round^Trip")
        #expect(back.dataset.string(.studyDescription) == "ROUND TRIP")
        #expect(!back.dataset.contains(.patientBirthDate))
        #expect(back.dataset.items(.referencedImageSequence).last?.string(.referencedSOPInstanceUID) == "2.25.1234")
        #expect(back.dataset.integers(Tag(0x0029, 0x1001)) == [1, 2, 3])
        #expect(try back.decodePixels().bytes == before)

        let dump = Process()
        dump.executableURL = URL(fileURLWithPath: "/usr/bin/dcmdump")
        dump.arguments = ["-q", url.path]
        dump.standardOutput = FileHandle.nullDevice
        try dump.run()
        dump.waitUntilExit()
        #expect(dump.terminationStatus == 0)
    }

    @Test("re-encoding to another transfer syntax keeps the stored values", arguments: [
        TransferSyntax.implicitVRLittleEndian, TransferSyntax.explicitVRBigEndian,
        TransferSyntax.rleLossless, TransferSyntax.jpegLSLossless, TransferSyntax.jpegLosslessSV1,
    ])
    func reencode(syntax: String) throws {
        let file = try ctSmall()
        let before = try file.decodePixels()
        let bytes = try file.serialized(transferSyntax: syntax)
        let back = try DicomFile.open(bytes: bytes)
        #expect(back.transferSyntaxUID == syntax)
        let after = try back.decodePixels()
        #expect(after.frame(0).storedValues() == before.frame(0).storedValues())
    }

    @Test("DICOM JSON of a real file: keys, VRs, PN objects, numbers, nested items")
    func dicomJSON() throws {
        let file = try ctSmall()
        let json = DicomJSON.encode(file.dataset, bulkDataLimit: 64)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        let rows = try #require(object["00280010"] as? [String: Any])
        #expect(rows["vr"] as? String == "US")
        #expect((rows["Value"] as? [Int]) == [128])
        let name = try #require((object["00100010"] as? [String: Any])?["Value"] as? [[String: String]])
        #expect(name.first?["Alphabetic"] == "CompressedSamples^CT1")
        let pixel = try #require(object["7FE00010"] as? [String: Any])
        #expect(pixel["InlineBinary"] == nil)
    }

    @Test("known attributes written with VR UN are read with their dictionary VR")
    func unknownVRConversion() throws {
        guard let url = Corpus.file(named: "orthanc-tests/2021-02-19-MalaterreCP246.dcm") else {
            print("MalaterreCP246: not in this corpus")
            return
        }
        let ds = try DicomFile.open(path: url.path).dataset
        #expect(ds.element(.sopClassUID)?.vr == .UI)
        #expect(ds.string(.studyDate) == "20040721")
        #expect(ds.element(.windowCenter)?.vr == .DS)
        #expect((ds.double(.windowCenter) ?? 0) > 100)
    }

    @Test("errors carry no values from the file")
    func errorTextIsGeneric() throws {
        let error = DicomError(.truncated)
        #expect(error.reason == "truncated")
        #expect(error.description == "file ends inside an element (truncated)")
    }
}
