// TFRecord framing (as tf.io.TFRecordWriter writes it, uncompressed): per record a little-endian UInt64 length,
// the masked CRC-32C of those 8 bytes, the data, and the masked CRC-32C of the data.
import Foundation

public enum TFRecord {
    /// One framed record.
    public static func frame(_ data: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(data.count + 16)
        let length = withUnsafeBytes(of: UInt64(data.count).littleEndian) { Array($0) }
        out += length
        out += withUnsafeBytes(of: maskedCRC32C(length).littleEndian) { Array($0) }
        out += data
        out += withUnsafeBytes(of: maskedCRC32C(data).littleEndian) { Array($0) }
        return out
    }

    /// The records of a TFRecord file, checking both checksums of each; nil when the bytes are not well formed.
    public static func records(_ bytes: [UInt8]) -> [[UInt8]]? {
        var out: [[UInt8]] = []
        var i = 0
        func u32(_ at: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(bytes[at + $1]) << (8 * UInt32($1)) } }
        while i < bytes.count {
            guard i + 12 <= bytes.count else { return nil }
            let length = (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[i + $1]) << (8 * UInt64($1)) }
            guard maskedCRC32C(bytes[i..<(i + 8)]) == u32(i + 8), length <= UInt64(bytes.count - i - 16) else { return nil }
            let start = i + 12, end = start + Int(length)
            guard maskedCRC32C(bytes[start..<end]) == u32(end) else { return nil }
            out.append(Array(bytes[start..<end]))
            i = end + 4
        }
        return out
    }
}
