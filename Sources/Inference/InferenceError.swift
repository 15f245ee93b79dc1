// Typed errors of model loading and inference; descriptions are generic and never carry file paths or data.
import CodedErrors

/// An error of the inference engine: a machine-readable `code` plus a generic description.
public struct InferenceError: CodedError, Equatable {
    /// Why loading or running a model failed.
    public struct Code: ErrorCode {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        /// A model file could not be read.
        public static let unreadableFile = Code(rawValue: "unreadable_file")
        /// The weights file does not start with the expected magic bytes.
        public static let badMagic = Code(rawValue: "bad_magic")
        /// The weights file declares a format version this engine does not know.
        public static let unsupportedVersion = Code(rawValue: "unsupported_version")
        /// The file ends before (or continues after) its declared contents.
        public static let truncated = Code(rawValue: "truncated")
        /// The payload's CRC-32 differs from the header's.
        public static let checksumMismatch = Code(rawValue: "checksum_mismatch")
        /// The JSON header or the metadata could not be decoded.
        public static let malformedHeader = Code(rawValue: "malformed_header")
        /// A layer type or option the engine does not implement.
        public static let unsupportedLayer = Code(rawValue: "unsupported_layer")
        /// Layer shapes do not chain, or a tensor lies outside the payload.
        public static let shapeMismatch = Code(rawValue: "shape_mismatch")
        /// The metadata disagrees with the weights (input shape, output units, classes).
        public static let metadataMismatch = Code(rawValue: "metadata_mismatch")
        /// The caller's input does not hold `count` images of the model's input shape.
        public static let invalidInput = Code(rawValue: "invalid_input")
        /// A `.npy` file is not a little-endian float32 C-order array.
        public static let unsupportedArray = Code(rawValue: "unsupported_array")
    }

    /// The reason, stable for machines.
    public let code: Code

    public init(_ code: Code) { self.code = code }

    public var description: String { "inference error: \(code.rawValue)" }
}
