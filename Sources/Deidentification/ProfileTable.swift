// The shape of PS3.15 Table E.1-1 (rows, tag patterns, action codes, option columns) and how one row's
// action is resolved for a chosen set of options. The rows themselves are generated (Generated/).

/// An action code of PS3.15 Table E.1-1, including the combined codes.
public enum ActionCode: String, Sendable, CaseIterable, Hashable {
    /// Replace with a non-zero length dummy value consistent with the VR.
    case d = "D"
    /// Replace with a zero-length value (or a dummy).
    case z = "Z"
    /// Remove.
    case x = "X"
    /// Keep (sequences: keep, and de-identify their items).
    case k = "K"
    /// Clean: replace with values of similar meaning known not to identify.
    case c = "C"
    /// Replace the UID with a consistent pseudonym.
    case u = "U"
    /// Z unless D is needed for IOD conformance (Type 2 versus Type 1).
    case zd = "Z/D"
    /// X unless Z is needed (Type 3 versus Type 2).
    case xz = "X/Z"
    /// X unless D is needed (Type 3 versus Type 1).
    case xd = "X/D"
    /// X unless Z or D is needed (Type 3, 2, 1).
    case xzd = "X/Z/D"
    /// X unless Z or, for a sequence of references, U of the UIDs it contains is needed.
    case xzu = "X/Z/U*"

    /// The single codes this code chooses between, first the one the standard prefers.
    public var alternatives: [ActionCode] {
        switch self {
        case .zd: return [.z, .d]
        case .xz: return [.x, .z]
        case .xd: return [.x, .d]
        case .xzd: return [.x, .z, .d]
        case .xzu: return [.x, .z, .u]
        default: return [self]
        }
    }
}

/// Which tags one row of the table covers.
public enum TagPattern: Sendable, Hashable {
    /// One tag.
    case tag(UInt16, UInt16)
    /// A repeating group such as (50xx,xxxx) or (60xx,4000): matches when `g & groupMask == group` and
    /// `e & elementMask == element`.
    case masked(group: UInt16, groupMask: UInt16, element: UInt16, elementMask: UInt16)
    /// (gggg,eeee) where gggg is odd: every private attribute (private creators included).
    case privateAttributes

    /// True when the pattern covers (group, element).
    public func matches(group: UInt16, element: UInt16) -> Bool {
        switch self {
        case let .tag(g, e): return g == group && e == element
        case let .masked(g, gm, e, em): return group & gm == g && element & em == e
        case .privateAttributes: return group & 1 == 1
        }
    }
}

/// The options of PS3.15 Annex E, each with its CID 7050 code (DCM scheme).
public enum ProfileOption: String, Sendable, CaseIterable, Hashable, Codable {
    case cleanPixelData
    case cleanRecognizableVisualFeatures
    case cleanGraphics
    case cleanStructuredContent
    case cleanDescriptors
    case retainLongitudinalFullDates
    case retainLongitudinalModifiedDates
    case retainPatientCharacteristics
    case retainDeviceIdentity
    case retainUIDs
    case retainSafePrivate
    case retainInstitutionIdentity

    /// The CID 7050 code value (coding scheme DCM).
    public var codeValue: String {
        switch self {
        case .cleanPixelData: return "113101"
        case .cleanRecognizableVisualFeatures: return "113102"
        case .cleanGraphics: return "113103"
        case .cleanStructuredContent: return "113104"
        case .cleanDescriptors: return "113105"
        case .retainLongitudinalFullDates: return "113106"
        case .retainLongitudinalModifiedDates: return "113107"
        case .retainPatientCharacteristics: return "113108"
        case .retainDeviceIdentity: return "113109"
        case .retainUIDs: return "113110"
        case .retainSafePrivate: return "113111"
        case .retainInstitutionIdentity: return "113112"
        }
    }

    /// The CID 7050 code meaning.
    public var codeMeaning: String {
        switch self {
        case .cleanPixelData: return "Clean Pixel Data Option"
        case .cleanRecognizableVisualFeatures: return "Clean Recognizable Visual Features Option"
        case .cleanGraphics: return "Clean Graphics Option"
        case .cleanStructuredContent: return "Clean Structured Content Option"
        case .cleanDescriptors: return "Clean Descriptors Option"
        case .retainLongitudinalFullDates: return "Retain Longitudinal Temporal Information Full Dates Option"
        case .retainLongitudinalModifiedDates: return "Retain Longitudinal Temporal Information Modified Dates Option"
        case .retainPatientCharacteristics: return "Retain Patient Characteristics Option"
        case .retainDeviceIdentity: return "Retain Device Identity Option"
        case .retainUIDs: return "Retain UIDs Option"
        case .retainSafePrivate: return "Retain Safe Private Option"
        case .retainInstitutionIdentity: return "Retain Institution Identity Option"
        }
    }

