// PixelStages: the value stages of the pixel pipeline on plain Float buffers, in the standard's order
// (modality LUT → VOI → MONOCHROME1 inversion → colour), free of any DICOM parsing so each stage is
// tested on its own. Display values after VOI are in [0, 1], higher is brighter.
import Foundation

/// A lookup table as the standard describes it (LUT Descriptor: entry count, first mapped value, bits).
public struct LookupTable: Sendable, Equatable {
    /// The stored value mapped to `values[0]`.
    public var firstMapped: Int
    /// Bits per entry (LUT Descriptor value 3).
    public var bitsPerEntry: Int
    public var values: [Float]

    public init(firstMapped: Int, bitsPerEntry: Int, values: [Float]) {
        self.firstMapped = firstMapped
        self.bitsPerEntry = bitsPerEntry
        self.values = values
    }

    /// Builds a table from the LUT Descriptor and LUT Data values. An entry count of 0 means 65536.
    /// - Parameters:
    ///   - descriptor: the three descriptor values (first mapped value already interpreted by VR).
    ///   - data: the LUT Data entries (US/OW words).
    public init(descriptor: [Int], data: [Int]) throws {
        guard descriptor.count >= 3, !data.isEmpty else {
            throw NormalizationError(.badLookupTable, "descriptor needs three values and data")
        }
        var count = descriptor[0] == 0 ? 65536 : descriptor[0]
        if count > data.count { count = data.count }
        firstMapped = descriptor[1]
        bitsPerEntry = max(1, min(16, descriptor[2]))
        values = data.prefix(count).map { Float($0) }
    }

    /// The output for one input value: inputs below the first mapped value get the first entry, above the last entry the last.
    @inline(__always) public func lookup(_ x: Float) -> Float {
        var i = Int((x - Float(firstMapped)).rounded(.down))
        if i < 0 { i = 0 } else if i >= values.count { i = values.count - 1 }
        return values[i]
    }

    /// Expands segmented LUT data (PS3.3 C.7.9.2: discrete, linear and indirect segments) to entries.
    public static func expandSegmented(_ words: [Int]) throws -> [Int] {
        var out: [Int] = []
        try expand(words, from: 0, segments: nil, into: &out, depth: 0)
        guard !out.isEmpty else { throw NormalizationError(.badLookupTable, "empty segmented LUT") }
        return out
    }

    private static func expand(_ w: [Int], from start: Int, segments: Int?, into out: inout [Int], depth: Int) throws {
        guard depth < 8 else { throw NormalizationError(.badLookupTable, "segmented LUT nests too deep") }
        var i = start, read = 0
        func bad() -> NormalizationError { NormalizationError(.badLookupTable, "malformed segmented LUT") }
        while i + 1 < w.count {
            let opcode = w[i], length = w[i + 1]
            i += 2
            switch opcode {
            case 0:
                guard i + length <= w.count else { throw bad() }
                out += w[i..<(i + length)]
                i += length
            case 1:
                guard let y0 = out.last, i < w.count, length > 0 else { throw bad() }
                let y1 = w[i]
                i += 1
                let step = Double(y1 - y0) / Double(length)
                for j in 1...length { out.append(Int((Double(y0) + step * Double(j)).rounded(.toNearestOrEven))) }
            case 2:
                guard !out.isEmpty, i + 1 < w.count else { throw bad() }
                let offset = w[i] | w[i + 1] << 16
                i += 2
                guard offset < w.count else { throw bad() }
                try expand(w, from: offset, segments: length, into: &out, depth: depth + 1)
            default:
                throw bad()
            }
            read += 1
            if let n = segments, read == n { return }
        }
    }

    /// Largest value an entry can hold: 2^bits − 1.
    public var maximumOutput: Float { Float((1 << bitsPerEntry) - 1) }
}

/// The Modality LUT stage: stored values → modality values (e.g. Hounsfield units).
public enum ModalityTransform: Sendable, Equatable {
    case rescale(slope: Double, intercept: Double)
    case table(LookupTable)

