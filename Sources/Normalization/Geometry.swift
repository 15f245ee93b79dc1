// Geometry: centre-crop / pad to square and area-averaging resampling (exact box filter with
// fractional coverage) on interleaved Float images and D×H×W volumes.

/// A 2D image of Float samples, channels interleaved (rows × columns × channels).
public struct ImageBuffer: Sendable, Equatable {
    public var rows: Int
    public var columns: Int
    public var channels: Int
    public var values: [Float]

    public init(rows: Int, columns: Int, channels: Int = 1, values: [Float]) {
        precondition(values.count == rows * columns * channels, "buffer size does not match its shape")
        self.rows = rows
        self.columns = columns
        self.channels = channels
        self.values = values
    }
}

/// The weights of a 1D area resampling from `inputCount` to `outputCount` samples: output i averages
/// the input interval [i·s, (i+1)·s), s = in/out, each input sample weighted by its covered length.
public struct AreaWeights: Sendable, Equatable {
    public let inputCount: Int
    public let outputCount: Int
    /// First input index of each output sample.
    public let start: [Int]
    /// Number of input samples of each output sample.
    public let count: [Int]
    /// Weights, `count[i]` of them per output sample, concatenated; each group sums to 1.
    public let weights: [Float]
    let offsets: [Int]

    public init(inputCount: Int, outputCount: Int) {
        precondition(inputCount > 0 && outputCount > 0)
        self.inputCount = inputCount
        self.outputCount = outputCount
        let scale = Double(inputCount) / Double(outputCount)
        var start = [Int](), count = [Int](), weights = [Float](), offsets = [Int]()
        start.reserveCapacity(outputCount)
        for i in 0..<outputCount {
            let a = Double(i) * scale
            let b = i == outputCount - 1 ? Double(inputCount) : Double(i + 1) * scale
            let first = Int(a.rounded(.down))
            let last = min(inputCount - 1, Int(b.rounded(.up)) - 1)
            start.append(first)
            offsets.append(weights.count)
            var n = 0
            for j in first...max(first, last) {
                let cover = min(Double(j + 1), b) - max(Double(j), a)
                if cover <= 1e-12 && n > 0 { continue }
                weights.append(Float(max(0, cover) / (b - a)))
                n += 1
            }
            count.append(n)
        }
        self.start = start
        self.count = count
        self.weights = weights
        self.offsets = offsets
    }
}

/// Geometry stages.
public enum GeometryStages {
    /// The centred square of side min(rows, columns); offsets are floor((size − side) / 2).
    public static func centreCrop(_ image: ImageBuffer) -> ImageBuffer {
        let side = min(image.rows, image.columns)
        return crop(image, top: (image.rows - side) / 2, left: (image.columns - side) / 2, rows: side, columns: side)
    }

