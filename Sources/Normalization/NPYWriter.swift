// NPYWriter: a recipe's tensor as a NumPy `.npy` file (`<f4` float32 or `|u1` uint8, C order), through the NPY codec.
import Foundation
import NPY

/// Writes tensors as NumPy `.npy` files (format version 1.0).
public enum NPYWriter {
    /// The tensor as the codec's array.
    public static func array(_ tensor: Tensor) -> NPYArray {
        switch tensor.storage {
        case let .float32(values): NPYArray(float32: values, shape: tensor.shape)
        case let .uint8(values): NPYArray(uint8: values, shape: tensor.shape)
        }
    }

    /// The whole file in memory.
    public static func encode(_ tensor: Tensor) -> [UInt8] { array(tensor).encoded() }

    /// Writes `tensor` to `path` atomically.
    public static func write(_ tensor: Tensor, to path: String) throws {
        do {
            try Data(encode(tensor)).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw NormalizationError(.writeFailed, "npy")
        }
    }
}
