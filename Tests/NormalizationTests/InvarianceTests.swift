// Invariance: one real image rewritten as MONOCHROME1 and MONOCHROME2, 8-bit and 16-bit with rescale
// and window, uncompressed, JPEG-LS and RLE gives the same cxr-28 tensor within 1/255.
import DICOM
import Foundation
import TestSupport
import Testing
@testable import Normalization

@Suite struct InvarianceTests {
    static let bitsAllocated = Tag(0x0028, 0x0100), bitsStored = Tag(0x0028, 0x0101), highBit = Tag(0x0028, 0x0102)
    static let pixelRepresentation = Tag(0x0028, 0x0103), photometric = Tag(0x0028, 0x0004)
    static let pixelData = Tag(0x7FE0, 0x0010)

    /// CT_small.dcm (in both corpora): 128×128, 16-bit signed, rescale intercept −1024.
    static func sourcePath() throws -> String {
        guard let root = TestSupport.corpus else { throw TestFailure("no corpus") }
        for p in [root + "/pydicom/CT_small.dcm", root + "/CT_small.dcm"] where FileManager.default.fileExists(atPath: p) {
            return p
        }
        throw TestFailure("CT_small.dcm not in the corpus")
    }

    static func le16(_ values: [Int]) -> [UInt8] {
        values.flatMap { v -> [UInt8] in let u = UInt16(truncatingIfNeeded: v); return [UInt8(u & 0xFF), UInt8(u >> 8)] }
    }

    /// Rewrites the image's pixel module in place.
    static func rewrite(_ file: DicomFile, stored: [Int], bits: Int, signed: Bool, photometric pi: String,
                        slope: Double?, intercept: Double?, center: Double, width: Double) throws {
        let ds = file.dataset
        try ds.set(bitsAllocated, numbers: [Double(bits)])
        try ds.set(bitsStored, numbers: [Double(bits)])
        try ds.set(highBit, numbers: [Double(bits - 1)])
        try ds.set(pixelRepresentation, numbers: [signed ? 1 : 0])
        try ds.set(photometric, string: pi)
        for (tag, v) in [(Tag(0x0028, 0x1053), slope), (Tag(0x0028, 0x1052), intercept)] {
            if let v { try ds.set(tag, numbers: [v], vr: .DS) } else { try ds.remove(tag) }
        }
        try ds.set(Tag(0x0028, 0x1050), numbers: [center], vr: .DS)
        try ds.set(Tag(0x0028, 0x1051), numbers: [width], vr: .DS)
        try ds.set(Tag(0x0028, 0x1056), string: "LINEAR_EXACT")
        try ds.set(pixelData, bytes: bits == 8 ? stored.map { UInt8($0) } : le16(stored), vr: bits == 8 ? .OB : .OW)
    }

    @Test func cxr28IsInvariantToEncoding() throws {
        let path = try Self.sourcePath()
        let source = try DicomFile.open(path: path)
        let pixels = try source.decodePixels()
        let stored = pixels.frame(0).storedValues().map { Int($0) }
        let recipe = try Recipe.load(name: "cxr-28", directory: TestSupport.recipeDirectory)
        let normalizer = Normalizer(recipe: recipe)
        // A soft-tissue window in HU, LINEAR_EXACT so that inverting values and centre is exact.
        let center = 40.0, width = 400.0
        let hu = stored.map { Double($0) - 1024 }

        var variants: [(String, [UInt8])] = []
        func variant(_ name: String, stored: [Int], bits: Int, signed: Bool, pi: String, slope: Double?,
                     intercept: Double?, center: Double, width: Double, syntaxes: [String]) throws {
            let f = try DicomFile.open(bytes: try source.serialized(transferSyntax: TransferSyntax.explicitVRLittleEndian))
            try Self.rewrite(f, stored: stored, bits: bits, signed: signed, photometric: pi, slope: slope,
                             intercept: intercept, center: center, width: width)
            for ts in syntaxes {
                variants.append(("\(name) \(ts)", try f.serialized(transferSyntax: ts)))
            }
        }
        let lossless = [TransferSyntax.explicitVRLittleEndian, TransferSyntax.jpegLSLossless, TransferSyntax.rleLossless]
        // 16-bit unsigned MONOCHROME2 with rescale (slope 1, intercept −1024) and the window.
        try variant("16-bit MONOCHROME2", stored: stored, bits: 16, signed: false, pi: "MONOCHROME2", slope: 1,
                    intercept: -1024, center: center, width: width, syntaxes: lossless)
        // 16-bit with slope 0.5: stored values doubled, same HU.
        try variant("16-bit slope 0.5", stored: stored.map { $0 * 2 }, bits: 16, signed: false, pi: "MONOCHROME2",
                    slope: 0.5, intercept: -1024, center: center, width: width, syntaxes: lossless)
        // MONOCHROME1: stored 4095 − s with HU' = −HU and the window centre negated; inversion restores the image.
        try variant("16-bit MONOCHROME1", stored: stored.map { 4095 - $0 }, bits: 16, signed: false, pi: "MONOCHROME1",
                    slope: 1, intercept: 1024 - 4095, center: -center, width: width, syntaxes: lossless)
        // 8-bit: the windowed display values quantised to 0…255, no rescale, identity window.
        let display8 = hu.map { x -> Int in
            let y = min(1, max(0, (x - center) / width + 0.5))
            return Int((y * 255).rounded())
        }
        try variant("8-bit MONOCHROME2", stored: display8, bits: 8, signed: false, pi: "MONOCHROME2", slope: nil,
                    intercept: nil, center: 127.5, width: 255, syntaxes: lossless)
        try variant("8-bit MONOCHROME1", stored: display8.map { 255 - $0 }, bits: 8, signed: false, pi: "MONOCHROME1",
                    slope: nil, intercept: nil, center: 127.5, width: 255, syntaxes: lossless)
        #expect(variants.count == 15)

        let base = try normalizer.normalize(try DicomFile.open(bytes: variants[0].1))[0]
        #expect(base.shape == [28, 28])
        let values = base.floatValues
        #expect(values.max()! - values.min()! > 0.3, "the window should leave visible structure")
        for (name, bytes) in variants.dropFirst() {
            let file = try DicomFile.open(bytes: bytes)
            let t = try normalizer.normalize(file)[0]
            let worst = zip(t.floatValues, values).map { abs($0 - $1) }.max() ?? .infinity
            #expect(worst <= 1.0 / 255, "\(name): max difference \(worst)")
        }
    }
}
