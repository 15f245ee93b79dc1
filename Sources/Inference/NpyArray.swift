// Reader of NumPy `.npy` files holding little-endian float32 C-order arrays (tensors, reference I/O).
import Foundation

/// A float32 array read from a `.npy` file (format versions 1–3, `<f4`, C order).
public struct NpyArray: Sendable {
    public let shape: [Int]
    public let values: [Float]

    /// Decodes the bytes of a `.npy` file.
    public init(bytes: [UInt8]) throws(InferenceError) {
        let magic: [UInt8] = [0x93] + Array("NUMPY".utf8)
        guard bytes.count >= 10, Array(bytes[0..<6]) == magic else { throw InferenceError(.unsupportedArray) }
        let major = bytes[6]
        let (lengthSize, start): (Int, Int) = major == 1 ? (2, 10) : (4, 12)
        guard major >= 1, major <= 3, bytes.count >= start else { throw InferenceError(.unsupportedArray) }
        var headerLength = 0
        for i in 0..<lengthSize { headerLength |= Int(bytes[8 + i]) << (8 * i) }
        guard bytes.count >= start + headerLength,
              let header = String(bytes: bytes[start..<(start + headerLength)], encoding: .utf8)
        else { throw InferenceError(.unsupportedArray) }
        let compact = header.filter { !$0.isWhitespace }
        guard compact.contains("'descr':'<f4'"), compact.contains("'fortran_order':False"),
              let open = compact.range(of: "'shape':("),
              let close = compact[open.upperBound...].firstIndex(of: ")")
        else { throw InferenceError(.unsupportedArray) }
        let dims = compact[open.upperBound..<close].split(separator: ",").map { Int($0) }
        guard dims.allSatisfy({ $0 != nil && $0! >= 0 }) else { throw InferenceError(.unsupportedArray) }
        shape = dims.map { $0! }
        let count = shape.reduce(1, *)
        let dataStart = start + headerLength
        guard bytes.count - dataStart == count * 4 else { throw InferenceError(.truncated) }
        var values = [Float](repeating: 0, count: count)
        values.withUnsafeMutableBytes { dst in
            bytes.withUnsafeBytes { src in dst.copyMemory(from: UnsafeRawBufferPointer(rebasing: src[dataStart...])) }
        }
        self.values = values
    }

    /// Reads the `.npy` file at `url`.
    public init(contentsOf url: URL) throws(InferenceError) {
        let data: Data
        do { data = try Data(contentsOf: url) } catch { throw InferenceError(.unreadableFile) }
        try self.init(bytes: [UInt8](data))
    }
}
