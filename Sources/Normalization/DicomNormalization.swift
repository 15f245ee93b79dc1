// DicomNormalization: reads the attributes that govern pixel values and geometry from a DICOM data
// set (functional groups of enhanced multi-frame images override the top level) and drives the
// Normalizer over whole files and series.
import DICOM

/// Tags this target reads, by number (PS3.6).
enum PixelTag {
    static let photometricInterpretation = Tag(0x0028, 0x0004)
    static let pixelRepresentation = Tag(0x0028, 0x0103)
    static let bitsStored = Tag(0x0028, 0x0101)
    static let rescaleIntercept = Tag(0x0028, 0x1052)
    static let rescaleSlope = Tag(0x0028, 0x1053)
    static let modalityLUTSequence = Tag(0x0028, 0x3000)
    static let lutDescriptor = Tag(0x0028, 0x3002)
    static let lutData = Tag(0x0028, 0x3006)
    static let voiLUTSequence = Tag(0x0028, 0x3010)
    static let windowCenter = Tag(0x0028, 0x1050)
    static let windowWidth = Tag(0x0028, 0x1051)
    static let voiLUTFunction = Tag(0x0028, 0x1056)
    static let paletteDescriptors = [Tag(0x0028, 0x1101), Tag(0x0028, 0x1102), Tag(0x0028, 0x1103)]
    static let paletteData = [Tag(0x0028, 0x1201), Tag(0x0028, 0x1202), Tag(0x0028, 0x1203)]
    static let segmentedPaletteData = [Tag(0x0028, 0x1221), Tag(0x0028, 0x1222), Tag(0x0028, 0x1223)]
    static let pixelSpacing = Tag(0x0028, 0x0030)
    static let imagerPixelSpacing = Tag(0x0018, 0x1164)
    static let imageOrientationPatient = Tag(0x0020, 0x0037)
    static let imagePositionPatient = Tag(0x0020, 0x0032)
    static let instanceNumber = Tag(0x0020, 0x0013)
    static let sliceThickness = Tag(0x0018, 0x0050)
    static let spacingBetweenSlices = Tag(0x0018, 0x0088)
    static let sharedFunctionalGroups = Tag(0x5200, 0x9229)
    static let perFrameFunctionalGroups = Tag(0x5200, 0x9230)
    static let pixelValueTransformation = Tag(0x0028, 0x9145)
    static let frameVOILUT = Tag(0x0028, 0x9132)
    static let pixelMeasures = Tag(0x0028, 0x9110)
    static let planePosition = Tag(0x0020, 0x9113)
    static let planeOrientation = Tag(0x0020, 0x9116)
}

/// Where a frame's attributes live: the frame's functional group item, the shared one, the top level.
struct AttributeSources {
    let top: DataSet
    let perFrame: [DataSet]
    let shared: DataSet?

    init(_ dataset: DataSet) {
        top = dataset
        perFrame = dataset.items(PixelTag.perFrameFunctionalGroups)
        shared = dataset.items(PixelTag.sharedFunctionalGroups).first
    }

    var hasFunctionalGroups: Bool { !perFrame.isEmpty || shared != nil }

    /// DS/IS values; an element kept as UN (explicit VR files that encode known tags as UN, CP-246)
    /// holds the same text, which is parsed here.
    static func decimals(_ ds: DataSet, _ tag: Tag) -> [Double] {
        if let e = ds.element(tag), e.vr == .UN {
            guard let raw = ds.bytes(tag) else { return [] }
            return text(raw).split(separator: "\\").compactMap { Double($0.trimmingCharacters(in: .whitespaces)) }
        }
        return ds.doubles(tag)
    }

    /// CS/LO text; UN elements are decoded as their text.
    static func text(_ ds: DataSet, _ tag: Tag) -> String? {
        if let e = ds.element(tag), e.vr == .UN {
            return ds.bytes(tag).map(text)
        }
        return ds.string(tag)
    }

    private static func text(_ raw: [UInt8]) -> String {
        String(decoding: raw.filter { $0 != 0 }, as: UTF8.self).trimmingCharacters(in: .whitespaces)
    }

    /// The first item of `macro` (e.g. Pixel Value Transformation) for this frame, per-frame first.
    func macros(_ macro: Tag, frame: Int) -> [DataSet] {
        var out: [DataSet] = []
        if frame < perFrame.count, let item = perFrame[frame].items(macro).first { out.append(item) }
        if let s = shared, let item = s.items(macro).first { out.append(item) }
        return out
    }

    /// `tag` from the frame's macro items, else from the top level.
    func doubles(_ tag: Tag, macro: Tag, frame: Int) -> [Double] {
        for item in macros(macro, frame: frame) where item.contains(tag) { return Self.decimals(item, tag) }
        return Self.decimals(top, tag)
    }

