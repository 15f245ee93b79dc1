// A de-identification profile: which options of PS3.15 Annex E are on, how combined codes and unlisted
// attributes are handled, the date-shift range, the safe private list, burned-in text rules and
// pixel-blanking signatures. Loaded once from etl/deidentify/*.yaml; the key is never part of it.
import Yams

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A tag by number, as written in a profile ("0008,0060" or "(0008,0060)").
public struct TagNumber: Sendable, Hashable, CustomStringConvertible {
    public let group: UInt16
    public let element: UInt16
    public init(_ group: UInt16, _ element: UInt16) {
        self.group = group
        self.element = element
    }
    /// Parses "gggg,eeee", "(gggg,eeee)" or "ggggeeee" (hex).
    public init?(parsing text: String) {
        let hex = text.filter { $0.isHexDigit }
        let cleaned = text.filter { !"() ,".contains($0) }
        guard hex.count == 8, cleaned.count == 8, let g = UInt16(hex.prefix(4), radix: 16),
              let e = UInt16(hex.suffix(4), radix: 16) else { return nil }
        self.init(g, e)
    }
    public var description: String {
        "(" + String(group, radix: 16, uppercase: true).leftPadded(4) + "," + String(element, radix: 16, uppercase: true).leftPadded(4) + ")"
    }
}

/// What happens to attributes Table E.1-1 does not list (CTP's "unspecified elements").
public enum UnlistedElementsPolicy: String, Sendable, Codable {
    /// Keep them.
    case keep
    /// Remove public attributes the data dictionary does not know (their meaning cannot be checked);
    /// keep the known ones (Rows, PixelData, ImageType...). Private attributes follow the private rules.
    case removeUnknown
}

/// What happens to a file without a PatientID (the key of pseudonyms and of the date shift).
public enum MissingPatientIDPolicy: String, Sendable, Codable {
    /// Reject the file with `missing_patient_id`.
    case reject
    /// Use the StudyInstanceUID as the patient key: the file gets a pseudonymous PatientID and a date shift
    /// that are stable for its study (not across studies).
    case studyInstanceUID
}

/// A private element that may be kept under Retain Safe Private: its creator, group and element byte.
public struct SafePrivateElement: Sendable, Hashable {
    public let creator: String
    public let group: UInt16
    /// The low byte of the element number (the xx of (gggg,bbxx)).
    public let element: UInt8
    public init(creator: String, group: UInt16, element: UInt8) {
        self.creator = creator
        self.group = group
        self.element = element
    }
}

/// When a file is taken to carry burned-in text, and what happens to it.
public struct BurnedInPolicy: Sendable, Hashable {
    /// False lets such files through unchecked, with a warning in the result, whatever `action` says (as profiles
    /// written before OCR meant it); true leaves the decision to `action`.
    public var reject: Bool = true
    /// What happens to a suspected file no signature blanks (nil: reject it).
    public var action: BurnedInTextAction?
    /// How text is found and blanked under the redact actions.
    public var ocr = PixelTextSettings()
    /// The action in force.
    public var effectiveAction: BurnedInTextAction { reject ? (action ?? .reject) : .pass }
    /// Modalities known to carry text in their pixels.
    public var modalities: Set<String> = ["US", "SC"]
    /// SOP classes known to carry text (secondary captures, ultrasound, dose reports, encapsulated documents).
    public var sopClasses: Set<String> = BurnedInPolicy.defaultSOPClasses
    /// Case-insensitive fragments of SeriesDescription marking screen captures (e.g. "DOSE REPORT").
    public var seriesDescriptionContains: [String] = ["DOSE REPORT", "DOSE INFO", "PATIENT PROTOCOL", "SCREEN SAVE", "SCREENSHOT"]
    /// Values of ImageType marking screen captures.
    public var imageTypeContains: [String] = ["SCREEN SAVE"]

    public init() {}

    public static let defaultSOPClasses: Set<String> = [
        "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.7.1", "1.2.840.10008.5.1.4.1.1.7.2",
        "1.2.840.10008.5.1.4.1.1.7.3", "1.2.840.10008.5.1.4.1.1.7.4",  // secondary captures
        "1.2.840.10008.5.1.4.1.1.6", "1.2.840.10008.5.1.4.1.1.6.1", "1.2.840.10008.5.1.4.1.1.6.2",
        "1.2.840.10008.5.1.4.1.1.3", "1.2.840.10008.5.1.4.1.1.3.1",  // ultrasound
        "1.2.840.10008.5.1.4.1.1.88.67", "1.2.840.10008.5.1.4.1.1.88.68",  // dose reports
        "1.2.840.10008.5.1.4.1.1.104.1", "1.2.840.10008.5.1.4.1.1.104.2",  // encapsulated PDF, CDA
    ]
}

