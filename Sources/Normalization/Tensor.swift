// Tensor: a normalised output (shape, dtype, data) with the metadata its JSON sidecar records.
import Foundation

/// The window (VOI) actually applied to produce a tensor.
public struct AppliedWindow: Sendable, Equatable, Codable {
    /// `dicom-window`, `dicom-voi-lut`, `fixed`, `min-max` (the image's own range), `bit-range` (the stored bit
    /// range through the modality LUT; centre and width in modality units) or `none` (colour images).
    public var source: String
    public var center: Double?
    public var width: Double?
    /// The VOI LUT function (`LINEAR`, `LINEAR_EXACT`, `SIGMOID`) for a window.
    public var function: String?
    /// True when MONOCHROME1 values were inverted.
    public var inverted: Bool

    public init(source: String, center: Double? = nil, width: Double? = nil, function: String? = nil, inverted: Bool = false) {
        self.source = source
        self.center = center
        self.width = width
        self.function = function
        self.inverted = inverted
    }
}

/// What the sidecar says about a tensor.
public struct TensorMetadata: Sendable, Equatable, Codable {
    public var recipeName: String
    public var recipeHash: String
    public var shape: [Int]
    /// `float32` or `uint8`.
    public var dtype: String
    /// Axis names, outermost first, e.g. ["row", "column"], ["slice", "row", "column"], ["row", "column", "channel"].
    public var axes: [String]
    /// Spacing in mm along each spatial axis (outermost first), when known.
    public var spacing: [Double]?
    /// ImageOrientationPatient (row then column direction cosines), when known.
    public var orientation: [Double]?
    /// ImagePositionPatient of the first voxel (volumes), when known.
    public var origin: [Double]?
    public var window: AppliedWindow?
    /// The source frame (2D tensors of a multi-frame file).
    public var frameIndex: Int?
    /// De-identified identifiers handed in by the caller (e.g. study/series/SOP instance UIDs).
    public var identifiers: [String: String]
    /// Problems found while assembling a volume (reason codes), empty when none.
    public var issues: [String]

    public init(recipeName: String, recipeHash: String, shape: [Int], dtype: String, axes: [String],
                spacing: [Double]? = nil, orientation: [Double]? = nil, origin: [Double]? = nil,
                window: AppliedWindow? = nil, frameIndex: Int? = nil, identifiers: [String: String] = [:],
                issues: [String] = []) {
        self.recipeName = recipeName
        self.recipeHash = recipeHash
        self.shape = shape
        self.dtype = dtype
        self.axes = axes
        self.spacing = spacing
        self.orientation = orientation
        self.origin = origin
        self.window = window
        self.frameIndex = frameIndex
        self.identifiers = identifiers
        self.issues = issues
    }

    enum CodingKeys: String, CodingKey {
        case recipeName = "recipe_name", recipeHash = "recipe_hash", shape, dtype, axes, spacing, orientation,
             origin, window, frameIndex = "frame_index", identifiers, issues
    }

    /// The JSON sidecar: sorted keys, pretty printed, UTF-8.
    public func sidecarJSON() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        return try encoder.encode(self)
    }
}

/// A model-ready tensor.
public struct Tensor: Sendable, Equatable {
    /// The element storage.
    public enum Storage: Sendable, Equatable {
        case float32([Float])
        case uint8([UInt8])
    }

    public var shape: [Int]
    public var storage: Storage
    public var metadata: TensorMetadata

    public init(shape: [Int], storage: Storage, metadata: TensorMetadata) {
        self.shape = shape
        self.storage = storage
        self.metadata = metadata
    }

    public var dtype: Recipe.DType {
        switch storage {
        case .float32: .float32
        case .uint8: .uint8
        }
    }

    public var elementCount: Int { shape.reduce(1, *) }

    /// The values as Float (uint8 values as 0…255).
    public var floatValues: [Float] {
        switch storage {
        case let .float32(v): v
        case let .uint8(v): v.map(Float.init)
        }
    }
}