    /// The code of the Basic Application Level Confidentiality Profile itself.
    public static let basicProfileCodeValue = "113100"
    /// Its code meaning.
    public static let basicProfileCodeMeaning = "Basic Application Confidentiality Profile"
}

/// The action of each option column of one row (nil: the option says nothing about the row).
public struct OptionActions: Sendable, Hashable {
    public var retainSafePrivate: ActionCode?
    public var retainUIDs: ActionCode?
    public var retainDeviceIdentity: ActionCode?
    public var retainInstitutionIdentity: ActionCode?
    public var retainPatientCharacteristics: ActionCode?
    public var retainLongitudinalFullDates: ActionCode?
    public var retainLongitudinalModifiedDates: ActionCode?
    public var cleanDescriptors: ActionCode?
    public var cleanStructuredContent: ActionCode?
    public var cleanGraphics: ActionCode?

    public init(
        retainSafePrivate: ActionCode? = nil, retainUIDs: ActionCode? = nil, retainDeviceIdentity: ActionCode? = nil,
        retainInstitutionIdentity: ActionCode? = nil, retainPatientCharacteristics: ActionCode? = nil,
        retainLongitudinalFullDates: ActionCode? = nil, retainLongitudinalModifiedDates: ActionCode? = nil,
        cleanDescriptors: ActionCode? = nil, cleanStructuredContent: ActionCode? = nil, cleanGraphics: ActionCode? = nil
    ) {
        self.retainSafePrivate = retainSafePrivate
        self.retainUIDs = retainUIDs
        self.retainDeviceIdentity = retainDeviceIdentity
        self.retainInstitutionIdentity = retainInstitutionIdentity
        self.retainPatientCharacteristics = retainPatientCharacteristics
        self.retainLongitudinalFullDates = retainLongitudinalFullDates
        self.retainLongitudinalModifiedDates = retainLongitudinalModifiedDates
        self.cleanDescriptors = cleanDescriptors
        self.cleanStructuredContent = cleanStructuredContent
        self.cleanGraphics = cleanGraphics
    }

    /// The action of one option's column (nil for options without a column, such as Clean Pixel Data).
    public subscript(option: ProfileOption) -> ActionCode? {
        switch option {
        case .retainSafePrivate: return retainSafePrivate
        case .retainUIDs: return retainUIDs
        case .retainDeviceIdentity: return retainDeviceIdentity
        case .retainInstitutionIdentity: return retainInstitutionIdentity
        case .retainPatientCharacteristics: return retainPatientCharacteristics
        case .retainLongitudinalFullDates: return retainLongitudinalFullDates
        case .retainLongitudinalModifiedDates: return retainLongitudinalModifiedDates
        case .cleanDescriptors: return cleanDescriptors
        case .cleanStructuredContent: return cleanStructuredContent
        case .cleanGraphics: return cleanGraphics
        case .cleanPixelData, .cleanRecognizableVisualFeatures: return nil
        }
    }

    /// The option columns the table has, in the standard's order.
    public static let columns: [ProfileOption] = [
        .retainSafePrivate, .retainUIDs, .retainDeviceIdentity, .retainInstitutionIdentity,
        .retainPatientCharacteristics, .retainLongitudinalFullDates, .retainLongitudinalModifiedDates,
        .cleanDescriptors, .cleanStructuredContent, .cleanGraphics,
    ]
}

/// One row of Table E.1-1.
public struct BasicProfileRow: Sendable, Hashable {
    public let pattern: TagPattern
    public let name: String
    /// "In Std. Comp. IOD": whether the attribute is used in a standard composite IOD.
    public let inStandardCompositeIOD: Bool
    /// The Basic Profile's action.
    public let basic: ActionCode
    public let options: OptionActions

    public init(_ pattern: TagPattern, _ name: String, inStandardCompositeIOD: Bool, basic: ActionCode, options: OptionActions) {
        self.pattern = pattern
        self.name = name
        self.inStandardCompositeIOD = inStandardCompositeIOD
        self.basic = basic
        self.options = options
    }
}

