// The burned-in text settings of a profile: what happens to a suspected image (reject, redact what identifies
// the patient, redact all text, pass), and how OCR finds and blanks text (confidence floor, margin, patterns,
// the fallback for images OCR cannot read reliably). Parsed from the `burnedIn` section of a profile.
import Foundation

/// What happens to an image that may carry burned-in text and that no pixel signature blanks.
public enum BurnedInTextAction: String, Sendable, Hashable, Codable, CaseIterable {
    /// Reject it (`burned_in_annotation`).
    case reject
    /// OCR every frame; blank the words that match an identifying value of the header (names, IDs, dates in their
    /// common written forms, accession number, institution …) or a configured pattern.
    case redactSensitive = "redact_sensitive"
    /// OCR every frame; blank every word found.
    case redactAllText = "redact_all_text"
    /// Let it through unchanged, flagged in the result (`burnedInTextSuspected`).
    case pass
}

/// What happens to an image OCR cannot read reliably (too small, too little contrast).
public enum PixelTextFallback: String, Sendable, Hashable, Codable {
    /// Reject it (`burned_in_text_unreadable`).
    case reject
    /// Let it through unchanged, flagged in the result.
    case pass
}

/// How text is found in pixels and blanked (profile `burnedIn.ocr`).
public struct PixelTextSettings: Sendable, Hashable {
    /// OCR every image with pixel data, not only the suspected ones (the redact actions only).
    public var allImages = false
    /// Words Tesseract reads below this confidence (0–100) are not taken as text by `redact_all_text`, and are not
    /// tried against `patterns`. A word matching an identifying value of the header is blanked at any confidence:
    /// the match is the evidence.
    public var minConfidence: Double = 60
    /// Pixels added around every blanked box, on top of a fifth of the box's height.
    public var margin = 2
    /// Images whose shorter side is below this many pixels cannot be read reliably (the fallback applies).
    public var minSide = 64
    /// Frames whose stored values span fewer levels than this (but more than none: a uniform frame holds no text)
    /// cannot be read reliably.
    public var minContrast = 16
    public var fallback = PixelTextFallback.reject
    /// Regular expressions (ICU syntax, case-insensitive) also blanked under `redact_sensitive`, matched against
    /// each line of text read (words joined by single spaces).
    public var patterns: [String] = PixelTextSettings.defaultPatterns
    /// Tesseract's language.
    public var language = "eng"

    public init() {}

    /// Numbers of 6+ digits (IDs, dates written without separators), dates with separators, US social security and
    /// telephone numbers, e-mail addresses.
    public static let defaultPatterns = [
        #"\d{6,}"#, #"\b\d{1,4}[/.-]\d{1,2}[/.-]\d{2,4}\b"#, #"\b\d{3}-\d{2}-\d{4}\b"#,
        #"\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4}"#, #"[A-Z0-9._%+-]+@[A-Z0-9.-]+\.[A-Z]{2,}"#,
    ]

    /// The YAML form (every key optional).
    struct Document: Decodable {
        let allImages: Bool?
        let minConfidence: Double?
        let margin: Int?
        let minSide: Int?
        let minContrast: Int?
        let fallback: PixelTextFallback?
        let patterns: [String]?
        let language: String?
    }

    mutating func apply(_ d: Document) throws {
        if let v = d.allImages { allImages = v }
        if let v = d.minConfidence {
            guard (0...100).contains(v) else { throw DeidentificationError(.invalidProfile, detail: "burnedIn.ocr.minConfidence must be 0–100") }
            minConfidence = v
        }
        if let v = d.margin {
            guard (0...64).contains(v) else { throw DeidentificationError(.invalidProfile, detail: "burnedIn.ocr.margin must be 0–64") }
            margin = v
        }
        if let v = d.minSide {
            guard v >= 1 else { throw DeidentificationError(.invalidProfile, detail: "burnedIn.ocr.minSide must be positive") }
            minSide = v
        }
        if let v = d.minContrast {
            guard v >= 0 else { throw DeidentificationError(.invalidProfile, detail: "burnedIn.ocr.minContrast must not be negative") }
            minContrast = v
        }
        if let v = d.fallback { fallback = v }
        if let v = d.patterns {
            for (i, p) in v.enumerated() where (try? NSRegularExpression(pattern: p)) == nil {
                throw DeidentificationError(.invalidProfile, detail: "burnedIn.ocr.patterns[\(i)] is not a regular expression")
            }
            patterns = v
        }
        if let v = d.language {
            guard !v.isEmpty, v.allSatisfy({ $0.isLetter || $0 == "_" || $0 == "+" }) else {
                throw DeidentificationError(.invalidProfile, detail: "burnedIn.ocr.language must name a Tesseract language")
            }
            language = v
        }
    }
}
