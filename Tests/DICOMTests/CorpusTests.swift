// The whole corpus: every file parses, or fails with a typed reason; nothing crashes.
import DICOM
import Foundation
import Testing

@Suite("Corpus")
struct CorpusTests {
    struct Outcome {
        var parsed = 0
        var decoded = 0
        var reasons: [String: Int] = [:]
    }

    @Test("every corpus file parses or fails with a typed reason")
    func everyFileParsesOrFailsTyped() throws {
        let files = Corpus.files
        try #require(!files.isEmpty, "no corpus: set DICOM_ETL_CORPUS")
        var outcome = Outcome()
        var failures: [(String, String)] = []
        for (relative, url) in files {
            do {
                let file = try DicomFile.open(path: url.path)
                outcome.parsed += 1
                #expect(!file.dataset.elements.isEmpty, "\(relative): parsed to an empty dataset")
                if file.dataset.contains(.pixelData) {
                    do {
                        let pixels = try file.decodePixels()
                        #expect(pixels.bytes.count == pixels.frameCount * pixels.frameByteCount)
                        outcome.decoded += 1
                    } catch let error as DicomError {
                        outcome.reasons["pixels:" + error.reason, default: 0] += 1
                        failures.append((relative, "pixels:" + error.reason))
                    }
                }
            } catch let error as DicomError {
                outcome.reasons[error.reason, default: 0] += 1
                failures.append((relative, error.reason))
            }
        }
        print("corpus: \(files.count) files, \(outcome.parsed) parsed, \(outcome.decoded) decoded; failures by reason: \(outcome.reasons.sorted { $0.key < $1.key })")
        for (relative, reason) in failures { print("  \(reason)\t\(relative)") }
        #expect(outcome.parsed > 0)
    }

    @Test("the manifest's files: what the manifest says decodes, decodes here")
    func manifestExpectations() throws {
        let manifest = Corpus.manifest
        guard let directory = Corpus.directory, !manifest.isEmpty else {
            print("manifest: absent (pydicom's wheel files only); skipping the per-file expectations")
            return
        }
        #expect(manifest.count == 301)
        var checked = 0
        for (relative, row) in manifest.sorted(by: { $0.key < $1.key }) {
            let url = directory.appendingPathComponent(relative)
            let notes = row["notes"] ?? ""
            let syntax = row["transfer_syntax_uid"] ?? ""
            let hasPixels = !notes.contains("no PixelData") && !(row["rows"] ?? "").isEmpty
            let cleanForDCMTK = !notes.contains("dcmtk3.6.7") && !notes.contains("malformed") && !notes.contains("dcmdump")
            let result = Result { try DicomFile.open(path: url.path) }
            if cleanForDCMTK {
                // DCMTK's own tools read these files: so must we.
                guard case .success(let file) = result else {
                    Issue.record("\(relative): DCMTK reads it, we failed: \(result)")
                    continue
                }
                if hasPixels {
                    #expect(throws: Never.self, "\(relative) decodes with DCMTK's tools") { _ = try file.decodePixels() }
                }
                checked += 1
            }
            if syntax.hasPrefix("1.2.840.10008.1.2.4.9"), !notes.contains("malformed"), !notes.contains("pydicom3.0.2+pylibjpeg decode FAIL"),
               case .success(let file) = result {
                // DCMTK alone has no JPEG 2000 decoder: OpenJPEG decodes these.
                #expect(throws: Never.self, "\(relative) (JPEG 2000) decodes through OpenJPEG") { _ = try file.decodePixels() }
            }
        }
        print("manifest: \(checked) files DCMTK's tools read were checked to parse and decode here")
    }

    @Test("the file that segfaults DCMTK's tools is refused with nesting_too_deep, and the process lives")
    func deeplyNestedSequence() throws {
        guard let url = Corpus.file(named: "orthanc-tests/2026-05-06-Deeply-Nested-Sequence.dcm") else {
            print("deeply nested sequence file: not in this corpus")
            return
        }
        let error = try #require(throws: DicomError.self) { try DicomFile.open(path: url.path) }
        #expect(error.code == .nestingTooDeep)
    }

    @Test("files that are not DICOM fail with not_dicom")
    func nonDicomFiles() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("dicom-etl-nondicom-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let samples: [String: [UInt8]] = [
            "text.txt": Array("this is a licence text, not an image\n".utf8),
            "empty.dcm": [],
            "png.dcm": [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + [UInt8](repeating: 0, count: 200),
            "zeros.dcm": [UInt8](repeating: 0, count: 300),
        ]
        for (name, bytes) in samples {
            let url = directory.appendingPathComponent(name)
            try Data(bytes).write(to: url)
            let error = try #require(throws: DicomError.self) { try DicomFile.open(path: url.path) }
            #expect(error.code == .notDICOM, "\(name)")
        }
        // The corpus's own licence and README copies are real non-DICOM files.
        for (relative, url) in Corpus.files where relative.contains("_source_") {
            let error = try #require(throws: DicomError.self) { try DicomFile.open(path: url.path) }
            #expect(error.code == .notDICOM, "\(relative)")
        }
    }

    @Test("a truncated copy of a real file fails with a truncation reason")
    func truncatedCopy() throws {
        let source = try #require(Corpus.file(named: "CT_small.dcm"))
        let bytes = try Data(contentsOf: source)
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("dicom-etl-truncated-\(UUID().uuidString).dcm")
        defer { try? FileManager.default.removeItem(at: url) }
        try bytes.prefix(bytes.count / 2).write(to: url)
        let error = try #require(throws: DicomError.self) {
            let file = try DicomFile.open(path: url.path)
            _ = try file.decodePixels()
        }
        #expect([.truncated, .pixelDataTruncated].contains(error.code))
        #expect(!error.description.contains("CT_small"))
    }

    @Test("decoding the corpus on two threads gives the same bytes as on one")
    func concurrentDecodingIsDeterministic() async throws {
        let urls = Corpus.files.map(\.url)
        try #require(!urls.isEmpty)
        func digest(_ url: URL) -> [UInt8]? {
            guard let file = try? DicomFile.open(path: url.path), let pixels = try? file.decodePixels() else { return nil }
            return pixels.bytes
        }
        let serial = urls.map(digest)
        let halves = [Array(urls.indices.filter { $0 % 2 == 0 }), Array(urls.indices.filter { $0 % 2 == 1 })]
        let parallel = await withTaskGroup(of: [(Int, [UInt8]?)].self) { group in
            for half in halves {
                group.addTask { half.map { ($0, digest(urls[$0])) } }
            }
            var all: [(Int, [UInt8]?)] = []
            for await part in group { all += part }
            return all
        }
        #expect(parallel.count == urls.count)
        for (index, bytes) in parallel {
            #expect(bytes == serial[index], "\(urls[index].lastPathComponent)")
        }
    }
}
