// The pixel data of a dataset as stored, without decoding: for content hashes that must not cost a decode.
import CDCMTK

extension DataSet {
    /// Calls `body` with the pixel data as stored, chunk by chunk: native data in one chunk, encapsulated data
    /// one chunk per item of its pixel sequence (the offset table first). Returns the number of chunks
    /// (0 when there is no pixel data).
    @discardableResult
    public func forEachStoredPixelChunk(_ body: (UnsafeRawBufferPointer) -> Void) -> Int {
        guard let item else { return 0 }
        var index = 0
        while true {
            var out: UnsafePointer<UInt8>?
            var length = 0
            guard dcmtk_item_pixel_chunk(item, index, &out, &length) == DCMTK_OK else { return index }
            body(UnsafeRawBufferPointer(start: out, count: out == nil ? 0 : length))
            index += 1
        }
    }
}
