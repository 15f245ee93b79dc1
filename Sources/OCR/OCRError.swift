// Typed errors of text recognition: a machine-readable code and a generic text; never image content.
import CodedErrors

/// An error of the OCR target. `reason` is machine-readable (e.g. "engine_unavailable").
public struct OCRError: CodedError, Hashable {
    /// A machine-readable reason.
    public struct Code: ErrorCode {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        /// The language data could not be loaded (tesseract-ocr-eng missing, or TESSDATA_PREFIX wrong).
        public static let engineUnavailable = Code(rawValue: "engine_unavailable")
        /// An image or option out of range (empty image, kernel even, scale out of 0.125–8 …).
        public static let invalidArgument = Code(rawValue: "invalid_argument")
        /// Tesseract failed while recognising.
        public static let recognitionFailed = Code(rawValue: "recognition_failed")
        public static let outOfMemory = Code(rawValue: "out_of_memory")
    }

    public let code: Code
    public init(_ code: Code) { self.code = code }
    public var description: String { "text recognition failed: \(code.rawValue)" }
}
