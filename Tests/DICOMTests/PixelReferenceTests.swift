// Decoded stored values against an independent decoder (pydicom + pylibjpeg + openjpeg),
// produced at test time by scripts/reference_pixels.py.
import DICOM
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing

@Suite("Pixels against pydicom")
struct PixelReferenceTests {
    @Test("stored values equal pydicom's: identical for lossless syntaxes, within 2 for lossy JPEG")
    func pixelsMatchReference() throws {
        guard let python = Corpus.python else {
            Issue.record("DICOM_ETL_PYTHON is not set: the reference decoder cannot run")
            return
        }
        var decoded: [(index: Int, relative: String, syntax: String, pixels: PixelData)] = []
        var list = ""
        for (index, entry) in Corpus.files.enumerated() {
            guard let file = try? DicomFile.open(path: entry.url.path), file.dataset.contains(.pixelData) else { continue }
            // Before decoding: DCMTK's JPEG decoder rewrites the attribute to RGB.
            let original = file.dataset.string(.photometricInterpretation) ?? ""
            guard let pixels = try? file.decodePixels() else { continue }
            // OpenJPEG applies a J2K codestream's colour transform (YBR_ICT/RCT arrive as RGB): ask pydicom for the same.
            let asRGB = pixels.photometricInterpretation == "RGB" && original.hasPrefix("YBR")
            decoded.append((index, entry.relative, file.transferSyntaxUID, pixels))
            list += "\(index)\t\(entry.url.path)\t\(asRGB ? 1 : 0)\n"
        }
        try #require(!decoded.isEmpty)
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("dicom-etl-ref-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: out) }
        let lines = try runReference(python: python, outDir: out, input: list)
        var results: [Int: [String: Any]] = [:]
        for line in lines {
            if let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], let index = object["index"] as? Int {
                results[index] = object
            }
        }
        var compared = 0, identical = 0, lossy = 0
        var referenceFailed: [String] = []
        for entry in decoded {
            guard let result = results[entry.index], result["ok"] as? Bool == true else {
                referenceFailed.append("\(entry.relative) (\((results[entry.index]?["error"] as? String) ?? "no answer"))")
                continue
            }
            let shape = (result["shape"] as? [Int]) ?? []
            let expectedShape = [entry.pixels.frameCount, entry.pixels.rows, entry.pixels.columns, entry.pixels.samplesPerPixel]
            guard shape == expectedShape else {
                Issue.record("\(entry.relative): shape \(expectedShape) vs pydicom \(shape)")
                continue
            }
            let data = try Data(contentsOf: out.appendingPathComponent("\(entry.index).bin"))
            let reference: [Int64] = data.withUnsafeBytes { raw in
                (0..<(raw.count / 8)).map { Int64(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self)) }
            }
            var ours: [Int64] = []
            ours.reserveCapacity(reference.count)
            for f in 0..<entry.pixels.frameCount { ours += entry.pixels.frame(f).storedValues() }
            guard ours.count == reference.count else {
                Issue.record("\(entry.relative): \(ours.count) values vs pydicom \(reference.count)")
                continue
            }
            let samples = entry.pixels.samplesPerPixel
            var channelDiff = [Int64](repeating: 0, count: samples)
            for i in ours.indices { channelDiff[i % samples] = max(channelDiff[i % samples], abs(ours[i] - reference[i])) }
            let maxDiff = channelDiff.max() ?? 0
            let isLossy = TransferSyntax.isLossy(entry.syntax)
            compared += 1
            if isLossy {
                lossy += 1
                // JPEG leaves the chroma upsampling filter to the decoder (IJG's "fancy" triangle filter in
                // DCMTK, another in pydicom's libjpeg): luma must agree within 2, subsampled chroma within 8.
                let subsampledChroma = samples == 3 && channelDiff[0] <= 2
                #expect(channelDiff[0] <= 2 && maxDiff <= (subsampledChroma ? 8 : 2),
                        "\(entry.relative) [\(entry.syntax)]: max |diff| per channel \(channelDiff)")
                if maxDiff > 2 { print("pixels: \(entry.relative): luma within \(channelDiff[0]), chroma within \(maxDiff) (decoder upsampling)") }
            } else {
                #expect(maxDiff == 0, "\(entry.relative) [\(entry.syntax)]: max |diff| \(maxDiff), lossless must be identical")
                if maxDiff == 0 { identical += 1 }
            }
        }
        print("pixels: \(decoded.count) files decoded here; \(compared) compared with pydicom (\(identical) identical lossless, \(lossy) lossy with luma within 2); pydicom could not decode \(referenceFailed.count): \(referenceFailed)")
        #expect(compared > 0)
    }

    private func runReference(python: String, outDir: URL, input: String) throws -> [String] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [Corpus.packageRoot.appendingPathComponent("scripts/reference_pixels.py").path, outDir.path]
        // A reference that dies early must fail this test, not kill the test process with SIGPIPE.
        signal(SIGPIPE, SIG_IGN)
        let stdin = Pipe(), stdout = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        try process.run()
        let writer = Thread {
            stdin.fileHandleForWriting.write(Data(input.utf8))
            try? stdin.fileHandleForWriting.close()
        }
        writer.start()
        let output = stdout.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "reference script failed")
        return String(decoding: output, as: UTF8.self).split(separator: "\n").map(String.init)
    }
}
