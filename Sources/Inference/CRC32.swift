// CRC-32 (IEEE 802.3, as zlib.crc32) for the weights file's payload check.

private let crcTable: [UInt32] = (0..<256).map { i -> UInt32 in
    var c = UInt32(i)
    for _ in 0..<8 { c = (c & 1) != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
    return c
}

/// The zlib-compatible CRC-32 of `bytes`.
func crc32(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
    var c: UInt32 = 0xFFFF_FFFF
    crcTable.withUnsafeBufferPointer { table in
        for b in bytes { c = table[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
    }
    return c ^ 0xFFFF_FFFF
}