/// How combined codes (Z/D, X/Z, X/D, X/Z/D, X/Z/U*) are resolved. The standard picks the first
/// alternative unless the IOD's Type requires a later one (`IODRequirements` knows the Types).
public enum CombinedActionPolicy: String, Sendable, Codable {
    /// The alternative the attribute's Type at its place requires: Type 3 → the first (X, or Z for Z/D),
    /// Type 2/2C → Z (X/D → D), Type 1/1C → D; X/Z/U* → U whatever the Type (the sequence of references
    /// stays, its UIDs are replaced and its items de-identified: referential integrity). Where the Type is
    /// unknown (a SOP Class outside the standard's tables), the last alternative, which keeps any IOD
    /// conformant. And no action removes or empties what the IOD requires (`Planner.conformant`): X on a
    /// Type 2 attribute → Z, X or Z on a Type 1 → D; a Z sequence of Type 3 is removed, never left empty.
    /// No original value survives either way: Z empties, D writes a dummy.
    case conformant
    /// The first alternative: Z/D → Z, and X/… → X (the attribute is removed).
    case minimal
}

/// A single action after options and combined codes are resolved.
public enum ResolvedAction: String, Sendable, Hashable {
    case remove, zeroLength, dummy, keep, clean, uid
}

/// A resolved action and what decided it.
public struct Resolution: Sendable, Hashable {
    public let action: ResolvedAction
    /// The code of the table the action comes from (the option column's code when an option decided).
    public let code: ActionCode
    /// The option whose column decided, or nil for the Basic Profile column.
    public let option: ProfileOption?
}

/// Table E.1-1 with lookups.
public enum BasicProfileTable {
    private static let exact: [UInt32: Int] = {
        var map: [UInt32: Int] = [:]
        for (i, row) in rows.enumerated() {
            if case let .tag(g, e) = row.pattern { map[UInt32(g) << 16 | UInt32(e)] = i }
        }
        return map
    }()
    private static let patterned: [Int] = rows.indices.filter {
        if case .tag = rows[$0].pattern { return false }
        return true
    }

    /// The row covering (group, element): an exact row first, then repeating groups, then private attributes.
    public static func row(group: UInt16, element: UInt16) -> BasicProfileRow? {
        if let i = exact[UInt32(group) << 16 | UInt32(element)] { return rows[i] }
        var privateRow: BasicProfileRow?
        for i in patterned where rows[i].pattern.matches(group: group, element: element) {
            if rows[i].pattern == .privateAttributes { privateRow = rows[i] } else { return rows[i] }
        }
        return privateRow
    }

    /// Resolves one row for the enabled options: an enabled option's column overrides the Basic Profile
    /// (a retaining K before a cleaning C when two enabled options both speak), then combined codes are
    /// resolved by `policy`.
    /// `requirement`: what the file's IOD requires of the attribute at its place (nil: unknown).
    public static func resolve(
        _ row: BasicProfileRow, options: Set<ProfileOption>, policy: CombinedActionPolicy, requirement: AttributeRequirement? = nil
    ) -> Resolution {
        var chosen: (ActionCode, ProfileOption)?
        for option in OptionActions.columns where options.contains(option) {
            guard let code = row.options[option] else { continue }
            if chosen == nil || (code == .k && chosen!.0 != .k) { chosen = (code, option) }
        }
        if let (code, option) = chosen {
            return Resolution(action: single(code, policy: policy, requirement: requirement), code: code, option: option)
        }
        return Resolution(action: single(row.basic, policy: policy, requirement: requirement), code: row.basic, option: nil)
    }

    /// The single action a (possibly combined) code resolves to, for an attribute the IOD requires as
    /// `requirement` (nil: unknown).
    public static func single(_ code: ActionCode, policy: CombinedActionPolicy, requirement: AttributeRequirement? = nil) -> ResolvedAction {
        let alternatives = code.alternatives
        let pick: ActionCode
        switch (policy, requirement) {
        case (.minimal, _): pick = alternatives.first!
        // X/Z/U*: references are kept with their UIDs replaced, whatever the Type, for referential integrity
        // (e.g. a segmentation's source images must stay listed in its Referenced Series Sequence).
        case (.conformant, _) where alternatives.contains(.u): pick = .u
        case (.conformant, nil): pick = alternatives.last!
        case (.conformant, .optional?): pick = alternatives.first!
        case (.conformant, .presence?): pick = alternatives.contains(.z) ? .z : alternatives.last!
        case (.conformant, .value?): pick = alternatives.contains(.d) ? .d : alternatives.last!
        }
        switch pick {
        case .d: return .dummy
        case .z: return .zeroLength
        case .x: return .remove
        case .k: return .keep
        case .c: return .clean
        case .u: return .uid
        default: return .remove
        }
    }
}
