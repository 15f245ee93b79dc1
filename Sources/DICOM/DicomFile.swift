// DicomFile: one Part 10 file (or raw dataset) held by DCMTK, freed in deinit.
import CDCMTK

/// A DICOM file read into memory. Not for concurrent use; separate files decode in parallel safely.
public final class DicomFile: @unchecked Sendable {
    /// Sequence nesting accepted by default. Real objects rarely pass 10 levels; DCMTK's reader
    /// recurses per level and overflows its stack some tens of thousands of levels down.
    public static let defaultMaxSequenceNesting = 64

    let handle: OpaquePointer

    private init(handle: OpaquePointer) {
        self.handle = handle
    }

    deinit { dcmtk_close(handle) }

    /// Opens a Part 10 file or a dataset without file meta.
    /// - Throws: `DicomError` (.notDICOM, .truncated, .parseError, .nestingTooDeep, .ioError).
    public static func open(path: String, maxSequenceNesting: Int = defaultMaxSequenceNesting) throws -> DicomFile {
        var status = DCMTK_OK
        var condition: [UInt32] = [0, 0]
        guard let handle = dcmtk_open_file(path, Int32(clamping: maxSequenceNesting), &status, &condition) else {
            throw DicomError(status: status, context: conditionContext(condition))
        }
        return DicomFile(handle: handle)
    }

    /// Opens a file held in memory.
    public static func open(bytes: [UInt8], maxSequenceNesting: Int = defaultMaxSequenceNesting) throws -> DicomFile {
        var status = DCMTK_OK
        var condition: [UInt32] = [0, 0]
        let handle = bytes.withUnsafeBufferPointer {
            dcmtk_open_memory($0.baseAddress, $0.count, Int32(clamping: maxSequenceNesting), &status, &condition)
        }
        guard let handle else { throw DicomError(status: status, context: conditionContext(condition)) }
        return DicomFile(handle: handle)
    }

    /// The main dataset.
    public var dataset: DataSet { DataSet(file: self, item: dcmtk_file_dataset(handle)) }

    /// The file meta information (group 0002); empty for raw datasets.
    public var metaInformation: DataSet { DataSet(file: self, item: dcmtk_file_meta(handle)) }

    /// The transfer syntax the dataset was read in.
    public var transferSyntaxUID: String {
        var buffer = [CChar](repeating: 0, count: 80)
        _ = dcmtk_file_transfer_syntax(handle, &buffer, buffer.count)
        return cString(buffer)
    }

    /// Whether the file had a preamble and file meta information.
    public var hasFileMeta: Bool { dcmtk_file_has_meta(handle) == 1 }

    /// Deepest sequence nesting found while reading.
    public var sequenceNesting: Int { Int(dcmtk_file_max_nesting(handle)) }

    /// Converts every text value to UTF-8; SpecificCharacterSet becomes ISO_IR 192.
    public func convertToUTF8() throws {
        try check(dcmtk_file_convert_to_utf8(handle))
    }

    /// Decodes every frame to stored values.
    public func decodePixels() throws -> PixelData {
        var info = dcmtk_pixel_info()
        var out: UnsafeMutablePointer<UInt8>?
        var length = 0
        try check(dcmtk_decode_pixels(handle, &info, &out, &length), context: transferSyntaxUID)
        defer { dcmtk_free(out) }
        let bytes = [UInt8](UnsafeBufferPointer(start: out, count: length))
        let photometric = withUnsafeBytes(of: info.photometric) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        return PixelData(
            rows: Int(info.rows), columns: Int(info.columns), samplesPerPixel: Int(info.samples_per_pixel),
            frameCount: Int(info.frames), bitsAllocated: Int(info.bits_allocated), bitsStored: Int(info.bits_stored),
            highBit: Int(info.high_bit), isSigned: info.pixel_representation == 1,
            photometricInterpretation: photometric.trimmingPadding(), bytesPerSample: Int(info.bytes_per_sample),
            bytes: bytes
        )
    }

    /// Replaces the pixel data by the stored values `bytes` (default: `pixels.bytes`), laid out as `decodePixels()`
    /// gives them (`pixels` describes them), in the native encoding: samples interleaved, little endian, 1-bit samples packed; PhotometricInterpretation as
    /// decoded, PlanarConfiguration 0. The file must then be written as explicit VR little endian.
    public func storeNativePixels(_ pixels: PixelData, bytes values: [UInt8]? = nil) throws {
        let ds = dataset
        var bytes = values ?? pixels.bytes
        if pixels.bitsAllocated == 1 {
            // Native 1-bit data: every sample one bit, least significant first, frames back to back.
            let samples = bytes
            bytes = [UInt8](repeating: 0, count: (samples.count + 7) / 8)
            for (i, v) in samples.enumerated() where v & 1 == 1 { bytes[i / 8] |= 1 << UInt8(i % 8) }
        }
        try ds.set(Tag(0x7FE0, 0x0010), bytes: bytes, vr: pixels.bitsAllocated > 8 ? .OW : .OB)
        try ds.set(Tag(0x0028, 0x0004), string: pixels.photometricInterpretation, vr: .CS)
        if pixels.samplesPerPixel > 1 { try ds.set(Tag(0x0028, 0x0006), numbers: [0], vr: .US) }
    }

    /// Writes a Part 10 file. `transferSyntax` nil keeps the syntax read; otherwise the dataset is re-encoded.
    public func write(to path: String, transferSyntax: String? = nil) throws {
        try check(dcmtk_file_save(handle, path, transferSyntax), context: transferSyntax)
    }

    /// The Part 10 encoding of this file, in memory.
    public func serialized(transferSyntax: String? = nil) throws -> [UInt8] {
        var out: UnsafeMutablePointer<UInt8>?
        var length = 0
        try check(dcmtk_file_save_memory(handle, transferSyntax, &out, &length), context: transferSyntax)
        defer { dcmtk_free(out) }
        return [UInt8](UnsafeBufferPointer(start: out, count: length))
    }
}

private func conditionContext(_ condition: [UInt32]) -> String? {
    condition[0] == 0 && condition[1] == 0 ? nil : "dcmtk \(condition[0]):\(condition[1])"
}

extension String {
    /// Without the trailing spaces and NULs DICOM pads values with (and leading spaces).
    func trimmingPadding() -> String {
        var scalars = Substring(self)
        while let last = scalars.last, last == " " || last == "\0" { scalars.removeLast() }
        while let first = scalars.first, first == " " { scalars.removeFirst() }
        return String(scalars)
    }
}