    func string(_ tag: Tag, macro: Tag, frame: Int) -> String? {
        for item in macros(macro, frame: frame) where item.contains(tag) { return Self.text(item, tag) }
        return Self.text(top, tag)
    }
}

extension LookupTable {
    /// A LUT from a sequence item (or data set) with a descriptor and data element.
    init(item: DataSet, descriptor: Tag, data: Tag, signedInput: Bool) throws {
        var d = item.integers(descriptor)
        guard d.count >= 3 else { throw NormalizationError(.badLookupTable, "descriptor needs three values") }
        // The first mapped value is signed for signed pixel data even when encoded as US.
        if signedInput && d[1] > 32767 { d[1] -= 65536 }
        let count = d[0] == 0 ? 65536 : d[0]
        var values: [Int]
        if let e = item.element(data), e.vr == .US || e.vr == .SS {
            values = item.integers(data)
        } else if let raw = item.bytes(data) {
            if raw.count == count {
                values = raw.map { Int($0) }
            } else {
                values = stride(from: 0, to: raw.count - 1, by: 2).map { Int(raw[$0]) | Int(raw[$0 + 1]) << 8 }
            }
        } else {
            throw NormalizationError(.badLookupTable, "no LUT data")
        }
        try self.init(descriptor: d, data: values)
    }
}

extension PixelAttributes {
    /// The attributes governing frame `frame` of a decoded image.
    public init(dataset: DataSet, pixels: PixelData, frame: Int = 0) throws {
        try self.init(sources: AttributeSources(dataset), pixels: pixels, frame: frame)
    }

    init(sources s: AttributeSources, pixels: PixelData, frame: Int) throws {
        let top = s.top
        var modality = ModalityTransform.identity
        if let item = top.items(PixelTag.modalityLUTSequence).first, item.contains(PixelTag.lutData) {
            modality = .table(try LookupTable(item: item, descriptor: PixelTag.lutDescriptor, data: PixelTag.lutData,
                                              signedInput: pixels.isSigned))
        } else {
            let slope = s.doubles(PixelTag.rescaleSlope, macro: PixelTag.pixelValueTransformation, frame: frame).first ?? 1
            let intercept = s.doubles(PixelTag.rescaleIntercept, macro: PixelTag.pixelValueTransformation, frame: frame).first ?? 0
            modality = .rescale(slope: slope.isFinite ? slope : 1, intercept: intercept.isFinite ? intercept : 0)
        }
        let centers = s.doubles(PixelTag.windowCenter, macro: PixelTag.frameVOILUT, frame: frame)
        let widths = s.doubles(PixelTag.windowWidth, macro: PixelTag.frameVOILUT, frame: frame)
        let windows = zip(centers, widths).map { WindowValue(center: $0, width: $1) }
        let fn = s.string(PixelTag.voiLUTFunction, macro: PixelTag.frameVOILUT, frame: frame)
            .flatMap { VOIFunction(rawValue: $0.uppercased()) }
        var tables: [LookupTable] = []
        for item in top.items(PixelTag.voiLUTSequence) where item.contains(PixelTag.lutData) {
            tables.append(try LookupTable(item: item, descriptor: PixelTag.lutDescriptor, data: PixelTag.lutData,
                                          signedInput: false))
        }
        var palette: Palette?
        if pixels.photometricInterpretation.uppercased() == "PALETTE COLOR" {
            let luts = try (0..<3).map { c -> LookupTable in
                if !top.contains(PixelTag.paletteData[c]), let raw = top.bytes(PixelTag.segmentedPaletteData[c]) {
                    let d = top.integers(PixelTag.paletteDescriptors[c])
                    guard d.count >= 3 else { throw NormalizationError(.badLookupTable, "descriptor needs three values") }
                    let words = d[2] <= 8 ? raw.map { Int($0) }
                        : stride(from: 0, to: raw.count - 1, by: 2).map { Int(raw[$0]) | Int(raw[$0 + 1]) << 8 }
                    return try LookupTable(descriptor: d, data: try LookupTable.expandSegmented(words))
                }
                return try LookupTable(item: top, descriptor: PixelTag.paletteDescriptors[c], data: PixelTag.paletteData[c],
                                       signedInput: false)
            }
            palette = Palette(red: luts[0], green: luts[1], blue: luts[2])
        }
        self.init(photometricInterpretation: pixels.photometricInterpretation, bitsStored: pixels.bitsStored,
                  isSigned: pixels.isSigned, modality: modality, windows: windows, voiFunction: fn,
                  voiTables: tables, palette: palette, pixelSpacing: Self.pixelSpacing(s, frame: frame))
    }

