// The HIPAA Safe Harbor method, §164.514(b)(2)(i): eighteen kinds of identifier that must be gone from a
// de-identified file. For one output file, what is left of each: absent, pseudonymised (a keyed code, as
// §164.514(c) allows), generalised (ages of 90 or more as 090Y), shifted (dates moved, not removed), present, or not
// applicable to DICOM. Tags and counts only, never a value. With the original, the PHI verifier's leaks count too.
import DICOM
import Foundation

/// The eighteen identifiers of §164.514(b)(2)(i)(A)–(R).
public enum SafeHarborIdentifier: String, Sendable, Hashable, CaseIterable, Codable {
    case names = "A", geographic = "B", dates = "C", telephone = "D", fax = "E", email = "F", socialSecurity = "G"
    case medicalRecord = "H", healthPlan = "I", account = "J", certificate = "K", vehicle = "L", device = "M", url = "N"
    case ipAddress = "O", biometric = "P", photograph = "Q", otherUnique = "R"

    public var title: String {
        switch self {
        case .names: return "names"
        case .geographic: return "geographic subdivisions smaller than a state"
        case .dates: return "dates (except year) and ages over 89"
        case .telephone: return "telephone numbers"
        case .fax: return "fax numbers"
        case .email: return "e-mail addresses"
        case .socialSecurity: return "social security numbers"
        case .medicalRecord: return "medical record numbers"
        case .healthPlan: return "health plan beneficiary numbers"
        case .account: return "account numbers"
        case .certificate: return "certificate and license numbers"
        case .vehicle: return "vehicle identifiers"
        case .device: return "device identifiers and serial numbers"
        case .url: return "web URLs"
        case .ipAddress: return "IP addresses"
        case .biometric: return "biometric identifiers"
        case .photograph: return "full-face photographs and comparable images"
        case .otherUnique: return "other unique identifying numbers, characteristics or codes"
        }
    }
}

/// What is left of one identifier in one file.
public enum SafeHarborStatus: String, Sendable, Hashable, Codable {
    /// No attribute holds it.
    case absent
    /// Replaced by a keyed code the file cannot be traced back with (PatientID, PatientName, UIDs, accession …).
    case pseudonymised
    /// Kept in the generalised form Safe Harbor allows (an age over 89 as 090Y).
    case generalised
    /// Dates moved by a per-patient shift: intervals kept, but month and day remain (not Safe Harbor).
    case shifted
    /// Left in the file (not Safe Harbor).
    case present
    /// No DICOM attribute carries it, and free text that could is not kept by the profile.
    case notApplicable = "not_applicable"

    /// Whether this status meets Safe Harbor.
    public var meetsSafeHarbor: Bool { self != .present && self != .shifted }
}

/// One identifier's status in one file, with the tags and count behind it.
public struct SafeHarborFinding: Sendable, Hashable {
    public let identifier: SafeHarborIdentifier
    public let status: SafeHarborStatus
    /// Tags holding it, e.g. "(0008,0020)", or "raw bytes" / "pixels"; at most 8 listed.
    public let tags: [String]
    /// Values counted.
    public let count: Int
    /// A short explanation, never a value.
    public let note: String?
}

/// The eighteen findings of one output file.
public struct SafeHarborReport: Sendable {
    public let findings: [SafeHarborFinding]
    public var meetsSafeHarbor: Bool { findings.allSatisfy { $0.status.meetsSafeHarbor } }
    public func finding(_ identifier: SafeHarborIdentifier) -> SafeHarborFinding? { findings.first { $0.identifier == identifier } }
}

/// Checks de-identified outputs for the eighteen identifiers under a profile.
public struct SafeHarborChecker: Sendable {
    let profile: DeidentificationProfile
    let planner: Planner

    public init(profile: DeidentificationProfile) {
        self.profile = profile
        planner = Planner(profile: profile)
    }

    static func tags(_ pairs: [(UInt16, UInt16)]) -> Set<Tag> { Set(pairs.map { Tag($0.0, $0.1) }) }

