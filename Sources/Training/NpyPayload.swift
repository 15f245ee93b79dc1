// NpyPayload: the header and raw element bytes of a `.npy` array (format 1.0–3.0, C order, little endian),
// kept as stored: the export writes the tensor's bytes as they are.
import Foundation

/// A parsed `.npy` file.
public struct NpyPayload: Sendable, Hashable {
    /// NumPy type string, e.g. `<f4` or `|u1`.
    public var descr: String
    public var shape: [Int]
    /// The element bytes, little endian, C order.
    public var bytes: [UInt8]

    /// The dtype's name as the export records it (`float32`, `uint8`, …).
    public var dtype: String {
        switch descr {
        case "<f4": "float32"
        case "|u1", "<u1": "uint8"
        case "<f8": "float64"
        case "<i2": "int16"
        case "<u2": "uint16"
        default: descr
        }
    }

    /// Parses `data`; nil when it is not a C-order little-endian `.npy` array whose size matches its shape.
    public init?(_ data: [UInt8]) {
        guard data.count > 10, data[0] == 0x93, Array(data[1...5]) == Array("NUMPY".utf8) else { return nil }
        let major = data[6]
        let (length, start): (Int, Int)
        switch major {
        case 1: (length, start) = (Int(data[8]) | Int(data[9]) << 8, 10)
        case 2, 3:
            guard data.count > 12 else { return nil }
            (length, start) = (Int(data[8]) | Int(data[9]) << 8 | Int(data[10]) << 16 | Int(data[11]) << 24, 12)
        default: return nil
        }
        guard start + length <= data.count else { return nil }
        let header = String(decoding: data[start..<(start + length)], as: UTF8.self)
        guard !header.contains("'fortran_order': True"),
              let d = header.range(of: "'descr': '")?.upperBound,
              let dEnd = header[d...].firstIndex(of: "'"),
              let s = header.range(of: "'shape': (")?.upperBound,
              let sEnd = header[s...].firstIndex(of: ")") else { return nil }
        descr = String(header[d..<dEnd])
        shape = header[s..<sEnd].split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        let itemSize: Int
        switch descr {
        case "<f4": itemSize = 4
        case "|u1", "<u1": itemSize = 1
        case "<f8": itemSize = 8
        case "<i2", "<u2": itemSize = 2
        default: return nil
        }
        bytes = Array(data[(start + length)...])
        guard bytes.count == shape.reduce(1, *) * itemSize else { return nil }
    }
}
