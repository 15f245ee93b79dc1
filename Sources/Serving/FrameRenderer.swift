// FrameRenderer: a frame for display (WADO-RS rendered): stored values → modality rescale → the first VOI window
// of the header (else the frame's own range) → 8 bits, MONOCHROME1 inverted, YBR converted to RGB; then PNG or
// JPEG.
import DICOM
import Foundation
import Normalization

/// A rendered frame: 8-bit samples, interleaved.
struct RenderedFrame {
    var rows: Int
    var columns: Int
    /// 1 (grey) or 3 (RGB).
    var samplesPerPixel: Int
    var pixels: [UInt8]

    enum Format { case png, jpeg(quality: Int) }

    func encoded(_ format: Format) throws -> [UInt8] {
        switch format {
        case .png: try PNGWriter.encode(pixels: pixels, rows: rows, columns: columns, channels: samplesPerPixel)
        case .jpeg(let quality): try JPEGEncoder.encode(pixels: pixels, rows: rows, columns: columns, samplesPerPixel: samplesPerPixel, quality: quality)
        }
    }
}

enum FrameRenderer {
    /// Renders frame `index` (0-based) of a decoded image whose header is `dataset`.
    static func render(_ pixels: PixelData, frame index: Int, dataset: DataSet) throws(ServingError) -> RenderedFrame {
        guard index >= 0, index < pixels.frameCount else { throw .notFound }
        let frame = pixels.frame(index)
        let photometric = frame.photometricInterpretation.uppercased()
        let count = frame.rows * frame.columns
        if frame.samplesPerPixel == 3 {
            let values = frame.storedValues()
            let maximum = Double((1 << min(frame.bitsStored, 16)) - 1)
            var out = [UInt8](repeating: 0, count: count * 3)
            let ybr = photometric.hasPrefix("YBR")
            for p in 0..<count {
                var (a, b, c) = (Double(values[3 * p]), Double(values[3 * p + 1]), Double(values[3 * p + 2]))
                if maximum != 255 { (a, b, c) = (a * 255 / maximum, b * 255 / maximum, c * 255 / maximum) }
                if ybr {
                    // ITU-R BT.601 full range (YBR_FULL, and the upsampled YBR_FULL_422).
                    let (y, cb, cr) = (a, b - 128, c - 128)
                    (a, b, c) = (y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb)
                }
                out[3 * p] = clamp8(a)
                out[3 * p + 1] = clamp8(b)
                out[3 * p + 2] = clamp8(c)
            }
            return RenderedFrame(rows: frame.rows, columns: frame.columns, samplesPerPixel: 3, pixels: out)
        }
        guard frame.samplesPerPixel == 1 else { throw .unprocessable("unsupported_samples_per_pixel") }
        let slope = dataset.double(.rescaleSlope).flatMap { $0 == 0 ? nil : $0 } ?? 1
        let intercept = dataset.double(.rescaleIntercept) ?? 0
        let values = frame.storedValues().map { Double($0) * slope + intercept }
        var center = dataset.double(.windowCenter)
        var width = dataset.double(.windowWidth)
        if width == nil || width! < 1 || center == nil {
            let low = values.min() ?? 0, high = values.max() ?? 0
            center = (low + high) / 2
            width = max(high - low, 1)
        }
        let c = center!, w = width!
        let invert = photometric == "MONOCHROME1"
        var out = [UInt8](repeating: 0, count: count)
        // DICOM's linear VOI function (PS3.3 C.11.2.1.2.1).
        for p in 0..<count {
            let x = values[p]
            let y: Double
            if x <= c - 0.5 - (w - 1) / 2 { y = 0 } else if x > c - 0.5 + (w - 1) / 2 { y = 255 } else { y = ((x - (c - 0.5)) / (w - 1) + 0.5) * 255 }
            out[p] = invert ? 255 - clamp8(y) : clamp8(y)
        }
        return RenderedFrame(rows: frame.rows, columns: frame.columns, samplesPerPixel: 1, pixels: out)
    }
}

private func clamp8(_ value: Double) -> UInt8 {
    UInt8(max(0, min(255, value.rounded())))
}