    static func pixelSpacing(_ s: AttributeSources, frame: Int) -> [Double]? {
        for tag in [PixelTag.pixelSpacing, PixelTag.imagerPixelSpacing] {
            let v = AttributeSources.decimals(s.top, tag)
            if v.count >= 2, v[0] > 0, v[1] > 0 { return Array(v.prefix(2)) }
        }
        for item in s.macros(PixelTag.pixelMeasures, frame: frame) {
            let v = AttributeSources.decimals(item, PixelTag.pixelSpacing)
            if v.count >= 2, v[0] > 0, v[1] > 0 { return Array(v.prefix(2)) }
        }
        return nil
    }
}

extension SliceGeometry {
    /// The geometry of one instance, or of frame `frame` of a multi-frame image.
    public init(dataset: DataSet, rows: Int, columns: Int, frame: Int = 0) {
        let s = AttributeSources(dataset)
        func vector(_ tag: Tag, _ macro: Tag, _ count: Int) -> [Double]? {
            let v = s.doubles(tag, macro: macro, frame: frame)
            return v.count >= count && v.allSatisfy(\.isFinite) ? Array(v.prefix(count)) : nil
        }
        let thickness = s.doubles(PixelTag.sliceThickness, macro: PixelTag.pixelMeasures, frame: frame).first
        let between = s.doubles(PixelTag.spacingBetweenSlices, macro: PixelTag.pixelMeasures, frame: frame).first
        self.init(rows: rows, columns: columns,
                  orientation: vector(PixelTag.imageOrientationPatient, PixelTag.planeOrientation, 6),
                  position: vector(PixelTag.imagePositionPatient, PixelTag.planePosition, 3),
                  pixelSpacing: PixelAttributes.pixelSpacing(s, frame: frame),
                  instanceNumber: s.perFrame.isEmpty ? AttributeSources.decimals(dataset, PixelTag.instanceNumber).first.map { Int($0) } : frame + 1,
                  sliceThickness: thickness.flatMap { $0 > 0 ? $0 : nil },
                  spacingBetweenSlices: between.flatMap { $0 > 0 ? $0 : nil })
    }
}

/// A normalised volume with the layout it was assembled from.
public struct Volume: Sendable {
    /// D×H×W (× 3 for RGB recipes) tensor, slices in `layout.order`.
    public var tensor: Tensor
    public var layout: VolumeLayout
    /// The non-blocking issues found (gaps, duplicates, uneven spacing); also in the tensor's sidecar.
    public var issues: [VolumeIssue] { layout.issues }
}

extension Normalizer {
    /// Stored values of frame `index`, with YBR_FULL_422 in its sub-sampled native layout expanded.
    static func frameValues(_ pixels: PixelData, _ index: Int) throws -> (values: [Float], samples: Int) {
        let frame = pixels.frame(index)
        let values = frame.floatValues()
        let n = pixels.rows * pixels.columns
        if values.count == n * pixels.samplesPerPixel { return (values, pixels.samplesPerPixel) }
        if pixels.photometricInterpretation.uppercased() == "YBR_FULL_422", pixels.samplesPerPixel == 3,
           pixels.columns % 2 == 0, values.count == n * 2 {
            // Y1 Y2 Cb Cr per pair of pixels → Y Cb Cr per pixel.
            var out = [Float](repeating: 0, count: n * 3)
            for p in 0..<(n / 2) {
                let y1 = values[4 * p], y2 = values[4 * p + 1], cb = values[4 * p + 2], cr = values[4 * p + 3]
                out[6 * p] = y1; out[6 * p + 1] = cb; out[6 * p + 2] = cr
                out[6 * p + 3] = y2; out[6 * p + 4] = cb; out[6 * p + 5] = cr
            }
            return (out, 3)
        }
        throw NormalizationError(.badPixelDescription, "frame size does not match rows × columns × samples")
    }

