// Typed errors of de-identification: a machine-readable code and a generic text, never patient data.
import CodedErrors

/// An error of the Deidentification target. `reason` is machine-readable (e.g. "burned_in_annotation");
/// `detail` names a profile field or a setting, never a value read from a DICOM file.
public struct DeidentificationError: CodedError, Hashable {
    /// A machine-readable reason.
    public struct Code: ErrorCode {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        /// Pixels may carry burned-in text and no signature blanks them.
        public static let burnedInAnnotation = Code(rawValue: "burned_in_annotation")
        /// PatientID is missing or empty and the profile requires it.
        public static let missingPatientID = Code(rawValue: "missing_patient_id")
        /// The profile file could not be read or is invalid.
        public static let invalidProfile = Code(rawValue: "invalid_profile")
        /// No pseudonym key was configured.
        public static let keyMissing = Code(rawValue: "key_missing")
        /// The pseudonym key is shorter than 32 bytes.
        public static let keyTooShort = Code(rawValue: "key_too_short")
        /// The key file could not be read.
        public static let keyUnreadable = Code(rawValue: "key_unreadable")
        /// The key file may be read by group or others, or belongs to another user (see `SecretFile`).
        public static let keyFileInsecure = Code(rawValue: "key_file_insecure")
        /// A signature matched but its regions could not be blanked (pixels did not decode, 1-bit data...).
        public static let pixelBlankingFailed = Code(rawValue: "pixel_blanking_failed")
        /// The profile redacts burned-in text but no OCR engine could be loaded (Tesseract's language data missing).
        public static let ocrUnavailable = Code(rawValue: "ocr_unavailable")
        /// Pixels may carry text that OCR cannot read reliably (too small, too little contrast, no pixel data) and
        /// the profile's fallback rejects such images; `detail` says why.
        public static let burnedInTextUnreadable = Code(rawValue: "burned_in_text_unreadable")
        /// The DICOM layer failed while reading or changing the file (see `dicomReason`).
        public static let dicomError = Code(rawValue: "dicom_error")
    }

    public let code: Code
    /// A field or setting name, or the DICOM layer's reason; never patient data.
    public let detail: String?

    public init(_ code: Code, detail: String? = nil) {
        self.code = code
        self.detail = detail
    }

    public var description: String {
        if let detail { return "de-identification failed: \(code.rawValue) (\(detail))" }
        return "de-identification failed: \(code.rawValue)"
    }
}
