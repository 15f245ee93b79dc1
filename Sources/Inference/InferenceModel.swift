// A trained model as the worker uses it: metadata (name, version, classes, threshold, input contract)
// plus the compiled network, with a pool of workspaces so that predictions allocate no buffers.
import COpenBLAS
import Dispatch
import Foundation
import Synchronization

/// `model_metadata.json`: what the model is and what input it expects.
public struct ModelMetadata: Decodable, Sendable, Equatable {
    /// The input contract: a normalisation recipe and the tensor it produces.
    public struct Input: Decodable, Sendable, Equatable {
        /// Normalisation recipe name (e.g. `cxr-28`), as in `etl/normalize/`.
        public let recipe: String
        /// Height, width, channels (NHWC without N).
        public let shape: [Int]
        public let dtype: String
        /// Inclusive value range of the input.
        public let range: [Float]
        /// Content hash of the recipe the model was trained on (`Recipe.contentHash`), when recorded.
        public let recipeHash: String?

        enum CodingKeys: String, CodingKey {
            case recipe, shape, dtype, range
            case recipeHash = "recipe_hash"
        }
    }

    /// What the network's output units mean.
    public struct Output: Decodable, Sendable, Equatable {
        /// `sigmoid` (one unit: probability of `positiveClass`) or `softmax` (one unit per class).
        public let activation: String
        public let units: Int
    }

    public let name: String
    public let version: String
    /// Class labels, index-aligned with `InferenceModel.predict`'s per-image probabilities.
    public let classes: [String]
    public let positiveClass: String
    /// Decision threshold on P(`positiveClass`), chosen on the validation split.
    public let threshold: Float
    public let input: Input
    public let output: Output

    enum CodingKeys: String, CodingKey {
        case name, version, classes, threshold, input, output
        case positiveClass = "positive_class"
    }
}

/// A loaded model: thread-safe; every `predict` call reuses a preallocated workspace.
public final class InferenceModel: Sendable {
    /// Name of the weights file inside a model version folder.
    public static let weightsFileName = "weights.bin"
    /// Name of the metadata file inside a model version folder.
    public static let metadataFileName = "model_metadata.json"

    public let metadata: ModelMetadata
    /// Images per forward pass of one workspace (the GEMMs' batch); larger batches run in chunks of this size.
    public let chunkSize: Int
    /// Default `chunkSize`: small chunks keep each im2col matrix in L2 and measured fastest per CPU second
    /// (1–2 images ≈ 15 % less CPU than 8, ≈ 30 % less than 64 on a 2 MB-L2 EPYC; bench/inference/run.sh).
    public static let defaultChunkSize = 2
    let network: Network
    private let pool: Mutex<[Workspace]>

    /// Loads `weights.bin` and `model_metadata.json` from a model version folder and checks they agree.
    /// Sets OpenBLAS to one thread: parallelism belongs to callers, across images or jobs.
    /// - Parameters:
    ///   - directory: e.g. `models/trained_models/pneumonia-cnn/1.0.0`.
    ///   - chunkSize: images per workspace pass (the GEMM batch); any batch size is accepted.
    public static func load(directory: URL, chunkSize: Int = defaultChunkSize) throws(InferenceError) -> InferenceModel {
        let data: Data
        do { data = try Data(contentsOf: directory.appendingPathComponent(metadataFileName)) } catch {
            throw InferenceError(.unreadableFile)
        }
        let metadata: ModelMetadata
        do { metadata = try JSONDecoder().decode(ModelMetadata.self, from: data) } catch {
            throw InferenceError(.malformedHeader)
        }
        let file = try WeightsFile(contentsOf: directory.appendingPathComponent(weightsFileName))
        return try InferenceModel(metadata: metadata, weights: file, chunkSize: chunkSize)
    }

    /// Loads a model from the bytes of its `model_metadata.json` and `weights.bin` (e.g. read from the object
    /// store where `models register` put them).
    public static func load(metadata data: Data, weights: Data, chunkSize: Int = defaultChunkSize) throws(InferenceError) -> InferenceModel {
        let metadata: ModelMetadata
        do { metadata = try JSONDecoder().decode(ModelMetadata.self, from: data) } catch {
            throw InferenceError(.malformedHeader)
        }
        return try InferenceModel(metadata: metadata, weights: try WeightsFile(bytes: [UInt8](weights)), chunkSize: chunkSize)
    }

