// StoredFrames: what the archive serves besides decoded pixels: a frame exactly as stored (its compressed
// bitstream), a baseline JPEG of 8-bit display pixels, and tags found by keyword.
import CDCMTK

extension DicomFile {
    /// Whether the pixel data is encapsulated (compressed) in the syntax it was read in.
    public var hasEncapsulatedPixelData: Bool {
        dataset.element(.pixelData)?.isEncapsulated ?? false
    }

    /// Frame `index` (0-based) of encapsulated pixel data as stored: its fragments joined, never decoded.
    /// - Returns: nil when the pixel data is native (uncompressed); use `decodePixels()` for those.
    /// - Throws: `DicomError` (.noPixelData, .notFound past the last frame, .decodeFailed on unreadable fragments).
    ///   Call it before `decodePixels()` on the same file, which replaces the encapsulated representation.
    public func encapsulatedFrame(_ index: Int) throws -> [UInt8]? {
        guard index >= 0 else { throw DicomError(.invalidArgument) }
        var out: UnsafeMutablePointer<UInt8>?
        var length = 0
        let status = dcmtk_encapsulated_frame(handle, UInt32(clamping: index), &out, &length)
        defer { dcmtk_free(out) }
        if status == DCMTK_WRONG_TYPE { return nil }
        try check(status, context: transferSyntaxUID)
        return [UInt8](UnsafeBufferPointer(start: out, count: length))
    }
}

/// Baseline JPEG encoding of display pixels (DCMTK's IJG encoder).
public enum JPEGEncoder {
    /// - Parameters:
    ///   - pixels: 8-bit samples, interleaved, row by row.
    ///   - samplesPerPixel: 1 (grey) or 3 (RGB).
    ///   - quality: 1–100.
    public static func encode(pixels: [UInt8], rows: Int, columns: Int, samplesPerPixel: Int, quality: Int = 90) throws -> [UInt8] {
        guard rows > 0, columns > 0, samplesPerPixel == 1 || samplesPerPixel == 3, pixels.count == rows * columns * samplesPerPixel else {
            throw DicomError(.invalidArgument)
        }
        var out: UnsafeMutablePointer<UInt8>?
        var length = 0
        let status = pixels.withUnsafeBufferPointer {
            dcmtk_encode_jpeg8($0.baseAddress, UInt32(rows), UInt32(columns), UInt32(samplesPerPixel), Int32(quality), &out, &length)
        }
        defer { dcmtk_free(out) }
        try check(status)
        return [UInt8](UnsafeBufferPointer(start: out, count: length))
    }
}

extension Tag {
    /// The public tag with this dictionary keyword (e.g. "PatientName"), or nil.
    public init?(keyword: String) {
        var group: UInt16 = 0
        var element: UInt16 = 0
        guard !keyword.isEmpty, keyword.utf8.count < 80, dcmtk_dictionary_find(keyword, &group, &element) == 1 else { return nil }
        self.init(group, element)
    }
}