    static let addressTags = tags([(0x0010, 0x1040), (0x0010, 0x2150), (0x0010, 0x2152), (0x0038, 0x0300), (0x0008, 0x0081)])
    static let phoneTags = tags([(0x0010, 0x2154), (0x0010, 0x2155), (0x0040, 0x1103), (0x0040, 0x1104), (0x0008, 0x0094), (0x0008, 0x0083)])
    static let recordTags = tags([(0x0010, 0x0020), (0x0010, 0x1000), (0x0010, 0x1002), (0x0010, 0x1090), (0x0010, 0x0024)])
    static let planTags = tags([(0x0010, 0x1050)])
    static let accountTags = tags([(0x0038, 0x0010), (0x0038, 0x0060), (0x0038, 0x0014)])
    static let deviceTags = tags([(0x0018, 0x1000), (0x0018, 0x1002), (0x0018, 0x1004), (0x0018, 0x1005), (0x0018, 0x1007), (0x0018, 0x1008),
                                  (0x0018, 0x100A), (0x0018, 0x1009), (0x0008, 0x1010), (0x0018, 0x1003), (0x3002, 0x0029)])
    static let otherNumberTags = tags([(0x0008, 0x0050), (0x0020, 0x0010), (0x0040, 0x1001), (0x0040, 0x0009), (0x0040, 0x2016),
                                       (0x0040, 0x2017), (0x0040, 0x0253), (0x0032, 0x1060)])
    static let photographicClasses: Set<String> = ["1.2.840.10008.5.1.4.1.1.77.1.4", "1.2.840.10008.5.1.4.1.1.77.1.4.1", "1.2.840.10008.5.1.4.1.1.7"]
    static let headParts: Set<String> = ["HEAD", "BRAIN", "SKULL", "FACE", "HEADNECK", "NECK"]
    static let writtenDummies: Set<String> = ["DEIDENTIFIED", "19000101", "19000101000000", "000000", "000D", "0", "urn:deidentified"]

