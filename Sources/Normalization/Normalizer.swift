// Normalizer: runs a recipe's pipeline on one frame's stored values and the pixel attributes that
// govern them (independent of how they were parsed), and stacks slices into volumes.

/// The pixel-module attributes that decide how stored values become display values.
public struct PixelAttributes: Sendable, Equatable {
    /// A window centre/width pair as stored in the file.
    public struct WindowValue: Sendable, Equatable {
        public var center: Double
        public var width: Double
        public init(center: Double, width: Double) {
            self.center = center
            self.width = width
        }
    }

    /// Palette colour lookup tables.
    public struct Palette: Sendable, Equatable {
        public var red: LookupTable
        public var green: LookupTable
        public var blue: LookupTable
        public init(red: LookupTable, green: LookupTable, blue: LookupTable) {
            self.red = red
            self.green = green
            self.blue = blue
        }
    }

    public var photometricInterpretation: String
    public var bitsStored: Int
    public var isSigned: Bool
    /// Rescale slope/intercept (slope 1, intercept 0 when absent) or a Modality LUT.
    public var modality: ModalityTransform
    /// WindowCenter/WindowWidth pairs.
    public var windows: [WindowValue]
    /// VOILUTFunction; nil when absent (LINEAR).
    public var voiFunction: VOIFunction?
    /// VOI LUT Sequence items.
    public var voiTables: [LookupTable]
    public var palette: Palette?
    /// PixelSpacing or ImagerPixelSpacing (between rows, between columns) in mm.
    public var pixelSpacing: [Double]?

    public init(photometricInterpretation: String, bitsStored: Int, isSigned: Bool = false,
                modality: ModalityTransform = .identity, windows: [WindowValue] = [], voiFunction: VOIFunction? = nil,
                voiTables: [LookupTable] = [], palette: Palette? = nil, pixelSpacing: [Double]? = nil) {
        self.photometricInterpretation = photometricInterpretation
        self.bitsStored = bitsStored
        self.isSigned = isSigned
        self.modality = modality
        self.windows = windows
        self.voiFunction = voiFunction
        self.voiTables = voiTables
        self.palette = palette
        self.pixelSpacing = pixelSpacing
    }
}

/// Applies one recipe. Stateless and `Sendable`: one instance may serve many threads.
public struct Normalizer: Sendable {
    public let recipe: Recipe

    public init(recipe: Recipe) {
        self.recipe = recipe
    }

    // MARK: value stages

    /// The VOI transform the recipe chooses for these attributes (nil: the file's window is unusable
    /// and the fallback is used instead; resolved by `display`).
    public func voiTransform(for a: PixelAttributes) -> (VOITransform, AppliedWindow) {
        let w = recipe.window
        func fixedWindow() -> (VOITransform, AppliedWindow) {
            let fn: VOIFunction = switch recipe.voiFunction {
            case .linear: .linear
            case .sigmoid: .sigmoid
            case .linearExact, .fromDicom: .linearExact
            }
            return (.window(center: w.center ?? 0, width: w.width ?? 1, function: fn),
                    AppliedWindow(source: "fixed", center: w.center, width: w.width, function: fn.rawValue))
        }
        func bitRange() -> (VOITransform, AppliedWindow) {
            let (low, high) = Self.modalityRange(of: a)
            return (.range(low: low, high: high),
                    AppliedWindow(source: "bit-range", center: low + (high - low) / 2, width: high - low))
        }
        func fallback() -> (VOITransform, AppliedWindow) {
            switch w.fallback {
            case .fixed: fixedWindow()
            case .bitRange: bitRange()
            case .fullRange, .fromDicom, nil: (.minMax, AppliedWindow(source: "min-max"))
            }
        }
        switch w.source {
        case .fixed:
            return fixedWindow()
        case .fullRange:
            return (.minMax, AppliedWindow(source: "min-max"))
        case .bitRange:
            return bitRange()
        case .fromDicom:
            if !a.voiTables.isEmpty {
                return (.table(a.voiTables[min(w.index, a.voiTables.count - 1)]), AppliedWindow(source: "dicom-voi-lut"))
            }
            guard !a.windows.isEmpty else { return fallback() }
            let win = a.windows[min(w.index, a.windows.count - 1)]
            let fn: VOIFunction = switch recipe.voiFunction {
            case .fromDicom: a.voiFunction ?? .linear
            case .linear: .linear
            case .linearExact: .linearExact
            case .sigmoid: .sigmoid
            }
            let valid = fn == .linear ? win.width >= 1 : win.width > 0
            guard valid, win.center.isFinite, win.width.isFinite else { return fallback() }
            return (.window(center: win.center, width: win.width, function: fn),
                    AppliedWindow(source: "dicom-window", center: win.center, width: win.width, function: fn.rawValue))
        }
    }