/// A header condition of a pixel-blanking signature.
public struct HeaderCondition: Sendable, Hashable {
    public enum Operation: String, Sendable, Codable { case equals, contains, startsWith, present }
    public let tag: TagNumber
    public let operation: Operation
    /// Compared case-insensitively with the element's trimmed string value.
    public let value: String
    public init(tag: TagNumber, operation: Operation, value: String) {
        self.tag = tag
        self.operation = operation
        self.value = value
    }
}

/// A rectangle of pixels to blank, in pixel coordinates of every frame.
public struct PixelRegion: Sendable, Hashable {
    public let x: Int, y: Int, width: Int, height: Int
    public init(x: Int, y: Int, width: Int, height: Int) {
        self.x = x
        self.y = y
        self.width = width
        self.height = height
    }
}

/// CTP-style signature: when every condition holds, the regions are blanked (set to 0) in every frame.
public struct PixelSignature: Sendable, Hashable {
    public let name: String
    public let conditions: [HeaderCondition]
    public let regions: [PixelRegion]
    public init(name: String, conditions: [HeaderCondition], regions: [PixelRegion]) {
        self.name = name
        self.conditions = conditions
        self.regions = regions
    }
}

/// A de-identification profile. Defaults are the Basic Profile with no option.
public struct DeidentificationProfile: Sendable {
    /// A short name, written into DeidentificationMethod.
    public var name: String = "basic"
    /// The options switched on.
    public var options: Set<ProfileOption> = []
    public var combinedActions: CombinedActionPolicy = .conformant
    public var unlistedElements: UnlistedElementsPolicy = .removeUnknown
    /// Days a patient's dates move by under Retain Modified Dates: one value of this range per patient.
    public var dateShiftDays: ClosedRange<Int> = -3650 ... -365
    public var safePrivate: [SafePrivateElement] = []
    public var missingPatientID: MissingPatientIDPolicy = .reject
    public var burnedIn = BurnedInPolicy()
    public var signatures: [PixelSignature] = []
    /// HIPAA Safe Harbor: an age over 89 years is written as 090Y, and a birth date kept of such a patient is emptied.
    public var capAgesOver89 = true

    public init() {}

    /// Checks the combination of settings; throws `invalid_profile` naming the field.
    public func validate() throws {
        if options.contains(.retainLongitudinalFullDates) && options.contains(.retainLongitudinalModifiedDates) {
            throw DeidentificationError(.invalidProfile, detail: "retainLongitudinalFullDates and retainLongitudinalModifiedDates exclude each other")
        }
        if options.contains(.retainLongitudinalModifiedDates) && dateShiftDays.contains(0) {
            throw DeidentificationError(.invalidProfile, detail: "dateShift range must not contain 0")
        }
        for s in signatures where s.regions.contains(where: { $0.width <= 0 || $0.height <= 0 || $0.x < 0 || $0.y < 0 }) {
            _ = s
            throw DeidentificationError(.invalidProfile, detail: "signature regions need x, y >= 0 and a positive size")
        }
    }

    /// Loads a profile from a YAML file.
    public static func load(path: String) throws -> DeidentificationProfile {
        guard let f = fopen(path, "rb") else { throw DeidentificationError(.invalidProfile, detail: "the profile file could not be read") }
        defer { fclose(f) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = fread(&buffer, 1, buffer.count, f)
            if n > 0 { bytes.append(contentsOf: buffer[0..<n]) }
            if n < buffer.count { break }
        }
        return try DeidentificationProfile(yaml: String(decoding: bytes, as: UTF8.self))
    }

