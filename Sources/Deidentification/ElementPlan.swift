// What the profile does with one element: the single decision both the Deidentifier (to act) and the
// PHIVerifier (to know which original values must be gone) rely on.
import DICOM

/// The fate of one element under a profile.
public enum ElementPlan: Sendable, Hashable {
    /// Kept verbatim (a sequence: kept, its items planned element by element).
    case keep
    /// Kept verbatim because an option's column says K.
    case keepByOption(ProfileOption)
    case remove
    case zeroLength
    /// A dummy value valid for the VR (a sequence: kept, its items de-identified).
    case dummy
    /// Every UID value replaced by its keyed pseudonym (a sequence: kept, its items de-identified).
    case uid
    /// DA/DT shifted by the patient's days; TM and other VRs kept (Retain Modified Dates).
    case shiftDate
    /// Text kept with identifying words removed; long free text (LT, UT) removed (Clean Descriptors etc.).
    case cleanText(ProfileOption)
    /// AE titles and device names replaced by a keyed pseudonym (Retain Device Identity's C).
    case cleanDevice
    /// A sequence kept, its items de-identified (Clean Structured Content).
    case cleanSequence
    case patientID
    case patientName
    case accessionNumber

    /// True when the original value must not appear in the output.
    var replacesValue: Bool {
        switch self {
        case .keep, .keepByOption, .cleanText, .cleanSequence: return false
        default: return true
        }
    }
}

/// Tags the de-identification code names (numbers, so this target does not depend on generated names).
enum Tags {
    static let patientID = Tag(0x0010, 0x0020)
    static let patientName = Tag(0x0010, 0x0010)
    static let patientBirthDate = Tag(0x0010, 0x0030)
    static let accessionNumber = Tag(0x0008, 0x0050)
    static let studyInstanceUID = Tag(0x0020, 0x000D)
    static let seriesInstanceUID = Tag(0x0020, 0x000E)
    static let sopInstanceUID = Tag(0x0008, 0x0018)
    static let sopClassUID = Tag(0x0008, 0x0016)
    static let modality = Tag(0x0008, 0x0060)
    static let imageType = Tag(0x0008, 0x0008)
    static let seriesDescription = Tag(0x0008, 0x103E)
    static let burnedInAnnotation = Tag(0x0028, 0x0301)
    static let pixelData = Tag(0x7FE0, 0x0010)
    static let photometricInterpretation = Tag(0x0028, 0x0004)
    static let planarConfiguration = Tag(0x0028, 0x0006)
    static let bitsAllocated = Tag(0x0028, 0x0100)
    static let patientIdentityRemoved = Tag(0x0012, 0x0062)
    static let deidentificationMethod = Tag(0x0012, 0x0063)
    static let deidentificationMethodCodeSequence = Tag(0x0012, 0x0064)
    static let longitudinalTemporalInformationModified = Tag(0x0028, 0x0303)
    static let codeValue = Tag(0x0008, 0x0100)
    static let codingSchemeDesignator = Tag(0x0008, 0x0102)
    static let codeMeaning = Tag(0x0008, 0x0104)
    static let mediaStorageSOPClassUID = Tag(0x0002, 0x0002)
    static let mediaStorageSOPInstanceUID = Tag(0x0002, 0x0003)

    /// UI elements naming a class or a syntax, not an instance: never replaced.
    static let classUIDs: Set<Tag> = [
        Tag(0x0002, 0x0002), Tag(0x0002, 0x0010), Tag(0x0002, 0x0012),  // media class, syntax, implementation
        Tag(0x0004, 0x1510), Tag(0x0004, 0x1512),  // DICOMDIR class and syntax in file
        Tag(0x0008, 0x0016), Tag(0x0008, 0x001A), Tag(0x0008, 0x001B), Tag(0x0008, 0x0062),  // SOP classes
        Tag(0x0008, 0x010C), Tag(0x0008, 0x010D), Tag(0x0008, 0x0118),  // coding scheme, extension creator, mapping resource
        Tag(0x0008, 0x1150), Tag(0x0008, 0x115A),  // referenced SOP class, SOP classes supported
        Tag(0x0400, 0x0010), Tag(0x0400, 0x0510),  // MAC and encrypted content transfer syntaxes
    ]
}

/// Decides each element's plan under a profile.
struct Planner: Sendable {
    let profile: DeidentificationProfile
    private let safePrivate: Set<SafePrivateElement>
    private let safeCreators: Set<String>  // "gggg|creator"

    init(profile: DeidentificationProfile) {
        self.profile = profile
        safePrivate = Set(profile.safePrivate)
        safeCreators = Set(profile.safePrivate.map { Self.creatorKey($0.group, $0.creator) })
    }

    private static func creatorKey(_ group: UInt16, _ creator: String) -> String { "\(group)|\(creator)" }

    /// The VR an element has: its own, or for one read as UN, the dictionary's.
    static func vr(of element: Element) -> VR {
        if element.vr == .UN, let d = element.tag.dictionaryVR, d != .UN { return d }
        return element.vr
    }

