// DicomError: what can go wrong reading, decoding or writing a DICOM file.
// The text names the kind of failure only; it never carries a value read from the file.
import CodedErrors
import CDCMTK

/// A failure of the DICOM layer. `reason` is machine-readable (e.g. "unsupported_transfer_syntax").
public struct DicomError: CodedError, Hashable {
    /// The kind of failure.
    public struct Code: ErrorCode {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }

        public static let notFound = Code(rawValue: "not_found")
        public static let notDICOM = Code(rawValue: "not_dicom")
        public static let truncated = Code(rawValue: "truncated")
        public static let parseError = Code(rawValue: "parse_error")
        public static let ioError = Code(rawValue: "io_error")
        public static let unsupportedTransferSyntax = Code(rawValue: "unsupported_transfer_syntax")
        public static let nestingTooDeep = Code(rawValue: "nesting_too_deep")
        public static let noPixelData = Code(rawValue: "no_pixel_data")
        public static let badPixelDescription = Code(rawValue: "bad_pixel_description")
        public static let decodeFailed = Code(rawValue: "decode_failed")
        public static let pixelDataTruncated = Code(rawValue: "pixel_data_truncated")
        public static let invalidArgument = Code(rawValue: "invalid_argument")
        public static let wrongType = Code(rawValue: "wrong_type")
        public static let writeFailed = Code(rawValue: "write_failed")
        public static let encodeFailed = Code(rawValue: "encode_failed")
    }

    public let code: Code
    /// Context that is never patient data: a transfer syntax UID, a tag, a DCMTK condition code.
    public let context: String?

    public init(_ code: Code, context: String? = nil) {
        self.code = code
        self.context = context
    }

    public var description: String {
        let text: String
        switch code {
        case .notFound: text = "element not found"
        case .notDICOM: text = "not a DICOM file"
        case .truncated: text = "file ends inside an element (truncated)"
        case .parseError: text = "malformed DICOM encoding"
        case .ioError: text = "cannot read or write the file"
        case .unsupportedTransferSyntax: text = "transfer syntax has no decoder"
        case .nestingTooDeep: text = "sequences nested deeper than the limit"
        case .noPixelData: text = "no pixel data"
        case .badPixelDescription: text = "pixel description (rows, columns, bits) missing or inconsistent"
        case .decodeFailed: text = "pixel data could not be decoded"
        case .pixelDataTruncated: text = "pixel data shorter than its description"
        case .invalidArgument: text = "invalid argument"
        case .wrongType: text = "value cannot be read or written as that type"
        case .writeFailed: text = "writing failed"
        case .encodeFailed: text = "cannot encode in the requested transfer syntax"
        default: text = code.rawValue
        }
        return context.map { "\(text) [\($0)]" } ?? text
    }

    init(status: dcmtk_status, context: String? = nil) {
        switch status {
        case DCMTK_NOT_FOUND: self.init(.notFound, context: context)
        case DCMTK_NOT_DICOM: self.init(.notDICOM, context: context)
        case DCMTK_TRUNCATED: self.init(.truncated, context: context)
        case DCMTK_PARSE_ERROR: self.init(.parseError, context: context)
        case DCMTK_IO_ERROR: self.init(.ioError, context: context)
        case DCMTK_UNSUPPORTED_SYNTAX: self.init(.unsupportedTransferSyntax, context: context)
        case DCMTK_NESTING_TOO_DEEP: self.init(.nestingTooDeep, context: context)
        case DCMTK_NO_PIXEL_DATA: self.init(.noPixelData, context: context)
        case DCMTK_BAD_PIXEL_DESCRIPTION: self.init(.badPixelDescription, context: context)
        case DCMTK_DECODE_FAILED: self.init(.decodeFailed, context: context)
        case DCMTK_PIXEL_DATA_TRUNCATED: self.init(.pixelDataTruncated, context: context)
        case DCMTK_WRONG_TYPE: self.init(.wrongType, context: context)
        case DCMTK_WRITE_FAILED: self.init(.writeFailed, context: context)
        case DCMTK_ENCODE_FAILED: self.init(.encodeFailed, context: context)
        default: self.init(.invalidArgument, context: context)
        }
    }
}

/// The one place a shim status becomes a thrown error.
@inline(__always)
func check(_ status: dcmtk_status, context: @autoclosure () -> String? = nil) throws(DicomError) {
    if status != DCMTK_OK { throw DicomError(status: status, context: context()) }
}
