// `dicom-etl inspect FILE…`: each file's header as DICOM JSON and a summary of its decoded pixels.
import ArgumentParser
import DICOM
import Foundation

struct Inspect: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print each file's header as DICOM JSON (PS3.18 F.2) and a summary of its pixels.",
        discussion: """
            One JSON object per file on standard output. A file that cannot be read prints one line on
            standard error (its reason in brackets) and the command exits 1 after the other files.
            """
    )

    @Argument(help: "DICOM files (Part 10 or raw datasets).")
    var files: [String]

    @Option(help: "Leave out binary values longer than this many bytes.")
    var bulkDataLimit: Int = 256

    @Flag(help: "Skip decoding the pixel data.")
    var noPixels = false

    func run() async throws {
        var failures = 0
        for (index, path) in files.enumerated() {
            do {
                print(try Self.describe(path: path, bulkDataLimit: bulkDataLimit, decodePixels: !noPixels))
            } catch let error as DicomError {
                failures += 1
                FileHandle.standardError.write(Data("file \(index + 1) of \(files.count): error: \(error) [\(error.reason)]\n".utf8))
            }
        }
        if failures > 0 { throw ExitCode(1) }
    }

    static func describe(path: String, bulkDataLimit: Int, decodePixels: Bool) throws -> String {
        let file = try DicomFile.open(path: path)
        try? file.convertToUTF8()
        var out = "{\"path\":\(DicomJSON.quoted(path)),"
        out += "\"transferSyntaxUID\":\(DicomJSON.quoted(file.transferSyntaxUID)),"
        out += "\"hasFileMeta\":\(file.hasFileMeta),"
        out += "\"header\":\(DicomJSON.encode(file.dataset, bulkDataLimit: bulkDataLimit))"
        if decodePixels, file.dataset.contains(.pixelData) {
            do {
                out += ",\"pixels\":\(summary(try file.decodePixels()))"
            } catch let error as DicomError {
                out += ",\"pixels\":{\"error\":\(DicomJSON.quoted(error.reason))}"
            }
        }
        return out + "}"
    }

    static func summary(_ pixels: PixelData) -> String {
        var low = Int64.max, high = Int64.min
        for index in 0..<pixels.frameCount {
            for v in pixels.frame(index).storedValues() {
                low = min(low, v)
                high = max(high, v)
            }
        }
        return """
            {"frames":\(pixels.frameCount),"rows":\(pixels.rows),"columns":\(pixels.columns),\
            "samplesPerPixel":\(pixels.samplesPerPixel),"bitsAllocated":\(pixels.bitsAllocated),\
            "bitsStored":\(pixels.bitsStored),"signed":\(pixels.isSigned),\
            "photometricInterpretation":\(DicomJSON.quoted(pixels.photometricInterpretation)),\
            "min":\(low),"max":\(high)}
            """
    }
}
