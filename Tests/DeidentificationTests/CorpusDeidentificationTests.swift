// De-identification of the real corpus: no leak, every table row handled as its code says, references kept
// consistent, dates shifted per patient, outputs valid DICOM with the same pixels.
import DICOM
import Foundation
import Testing
@testable import Deidentification

@Suite(.serialized, .enabled(if: Corpus.available, "needs DICOM_ETL_CORPUS"))
struct CorpusDeidentificationTests {
    /// Every file that parses: de-identified under both committed profiles, 0 leaks, every UID replaced.
    @Test(arguments: ["basic.yaml", "basic-only.yaml"])
    func corpusHasNoLeaks(profileName: String) throws {
        let profile = try loadProfile(profileName)
        let outputs = try CorpusOutputs.deidentified(profile: profileName)
        let verifier = PHIVerifier(profile: profile)
        let planner = Planner(profile: profile)
        var done = 0, rejected: [String: Int] = [:]
        for ((rel, path), outcome) in zip(Corpus.files, outputs) {
            let out: CorpusOutputs.Output
            do { out = try outcome.get() } catch let e as DeidentificationError {
                rejected[e.reason, default: 0] += 1
                continue
            } catch let e as DicomError {
                // Only a file the DICOM layer cannot write even untouched may fail here.
                #expect((try? DicomFile.open(path: path).serialized()) == nil, "\(rel): \(e.reason) after de-identification")
                rejected["write:" + e.reason, default: 0] += 1
                continue
            }
            done += 1
            let leaks = verifier.verify(original: try DicomFile.open(path: path), output: out.output, outputBytes: out.bytes)
            #expect(leaks.isEmpty, "\(rel): \(leaks)")
            // Every instance UID left is a 2.25 pseudonym; class UIDs and well-known UIDs are kept.
            out.output.dataset.walk { _, element, owner in
                guard element.vr == .UI, !planner.isClassUID(element.tag) else { return }
                for v in owner.strings(element.tag) where !v.isEmpty && !v.hasPrefix("1.2.840.10008.") {
                    #expect(v.hasPrefix("2.25."), "\(rel) \(element.tag)")
                }
            }
            let ds = out.output.dataset
            #expect(trimmed(ds.string(Tags.patientIdentityRemoved)) == "YES")
            let codes = ds.items(Tags.deidentificationMethodCodeSequence).map { trimmed($0.string(Tags.codeValue)) }
            #expect(codes == out.result.methodCodeValues)
            #expect(trimmed(ds.string(Tags.longitudinalTemporalInformationModified)) == (profile.options.contains(.retainLongitudinalModifiedDates) ? "MODIFIED" : "REMOVED"))
            // No private attribute survives unless safe-listed.
            for e in ds.elements where e.tag.isPrivate {
                #expect(profile.options.contains(.retainSafePrivate), "\(rel) \(e.tag)")
            }
        }
        // Not vacuous: most parsed files are de-identified (the rest: burned-in text, or no PatientID).
        #expect(done * 2 > Corpus.files.count, "de-identified \(done) of \(Corpus.files.count); rejected \(rejected)")
    }

