// Volumes from the corpus: shuffled series assemble in slice-normal order (checked against positions
// computed with pydicom), a series with a slice removed is flagged, ct-hu-volume matches the reference,
// and the written .npy loads with numpy.load to the same shape, dtype and values.
import DICOM
import Foundation
import Testing
import TestSupport
@testable import Normalization

@Suite(.serialized) struct VolumeCorpusTests {
    /// Series folders of the corpus and whether they are free of gaps.
    static let series: [(path: String, regular: Bool)] = [
        ("dicom-test-files/dcmqi/paramaps/701-ADCb500", true),
        ("dicom-test-files/dcmqi/segmentations/ct-3slice", true),
        ("pydicom/dicomdirtests/98892001/CT5N", true),
        ("dicomdirtests/98892001/CT5N", true),
        ("pydicom/dicomdirtests/77654033/CT2", false),
        ("dicomdirtests/77654033/CT2", false),
    ]

    static func available() -> [(files: [String], regular: Bool)] {
        guard let root = TestSupport.corpus else { return [] }
        return series.compactMap { s in
            let dir = root + "/" + s.path
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return nil }
            let files = names.filter { !$0.hasPrefix(".") && !$0.hasPrefix("_") }.sorted().map { dir + "/" + $0 }
            return files.count >= 3 ? (files, s.regular) : nil
        }
    }

    /// Positions along the slice normal, computed with pydicom (independently of the Swift code).
    static func referencePositions(_ files: [String]) throws -> [Double] {
        let out = try TestSupport.python("""
        import sys, numpy as np, pydicom
        for p in sys.argv[1:]:
            ds = pydicom.dcmread(p, stop_before_pixels=True, force=True)
            o = [float(v) for v in ds.ImageOrientationPatient]
            print(repr(float(np.dot(np.cross(o[:3], o[3:]), [float(v) for v in ds.ImagePositionPatient]))))
        """, files)
        return out.split(separator: "\n").compactMap { Double($0) }
    }

    @Test func shuffledSeriesAssembleInOrder() throws {
        let all = Self.available()
        #expect(!all.isEmpty, "no series folder found in the corpus")
        var rng = SplitMix64(seed: 42)
        for (files, regular) in all {
            let positions = try Self.referencePositions(files)
            #expect(positions.count == files.count)
            let expected = files.indices.sorted { (positions[$0], $0) < (positions[$1], $1) }.map { files[$0] }
            for _ in 0..<3 {
                let shuffled = files.shuffled(using: &rng)
                let layout = try VolumeAssembler.layout(try shuffled.map { try DicomFile.open(path: $0) })
                #expect(layout.order.map { shuffled[$0] } == expected)
                let gaps = layout.issues.filter { $0.code == .gap || $0.code == .instanceNumberGap }
                #expect(gaps.isEmpty == regular, "gap flags \(layout.issues) for a series expected regular=\(regular)")
                #expect(!layout.issues.contains { $0.code == .duplicatePosition })
            }
        }
    }

    @Test func removedSliceIsFlagged() throws {
        let regular = Self.available().filter(\.regular)
        #expect(!regular.isEmpty)
        for (files, _) in regular {
            let positions = try Self.referencePositions(files)
            let sorted = files.indices.sorted { positions[$0] < positions[$1] }
            let removed = sorted[sorted.count / 2]
            let kept = files.indices.filter { $0 != removed }.map { files[$0] }.reversed()
            let opened = try kept.map { try DicomFile.open(path: $0) }
            let layout = try VolumeAssembler.layout(Array(opened))
            let flags = layout.issues.filter { $0.code == .gap || $0.code == .instanceNumberGap }
            #expect(flags.count == 1, "missing slice not flagged: \(layout.issues)")
            // A duplicated slice is reported too.
            let dup = try VolumeAssembler.layout(try (files + [files[0]]).map { try DicomFile.open(path: $0) })
            #expect(dup.issues.contains { $0.code == .duplicatePosition })
        }
    }

    @Test func ctVolumeMatchesTheReferenceAndLoadsWithNumPy() throws {
        guard let (files, _) = Self.available().first(where: { $0.regular }) else {
            throw TestFailure("no regular series in the corpus")
        }
        let recipePath = TestSupport.recipeDirectory + "/ct-hu-volume.yaml"
        let normalizer = Normalizer(recipe: try Recipe.load(name: recipePath))
        let volume = try VolumeAssembler.assemble(try files.reversed().map { try DicomFile.open(path: $0) },
                                                  normalizer: normalizer, identifiers: ["series_instance_uid": "2.25.7"])
        let t = volume.tensor
        #expect(t.shape.count == 3 && t.dtype == .float32)
        #expect(t.metadata.spacing.map { abs($0[1] - 1.5) < 0.1 && abs($0[2] - 1.5) < 0.1 } == true)
        let dir = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try TestSupport.run(TestSupport.python, [TestSupport.referenceScript, "--recipe", recipePath, "--out", dir,
                                                         "--series"] + files)
        guard r.status == 0 else { throw TestFailure("reference failed: \(r.stderr.suffix(1500))") }
        let (shape, reference) = try NPYReader.read(dir + "/volume.npy")
        #expect(shape == t.shape)
        let worst = zip(t.floatValues, reference).map { abs($0 - $1) }.max() ?? .infinity
        #expect(worst <= 1e-3, "max difference \(worst)")

        try NPYWriter.write(t, to: dir + "/swift.npy")
        let out = try TestSupport.python("""
        import sys, numpy as np
        a = np.load(sys.argv[1]); b = np.load(sys.argv[2])
        print(a.dtype.str, list(a.shape), float(np.abs(a.astype(np.float64) - b).max()))
        """, [dir + "/swift.npy", dir + "/volume.npy"])
        let parts = out.trimmingCharacters(in: .whitespacesAndNewlines).components(separatedBy: " ")
        #expect(parts.first == "<f4")
        #expect(out.contains("[" + t.shape.map(String.init).joined(separator: ", ") + "]"))
        #expect((Double(parts.last ?? "") ?? 1) <= 1e-3)
        #expect(t.metadata.identifiers["series_instance_uid"] == "2.25.7")
    }
}