    /// The modality values the stored bit range maps to, lowest first: the stored range
    /// (0…2^BitsStored − 1, or −2^(BitsStored−1)…2^(BitsStored−1) − 1 when signed) through the rescale, or
    /// 0…2^bits − 1 of a Modality LUT's descriptor. Never empty: a zero span (slope 0) widens to 1.
    public static func modalityRange(of a: PixelAttributes) -> (low: Double, high: Double) {
        var low: Double, high: Double
        switch a.modality {
        case let .rescale(slope, intercept):
            let bits = max(1, min(32, a.bitsStored))
            let lo = a.isSigned ? -Double(Int64(1) << (bits - 1)) : 0
            let hi = a.isSigned ? Double(Int64(1) << (bits - 1)) - 1 : Double(Int64(1) << bits) - 1
            let y0 = lo * slope + intercept, y1 = hi * slope + intercept
            (low, high) = (min(y0, y1), max(y0, y1))
        case let .table(lut):
            (low, high) = (0, Double(lut.maximumOutput))
        }
        if !(high > low) { high = low + 1 }
        return (low, high)
    }

    /// Stored values of one frame → display values in [0, 1] with the recipe's channel count
    /// (1, or 3 when the recipe asks for RGB and the image is in colour; grey images stay one channel
    /// until `finish` replicates them after resizing).
    /// - Parameters:
    ///   - values: stored values, samples interleaved, BitsStored masked and sign extended.
    public func display(_ values: consuming [Float], rows: Int, columns: Int, samplesPerPixel: Int,
                        attributes a: PixelAttributes) throws -> (ImageBuffer, AppliedWindow) {
        guard rows > 0, columns > 0, values.count == rows * columns * samplesPerPixel else {
            throw NormalizationError(.badPixelDescription, "buffer does not match rows × columns × samples")
        }
        let pi = a.photometricInterpretation.uppercased()
        switch pi {
        case "MONOCHROME1", "MONOCHROME2":
            guard samplesPerPixel == 1 else { throw NormalizationError(.badPixelDescription, "monochrome needs one sample") }
            // Transformed in place: a caller that passes its last use of the values (a frame just decoded) spares a
            // copy of the whole image.
            var v = consume values
            a.modality.apply(&v)
            var (voi, applied) = voiTransform(for: a)
            if let used = try voi.apply(&v), applied.source == "min-max" {
                applied.center = used.center
                applied.width = used.width
            }
            if pi == "MONOCHROME1" {
                ColourStages.invert(&v)
                applied.inverted = true
            }
            return (ImageBuffer(rows: rows, columns: columns, channels: 1, values: v), applied)
        case "RGB", "YBR_FULL", "YBR_FULL_422":
            guard samplesPerPixel == 3 else { throw NormalizationError(.badPixelDescription, "colour needs three samples") }
            var v = consume values
            if pi != "RGB" { ColourStages.ybrFullToRGB(&v, bitsStored: a.bitsStored) }
            ColourStages.scaleToUnit(&v, bitsStored: a.bitsStored)
            return colourOutput(v, rows: rows, columns: columns)
        case "PALETTE COLOR":
            guard samplesPerPixel == 1, let p = a.palette else {
                throw NormalizationError(.badLookupTable, "palette colour needs one sample and three tables")
            }
            let v = ColourStages.palette(values, red: p.red, green: p.green, blue: p.blue)
            return colourOutput(v, rows: rows, columns: columns)
        default:
            throw NormalizationError(.unsupportedPhotometric)
        }
    }

    private func colourOutput(_ rgb: [Float], rows: Int, columns: Int) -> (ImageBuffer, AppliedWindow) {
        if recipe.colour == .grayscale {
            return (ImageBuffer(rows: rows, columns: columns, channels: 1, values: ColourStages.luma(rgb)),
                    AppliedWindow(source: "none"))
        }
        return (ImageBuffer(rows: rows, columns: columns, channels: 3, values: rgb), AppliedWindow(source: "none"))
    }

    // MARK: geometry

    /// Crop/pad, optional resampling to the recipe's in-plane spacing, resize to the output size.
    /// Returns the image and its spacing (between rows, between columns) when known.
    public func geometry(_ image: ImageBuffer, pixelSpacing: [Double]?) -> (ImageBuffer, [Double]?) {
        var img = image
        switch recipe.crop {
        case .centreSquare: img = GeometryStages.centreCrop(img)
        case .padSquare: img = GeometryStages.padSquare(img)
        case .none: break
        }
        var spacing = pixelSpacing.flatMap { $0.count >= 2 && $0[0] > 0 && $0[1] > 0 ? Array($0.prefix(2)) : nil }
        if let target = recipe.spacing?.suffix(2).map({ $0 }), let s = spacing {
            let r = GeometryStages.resampledCount(img.rows, spacing: s[0], target: target[0])
            let c = GeometryStages.resampledCount(img.columns, spacing: s[1], target: target[1])
            spacing = [s[0] * Double(img.rows) / Double(r), s[1] * Double(img.columns) / Double(c)]
            img = GeometryStages.resizeArea(img, rows: r, columns: c)
        }
        if let size = recipe.outputSize {
            if let s = spacing {
                spacing = [s[0] * Double(img.rows) / Double(size.rows), s[1] * Double(img.columns) / Double(size.columns)]
            }
            img = GeometryStages.resizeArea(img, rows: size.rows, columns: size.columns)
        }
        return (img, spacing)
    }