    /// Normalises one file: one tensor per frame (`separate`), one F×H×W stack (`stack`), or one
    /// volume (`volume`: the frames sorted along the slice normal when they carry plane positions).
    /// - Parameters:
    ///   - pixels: the file's pixels when the caller decoded them already (decoded here otherwise).
    ///   - identifiers: de-identified UIDs to record in each tensor's sidecar.
    public func normalize(_ file: DicomFile, pixels decoded: PixelData? = nil, identifiers: [String: String] = [:]) throws -> [Tensor] {
        let pixels = try decoded ?? file.decodePixels()
        let dataset = file.dataset
        let sources = AttributeSources(dataset)
        guard pixels.frameCount > 0 else { throw NormalizationError(.badPixelDescription, "no frames") }
        var cached: PixelAttributes?
        func attributes(_ frame: Int) throws -> PixelAttributes {
            if !sources.hasFunctionalGroups, let c = cached { return c }
            let a = try PixelAttributes(sources: sources, pixels: pixels, frame: frame)
            cached = a
            return a
        }
        let orientation = SliceGeometry(dataset: dataset, rows: pixels.rows, columns: pixels.columns).orientation
        switch recipe.frames {
        case .separate:
            return try (0..<pixels.frameCount).map { k in
                let (v, spp) = try Self.frameValues(pixels, k)
                return try normalizeFrame(consume v, rows: pixels.rows, columns: pixels.columns, samplesPerPixel: spp,
                                          attributes: try attributes(k), frameIndex: pixels.frameCount > 1 ? k : nil,
                                          identifiers: identifiers, orientation: orientation)
            }
        case .stack, .volume:
            var slices: [ImageBuffer] = []
            var window: AppliedWindow?
            for k in 0..<pixels.frameCount {
                let (v, spp) = try Self.frameValues(pixels, k)
                let (img, w) = try display(consume v, rows: pixels.rows, columns: pixels.columns, samplesPerPixel: spp,
                                           attributes: try attributes(k))
                slices.append(img)
                window = window ?? w
            }
            if recipe.frames == .volume && pixels.frameCount > 1 {
                let geometries = (0..<pixels.frameCount).map {
                    SliceGeometry(dataset: dataset, rows: pixels.rows, columns: pixels.columns, frame: $0)
                }
                let layout = try VolumeAssembler.layout(geometries)
                guard layout.isBuildable else {
                    throw NormalizationError(.inconsistentSeries, layout.issues.map(\.code.rawValue).joined(separator: ","))
                }
                return [try stack(layout.order.map { slices[$0] }, pixelSpacing: layout.pixelSpacing,
                                  sliceSpacing: layout.sliceSpacing, window: window,
                                  orientation: layout.orientation, origin: layout.origin,
                                  identifiers: identifiers, issues: layout.issues.map(\.code.rawValue))]
            }
            let geometry = SliceGeometry(dataset: dataset, rows: pixels.rows, columns: pixels.columns)
            return [try stack(slices, pixelSpacing: try attributes(0).pixelSpacing,
                              sliceSpacing: geometry.spacingBetweenSlices ?? geometry.sliceThickness,
                              window: window, orientation: geometry.orientation, origin: geometry.position,
                              identifiers: identifiers, issues: [])]
        }
    }
}

extension VolumeAssembler {
    /// The layout of a series given as single-frame instances.
    public static func layout(_ files: [DicomFile]) throws -> VolumeLayout {
        try layout(files.map { f in
            let d = f.dataset
            return SliceGeometry(dataset: d, rows: d.integer(Tag(0x0028, 0x0010)) ?? 0,
                                 columns: d.integer(Tag(0x0028, 0x0011)) ?? 0)
        })
    }

    /// Sorts the instances of one series along the slice normal, checks them, and normalises them into
    /// one D×H×W tensor. Gaps, duplicates and uneven spacing are reported in `Volume.issues` (and
    /// the sidecar); slices of different sizes or orientations throw `inconsistent_series`.
    public static func assemble(_ files: [DicomFile], normalizer: Normalizer,
                                identifiers: [String: String] = [:]) throws -> Volume {
        guard !files.isEmpty else { throw NormalizationError(.emptySeries) }
        let layout = try Self.layout(files)
        guard layout.isBuildable else {
            throw NormalizationError(.inconsistentSeries, layout.issues.map(\.code.rawValue).joined(separator: ","))
        }
        var slices: [ImageBuffer] = []
        var window: AppliedWindow?
        var pixelSpacing: [Double]?
        for index in layout.order {
            let pixels = try files[index].decodePixels()
            guard pixels.frameCount == 1 else {
                throw NormalizationError(.inconsistentSeries, "multi-frame instance in a series volume")
            }
            let attrs = try PixelAttributes(dataset: files[index].dataset, pixels: pixels, frame: 0)
            let (v, spp) = try Normalizer.frameValues(pixels, 0)
            let (img, w) = try normalizer.display(v, rows: pixels.rows, columns: pixels.columns, samplesPerPixel: spp,
                                                  attributes: attrs)
            slices.append(img)
            window = window ?? w
            pixelSpacing = pixelSpacing ?? attrs.pixelSpacing
        }
        let tensor = try normalizer.stack(slices, pixelSpacing: layout.pixelSpacing ?? pixelSpacing,
                                          sliceSpacing: layout.sliceSpacing, window: window,
                                          orientation: layout.orientation, origin: layout.origin,
                                          identifiers: identifiers, issues: layout.issues.map(\.code.rawValue))
        return Volume(tensor: tensor, layout: layout)
    }
}
