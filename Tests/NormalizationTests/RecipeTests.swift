// Recipes: the shipped YAML files load, validate, and hash by content rather than layout.
import Foundation
import Testing
@testable import Normalization

@Suite struct RecipeTests {
    @Test func shippedRecipesLoad() throws {
        let cxr = try Recipe.load(name: "cxr-28", directory: TestSupport.recipeDirectory)
        #expect(cxr.name == "cxr-28")
        #expect(cxr.outputSize?.rows == 28 && cxr.outputSize?.columns == 28)
        #expect(cxr.crop == .centreSquare)
        #expect(cxr.window.source == .fromDicom && cxr.window.fallback == .bitRange)
        #expect(cxr.dtype == .float32 && cxr.intensity.mode == .unit && cxr.colour == .grayscale)

        let big = try Recipe.load(name: "cxr-224", directory: TestSupport.recipeDirectory)
        #expect(big.colour == .rgb && big.intensity.mode == .fixed && big.intensity.mean.count == 3)

        let ct = try Recipe.load(name: "ct-hu-volume", directory: TestSupport.recipeDirectory)
        #expect(ct.frames == .volume && ct.window.source == .fixed)
        #expect(ct.window.center == 0 && ct.window.width == 2000)
        #expect(ct.spacing == [2.0, 1.5, 1.5])
        #expect(ct.outputSize == nil)

        // Loading by path gives the same recipe.
        let byPath = try Recipe.load(name: TestSupport.recipeDirectory + "/cxr-28.yaml")
        #expect(byPath == cxr && byPath.contentHash == cxr.contentHash)
    }

    @Test func hashIgnoresLayoutButNotValues() throws {
        let a = try Recipe.parse(yaml: """
        name: t
        output: {size: [28, 28], dtype: float32}
        crop: centre-square
        window: {source: fixed, center: 40, width: 400}
        """)
        let b = try Recipe.parse(yaml: """
        # same parameters, other order, defaults spelled out
        window:
          width: 400.0
          center: 40
          source: fixed
        crop: centre-square
        resize: area
        colour: grayscale
        output:
          dtype: float32
          size: [28, 28]
        name: t
        """)
        #expect(a.contentHash == b.contentHash)
        #expect(a.contentHash.count == 64)
        let c = try Recipe.parse(yaml: """
        name: t
        output: {size: [28, 28], dtype: float32}
        crop: centre-square
        window: {source: fixed, center: 40, width: 401}
        """)
        #expect(c.contentHash != a.contentHash)
        // Every shipped recipe has its own hash.
        let hashes = try ["cxr-28", "cxr-224", "ct-hu-volume"].map {
            try Recipe.load(name: $0, directory: TestSupport.recipeDirectory).contentHash
        }
        #expect(Set(hashes).count == 3)
    }

    @Test func invalidRecipesAreRejected() {
        let bad = [
            "name: x\ncolour: purple",                                   // unknown enum value
            "name: x\nwindow: {source: fixed, center: 1}",                // fixed window without width
            "name: x\noutput: {dtype: uint8}\nintensity: {mode: zscore}", // uint8 needs unit intensity
            "name: x\nsurprise: 1",                                       // unknown key
            "name: x\noutput: {size: [0, 28]}",                           // empty size
            "name: x\nspacing: [1.0]",                                    // spacing needs 2 or 3 values
            "name: x\nwindow: {source: from-dicom, fallback: from-dicom}",  // a fallback is not the file's window
            "name: x\nwindow: {source: from-dicom, fallback: percentile}",  // unknown fallback
            "name: x\ncolour: rgb\nintensity: {mode: fixed, mean: [0.5, 0.5], std: [1, 1]}",
        ]
        for text in bad {
            #expect(throws: NormalizationError.self) { try Recipe.parse(yaml: text) }
        }
        #expect(throws: NormalizationError(.recipeNotFound)) {
            try Recipe.load(name: "no-such-recipe", directory: TestSupport.recipeDirectory)
        }
    }
}