    // MARK: whole pipeline

    /// Intensity, channel replication and dtype; builds the tensor and its metadata.
    /// - Parameters:
    ///   - values: D×H×W×C (or H×W×C) display values after geometry.
    ///   - spatialShape: [rows, columns] or [slices, rows, columns].
    public func finish(_ values: [Float], spatialShape: [Int], channels: Int, spacing: [Double]?,
                       window: AppliedWindow?, orientation: [Double]? = nil, origin: [Double]? = nil,
                       frameIndex: Int? = nil, identifiers: [String: String] = [:], issues: [String] = []) -> Tensor {
        var v = values
        var ch = channels
        if recipe.colour == .rgb && ch == 1 {
            v = ColourStages.replicate(v)
            ch = 3
        }
        IntensityStages.apply(&v, intensity: recipe.intensity, channels: ch)
        let shape = spatialShape + (ch == 3 ? [3] : [])
        var axes = spatialShape.count == 3 ? ["slice", "row", "column"] : ["row", "column"]
        if recipe.frames == .stack && spatialShape.count == 3 { axes[0] = "frame" }
        if ch == 3 { axes.append("channel") }
        let storage: Tensor.Storage = recipe.dtype == .uint8 ? .uint8(IntensityStages.toUInt8(v)) : .float32(v)
        let meta = TensorMetadata(recipeName: recipe.name, recipeHash: recipe.contentHash, shape: shape,
                                  dtype: recipe.dtype.rawValue, axes: axes, spacing: spacing, orientation: orientation,
                                  origin: origin, window: window, frameIndex: frameIndex, identifiers: identifiers,
                                  issues: issues)
        return Tensor(shape: shape, storage: storage, metadata: meta)
    }

    /// One frame through every stage: stored values → tensor.
    public func normalizeFrame(_ values: consuming [Float], rows: Int, columns: Int, samplesPerPixel: Int,
                               attributes: PixelAttributes, frameIndex: Int? = nil,
                               identifiers: [String: String] = [:], orientation: [Double]? = nil) throws -> Tensor {
        let (image, window) = try display(consume values, rows: rows, columns: columns, samplesPerPixel: samplesPerPixel,
                                          attributes: attributes)
        let (out, spacing) = geometry(image, pixelSpacing: attributes.pixelSpacing)
        return finish(out.values, spatialShape: [out.rows, out.columns], channels: out.channels, spacing: spacing,
                      window: window, orientation: orientation, frameIndex: frameIndex, identifiers: identifiers)
    }

    /// Stacks display slices (already in slice order, one channel or three, same size) into one tensor:
    /// in-plane geometry per slice, then area resampling along the slices to the recipe's slice spacing.
    /// - Parameters:
    ///   - sliceSpacing: distance between slices in mm, when known.
    public func stack(_ slices: [ImageBuffer], pixelSpacing: [Double]?, sliceSpacing: Double?, window: AppliedWindow?,
                      orientation: [Double]?, origin: [Double]?, identifiers: [String: String],
                      issues: [String]) throws -> Tensor {
        guard let first = slices.first else { throw NormalizationError(.emptySeries) }
        guard slices.allSatisfy({ $0.rows == first.rows && $0.columns == first.columns && $0.channels == first.channels })
        else { throw NormalizationError(.inconsistentSeries, "slices differ in size") }
        var planes: [Float] = []
        var rows = 0, columns = 0, inPlane: [Double]?
        for s in slices {
            let (img, sp) = geometry(s, pixelSpacing: pixelSpacing)
            if planes.isEmpty { planes.reserveCapacity(img.values.count * slices.count) }
            planes += img.values
            rows = img.rows
            columns = img.columns
            inPlane = sp
        }
        var depth = slices.count
        var zSpacing = sliceSpacing
        if recipe.frames == .volume, let target = recipe.spacing, target.count == 3, let dz = sliceSpacing, dz > 0 {
            let newDepth = GeometryStages.resampledCount(depth, spacing: dz, target: target[0])
            planes = GeometryStages.resampleDepth(planes, depth: depth, sliceSize: rows * columns * first.channels,
                                                  to: newDepth)
            zSpacing = dz * Double(depth) / Double(newDepth)
            depth = newDepth
        }
        // Spacing is recorded only when every axis is known.
        var spacing: [Double]?
        if let p = inPlane, let dz = zSpacing { spacing = [dz] + p }
        return finish(planes, spatialShape: [depth, rows, columns], channels: first.channels, spacing: spacing,
                      window: window, orientation: orientation, origin: origin, identifiers: identifiers, issues: issues)
    }
}
