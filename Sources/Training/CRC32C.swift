// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), table-driven, and the masked form TFRecord framing uses.

private let castagnoliTable: [UInt32] = (0..<256).map { i -> UInt32 in
    var c = UInt32(i)
    for _ in 0..<8 { c = (c & 1) != 0 ? 0x82F6_3B78 ^ (c >> 1) : c >> 1 }
    return c
}

/// CRC-32C of `bytes` (the iSCSI / SSE4.2 checksum: "123456789" → 0xE3069283).
public func crc32c<Bytes: Sequence>(_ bytes: Bytes) -> UInt32 where Bytes.Element == UInt8 {
    var c: UInt32 = 0xFFFF_FFFF
    castagnoliTable.withUnsafeBufferPointer { table in
        for b in bytes { c = table[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
    }
    return c ^ 0xFFFF_FFFF
}

/// TFRecord's masked CRC-32C: rotate right by 15 bits, add 0xa282ead8.
public func maskedCRC32C<Bytes: Sequence>(_ bytes: Bytes) -> UInt32 where Bytes.Element == UInt8 {
    let c = crc32c(bytes)
    return ((c >> 15) | (c << 17)) &+ 0xA282_EAD8
}
