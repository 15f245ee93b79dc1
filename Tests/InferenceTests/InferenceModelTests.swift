// The Swift forward pass against TensorFlow's outputs (reference_io), the weights file's error handling,
// and batching invariance, on the committed pneumonia CNN.
import Foundation
import Testing
@testable import Inference

/// The committed model version folder: models/trained_models/pneumonia-cnn/<version>/.
let modelDirectory: URL = {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    let base = root.appendingPathComponent("models/trained_models/pneumonia-cnn")
    // the highest semantic version (folders such as a scratch export are ignored)
    let versions = ((try? FileManager.default.contentsOfDirectory(atPath: base.path)) ?? [])
        .compactMap { name -> (String, [Int])? in
            let parts = name.split(separator: ".").map { Int($0) }
            return parts.count == 3 && parts.allSatisfy({ $0 != nil }) ? (name, parts.map { $0! }) : nil
        }
        .sorted { $0.1.lexicographicallyPrecedes($1.1) }
    return base.appendingPathComponent(versions.last?.0 ?? "missing")
}()

func referenceIO() throws -> (inputs: NpyArray, outputs: NpyArray) {
    (try NpyArray(contentsOf: modelDirectory.appendingPathComponent("reference_inputs.npy")),
     try NpyArray(contentsOf: modelDirectory.appendingPathComponent("reference_outputs.npy")))
}

func weightsBytes() throws -> [UInt8] {
    [UInt8](try Data(contentsOf: modelDirectory.appendingPathComponent(InferenceModel.weightsFileName)))
}

@Suite struct InferenceModelTests {
    @Test func metadataDescribesTheContract() throws {
        let model = try InferenceModel.load(directory: modelDirectory)
        #expect(model.metadata.name == "pneumonia-cnn")
        #expect(model.metadata.classes == ["normal", "pneumonia"])
        #expect(model.metadata.input.recipe == "cxr-28")
        #expect(model.metadata.input.shape == [28, 28, 1])
        #expect(model.metadata.threshold > 0 && model.metadata.threshold < 1)
        #expect(model.inputSize == 784)
    }

    @Test func reproducesTensorFlowReferenceOutputs() throws {
        let model = try InferenceModel.load(directory: modelDirectory)
        let (inputs, outputs) = try referenceIO()
        let n = inputs.shape[0]
        #expect(n >= 64)
        #expect(inputs.shape == [n, 28, 28, 1])
        #expect(outputs.shape == [n, 1])
        let probs = try model.predict(batch: inputs.values, count: n)
        var worst: Float = 0
        for i in 0..<n {
            worst = max(worst, abs(probs[i][1] - outputs.values[i]))
            #expect(abs(probs[i][0] + probs[i][1] - 1) < 1e-6)
        }
        #expect(worst <= 1e-4, "max |Δp| = \(worst)")
        // the reference set holds both decisions, so parity is not trivially met by a constant output
        #expect(outputs.values.contains { $0 < model.metadata.threshold })
        #expect(outputs.values.contains { $0 >= model.metadata.threshold })
    }

    @Test func batchOfNEqualsNBatchesOfOne() throws {
        let model = try InferenceModel.load(directory: modelDirectory, chunkSize: 16)
        let (inputs, _) = try referenceIO()
        let n = 40  // more than one workspace chunk of 16
        let batch = Array(inputs.values[0..<(n * 784)])
        let together = try model.predict(batch: batch, count: n)
        // equal up to float rounding: OpenBLAS blocks a GEMM by its row count, which reorders the sums
        for i in 0..<n {
            let single = try model.predict(batch: Array(batch[(i * 784)..<((i + 1) * 784)]), count: 1)
            #expect(abs(single[0][1] - together[i][1]) <= 1e-6 && abs(single[0][0] - together[i][0]) <= 1e-6,
                    "image \(i)")
        }
        var parallel = [Float](repeating: -1, count: n)
        try batch.withUnsafeBufferPointer { inp in
            try parallel.withUnsafeMutableBufferPointer { out in try model.forward(inp, count: n, into: out, threads: 2) }
        }
        for i in 0..<n { #expect(abs(parallel[i] - together[i][1]) <= 1e-6, "image \(i)") }
    }

    @Test func wrongInputSizeIsRejected() throws {
        let model = try InferenceModel.load(directory: modelDirectory)
        #expect(throws: InferenceError(.invalidInput)) { try model.predict(batch: [Float](repeating: 0, count: 783), count: 1) }
    }
}

@Suite struct WeightsFileTests {
    @Test func intactFileDecodes() throws {
        let file = try WeightsFile(bytes: try weightsBytes())
        #expect(file.payload.count == file.header.payloadFloats)
        #expect(file.header.inputShape == [28, 28, 1])
    }

    @Test(arguments: [1, 15, 100, 1000])
    func truncatedFileIsATypedError(dropped: Int) throws {
        let bytes = try weightsBytes()
        #expect(throws: InferenceError(.truncated)) { try WeightsFile(bytes: Array(bytes.dropLast(dropped))) }
    }

    @Test func headerOnlyPrefixIsTruncated() throws {
        let bytes = try weightsBytes()
        #expect(throws: InferenceError(.truncated)) { try WeightsFile(bytes: Array(bytes.prefix(12))) }
        #expect(throws: InferenceError(.truncated)) { try WeightsFile(bytes: Array(bytes.prefix(40))) }
    }

    @Test func flippedPayloadByteFailsTheChecksum() throws {
        var bytes = try weightsBytes()
        bytes[bytes.count - 7] ^= 0x10
        #expect(throws: InferenceError(.checksumMismatch)) { try WeightsFile(bytes: bytes) }
    }

    @Test func wrongMagicAndVersionAreRejected() throws {
        var bytes = try weightsBytes()
        bytes[0] = UInt8(ascii: "X")
        #expect(throws: InferenceError(.badMagic)) { try WeightsFile(bytes: bytes) }
        bytes = try weightsBytes()
        bytes[8] = 2
        #expect(throws: InferenceError(.unsupportedVersion)) { try WeightsFile(bytes: bytes) }
    }

    @Test func corruptHeaderIsRejected() throws {
        var bytes = try weightsBytes()
        bytes[16] = UInt8(ascii: "]")  // the JSON header's opening brace
        #expect(throws: InferenceError(.malformedHeader)) { try WeightsFile(bytes: bytes) }
    }

    @Test func loadingACorruptFolderThrows() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("inference-\(UInt64.random(in: 0...UInt64.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.copyItem(at: modelDirectory.appendingPathComponent(InferenceModel.metadataFileName),
                                         to: dir.appendingPathComponent(InferenceModel.metadataFileName))
        #expect(throws: InferenceError(.unreadableFile)) { try InferenceModel.load(directory: dir) }
        try Data(try weightsBytes().dropLast(64)).write(to: dir.appendingPathComponent(InferenceModel.weightsFileName))
        #expect(throws: InferenceError(.truncated)) { try InferenceModel.load(directory: dir) }
    }
}
