// Parity with the independent Python reference (scripts/normalize_reference.py: pydicom's
// apply_modality_lut / apply_voi_lut, NumPy, the same crop and area-resize rule) over every corpus
// file with pixel data that both decode.
import DICOM
import Foundation
import TestSupport
import Testing
@testable import Normalization

@Suite(.serialized) struct CorpusParityTests {
    /// Every regular file under the corpus that is not a manifest, licence or readme.
    static func corpusFiles() throws -> [String] {
        guard let root = TestSupport.corpus else { throw TestFailure("no corpus: set DICOM_ETL_CORPUS") }
        var out: [String] = []
        let fm = FileManager.default
        guard let e = fm.enumerator(atPath: root) else { throw TestFailure("corpus folder unreadable") }
        for case let rel as String in e {
            let name = (rel as NSString).lastPathComponent
            if name.hasPrefix("_source_") || name.hasPrefix(".") || name == "MANIFEST.tsv" || name.hasSuffix(".py")
                || name.hasSuffix(".txt") || name.hasSuffix(".md") || name.hasSuffix(".json") || name.hasSuffix(".gz")
                || name.hasSuffix(".bz2") || name.hasSuffix(".zip") { continue }
            var dir: ObjCBool = false
            let p = root + "/" + rel
            if fm.fileExists(atPath: p, isDirectory: &dir), !dir.boolValue { out.append(p) }
        }
        return out.sorted()
    }

    /// Lossy transfer syntaxes: two conforming decoders may differ by a stored value per pixel.
    static let lossySyntaxes: Set<String> = [
        "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.91",
        "1.2.840.10008.1.2.4.203",
    ]

    /// Files where the two decoders disagree for a reason outside normalisation, with that reason.
    static let knownDecoderDisagreements: [String: String] = [
        "fo-dicom/GH195.dcm":
            "header says RGB but the JPEG codestream is JFIF YCbCr: pydicom converts to RGB, the DICOM layer keeps the header's RGB",
    ]

    enum LossyPolicy {
        case exclude
        case tolerance(Float)
    }

    struct Outcome {
        var compared = 0
        var lossyCompared = 0
        var tensors = 0
        var worst: Float = 0
        var exclusions: [(String, String)] = []
        var mismatches: [(String, String)] = []
    }

