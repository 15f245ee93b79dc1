// NormalizationError: the one error type of the Normalization target. Descriptions are generic on
// purpose: no patient data, no file paths, no UIDs.
import CodedErrors

/// An error raised while loading a recipe, normalising pixels, assembling a volume or writing output.
public struct NormalizationError: CodedError, Equatable {
    /// Machine-readable reason.
    public struct Code: ErrorCode {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }

        public static let recipeNotFound = Code(rawValue: "recipe_not_found")
        public static let invalidRecipe = Code(rawValue: "invalid_recipe")
        public static let unsupportedPhotometric = Code(rawValue: "unsupported_photometric_interpretation")
        public static let badPixelDescription = Code(rawValue: "bad_pixel_description")
        public static let badLookupTable = Code(rawValue: "bad_lookup_table")
        public static let badWindow = Code(rawValue: "bad_window")
        public static let badGeometry = Code(rawValue: "bad_geometry")
        public static let emptySeries = Code(rawValue: "empty_series")
        public static let inconsistentSeries = Code(rawValue: "inconsistent_series")
        public static let writeFailed = Code(rawValue: "write_failed")
    }

    public let code: Code
    /// A short generic detail (never patient data).
    public let detail: String

    public init(_ code: Code, _ detail: String = "") {
        self.code = code
        self.detail = detail
    }

    public var description: String {
        detail.isEmpty ? "normalization error: \(code.rawValue)" : "normalization error: \(code.rawValue) (\(detail))"
    }
}
