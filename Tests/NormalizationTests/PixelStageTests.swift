// Value stages against values worked out by hand from PS3.3 C.11 formulas.
import Testing
@testable import Normalization

@Suite struct PixelStageTests {
    @Test func rescaleAndModalityLUT() {
        var v: [Float] = [0, 1000, 4095]
        ModalityTransform.rescale(slope: 1, intercept: -1024).apply(&v)
        #expect(v == [-1024, -24, 3071])
        var w: [Float] = [-5, 10, 11, 12, 100]
        let lut = LookupTable(firstMapped: 10, bitsPerEntry: 16, values: [7, 8, 9])
        ModalityTransform.table(lut).apply(&w)
        #expect(w == [7, 7, 8, 9, 9])   // clamped below and above
    }

    @Test func linearWindowFollowsTheStandard() throws {
        // LINEAR, c = 100, w = 11: x <= c − 0.5 − (w − 1)/2 = 94.5 → 0; x > 105.5 → 1;
        // else ((x − 99.5)/10 + 0.5).
        var v: [Float] = [94, 94.5, 95, 99.5, 105, 105.5, 106]
        try VOITransform.window(center: 100, width: 11, function: .linear).apply(&v)
        let expected: [Float] = [0, 0, 0.05, 0.5, 1.0, 1.0, 1]
        for (a, b) in zip(v, expected) { #expect(abs(a - b) < 1e-6) }
    }

    @Test func linearExactAndSigmoid() throws {
        var v: [Float] = [-1000, -500, 0, 500, 1000, 2000]
        try VOITransform.window(center: 0, width: 2000, function: .linearExact).apply(&v)
        #expect(v == [0, 0.25, 0.5, 0.75, 1, 1])
        var s: [Float] = [40, 140]
        try VOITransform.window(center: 40, width: 400, function: .sigmoid).apply(&s)
        #expect(abs(s[0] - 0.5) < 1e-6)
        #expect(abs(s[1] - Float(1 / (1 + Foundation.exp(-1.0)))) < 1e-6)
        var bad: [Float] = [1]
        #expect(throws: NormalizationError.self) {
            try VOITransform.window(center: 0, width: 0.5, function: .linear).apply(&bad)
        }
    }

