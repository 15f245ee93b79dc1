// One definition of the pneumonia model's input: on the 4,708 official PneumoniaMNIST training images, what
// models/train.py feeds the network (pneumonia_cnn.data.to_input: the cxr-28 recipe by the Python reference, on
// the images as 8-bit MONOCHROME2 stored values) is bit for bit what the Swift cxr-28 recipe makes of the same
// images written as DICOM files without a window, and what the Python reference makes of those files (a third of
// them); MONOCHROME1 files of the inverted pixels (the first 1,200) give the same within float rounding. The committed model names the recipe's hash.
//
// The images come from DICOM_ETL_MEDMNIST (../shared/data/medmnist, exported by scripts/test.sh); without it the
// test is skipped with that reason (a fresh clone has no copy and the test downloads none).
import DICOM
import Foundation
import Testing
@testable import Normalization

@Suite(.serialized) struct TrainingInputParityTests {
    static let medmnist = ProcessInfo.processInfo.environment["DICOM_ETL_MEDMNIST"].flatMap { $0.isEmpty ? nil : $0 }
    static var hasImages: Bool { medmnist.map { FileManager.default.fileExists(atPath: $0 + "/MANIFEST.tsv") } ?? false }

    @Test(.enabled(if: hasImages, """
        needs PneumoniaMNIST: DICOM_ETL_MEDMNIST (../shared/data/medmnist, exported by scripts/test.sh) is not set or \
        has no MANIFEST.tsv
        """))
    func trainingInputsEqualTheSwiftRecipeOnTheTrainingImagesAsDicom() throws {
        let dir = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Every training image as 8-bit MONOCHROME2 without a window; the first 1,200 also as MONOCHROME1.
        for (encoding, limit, folder) in [("u8", "0", "reference"), ("mono1", "1200", "reference-mono1")] {
            let export = try TestSupport.run(TestSupport.python, [
                TestSupport.packageRoot + "/scripts/medmnist-to-dicom.py", "--medmnist", try #require(Self.medmnist),
                "--split", "train", "--encodings", encoding, "--limit", limit, "--out", dir + "/files",
                "--reference", dir + "/" + folder,
            ])
            try #require(export.status == 0, "export failed: \(export.stderr.suffix(1500))")
        }
        let (shape, inputs) = try NPYReader.read(dir + "/reference/inputs.npy")
        let (_, grey) = try NPYReader.read(dir + "/reference/images.npy")
        try #require(shape == [4708, 28, 28, 1])
        // train.py's input is grey / 255 exactly (float32 division), as the model card states.
        #expect(inputs.map(\.bitPattern) == grey.map(\.bitPattern))

        let manifest = try ["reference", "reference-mono1"].flatMap { folder in
            try String(contentsOfFile: dir + "/\(folder)/manifest.tsv", encoding: .utf8)
                .split(separator: "\n").dropFirst().map { $0.split(separator: "\t", omittingEmptySubsequences: false).map(String.init) }
        }
        try #require(manifest.count == 4708 + 1200)
        let normalizer = Normalizer(recipe: try Recipe.load(name: "cxr-28", directory: TestSupport.recipeDirectory))
        var identical = [String: Int](), worst = [String: Float](), windows = [String: Set<String>]()
        var u8Files: [(path: String, index: Int)] = []
        for f in manifest {
            let index = try #require(Int(f[0]))
            let encoding = f[8], path = dir + "/files/" + f[7]
            let tensors = try normalizer.normalize(try DicomFile.open(path: path))
            try #require(tensors.count == 1 && tensors[0].shape == [28, 28])
            let want = inputs[(index * 784)..<((index + 1) * 784)]
            let got = tensors[0].floatValues
            if got.map(\.bitPattern) == want.map(\.bitPattern) { identical[encoding, default: 0] += 1 }
            worst[encoding] = max(worst[encoding] ?? 0, zip(got, want).map { abs($0 - $1) }.max() ?? 0)
            windows[encoding, default: []].insert(tensors[0].metadata.window?.source ?? "none")
            if encoding == "u8" { u8Files.append((path, index)) }
        }
        #expect(identical["u8"] == 4708, "8-bit files without a window: \(identical["u8"] ?? 0) of 4708 bit-identical to train.py's input")
        #expect((worst["mono1"] ?? 1) <= 2.5e-7, "MONOCHROME1: max |Swift − train.py input| = \(worst["mono1"] ?? 1)")
        #expect(windows["u8"] == ["bit-range"] && windows["mono1"] == ["bit-range"])

        // The Python reference reading the same files (every third one: its stages are the ones that made train.py's
        // input, compared above on every image; this checks its file reading).
        u8Files = u8Files.enumerated().filter { $0.offset % 3 == 0 }.map(\.element)
        let out = dir + "/python"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let reference = try TestSupport.run(TestSupport.python, [TestSupport.referenceScript, "--recipe",
                                                                 TestSupport.recipeDirectory + "/cxr-28.yaml", "--out", out],
                                            stdin: u8Files.map(\.path).joined(separator: "\n") + "\n")
        try #require(reference.status == 0, "reference failed: \(reference.stderr.suffix(1500))")
        var referenceIdentical = 0
        for (i, file) in u8Files.enumerated() {
            let (_, values) = try NPYReader.read("\(out)/\(i)_0.npy")
            if values.map(\.bitPattern) == inputs[(file.index * 784)..<((file.index + 1) * 784)].map(\.bitPattern) { referenceIdentical += 1 }
        }
        #expect(referenceIdentical == u8Files.count, "the Python reference on the files: \(referenceIdentical) of \(u8Files.count) bit-identical")
        print("""
            training inputs: 4708 train images; Swift cxr-28 on 8-bit files without a window \(identical["u8"] ?? 0) bit-identical \
            to train.py's input; 1200 MONOCHROME1 files within \(worst["mono1"] ?? -1) (\(identical["mono1"] ?? 0) bit-identical); \
            the Python reference on \(u8Files.count) of the files: \(referenceIdentical) bit-identical
            """)
    }

    /// The committed model names the hash of the recipe it was trained on, and that is the shipped cxr-28; the
    /// Python reference computes the same content hash as Swift for every shipped recipe.
    @Test func theModelNamesTheShippedRecipeAndBothLanguagesHashItAlike() throws {
        let metadataPath = TestSupport.packageRoot + "/models/trained_models/pneumonia-cnn/1.0.0/model_metadata.json"
        let metadata = try JSONSerialization.jsonObject(with: try Data(contentsOf: URL(fileURLWithPath: metadataPath))) as? [String: Any]
        let input = try #require(metadata?["input"] as? [String: Any])
        let cxr = try Recipe.load(name: "cxr-28", directory: TestSupport.recipeDirectory)
        #expect(input["recipe"] as? String == "cxr-28")
        #expect(input["recipe_hash"] as? String == cxr.contentHash)
        for name in ["cxr-28", "cxr-224", "ct-hu-volume"] {
            let path = TestSupport.recipeDirectory + "/\(name).yaml"
            let python = try TestSupport.run(TestSupport.python, [TestSupport.referenceScript, "--recipe", path, "--hash"])
            #expect(python.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == (try Recipe.load(name: path)).contentHash, "\(name)")
        }
    }
}