    /// Runs Swift and the reference over `files` with `recipe`, compares every tensor both produce.
    static func compare(recipePath: String, files: [String], lossy: LossyPolicy,
                        tolerance: (Float) -> Float) throws -> Outcome {
        let recipe = try Recipe.load(name: recipePath)
        let normalizer = Normalizer(recipe: recipe)
        let dir = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try TestSupport.run(TestSupport.python, [TestSupport.referenceScript, "--recipe", recipePath, "--out", dir],
                                    stdin: files.joined(separator: "\n") + "\n")
        guard r.status == 0 else { throw TestFailure("reference failed: \(r.stderr.suffix(1500))") }
        var reference: [Int: [String: Any]] = [:]
        for line in r.stdout.split(separator: "\n") {
            guard let obj = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let i = obj["index"] as? Int else { continue }
            reference[i] = obj
        }
        let root = TestSupport.corpus ?? ""
        var outcome = Outcome()
        for (i, path) in files.enumerated() {
            let name = String(path.dropFirst(root.count + 1))
            let ref = reference[i] ?? ["status": "excluded", "reason": "no reference output"]
            if let reason = knownDecoderDisagreements[name] {
                outcome.exclusions.append((name, reason))
                continue
            }
            var swift: [Tensor] = []
            var swiftError: String?
            var isLossy = false
            do {
                let file = try DicomFile.open(path: path)
                isLossy = lossySyntaxes.contains(file.transferSyntaxUID)
                if isLossy, case .exclude = lossy {
                    outcome.exclusions.append((name, "lossy transfer syntax: decoders may differ per pixel"))
                    continue
                }
                swift = try normalizer.normalize(file)
            } catch let e as DicomError {
                swiftError = "dicom-etl: \(e.reason)"
            } catch let e as NormalizationError {
                swiftError = "dicom-etl: \(e.reason)"
            }
            let refOK = ref["status"] as? String == "ok"
            if swiftError != nil || !refOK {
                var reasons: [String] = []
                if let s = swiftError { reasons.append(s) }
                if !refOK { reasons.append("reference: " + ((ref["reason"] as? String) ?? "?").prefix(90)) }
                outcome.exclusions.append((name, reasons.joined(separator: "; ")))
                continue
            }
            let outputs = ref["outputs"] as? [String] ?? []
            guard outputs.count == swift.count else {
                outcome.mismatches.append((name, "tensor count \(swift.count) vs reference \(outputs.count)"))
                continue
            }
            var fileWorst: Float = 0, bad = false
            for (t, out) in zip(swift, outputs) {
                let (shape, values) = try NPYReader.read(out)
                guard shape == t.shape else {
                    outcome.mismatches.append((name, "shape \(t.shape) vs reference \(shape)"))
                    bad = true
                    break
                }
                for (a, b) in zip(t.floatValues, values) {
                    let d = abs(a - b)
                    var limit = tolerance(b)
                    if isLossy, case let .tolerance(l) = lossy { limit = max(limit, l) }
                    if !(d <= limit) { bad = true }
                    if !(d <= fileWorst) { fileWorst = d.isNaN ? .infinity : d }
                }
                outcome.tensors += 1
            }
            if bad && !outcome.mismatches.contains(where: { $0.0 == name }) {
                outcome.mismatches.append((name, "max difference \(fileWorst)"))
            }
            outcome.worst = max(outcome.worst, fileWorst)
            outcome.compared += 1
            if isLossy { outcome.lossyCompared += 1 }
        }
        return outcome
    }

    static func report(_ title: String, _ o: Outcome, files: Int) {
        print("\(title): \(files) files, \(o.compared) compared (\(o.tensors) tensors; \(o.lossyCompared) lossy files at 1/255), max |difference| \(o.worst), \(o.exclusions.count) excluded")
        for (name, reason) in o.exclusions { print("  excluded \(name): \(reason)") }
        for (name, reason) in o.mismatches { print("  MISMATCH \(name): \(reason)") }
    }

    @Test func cxr28MatchesTheReferenceOnTheCorpus() throws {
        let files = try Self.corpusFiles()
        // Lossy files are compared too, within 1/255 (one 8-bit display step).
        let o = try Self.compare(recipePath: TestSupport.recipeDirectory + "/cxr-28.yaml", files: files,
                                 lossy: .tolerance(1.0 / 255)) { b in
            1e-3 * max(1, abs(b))
        }
        Self.report("cxr-28 parity", o, files: files.count)
        #expect(o.mismatches.isEmpty)
        #expect(o.compared >= 20, "too few files compared")
    }

    @Test func uint8NativeSizeMatchesTheReference() throws {
        // No resize: every stored pixel is compared after modality LUT, VOI and inversion.
        let dir = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let recipePath = dir + "/native-u8.yaml"
        try """
        name: native-u8
        output: {dtype: uint8}
        window: {source: from-dicom, index: 0, fallback: full-range}
        colour: grayscale
        """.write(toFile: recipePath, atomically: true, encoding: .utf8)
        // A sample of the corpus keeps this fast: every 4th file.
        let files = try Self.corpusFiles().enumerated().filter { $0.offset % 4 == 0 }.map(\.element)
        let o = try Self.compare(recipePath: recipePath, files: files, lossy: .exclude) { _ in 1.0 }   // 1/255: one uint8 step
        Self.report("native uint8 parity", o, files: files.count)
        #expect(o.mismatches.isEmpty)
        #expect(o.compared >= 5)
    }
}