    static let phone = try! NSRegularExpression(pattern: #"(?<!\d)\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4}(?!\d)"#)
    static let fax = try! NSRegularExpression(pattern: #"\bfax\b\D{0,4}\d"#, options: [.caseInsensitive])
    static let email = try! NSRegularExpression(pattern: #"[A-Z0-9._%+-]+@[A-Z0-9.-]+\.[A-Z]{2,}"#, options: [.caseInsensitive])
    static let ssn = try! NSRegularExpression(pattern: #"(?<!\d)\d{3}-\d{2}-\d{4}(?!\d)"#)
    static let link = try! NSRegularExpression(pattern: #"\b(https?|ftp)://|\bwww\.[a-z0-9-]+\."#, options: [.caseInsensitive])
    static let ipv4 = try! NSRegularExpression(pattern: #"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])"#)

    /// One element's text value as found in the output.
    struct Value {
        let tag: Tag
        let vr: VR
        let text: String
    }

    /// The report of one output file; `leaks`, when the original was at hand, are the PHI verifier's findings.
    public func check(output: DicomFile, leaks: [PHILeak]? = nil) -> SafeHarborReport {
        let ds = output.dataset
        var values: [Value] = []
        var privateCount = 0
        ds.walk { _, element, owner in
            if element.tag.isPrivate && !element.tag.isPrivateCreator { privateCount += 1 }
            guard !element.isSequence, element.tag != Tags.pixelData, Deidentifier.isText(element.vr) || element.vr == .UN else { return }
            for t in IdentifyingValues.texts(element, owner) where !t.isEmpty { values.append(Value(tag: element.tag, vr: element.vr, text: t)) }
        }
        let pseudoPatientID = Deidentifier.value(Tags.patientID, ds)?.trimmingSpaces() ?? ""
        var findings: [SafeHarborFinding] = []
        func add(_ id: SafeHarborIdentifier, _ status: SafeHarborStatus, _ hits: [Value] = [], note: String? = nil) {
            var tags: [String] = []
            for h in hits where !tags.contains(h.tag.description) { tags.append(h.tag.description) }
            findings.append(SafeHarborFinding(identifier: id, status: status, tags: Array(tags.prefix(8)), count: hits.count, note: note))
        }
        let real = values.filter { !Self.writtenDummies.contains($0.text.trimmingSpaces()) }
        func matching(_ e: NSRegularExpression) -> [Value] {
            real.filter { $0.vr != .UI && $0.vr != .DA && $0.vr != .DT && $0.vr != .TM && e.firstMatch(in: $0.text, range: NSRange($0.text.startIndex..., in: $0.text)) != nil }
        }
        func byTag(_ tags: Set<Tag>) -> [Value] { real.filter { tags.contains($0.tag) } }

        // A: person names. PatientName is the pseudonym label; any other name left counts.
        let names = real.filter { $0.vr == .PN }
        let otherNames = names.filter { !($0.tag == Tags.patientName && $0.text.hasPrefix("ANON^") && $0.text.dropFirst(5) == pseudoPatientID) }
        add(.names, otherNames.isEmpty ? (names.isEmpty ? .absent : .pseudonymised) : .present, otherNames.isEmpty ? names : otherNames)
        add(.geographic, byTag(Self.addressTags).isEmpty ? .absent : .present, byTag(Self.addressTags))

        // C: dates, and ages.
        let dates = real.filter { $0.vr == .DA || $0.vr == .DT }
        let longitudinal = Deidentifier.value(Tags.longitudinalTemporalInformationModified, ds)?.trimmingSpaces().uppercased()
        let ages = real.filter { $0.vr == .AS }
        let oldAges = ages.filter { (SafeHarborAges.years($0.text) ?? 0) >= 90 && $0.text.trimmingSpaces() != "090Y" }
        let capped = ages.filter { $0.text.trimmingSpaces() == "090Y" }
        if !oldAges.isEmpty {
            add(.dates, .present, oldAges, note: "age over 89 not generalised")
        } else if dates.isEmpty {
            add(.dates, capped.isEmpty ? .absent : .generalised, capped, note: capped.isEmpty ? nil : "age 90 or over written 090Y")
        } else if longitudinal == "MODIFIED" {
            add(.dates, .shifted, dates, note: "dates moved by a per-patient shift keep a month and day")
        } else {
            add(.dates, .present, dates, note: "dates kept")
        }
        let phones = byTag(Self.phoneTags) + matching(Self.phone)
        add(.telephone, phones.isEmpty ? .absent : .present, phones)
        let faxes = matching(Self.fax)
        add(.fax, faxes.isEmpty ? .absent : .present, faxes)
        let emails = matching(Self.email)
        add(.email, emails.isEmpty ? .absent : .present, emails)
        let ssns = matching(Self.ssn)
        add(.socialSecurity, ssns.isEmpty ? .absent : .present, ssns)

        // H: PatientID holds the keyed pseudonym; any other record number counts.
        let records = byTag(Self.recordTags)
        let otherRecords = records.filter { !($0.tag == Tags.patientID && Self.isPatientPseudonym($0.text)) }
        add(.medicalRecord, otherRecords.isEmpty ? (records.isEmpty ? .absent : .pseudonymised) : .present, otherRecords.isEmpty ? records : otherRecords)
        add(.healthPlan, byTag(Self.planTags).isEmpty ? .absent : .present, byTag(Self.planTags))
        add(.account, byTag(Self.accountTags).isEmpty ? .absent : .present, byTag(Self.accountTags))
        add(.certificate, .notApplicable, note: "no attribute; descriptions are cleaned and free text removed")
        add(.vehicle, .notApplicable, note: "no attribute; descriptions are cleaned and free text removed")

        // M: device serial numbers and names; DEV… values are keyed pseudonyms (Retain Device Identity's C).
        let devices = byTag(Self.deviceTags)
        let rawDevices = devices.filter { !$0.text.hasPrefix("DEV") }
        add(.device, rawDevices.isEmpty ? (devices.isEmpty ? .absent : .pseudonymised) : .present, rawDevices.isEmpty ? devices : rawDevices,
            note: rawDevices.isEmpty ? nil : "kept by the profile (Retain Device Identity)")
        let urls = real.filter { $0.vr == .UR } + matching(Self.link)
        add(.url, urls.isEmpty ? .absent : .present, urls)
        let ips = matching(Self.ipv4)
        add(.ipAddress, ips.isEmpty ? .absent : .present, ips)
        add(.biometric, .notApplicable, note: "no attribute; image content is not analysed for biometrics")

        // Q: photographs, and head volumes a face can be rebuilt from.
        let sopClass = Deidentifier.value(Tags.sopClassUID, ds).map(Pseudonymizer.trimUID) ?? ""
        let modality = Deidentifier.value(Tags.modality, ds)?.trimmingSpaces().uppercased() ?? ""
        let bodyPart = Deidentifier.value(Tag(0x0018, 0x0015), ds)?.trimmingSpaces().uppercased() ?? ""
        if ds.contains(Tags.pixelData) && (modality == "XC" || modality == "VL" || (Self.photographicClasses.contains(sopClass) && modality == "XC")) {
            add(.photograph, .present, note: "photographic image")
        } else if ds.contains(Tags.pixelData) && (modality == "CT" || modality == "MR") && Self.headParts.contains(bodyPart) {
            add(.photograph, .present, note: "head CT or MR: a face can be rebuilt from the volume unless it is defaced")
        } else {
            add(.photograph, .absent)
        }

        // R: UIDs and other numbers (pseudonymised when keyed), private attributes, and text in the pixels.
        let uids = real.filter { $0.vr == .UI && !planner.isClassUID($0.tag) && !$0.text.hasPrefix(Pseudonymizer.dicomRoot) }
        let rawUIDs = uids.filter { !$0.text.hasPrefix("2.25.") }
        let numbers = byTag(Self.otherNumberTags)
        let rawNumbers = numbers.filter { !($0.tag == Tags.accessionNumber && Self.isAccessionPseudonym($0.text)) }
        let burnedIn = Deidentifier.value(Tags.burnedInAnnotation, ds)?.trimmingSpaces().uppercased()
        let methods = ds.items(Tags.deidentificationMethodCodeSequence).compactMap { $0.string(Tags.codeValue)?.trimmingSpaces() }
        let pixelsChecked = methods.contains(ProfileOption.cleanPixelData.codeValue)
        let mayCarryText = ds.contains(Tags.pixelData) && !pixelsChecked && (burnedIn == "YES" || BurnedInCheck.suspects(ds, policy: profile.burnedIn))
        var notes: [String] = []
        if mayCarryText { notes.append("pixels may carry text and were not checked") }
        if pixelsChecked { notes.append("pixels checked (Clean Pixel Data)") }
        if privateCount > 0 { notes.append("\(privateCount) private attributes kept (safe list)") }
        if !rawUIDs.isEmpty || !rawNumbers.isEmpty || mayCarryText {
            add(.otherUnique, .present, rawUIDs + rawNumbers + (mayCarryText ? [Value(tag: Tags.pixelData, vr: .OB, text: "")] : []),
                note: notes.joined(separator: "; "))
        } else {
            add(.otherUnique, uids.isEmpty && numbers.isEmpty ? .absent : .pseudonymised, uids + numbers, note: notes.isEmpty ? nil : notes.joined(separator: "; "))
        }

        // Leaks of the original's values override: the identifier is present.
        if let leaks, !leaks.isEmpty {
            var leaked: [SafeHarborIdentifier: [PHILeak]] = [:]
            for l in leaks { leaked[Self.identifier(ofSource: l.sourceTag), default: []].append(l) }
            findings = findings.map { f in
                guard let ls = leaked[f.identifier] else { return f }
                let tags = Array(Set(ls.map(\.foundIn))).sorted()
                return SafeHarborFinding(identifier: f.identifier, status: .present, tags: Array(tags.prefix(8)), count: ls.count,
                                         note: "\(ls.count) value(s) of the original found")
            }
        }
        return SafeHarborReport(findings: findings)
    }

    static func isPatientPseudonym(_ text: String) -> Bool {
        text.count == 20 && text.first == "P" && text.dropFirst().allSatisfy(\.isHexDigit)
    }

    static func isAccessionPseudonym(_ text: String) -> Bool {
        text.count == 16 && text.first == "A" && text.dropFirst().allSatisfy(\.isHexDigit)
    }

    /// The identifier a leaked original value belongs to, by the tag it came from ("(gggg,eeee)").
    static func identifier(ofSource tag: String) -> SafeHarborIdentifier {
        guard let number = TagNumber(parsing: tag) else { return .otherUnique }
        let t = Tag(number.group, number.element)
        if t == Tags.patientName || IdentifyingText.nameTags.contains(t) || t.dictionaryVR == .PN { return .names }
        if recordTags.contains(t) { return .medicalRecord }
        if addressTags.contains(t) { return .geographic }
        if phoneTags.contains(t) { return .telephone }
        if planTags.contains(t) { return .healthPlan }
        if accountTags.contains(t) { return .account }
        if deviceTags.contains(t) { return .device }
        if t.dictionaryVR == .DA || t.dictionaryVR == .DT { return .dates }
        return .otherUnique
    }
}
