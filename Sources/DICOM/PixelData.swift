// PixelData and Frame: decoded stored values, before any modality or VOI transform.

/// Every frame of an image, as stored values: interleaved samples, little endian, frames back to back.
public struct PixelData: Sendable {
    public let rows: Int
    public let columns: Int
    public let samplesPerPixel: Int
    public let frameCount: Int
    public let bitsAllocated: Int
    public let bitsStored: Int
    public let highBit: Int
    public let isSigned: Bool
    /// Of the decoded values. Colour stays as stored: YCbCr (JPEG, RLE) arrives as YBR_FULL (422 upsampled);
    /// a JPEG 2000 codestream's own colour transform is undone by the codec (YBR_ICT/RCT arrive as RGB).
    public let photometricInterpretation: String
    /// 1, 2 or 4; 1-bit data arrives unpacked, one byte (0 or 1) per sample.
    public let bytesPerSample: Int
    public let bytes: [UInt8]

    public var frameByteCount: Int { rows * columns * samplesPerPixel * bytesPerSample }

    public func frame(_ index: Int) -> Frame {
        precondition(index >= 0 && index < frameCount, "frame index out of range")
        let start = index * frameByteCount
        return Frame(
            rows: rows, columns: columns, samplesPerPixel: samplesPerPixel, bitsAllocated: bitsAllocated,
            bitsStored: bitsStored, highBit: highBit, isSigned: isSigned,
            photometricInterpretation: photometricInterpretation, bytesPerSample: bytesPerSample,
            bytes: bytes[start..<start + frameByteCount]
        )
    }

    public var frames: [Frame] { (0..<frameCount).map(frame) }
}

/// One frame of stored values.
public struct Frame: Sendable {
    public let rows: Int
    public let columns: Int
    public let samplesPerPixel: Int
    public let bitsAllocated: Int
    public let bitsStored: Int
    public let highBit: Int
    public let isSigned: Bool
    public let photometricInterpretation: String
    public let bytesPerSample: Int
    public let bytes: ArraySlice<UInt8>

    public var sampleCount: Int { rows * columns * samplesPerPixel }

    /// Stored values with the bits outside BitsStored/HighBit dropped and the sign extended
    /// (PixelRepresentation), interleaved samples.
    public func storedValues() -> [Int64] {
        var out = [Int64](repeating: 0, count: sampleCount)
        forEachValue { i, v in out[i] = v }
        return out
    }

    /// The same values as Float.
    public func floatValues() -> [Float] {
        // Written once, straight into the new array's storage (no zero fill first).
        [Float](unsafeUninitializedCapacity: sampleCount) { buffer, initialized in
            forEachValue { i, v in buffer[i] = Float(v) }
            initialized = sampleCount
        }
    }

    @inline(__always)
    private func forEachValue(_ body: (Int, Int64) -> Void) {
        let shift = UInt64(max(0, highBit + 1 - bitsStored))
        let bits = UInt64(min(bitsStored, 63))
        let mask: UInt64 = bitsStored >= 64 ? .max : (1 << bits) - 1
        let signBit: UInt64 = 1 << (bits - 1)
        let signed = isSigned && bitsAllocated > 1
        bytes.withUnsafeBytes { raw in
            let count = sampleCount
            switch bytesPerSample {
            case 1:
                let p = raw.bindMemory(to: UInt8.self)
                for i in 0..<count { body(i, extend(UInt64(p[i]), shift, mask, signBit, signed)) }
            case 2:
                for i in 0..<count {
                    let v = UInt64(raw.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self).littleEndian)
                    body(i, extend(v, shift, mask, signBit, signed))
                }
            default:
                for i in 0..<count {
                    let v = UInt64(raw.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self).littleEndian)
                    body(i, extend(v, shift, mask, signBit, signed))
                }
            }
        }
    }
}

@inline(__always)
private func extend(_ raw: UInt64, _ shift: UInt64, _ mask: UInt64, _ signBit: UInt64, _ signed: Bool) -> Int64 {
    let v = (raw >> shift) & mask
    if signed && v & signBit != 0 { return Int64(bitPattern: v | ~mask) }
    return Int64(bitPattern: v)
}
