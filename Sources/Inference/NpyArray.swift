// The float32 view of a `.npy` file that the forward pass takes (tensors, reference I/O), decoded by the NPY codec.
import Foundation
import NPY

/// A float32 array read from a `.npy` file (format versions 1–3, `<f4`, C order).
public struct NpyArray: Sendable {
    public let shape: [Int]
    public let values: [Float]

    /// Decodes the bytes of a `.npy` file.
    public init(bytes: [UInt8]) throws(InferenceError) {
        let array: NPYArray
        do { array = try NPYArray(decoding: bytes) } catch {
            throw InferenceError(error.code == .sizeMismatch ? .truncated : .unsupportedArray)
        }
        guard array.dtype == .float32 else { throw InferenceError(.unsupportedArray) }
        shape = array.shape
        values = array.floats
    }

    /// Reads the `.npy` file at `url`.
    public init(contentsOf url: URL) throws(InferenceError) {
        let data: Data
        do { data = try Data(contentsOf: url) } catch { throw InferenceError(.unreadableFile) }
        try self.init(bytes: [UInt8](data))
    }
}