    /// Files known to carry text in pixels are rejected with burned_in_annotation; a matching signature
    /// blanks its regions instead, and every other pixel is unchanged.
    @Test func burnedInTextIsRejectedOrBlanked() throws {
        var profile = try loadProfile("basic.yaml")
        profile.burnedIn.action = .reject  // basic.yaml reads them with OCR instead (BurnedInTextSetTests)
        var candidates: [(String, DicomFile)] = []
        for (_, path) in Corpus.files {
            let f = try DicomFile.open(path: path)
            if BurnedInCheck.suspects(f.dataset, policy: profile.burnedIn) { candidates.append((path, f)) }
        }
        #expect(!candidates.isEmpty)
        for (path, _) in candidates {
            #expect(throws: DeidentificationError(.burnedInAnnotation)) { try deidentified(path, Deidentifier(profile: profile, key: testKey)) }
        }
        // A signature over one decodable suspect: blank a 10×8 block at (4, 3).
        guard let (path, file) = candidates.first(where: { (try? $0.1.decodePixels()).map { $0.bitsAllocated >= 8 } ?? false }) else { return }
        let before = try file.decodePixels()
        var withSignature = profile
        withSignature.signatures = [PixelSignature(
            name: "test banner",
            conditions: [HeaderCondition(tag: TagNumber(0x0028, 0x0010), operation: .equals, value: String(before.rows))],
            regions: [PixelRegion(x: 4, y: 3, width: 10, height: 8)])]
        let out = try deidentified(path, Deidentifier(profile: withSignature, key: testKey))
        #expect(out.result.blankedBySignature == "test banner")
        #expect(out.result.methodCodeValues.contains("113101"))
        #expect(trimmed(out.output.dataset.string(Tags.burnedInAnnotation)) == "NO")
        #expect(out.output.transferSyntaxUID == TransferSyntax.explicitVRLittleEndian)
        let after = try out.output.decodePixels()
        #expect(after.bytes.count == before.bytes.count)
        let bps = before.bytesPerSample, spp = before.samplesPerPixel
        var inside = 0, changedOutside = 0
        for f in 0..<before.frameCount {
            for y in 0..<before.rows {
                for x in 0..<before.columns {
                    let isInside = x >= 4 && x < 14 && y >= 3 && y < 11
                    for s in 0..<(spp * bps) {
                        let i = ((f * before.rows + y) * before.columns + x) * spp * bps + s
                        if isInside { inside += 1; #expect(after.bytes[i] == 0) } else if after.bytes[i] != before.bytes[i] { changedOutside += 1 }
                    }
                }
            }
        }
        #expect(inside > 0)
        #expect(changedOutside == 0)
    }

    /// dciodvfy (dicom3tools) on every output of every corpus file (identifying attributes added where absent)
    /// under the research and the Basic-only profile: its Error lines, values and UIDs blanked, minus those of its
    /// input, are none. Where dciodvfy cannot read an input's data set to its end (deflate, broken encodings,
    /// private groups it stops at), the input's errors also include those of the input as the writer writes it
    /// untouched but for its top-level private attributes (which both profiles remove).
    @Test func outputsHaveNoNewIODErrors() throws {
        let validator = try #require(IODValidator(), "dciodvfy is missing (Debian dicom3tools: make test installs it)")
        let dir = NSTemporaryDirectory() + "deid-iod-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let profiles = [("research", try researchProfile()), ("basic-only", try basicOnlyProfile())]
        var outputs: [(input: Int, profile: String, path: String)] = []
        var rewritten: [Int: String] = [:]  // each input as written without its private attributes
        for (i, (_, path)) in Corpus.files.enumerated() {
            for (name, profile) in profiles {
                guard let out = try? deidentified(path, Deidentifier(profile: profile, key: testKey), prepare: SyntheticPHI.add) else { continue }
                let target = dir + "/\(i)-\(name).dcm"
                try Data(out.bytes).write(to: URL(fileURLWithPath: target))
                outputs.append((i, name, target))
            }
            let untouched = try DicomFile.open(path: path)
            for e in untouched.dataset.elements where e.tag.isPrivate { try untouched.dataset.remove(e.tag) }
            if let bytes = try? untouched.serialized(transferSyntax: try OutputSyntax.prepare(untouched)) {
                rewritten[i] = dir + "/\(i)-input.dcm"
                try Data(bytes).write(to: URL(fileURLWithPath: rewritten[i]!))
            }
        }
        let inputs = try validator.reports(Corpus.files.map(\.path))
        let unread = inputs.indices.filter { !inputs[$0].readWhole && rewritten[$0] != nil }
        let rereads = try validator.reports(unread.map { rewritten[$0]! })
        var baseline = inputs.map(\.errors)
        for (i, r) in zip(unread, rereads) { baseline[i].formUnion(r.errors) }
        var withNewErrors = 0
        for (output, report) in zip(outputs, try validator.reports(outputs.map(\.path))) {
            let new = report.errors.subtracting(baseline[output.input])
            if !new.isEmpty { withNewErrors += 1 }
            #expect(new.isEmpty, "\(Corpus.files[output.input].relative) [\(output.profile)]: \(new.sorted())")
        }
        print("dciodvfy: \(outputs.count) outputs of \(Corpus.files.count) files under \(profiles.count) profiles, \(withNewErrors) with new IOD errors (\(unread.count) inputs dciodvfy could not read whole, compared with their rewritten copy too)")
        // Not vacuous: nearly every file gives an output under both profiles.
        #expect(outputs.count * 10 >= Corpus.files.count * profiles.count * 9, "\(outputs.count) outputs")
    }

    /// Outputs are valid DICOM: dcmdump reads each, and the DICOM layer decodes the same pixels as before, but in
    /// the boxes OCR blanked (basic.yaml redacts identifying burned-in text).
    @Test func outputsAreValidDICOMWithTheSamePixels() throws {
        let outputs = try CorpusOutputs.deidentified(profile: "basic.yaml")
        let dir = NSTemporaryDirectory() + "deid-valid-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var written = 0, comparedPixels = 0
        for (i, outcome) in outputs.enumerated() {
            guard let out = try? outcome.get() else { continue }
            let target = dir + "/\(i).dcm"
            try Data(out.bytes).write(to: URL(fileURLWithPath: target))
            written += 1
            if let before = try? out.original.decodePixels() {
                let after = try out.output.decodePixels()
                let boxes = out.result.pixelText?.boxes ?? []
                #expect(samePixels(before, after, outside: boxes), "file \(i): pixels changed outside the \(boxes.count) blanked boxes")
                comparedPixels += 1
            }
        }
        #expect(written > 0 && comparedPixels > 0)
        let files = (try FileManager.default.contentsOfDirectory(atPath: dir)).map { dir + "/" + $0 }
        for chunk in stride(from: 0, to: files.count, by: 64).map({ Array(files[$0..<min($0 + 64, files.count)]) }) {
            let r = try run("/usr/bin/dcmdump", ["-q", "-M"] + chunk)
            #expect(r.status == 0, "dcmdump: \(String(decoding: r.stderr.prefix(2000), as: UTF8.self))")
        }
    }
}

@Suite(.enabled(if: Corpus.available, "needs DICOM_ETL_CORPUS"))
struct PHIVerifierTests {
    /// The verifier finds what a broken de-identification would leave: a name copied into a kept element,
    /// an original UID put back, and an untouched original compared with itself.
    @Test func plantedLeaksAreFound() throws {
        let profile = try researchProfile()
        let deidentifier = Deidentifier(profile: profile, key: testKey)
        let verifier = PHIVerifier(profile: profile)
        var planted = 0
        for (rel, path) in Corpus.files {
            let original = try DicomFile.open(path: path)
            let name = trimmed(Deidentifier.value(Tags.patientName, original.dataset))
            let sop = trimmed(Deidentifier.value(Tags.sopInstanceUID, original.dataset))
            guard name.count >= 6, name.contains(where: \.isLetter), sop.count >= 8,
                  let out = try? deidentified(path, deidentifier) else { continue }
            #expect(verifier.verify(original: original, output: out.output, outputBytes: out.bytes).isEmpty, "\(rel)")
            // A name copied into a kept element.
            try out.output.dataset.set(DICOM.Tag(0x0008, 0x103E), string: "CHEST " + name, vr: .LO)
            let bytes = try out.output.serialized()
            let leaks = verifier.verify(original: original, output: try DicomFile.open(bytes: bytes), outputBytes: bytes)
            #expect(leaks.contains { $0.sourceTag == "(0010,0010)" && $0.foundIn == "(0008,103E)" }, "\(rel): \(leaks)")
            // The original SOP Instance UID put back.
            try out.output.dataset.set(Tags.sopInstanceUID, string: sop, vr: .UI)
            let again = try out.output.serialized()
            #expect(verifier.verify(original: original, output: try DicomFile.open(bytes: again), outputBytes: again).contains { $0.sourceTag == "(0008,0018)" })
            // An original is full of leaks of itself.
            let raw = try original.serialized()
            #expect(!verifier.verify(original: original, output: try DicomFile.open(bytes: raw), outputBytes: raw).isEmpty)
            planted += 1
            if planted == 10 { break }
        }
        #expect(planted > 0)
    }
}

/// Whether `after` holds the bytes of `before` at every pixel outside `boxes` (of their frame).
func samePixels(_ before: PixelData, _ after: PixelData, outside boxes: [RedactedBox]) -> Bool {
    guard before.bytes.count == after.bytes.count else { return false }
    if boxes.isEmpty { return before.bytes == after.bytes }
    let pixelBytes = before.samplesPerPixel * before.bytesPerSample
    for f in 0..<before.frameCount {
        let mine = boxes.filter { $0.frame == f }
        for y in 0..<before.rows {
            for x in 0..<before.columns where !mine.contains(where: { x >= $0.x && x < $0.x + $0.width && y >= $0.y && y < $0.y + $0.height }) {
                let at = ((f * before.rows + y) * before.columns + x) * pixelBytes
                if before.bytes[at..<at + pixelBytes] != after.bytes[at..<at + pixelBytes] { return false }
            }
        }
    }
    return true
}
