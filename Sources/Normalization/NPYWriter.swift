// NPYWriter: NumPy .npy format 1.0, little endian (`<f4` float32, `|u1` uint8), C order.
import Foundation

/// Writes tensors as NumPy `.npy` files (format version 1.0).
public enum NPYWriter {
    /// The header dictionary text, e.g. `{'descr': '<f4', 'fortran_order': False, 'shape': (28, 28), }`.
    public static func headerDictionary(dtype: Recipe.DType, shape: [Int]) -> String {
        let descr = dtype == .float32 ? "<f4" : "|u1"
        let dims = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
        return "{'descr': '\(descr)', 'fortran_order': False, 'shape': \(dims), }"
    }

    /// The whole file in memory.
    public static func encode(_ tensor: Tensor) -> [UInt8] {
        var header = headerDictionary(dtype: tensor.dtype, shape: tensor.shape)
        // magic(6) + version(2) + length(2) + header + "\n" is padded with spaces to a multiple of 64.
        let unpadded = 10 + header.utf8.count + 1
        header += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
        var out: [UInt8] = [0x93]
        out += Array("NUMPY".utf8)
        out += [1, 0]
        let length = UInt16(header.utf8.count)
        out += [UInt8(length & 0xFF), UInt8(length >> 8)]
        out += Array(header.utf8)
        switch tensor.storage {
        case let .float32(values):
            out.reserveCapacity(out.count + values.count * 4)
            for v in values {
                let bits = v.bitPattern.littleEndian
                withUnsafeBytes(of: bits) { out.append(contentsOf: $0) }
            }
        case let .uint8(values):
            out += values
        }
        return out
    }

    /// Writes `tensor` to `path` atomically.
    public static func write(_ tensor: Tensor, to path: String) throws {
        do {
            try Data(encode(tensor)).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw NormalizationError(.writeFailed, "npy")
        }
    }
}
