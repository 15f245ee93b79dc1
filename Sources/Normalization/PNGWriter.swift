// PNGWriter: 8-bit grayscale or RGB PNG previews, written by hand (zlib stream of stored deflate
// blocks with Adler-32, chunks with CRC-32) so no compression library is needed.
import Foundation

/// Writes 8-bit PNG previews.
public enum PNGWriter {
    /// PNG bytes of an 8-bit image (`channels` 1 = grayscale, 3 = RGB), rows top to bottom.
    public static func encode(pixels: [UInt8], rows: Int, columns: Int, channels: Int) throws -> [UInt8] {
        guard rows > 0, columns > 0, channels == 1 || channels == 3, pixels.count == rows * columns * channels else {
            throw NormalizationError(.writeFailed, "png needs 1 or 3 channels and a matching buffer")
        }
        var out: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        var ihdr = [UInt8]()
        ihdr += be32(UInt32(columns)) + be32(UInt32(rows))
        ihdr += [8, channels == 1 ? 0 : 2, 0, 0, 0]   // depth 8, colour type, deflate, filter 0, no interlace
        chunk("IHDR", ihdr, into: &out)
        // Raw scanlines, each prefixed by filter type 0.
        let stride = columns * channels
        var raw = [UInt8]()
        raw.reserveCapacity(rows * (stride + 1))
        for r in 0..<rows {
            raw.append(0)
            raw += pixels[(r * stride)..<((r + 1) * stride)]
        }
        chunk("IDAT", zlibStored(raw), into: &out)
        chunk("IEND", [], into: &out)
        return out
    }

    /// A preview of a 2D tensor (or the middle slice of a volume): [0, 1] float → 0…255; other
    /// float ranges are stretched min–max; uint8 as is.
    public static func preview(_ tensor: Tensor) throws -> [UInt8] {
        let shape = tensor.shape
        let channels = tensor.metadata.axes.last == "channel" ? shape.last ?? 1 : 1
        let spatial = channels == 1 ? shape : Array(shape.dropLast())
        guard spatial.count >= 2 else { throw NormalizationError(.writeFailed, "png needs 2D") }
        let rows = spatial[spatial.count - 2], columns = spatial[spatial.count - 1]
        let planeSize = rows * columns * channels
        let planes = tensor.elementCount / max(1, planeSize)
        let start = (planes / 2) * planeSize
        let pixels: [UInt8]
        switch tensor.storage {
        case let .uint8(v):
            pixels = Array(v[start..<(start + planeSize)])
        case let .float32(v):
            let plane = v[start..<(start + planeSize)]
            let lo = plane.min() ?? 0, hi = plane.max() ?? 1
            let (a, b): (Float, Float) = (lo >= 0 && hi <= 1) ? (0, 1) : (lo, hi > lo ? hi : lo + 1)
            pixels = plane.map { UInt8(min(255, max(0, ((($0 - a) / (b - a)) * 255).rounded()))) }
        }
        return try encode(pixels: pixels, rows: rows, columns: columns, channels: channels)
    }

    /// Writes a preview of `tensor` to `path`.
    public static func write(_ tensor: Tensor, to path: String) throws {
        let bytes = try preview(tensor)
        do {
            try Data(bytes).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw NormalizationError(.writeFailed, "png")
        }
    }

    // MARK: container pieces

    static func be32(_ v: UInt32) -> [UInt8] {
        [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)]
    }

    static func chunk(_ type: String, _ data: [UInt8], into out: inout [UInt8]) {
        let typeBytes = Array(type.utf8)
        out += be32(UInt32(data.count))
        out += typeBytes
        out += data
        var crc = CRC32()
        crc.update(typeBytes)
        crc.update(data)
        out += be32(crc.value)
    }

    /// A zlib stream (RFC 1950) of stored deflate blocks (RFC 1951 BTYPE 00).
    public static func zlibStored(_ data: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [0x78, 0x01]
        var offset = 0
        repeat {
            let n = min(65535, data.count - offset)
            let final: UInt8 = offset + n == data.count ? 1 : 0
            out.append(final)
            out += [UInt8(n & 0xFF), UInt8(n >> 8), UInt8(~n & 0xFF), UInt8((~n >> 8) & 0xFF)]
            out += data[offset..<(offset + n)]
            offset += n
        } while offset < data.count
        out += be32(adler32(data))
        return out
    }

    /// Adler-32 (RFC 1950).
    public static func adler32(_ data: [UInt8]) -> UInt32 {
        var a: UInt32 = 1, b: UInt32 = 0
        var i = 0
        while i < data.count {
            let end = min(data.count, i + 5552)
            while i < end { a += UInt32(data[i]); b += a; i += 1 }
            a %= 65521
            b %= 65521
        }
        return (b << 16) | a
    }
}

/// CRC-32 (ISO 3309, as PNG uses).
public struct CRC32 {
    static let table: [UInt32] = (0..<256).map { n -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = (c & 1) != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    private var crc: UInt32 = 0xFFFF_FFFF
    public init() {}
    public mutating func update(_ bytes: [UInt8]) {
        for b in bytes { crc = Self.table[Int((crc ^ UInt32(b)) & 0xFF)] ^ (crc >> 8) }
    }
    public var value: UInt32 { crc ^ 0xFFFF_FFFF }
}