    /// Parses a profile from YAML text (see etl/deidentify/basic.yaml for every field).
    public init(yaml: String) throws {
        let doc: ProfileDocument
        do {
            doc = try YAMLDecoder().decode(ProfileDocument.self, from: yaml)
        } catch {
            throw DeidentificationError(.invalidProfile, detail: "YAML does not match the profile schema: \(Self.codingPath(error))")
        }
        var p = DeidentificationProfile()
        if let n = doc.name { p.name = n }
        for (key, on) in doc.options ?? [:] {
            guard let option = ProfileOption(rawValue: key) else {
                throw DeidentificationError(.invalidProfile, detail: "unknown option \(key)")
            }
            if on { p.options.insert(option) }
        }
        if let c = doc.combinedActions { p.combinedActions = c }
        if let u = doc.unlistedElements { p.unlistedElements = u }
        if let m = doc.missingPatientID { p.missingPatientID = m }
        if let d = doc.dateShift {
            guard d.minDays <= d.maxDays else { throw DeidentificationError(.invalidProfile, detail: "dateShift minDays > maxDays") }
            p.dateShiftDays = d.minDays ... d.maxDays
        }
        for s in doc.safePrivate ?? [] {
            guard let g = UInt16(s.group.filter(\.isHexDigit), radix: 16), g & 1 == 1,
                  let e = UInt8(s.element.filter(\.isHexDigit), radix: 16) else {
                throw DeidentificationError(.invalidProfile, detail: "safePrivate entries need an odd hex group and a hex element byte")
            }
            p.safePrivate.append(SafePrivateElement(creator: s.creator, group: g, element: e))
        }
        if let b = doc.burnedIn {
            if let r = b.reject { p.burnedIn.reject = r }
            if let m = b.modalities { p.burnedIn.modalities = Set(m.map { $0.uppercased() }) }
            if let s = b.sopClasses { p.burnedIn.sopClasses = Set(s) }
            if let s = b.seriesDescriptionContains { p.burnedIn.seriesDescriptionContains = s }
            if let s = b.imageTypeContains { p.burnedIn.imageTypeContains = s }
            p.burnedIn.action = b.policy
            if let o = b.ocr { try p.burnedIn.ocr.apply(o) }
        }
        for s in doc.signatures ?? [] {
            var conditions: [HeaderCondition] = []
            for c in s.conditions {
                guard let tag = TagNumber(parsing: c.tag) else {
                    throw DeidentificationError(.invalidProfile, detail: "signature \(s.name): tag must be written gggg,eeee")
                }
                let ops: [(HeaderCondition.Operation, String?)] = [(.equals, c.equals), (.contains, c.contains), (.startsWith, c.startsWith)]
                let given = ops.filter { $0.1 != nil }
                if given.count > 1 { throw DeidentificationError(.invalidProfile, detail: "signature \(s.name): one operation per condition") }
                if let (op, v) = given.first { conditions.append(HeaderCondition(tag: tag, operation: op, value: v!)) }
                else { conditions.append(HeaderCondition(tag: tag, operation: .present, value: "")) }
            }
            let regions = s.regions.map { PixelRegion(x: $0.x, y: $0.y, width: $0.width, height: $0.height) }
            p.signatures.append(PixelSignature(name: s.name, conditions: conditions, regions: regions))
        }
        if let c = doc.capAgesOver89 { p.capAgesOver89 = c }
        try p.validate()
        self = p
    }

    private static func codingPath(_ error: any Error) -> String {
        if let e = error as? DecodingError {
            switch e {
            case let .typeMismatch(_, c), let .valueNotFound(_, c), let .keyNotFound(_, c), let .dataCorrupted(c):
                let path = c.codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
                return path.isEmpty ? "document" : path
            @unknown default: return "document"
            }
        }
        return "document"
    }
}

/// The YAML schema (every field optional; defaults as in DeidentificationProfile).
private struct ProfileDocument: Decodable {
    struct DateShiftRange: Decodable { let minDays: Int; let maxDays: Int }
    struct SafePrivate: Decodable { let creator: String; let group: String; let element: String }
    struct BurnedIn: Decodable {
        let reject: Bool?
        let modalities: [String]?
        let sopClasses: [String]?
        let seriesDescriptionContains: [String]?
        let imageTypeContains: [String]?
        let policy: BurnedInTextAction?
        let ocr: PixelTextSettings.Document?
    }
    struct Condition: Decodable { let tag: String; let equals: String?; let contains: String?; let startsWith: String? }
    struct Region: Decodable { let x: Int; let y: Int; let width: Int; let height: Int }
    struct Signature: Decodable { let name: String; let conditions: [Condition]; let regions: [Region] }

    let name: String?
    let options: [String: Bool]?
    let combinedActions: CombinedActionPolicy?
    let unlistedElements: UnlistedElementsPolicy?
    let missingPatientID: MissingPatientIDPolicy?
    let dateShift: DateShiftRange?
    let safePrivate: [SafePrivate]?
    let burnedIn: BurnedIn?
    let signatures: [Signature]?
    let capAgesOver89: Bool?
}