    /// The plan of `element`, found in `owner` (for private creators), which the file's IOD requires as
    /// `requirement` at its place (nil: unknown). Under the conformant policy no plan removes or empties
    /// what the IOD requires there.
    func plan(_ element: Element, in owner: DataSet, requirement: AttributeRequirement? = nil) -> ElementPlan {
        let plan = tablePlan(element, in: owner, requirement: requirement)
        guard profile.combinedActions == .conformant, let requirement else { return plan }
        let raised = Self.conformant(plan, isSequence: element.isSequence, requirement: requirement)
        return raised == .dummy && Self.vr(of: element) == .UI ? .uid : raised  // a UID's dummy is its pseudonym
    }

    /// `plan` raised to what the IOD requires: X on a Type 2 attribute → Z, X or Z on a Type 1 → D. A sequence
    /// to remove stays removed unless Type 2 (then empty: its items are never kept for the sake of a Type);
    /// a sequence to empty is removed when Type 3 (an empty Type 3 sequence is invalid) and de-identified
    /// item by item when Type 1 (an empty Type 1 sequence is invalid too).
    static func conformant(_ plan: ElementPlan, isSequence: Bool, requirement: AttributeRequirement) -> ElementPlan {
        switch (plan, requirement) {
        case (.remove, .presence): return .zeroLength
        case (.remove, .value): return isSequence ? .remove : .dummy
        case (.zeroLength, .value): return .dummy
        case (.zeroLength, .optional): return isSequence ? .remove : .zeroLength
        default: return plan
        }
    }

    private func tablePlan(_ element: Element, in owner: DataSet, requirement: AttributeRequirement?) -> ElementPlan {
        let tag = element.tag
        let vr = Self.vr(of: element)
        if tag.group & 1 == 1 { return privatePlan(tag, owner) }
        // Overlays (60xx) and curves (50xx): the table removes their data (X; under Clean Graphics, C). A
        // bitmap cannot be checked for burned-in text, so the whole repeating group is removed either way.
        if tag.group & 0xFF01 == 0x6000 || tag.group & 0xFF01 == 0x5000 { return .remove }
        if tag == Tags.patientID { return .patientID }
        if tag == Tags.patientName { return .patientName }
        if tag == Tags.accessionNumber { return .accessionNumber }
        if let row = BasicProfileTable.row(group: tag.group, element: tag.element) {
            let r = BasicProfileTable.resolve(row, options: profile.options, policy: profile.combinedActions, requirement: requirement)
            switch r.action {
            case .remove: return .remove
            case .zeroLength: return .zeroLength
            case .dummy: return vr == .UI ? .uid : .dummy
            case .uid: return .uid
            case .keep:
                if let o = r.option { return .keepByOption(o) }
                return .keep
            case .clean:
                switch r.option {
                case .retainLongitudinalModifiedDates?:
                    if element.isSequence { return .cleanSequence }
                    // Whole-day shifts move DA and DT; a time of day (TM) and anything else stays as it is.
                    return vr == .DA || vr == .DT ? .shiftDate : .keepByOption(.retainLongitudinalModifiedDates)
                case .retainDeviceIdentity?: return .cleanDevice
                case .cleanStructuredContent?: return element.isSequence ? .cleanSequence : .cleanText(.cleanStructuredContent)
                case .cleanGraphics?:
                    // Graphic Annotation Sequence: kept, its items de-identified (text objects cleaned by the
                    // table's own rows); overlays and curves never reach here (removed above).
                    return element.isSequence ? .cleanSequence : .remove
                case let o?: return element.isSequence ? .cleanSequence : .cleanText(o)
                case nil: return .remove
                }
            }
        }
        // Not listed by the table.
        if vr == .UI { return isClassUID(tag) ? .keep : .uid }
        // With modified dates every date moves, listed or not, so intervals hold across all of them.
        if (vr == .DA || vr == .DT) && profile.options.contains(.retainLongitudinalModifiedDates) { return .shiftDate }
        if profile.unlistedElements == .removeUnknown && tag.element != 0x0000 && tag.keyword == nil { return .remove }
        return .keep
    }

    func isClassUID(_ tag: Tag) -> Bool {
        if Tags.classUIDs.contains(tag) { return true }
        if let k = tag.keyword, k.hasSuffix("ClassUID") || k.hasSuffix("TransferSyntaxUID") || k.hasSuffix("ClassesInStudy") { return true }
        return false
    }

    private func privatePlan(_ tag: Tag, _ owner: DataSet) -> ElementPlan {
        guard profile.options.contains(.retainSafePrivate), !safePrivate.isEmpty else { return .remove }
        if tag.element >= 0x0010 && tag.element <= 0x00FF {
            let creator = owner.string(tag)?.trimmingSpaces() ?? ""
            return safeCreators.contains(Self.creatorKey(tag.group, creator)) ? .keepByOption(.retainSafePrivate) : .remove
        }
        guard tag.element >= 0x1000 else { return .remove }
        let creator = owner.string(Tag(tag.group, tag.element >> 8))?.trimmingSpaces() ?? ""
        let safe = SafePrivateElement(creator: creator, group: tag.group, element: UInt8(tag.element & 0xFF))
        return safePrivate.contains(safe) ? .keepByOption(.retainSafePrivate) : .remove
    }
}