    /// Pads the short side with `value` to a centred square (the image starts at floor((side − size) / 2)).
    public static func padSquare(_ image: ImageBuffer, value: Float = 0) -> ImageBuffer {
        let side = max(image.rows, image.columns)
        if side == image.rows && side == image.columns { return image }
        let top = (side - image.rows) / 2, left = (side - image.columns) / 2, ch = image.channels
        var out = [Float](repeating: value, count: side * side * ch)
        image.values.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for r in 0..<image.rows {
                    let s = r * image.columns * ch, d = ((r + top) * side + left) * ch
                    for k in 0..<(image.columns * ch) { dst[d + k] = src[s + k] }
                }
            }
        }
        return ImageBuffer(rows: side, columns: side, channels: ch, values: out)
    }

    /// A rectangle of the image.
    public static func crop(_ image: ImageBuffer, top: Int, left: Int, rows: Int, columns: Int) -> ImageBuffer {
        if top == 0 && left == 0 && rows == image.rows && columns == image.columns { return image }
        let ch = image.channels
        var out = [Float](repeating: 0, count: rows * columns * ch)
        image.values.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for r in 0..<rows {
                    let s = ((r + top) * image.columns + left) * ch, d = r * columns * ch
                    for k in 0..<(columns * ch) { dst[d + k] = src[s + k] }
                }
            }
        }
        return ImageBuffer(rows: rows, columns: columns, channels: ch, values: out)
    }

    /// Area-averaging resize to rows × columns (separable: columns first, then rows).
    public static func resizeArea(_ image: ImageBuffer, rows: Int, columns: Int) -> ImageBuffer {
        if rows == image.rows && columns == image.columns { return image }
        let ch = image.channels
        // Horizontal pass: image.rows × columns.
        let wx = AreaWeights(inputCount: image.columns, outputCount: columns)
        var mid = [Float](repeating: 0, count: image.rows * columns * ch)
        image.values.withUnsafeBufferPointer { src in
            mid.withUnsafeMutableBufferPointer { dst in
                wx.weights.withUnsafeBufferPointer { w in
                    for r in 0..<image.rows {
                        let rowIn = r * image.columns * ch, rowOut = r * columns * ch
                        for x in 0..<columns {
                            let s0 = wx.start[x], n = wx.count[x], o = wx.offsets[x]
                            for c in 0..<ch {
                                var acc: Float = 0
                                for k in 0..<n { acc += w[o + k] * src[rowIn + (s0 + k) * ch + c] }
                                dst[rowOut + x * ch + c] = acc
                            }
                        }
                    }
                }
            }
        }
        // Vertical pass: rows × columns, accumulating whole rows (cache friendly).
        let wy = AreaWeights(inputCount: image.rows, outputCount: rows)
        let stride = columns * ch
        var out = [Float](repeating: 0, count: rows * stride)
        mid.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                wy.weights.withUnsafeBufferPointer { w in
                    for y in 0..<rows {
                        let s0 = wy.start[y], n = wy.count[y], o = wy.offsets[y], d = y * stride
                        for k in 0..<n {
                            let wk = w[o + k], s = (s0 + k) * stride
                            for i in 0..<stride { dst[d + i] += wk * src[s + i] }
                        }
                    }
                }
            }
        }
        return ImageBuffer(rows: rows, columns: columns, channels: ch, values: out)
    }

    /// The sample count that covers `count × spacing` mm at `target` mm (rounded, at least 1).
    public static func resampledCount(_ count: Int, spacing: Double, target: Double) -> Int {
        max(1, Int((Double(count) * spacing / target).rounded()))
    }

    /// Area resampling of a D×H×W (× channels) volume along its first axis to `depth` slices.
    public static func resampleDepth(_ values: [Float], depth: Int, sliceSize: Int, to newDepth: Int) -> [Float] {
        if newDepth == depth { return values }
        let wz = AreaWeights(inputCount: depth, outputCount: newDepth)
        var out = [Float](repeating: 0, count: newDepth * sliceSize)
        values.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for z in 0..<newDepth {
                    let s0 = wz.start[z], n = wz.count[z], o = wz.offsets[z], d = z * sliceSize
                    for k in 0..<n {
                        let wk = wz.weights[o + k], s = (s0 + k) * sliceSize
                        for i in 0..<sliceSize { dst[d + i] += wk * src[s + i] }
                    }
                }
            }
        }
        return out
    }
}

/// Intensity and dtype stages (after geometry).
public enum IntensityStages {
    /// Applies the recipe's intensity mode in place; `channels` is the innermost (interleaved) axis.
    public static func apply(_ values: inout [Float], intensity: Recipe.Intensity, channels: Int) {
        switch intensity.mode {
        case .unit:
            return
        case .zscore:
            guard !values.isEmpty else { return }
            var sum = 0.0, sq = 0.0
            for v in values { sum += Double(v) }
            let mean = sum / Double(values.count)
            for v in values { let d = Double(v) - mean; sq += d * d }
            let std = (sq / Double(values.count)).squareRoot()
            let m = Float(mean), inv = Float(std > 0 ? 1 / std : 1)
            values.withUnsafeMutableBufferPointer { p in
                for i in p.indices { p[i] = (p[i] - m) * inv }
            }
        case .fixed:
            let means = intensity.mean.map(Float.init), invs = intensity.std.map { Float(1 / $0) }
            values.withUnsafeMutableBufferPointer { p in
                if means.count == 1 {
                    for i in p.indices { p[i] = (p[i] - means[0]) * invs[0] }
                } else {
                    for i in p.indices { let c = i % channels; p[i] = (p[i] - means[c]) * invs[c] }
                }
            }
        }
    }

    /// [0, 1] → 0…255, rounded half away from zero, clamped.
    public static func toUInt8(_ values: [Float]) -> [UInt8] {
        values.map { v in UInt8(min(255, max(0, (v * 255).rounded()))) }
    }
}