    /// Slope 1, intercept 0: the default when the file has neither.
    public static let identity = ModalityTransform.rescale(slope: 1, intercept: 0)

    /// Applies the transform in place.
    public func apply(_ values: inout [Float]) {
        switch self {
        case let .rescale(slope, intercept):
            if slope == 1 && intercept == 0 { return }
            let s = Float(slope), b = Float(intercept)
            values.withUnsafeMutableBufferPointer { p in
                for i in p.indices { p[i] = p[i] * s + b }
            }
        case let .table(lut):
            values.withUnsafeMutableBufferPointer { p in
                for i in p.indices { p[i] = lut.lookup(p[i]) }
            }
        }
    }
}

/// A VOI LUT Function (PS3.3 C.11.2.1.2).
public enum VOIFunction: String, Sendable, Codable, Equatable {
    case linear = "LINEAR"
    case linearExact = "LINEAR_EXACT"
    case sigmoid = "SIGMOID"
}

/// The VOI stage: modality values → display values in [0, 1].
public enum VOITransform: Sendable, Equatable {
    /// Window centre/width with its function.
    case window(center: Double, width: Double, function: VOIFunction)
    /// A VOI LUT; outputs are divided by 2^bits − 1.
    case table(LookupTable)
    /// The image's own minimum to maximum.
    case minMax
    /// A fixed range of modality values mapped linearly to [0, 1] (clipped): (x − low) / (high − low).
    case range(low: Double, high: Double)

    /// Applies the transform in place and returns the window actually used (for `minMax`, the
    /// image's range as centre/width).
    @discardableResult
    public func apply(_ values: inout [Float]) throws -> (center: Double, width: Double)? {
        switch self {
        case let .window(center, width, function):
            switch function {
            case .linear:
                guard width >= 1 else { throw NormalizationError(.badWindow, "LINEAR needs width >= 1") }
            case .linearExact, .sigmoid:
                guard width > 0 else { throw NormalizationError(.badWindow, "width must be positive") }
            }
            Self.window(&values, center: center, width: width, function: function)
            return (center, width)
        case let .table(lut):
            let scale = 1 / lut.maximumOutput
            values.withUnsafeMutableBufferPointer { p in
                for i in p.indices { p[i] = min(1, max(0, lut.lookup(p[i]) * scale)) }
            }
            return nil
        case let .range(low, high):
            guard high > low, low.isFinite, high.isFinite else {
                throw NormalizationError(.badWindow, "range needs high > low")
            }
            // A division, not a multiplication by the reciprocal: x / 255 is then the correctly rounded
            // float32 quotient, as NumPy's uint8 / 255 in float32 is.
            let lo = Float(low), span = Float(high - low)
            values.withUnsafeMutableBufferPointer { p in
                for i in p.indices { p[i] = min(1, max(0, (p[i] - lo) / span)) }
            }
            return (low + (high - low) / 2, high - low)
        case .minMax:
            guard var lo = values.first else { return nil }
            var hi = lo
            for v in values { if v < lo { lo = v } else if v > hi { hi = v } }
            let range = hi - lo
            if range > 0 {
                let inv = 1 / range
                values.withUnsafeMutableBufferPointer { p in
                    for i in p.indices { p[i] = (p[i] - lo) * inv }
                }
            } else {
                values.withUnsafeMutableBufferPointer { p in p.update(repeating: 0) }
            }
            return (Double(lo) + Double(range) / 2, Double(range))
        }
    }