    @Test func voiTableAndMinMax() throws {
        var v: [Float] = [0, 1, 2, 3]
        try VOITransform.table(LookupTable(firstMapped: 1, bitsPerEntry: 8, values: [0, 51, 255])).apply(&v)
        for (a, b) in zip(v, [Float(0), 0, 0.2, 1]) { #expect(abs(a - b) < 1e-6) }
        var m: [Float] = [10, 20, 30]
        let used = try VOITransform.minMax.apply(&m)
        #expect(m == [0, 0.5, 1])
        #expect(used?.center == 20 && used?.width == 20)
        var flat: [Float] = [7, 7]
        try VOITransform.minMax.apply(&flat)
        #expect(flat == [0, 0])
    }

    @Test func rangeIsADivisionClippedToUnit() throws {
        var v: [Float] = [-5, 0, 1, 128, 254, 255, 300]
        let used = try VOITransform.range(low: 0, high: 255).apply(&v)
        // Bit for bit what NumPy's float32(x) / float32(255) gives (the training pixels).
        #expect(v == [0, 0, Float(1) / 255, Float(128) / 255, Float(254) / 255, 1, 1])
        #expect(used?.center == 127.5 && used?.width == 255)
        var bad: [Float] = [1]
        #expect(throws: NormalizationError.self) { try VOITransform.range(low: 3, high: 3).apply(&bad) }
    }

    @Test func bitRangeFollowsTheStoredRangeThroughTheModalityLUT() {
        func range(_ bits: Int, signed: Bool = false, _ modality: ModalityTransform = .identity) -> [Double] {
            let r = Normalizer.modalityRange(of: PixelAttributes(photometricInterpretation: "MONOCHROME2", bitsStored: bits,
                                                                 isSigned: signed, modality: modality))
            return [r.low, r.high]
        }
        #expect(range(8) == [0, 255])
        #expect(range(12) == [0, 4095])
        #expect(range(16, signed: true) == [-32768, 32767])
        #expect(range(12, .rescale(slope: 0.5, intercept: -100)) == [-100, 1947.5])
        #expect(range(8, .rescale(slope: -1, intercept: 255)) == [0, 255])       // a negative slope: lowest first
        #expect(range(8, .rescale(slope: 0, intercept: 7)) == [7, 8])            // no span: widened, not a division by 0
        #expect(range(10, .table(LookupTable(firstMapped: 0, bitsPerEntry: 12, values: [0, 9]))) == [0, 4095])
    }

    @Test func colourStages() {
        // Neutral grey and pure red in YBR_FULL (BT.601 full range).
        var ybr: [Float] = [128, 128, 128, 76.245, 84.972, 255.5]
        ColourStages.ybrFullToRGB(&ybr, bitsStored: 8)
        #expect(ybr[0...2].allSatisfy { abs($0 - 128) < 1e-4 })
        #expect(abs(ybr[3] - 255) < 0.6 && abs(ybr[4]) < 0.6 && abs(ybr[5]) < 0.6)
        let luma = ColourStages.luma([1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 1])
        #expect(luma.map { ($0 * 1000).rounded() } == [299, 587, 114, 1000])
        var inv: [Float] = [0, 0.25, 1]
        ColourStages.invert(&inv)
        #expect(inv == [1, 0.75, 0])
        let red = LookupTable(firstMapped: 0, bitsPerEntry: 16, values: [0, 65535])
        let zero = LookupTable(firstMapped: 0, bitsPerEntry: 16, values: [0, 0])
        #expect(ColourStages.palette([1, 0], red: red, green: zero, blue: zero) == [1, 0, 0, 0, 0, 0])
    }

    @Test func displayChoosesTheRecipeWindow() throws {
        let recipe = try Recipe.parse(yaml: "name: t\nwindow: {source: from-dicom, index: 1, fallback: full-range}")
        let n = Normalizer(recipe: recipe)
        let attrs = PixelAttributes(photometricInterpretation: "MONOCHROME1", bitsStored: 12,
                                    modality: .rescale(slope: 2, intercept: -100),
                                    windows: [.init(center: 0, width: 10), .init(center: 100, width: 201)],
                                    voiFunction: .linearExact)
        let (img, applied) = try n.display([100, 50, 75], rows: 1, columns: 3, samplesPerPixel: 1, attributes: attrs)
        // modality: [100, 0, 50]; window 2 (LINEAR_EXACT c=100 w=201): (x−100)/201 + 0.5; then inverted.
        let e1: Double = 1 - (-100.0 / 201 + 0.5)
        let e2: Double = 1 - (-50.0 / 201 + 0.5)
        let expected: [Float] = [0.5, Float(e1), Float(e2)]
        for (a, b) in zip(img.values, expected) { #expect(abs(a - b) < 1e-6) }
        #expect(applied == AppliedWindow(source: "dicom-window", center: 100, width: 201, function: "LINEAR_EXACT", inverted: true))

        // No window in the file: min–max fallback.
        let plain = PixelAttributes(photometricInterpretation: "MONOCHROME2", bitsStored: 8)
        let (img2, applied2) = try n.display([5, 10, 15], rows: 1, columns: 3, samplesPerPixel: 1, attributes: plain)
        #expect(img2.values == [0, 0.5, 1] && applied2.source == "min-max")

        // The bit-range fallback keeps stored meaning: 8 bits over 255 whatever the image holds; MONOCHROME1 inverted;
        // 12 bits with a rescale over the rescaled 0…4095. The sidecar records the range as centre/width.
        let bitRange = Normalizer(recipe: try Recipe.parse(yaml: "name: t\nwindow: {source: from-dicom, fallback: bit-range}"))
        let (img3, applied3) = try bitRange.display([5, 10, 15], rows: 1, columns: 3, samplesPerPixel: 1, attributes: plain)
        #expect(img3.values == [Float(5) / 255, Float(10) / 255, Float(15) / 255])
        #expect(applied3 == AppliedWindow(source: "bit-range", center: 127.5, width: 255))
        let mono1 = PixelAttributes(photometricInterpretation: "MONOCHROME1", bitsStored: 8)
        let (img4, applied4) = try bitRange.display([0, 255], rows: 1, columns: 2, samplesPerPixel: 1, attributes: mono1)
        #expect(img4.values == [1, 0] && applied4.inverted && applied4.source == "bit-range")
        let twelve = PixelAttributes(photometricInterpretation: "MONOCHROME2", bitsStored: 12,
                                     modality: .rescale(slope: 2, intercept: -1000))
        let (img5, applied5) = try bitRange.display([0, 4095], rows: 1, columns: 2, samplesPerPixel: 1, attributes: twelve)
        #expect(img5.values == [0, 1] && applied5.center == 3095 && applied5.width == 8190)
        // A window in the file still wins over the fallback.
        let windowed = PixelAttributes(photometricInterpretation: "MONOCHROME2", bitsStored: 8, windows: [.init(center: 10, width: 20)],
                                       voiFunction: .linearExact)
        #expect(try bitRange.display([10], rows: 1, columns: 1, samplesPerPixel: 1, attributes: windowed).1.source == "dicom-window")

        #expect(throws: NormalizationError(.unsupportedPhotometric)) {
            try n.display([1], rows: 1, columns: 1, samplesPerPixel: 1,
                          attributes: PixelAttributes(photometricInterpretation: "HSV", bitsStored: 8))
        }
    }
}

import Foundation

@Suite struct SegmentedLUTTests {
    @Test func expandsDiscreteLinearAndIndirectSegments() throws {
        // discrete [0, 10], linear to 40 over 3, indirect replay of the first segment (offset 0, 1 segment).
        let words = [0, 2, 0, 10, 1, 3, 40, 2, 1, 0, 0]
        #expect(try LookupTable.expandSegmented(words) == [0, 10, 20, 30, 40, 0, 10])
        #expect(throws: NormalizationError.self) { try LookupTable.expandSegmented([1, 3, 40]) }   // linear with no start
        #expect(throws: NormalizationError.self) { try LookupTable.expandSegmented([7, 1, 1]) }    // unknown opcode
    }
}