    init(metadata: ModelMetadata, weights: WeightsFile, chunkSize: Int) throws(InferenceError) {
        openblas_set_num_threads(1)
        let network = try Network(weights)
        guard metadata.input.shape == network.inputShape, metadata.output.units == network.outputUnits,
              metadata.classes.contains(metadata.positiveClass),
              (metadata.output.activation == "sigmoid" && network.outputUnits == 1 && metadata.classes.count == 2)
              || (metadata.output.activation == "softmax" && network.outputUnits == metadata.classes.count)
        else { throw InferenceError(.metadataMismatch) }
        self.metadata = metadata
        self.network = network
        self.chunkSize = max(1, chunkSize)
        self.pool = Mutex([])
    }

    /// Floats of one input image (H·W·C).
    public var inputSize: Int { network.inputSize }
    /// FLOPs of one image's forward pass.
    public var flopsPerImage: Int { network.flopsPerImage }

    /// Class probabilities per image, index-aligned with `metadata.classes`.
    /// - Parameters:
    ///   - batch: `count` images, NHWC float32 following the input contract.
    ///   - count: number of images in `batch`.
    public func predict(batch: [Float], count: Int) throws(InferenceError) -> [[Float]] {
        let units = network.outputUnits
        var raw = [Float](repeating: 0, count: count * units)
        try batch.withUnsafeBufferPointer { input throws(InferenceError) in
            try raw.withUnsafeMutableBufferPointer { out throws(InferenceError) in
                try forward(input, count: count, into: out)
            }
        }
        let positive = metadata.classes.firstIndex(of: metadata.positiveClass)!
        return (0..<count).map { i in
            if units == 1 {
                var probs = [Float](repeating: 1 - raw[i], count: 2)
                probs[positive] = raw[i]
                return probs
            }
            return Array(raw[(i * units)..<((i + 1) * units)])
        }
    }

    /// The raw network outputs (`count × units`) into `output`, without allocating: P(positive class) for a
    /// sigmoid model. The batch runs in chunks of `chunkSize` images on one workspace.
    public func forward(_ input: UnsafeBufferPointer<Float>, count: Int,
                        into output: UnsafeMutableBufferPointer<Float>) throws(InferenceError) {
        let units = network.outputUnits
        guard count >= 0, input.count == count * inputSize, output.count >= count * units else {
            throw InferenceError(.invalidInput)
        }
        if count == 0 { return }
        let workspace = checkOut()
        defer { checkIn(workspace) }
        var done = 0
        while done < count {
            let n = min(chunkSize, count - done)
            network.forward(input.baseAddress! + done * inputSize, count: n,
                            output: output.baseAddress! + done * units, workspace: workspace)
            done += n
        }
    }

    /// `forward` split into `threads` contiguous parts run in parallel, each on its own workspace.
    public func forward(_ input: UnsafeBufferPointer<Float>, count: Int, into output: UnsafeMutableBufferPointer<Float>,
                        threads: Int) throws(InferenceError) {
        let parts = max(1, min(threads, count))
        if parts == 1 { return try forward(input, count: count, into: output) }
        guard input.count == count * inputSize, output.count >= count * network.outputUnits else {
            throw InferenceError(.invalidInput)
        }
        let units = network.outputUnits
        let size = inputSize
        nonisolated(unsafe) let inp = input
        nonisolated(unsafe) let out = output
        DispatchQueue.concurrentPerform(iterations: parts) { p in
            let lo = count * p / parts
            let hi = count * (p + 1) / parts
            try? self.forward(UnsafeBufferPointer(rebasing: inp[(lo * size)..<(hi * size)]), count: hi - lo,
                              into: UnsafeMutableBufferPointer(rebasing: out[(lo * units)..<(hi * units)]))
        }
    }

    private func checkOut() -> Workspace {
        if let w = pool.withLock({ $0.popLast() }) { return w }
        return Workspace(network: network, capacity: chunkSize)
    }

    private func checkIn(_ w: Workspace) {
        pool.withLock { $0.append(w) }
    }
}