    static func window(_ values: inout [Float], center: Double, width: Double, function: VOIFunction) {
        switch function {
        case .linear, .linearExact:
            // LINEAR: PS3.3 C.11.2.1.2.1 (centre − 0.5, width − 1); LINEAR_EXACT: C.11.2.1.3.2.
            let c = function == .linear ? center - 0.5 : center
            let w = function == .linear ? width - 1 : width
            let lower = Float(c - w / 2), upper = Float(c + w / 2)
            if w == 0 {
                values.withUnsafeMutableBufferPointer { p in
                    for i in p.indices { p[i] = p[i] <= lower ? 0 : 1 }
                }
                return
            }
            // (x − c)/w + 0.5 computed as x·a + b, in Double for the constants.
            let a = Float(1 / w), b = Float(0.5 - c / w)
            values.withUnsafeMutableBufferPointer { p in
                for i in p.indices {
                    let x = p[i]
                    p[i] = x <= lower ? 0 : (x > upper ? 1 : min(1, max(0, x * a + b)))
                }
            }
        case .sigmoid:
            let c = Float(center), k = Float(-4 / width)
            values.withUnsafeMutableBufferPointer { p in
                for i in p.indices { p[i] = 1 / (1 + Foundation.exp(k * (p[i] - c))) }
            }
        }
    }
}

/// Colour handling: photometric interpretations other than MONOCHROME1/2 to RGB or luma in [0, 1].
public enum ColourStages {
    /// MONOCHROME1 inversion on display values: x → 1 − x.
    public static func invert(_ values: inout [Float]) {
        values.withUnsafeMutableBufferPointer { p in
            for i in p.indices { p[i] = 1 - p[i] }
        }
    }

    /// Scales stored values 0…2^bits − 1 to [0, 1] in place.
    public static func scaleToUnit(_ values: inout [Float], bitsStored: Int) {
        let inv = 1 / Float((1 << min(bitsStored, 32)) - 1)
        values.withUnsafeMutableBufferPointer { p in
            for i in p.indices { p[i] *= inv }
        }
    }

    /// YBR_FULL (and YBR_FULL_422 once upsampled) → RGB, in stored units (ITU-R BT.601 full range,
    /// PS3.3 C.7.6.3.1.2), clipped to 0…2^bits − 1. Interleaved three samples per pixel.
    public static func ybrFullToRGB(_ values: inout [Float], bitsStored: Int) {
        let maxValue = Float((1 << bitsStored) - 1)
        let half = Float(1 << (bitsStored - 1))
        values.withUnsafeMutableBufferPointer { p in
            var i = 0
            while i + 2 < p.count {
                let y = p[i], cb = p[i + 1] - half, cr = p[i + 2] - half
                p[i] = min(maxValue, max(0, y + 1.402 * cr))
                p[i + 1] = min(maxValue, max(0, y - 0.344136 * cb - 0.714136 * cr))
                p[i + 2] = min(maxValue, max(0, y + 1.772 * cb))
                i += 3
            }
        }
    }

    /// Palette colour → interleaved RGB in [0, 1].
    public static func palette(_ indices: [Float], red: LookupTable, green: LookupTable, blue: LookupTable) -> [Float] {
        var out = [Float](repeating: 0, count: indices.count * 3)
        let sr = 1 / red.maximumOutput, sg = 1 / green.maximumOutput, sb = 1 / blue.maximumOutput
        out.withUnsafeMutableBufferPointer { o in
            for (i, x) in indices.enumerated() {
                o[3 * i] = min(1, red.lookup(x) * sr)
                o[3 * i + 1] = min(1, green.lookup(x) * sg)
                o[3 * i + 2] = min(1, blue.lookup(x) * sb)
            }
        }
        return out
    }

    /// Interleaved RGB → ITU-R BT.601 luma (0.299 R + 0.587 G + 0.114 B).
    public static func luma(_ rgb: [Float]) -> [Float] {
        let n = rgb.count / 3
        var out = [Float](repeating: 0, count: n)
        rgb.withUnsafeBufferPointer { p in
            out.withUnsafeMutableBufferPointer { o in
                for i in 0..<n { o[i] = 0.299 * p[3 * i] + 0.587 * p[3 * i + 1] + 0.114 * p[3 * i + 2] }
            }
        }
        return out
    }

    /// One channel → three identical interleaved channels.
    public static func replicate(_ grey: [Float]) -> [Float] {
        var out = [Float](repeating: 0, count: grey.count * 3)
        out.withUnsafeMutableBufferPointer { o in
            for (i, v) in grey.enumerated() { o[3 * i] = v; o[3 * i + 1] = v; o[3 * i + 2] = v }
        }
        return out
    }
}
