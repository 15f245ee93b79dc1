// Writing pixels back: decoded stored values (PixelData) replace a file's pixel data, uncompressed.

extension PixelData {
    /// The same image description with other sample bytes (as decoded: interleaved, little endian, frames back
    /// to back; the same count).
    public func replacingBytes(_ newBytes: [UInt8]) -> PixelData {
        precondition(newBytes.count == bytes.count, "replacement pixel bytes must keep the count")
        return PixelData(
            rows: rows, columns: columns, samplesPerPixel: samplesPerPixel, frameCount: frameCount, bitsAllocated: bitsAllocated,
            bitsStored: bitsStored, highBit: highBit, isSigned: isSigned, photometricInterpretation: photometricInterpretation,
            bytesPerSample: bytesPerSample, bytes: newBytes)
    }
}

extension DicomFile {
    /// Replaces the file's pixel data by `pixels` (typically `decodePixels()` changed), uncompressed: PixelData
    /// (OB for 8-bit samples, OW otherwise), PhotometricInterpretation as decoded (YBR_FULL for JPEG's YCbCr,
    /// RGB for JPEG 2000's) and PlanarConfiguration 0 (interleaved). Write the file in an uncompressed transfer
    /// syntax afterwards (`TransferSyntax.explicitVRLittleEndian`).
    /// - Throws: `DicomError` `.invalidArgument` for 1-bit images (decoded unpacked, they cannot be written back
    ///   as they are) or sizes that do not add up; the DICOM layer's errors while changing the dataset.
    public func replacePixelData(with pixels: PixelData) throws {
        guard pixels.bitsAllocated >= 8, pixels.bytesPerSample * 8 == pixels.bitsAllocated,
              pixels.bytes.count == pixels.frameByteCount * pixels.frameCount else {
            throw DicomError(.invalidArgument, context: "pixel data cannot be written back")
        }
        let ds = dataset
        try ds.set(.pixelData, bytes: pixels.bytes, vr: pixels.bytesPerSample > 1 ? .OW : .OB)
        try ds.set(.photometricInterpretation, string: pixels.photometricInterpretation, vr: .CS)
        if pixels.samplesPerPixel > 1 { try ds.set(.planarConfiguration, numbers: [0], vr: .US) }
    }
}
