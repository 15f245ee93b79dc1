// Typed errors of model loading and inference; descriptions are generic and never carry file paths or data.

/// An error of the inference engine: a machine-readable `code` plus a generic description.
public struct InferenceError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Why loading or running a model failed.
    public enum Code: String, Sendable {
        /// A model file could not be read.
        case unreadableFile = "unreadable_file"
        /// The weights file does not start with the expected magic bytes.
        case badMagic = "bad_magic"
        /// The weights file declares a format version this engine does not know.
        case unsupportedVersion = "unsupported_version"
        /// The file ends before (or continues after) its declared contents.
        case truncated
        /// The payload's CRC-32 differs from the header's.
        case checksumMismatch = "checksum_mismatch"
        /// The JSON header or the metadata could not be decoded.
        case malformedHeader = "malformed_header"
        /// A layer type or option the engine does not implement.
        case unsupportedLayer = "unsupported_layer"
        /// Layer shapes do not chain, or a tensor lies outside the payload.
        case shapeMismatch = "shape_mismatch"
        /// The metadata disagrees with the weights (input shape, output units, classes).
        case metadataMismatch = "metadata_mismatch"
        /// The caller's input does not hold `count` images of the model's input shape.
        case invalidInput = "invalid_input"
        /// A `.npy` file is not a little-endian float32 C-order array.
        case unsupportedArray = "unsupported_array"
    }

    /// The reason, stable for machines.
    public let code: Code

    public init(_ code: Code) { self.code = code }

    public var description: String { "inference error: \(code.rawValue)" }
}
