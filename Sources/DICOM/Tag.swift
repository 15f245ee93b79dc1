// Tag and VR: the two value types every other DICOM API is keyed by.
import CDCMTK
import Synchronization

/// An attribute tag (group, element). Constants for every public tag live in Generated/Tags.swift.
public struct Tag: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let group: UInt16
    public let element: UInt16

    public init(_ group: UInt16, _ element: UInt16) {
        self.group = group
        self.element = element
    }

    /// The tag as one 32-bit number, group in the high half.
    public init(_ combined: UInt32) {
        self.init(UInt16(combined >> 16), UInt16(combined & 0xFFFF))
    }

    public var combined: UInt32 { UInt32(group) << 16 | UInt32(element) }

    /// Odd groups are private.
    public var isPrivate: Bool { group & 1 == 1 }

    /// A private creator element (gggg,0010–00FF) of an odd group.
    public var isPrivateCreator: Bool { isPrivate && element >= 0x0010 && element <= 0x00FF }

    /// Group length elements (gggg,0000).
    public var isGroupLength: Bool { element == 0 }

    /// The keyword of DCMTK's dictionary (e.g. "PatientName"), nil for private or unknown tags.
    public var keyword: String? { DataDictionary.lookup(self)?.keyword }

    /// The VR of DCMTK's dictionary, nil for private or unknown tags.
    public var dictionaryVR: VR? { DataDictionary.lookup(self)?.vr }

    /// "(0010,0010)"
    public var description: String { "(\(hex(group)),\(hex(element)))" }

    /// "00100010", as DICOM JSON keys it.
    public var jsonKey: String { hex(group) + hex(element) }

    public static func < (a: Tag, b: Tag) -> Bool { a.combined < b.combined }
}

private func hex(_ value: UInt16) -> String {
    let digits = String(value, radix: 16, uppercase: true)
    return String(repeating: "0", count: 4 - digits.count) + digits
}

/// A value representation, e.g. `VR.PN`.
public struct VR: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(_ rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }

    public static let AE = VR("AE"), AS = VR("AS"), AT = VR("AT"), CS = VR("CS"), DA = VR("DA"), DS = VR("DS")
    public static let DT = VR("DT"), FL = VR("FL"), FD = VR("FD"), IS = VR("IS"), LO = VR("LO"), LT = VR("LT")
    public static let OB = VR("OB"), OD = VR("OD"), OF = VR("OF"), OL = VR("OL"), OV = VR("OV"), OW = VR("OW")
    public static let PN = VR("PN"), SH = VR("SH"), SL = VR("SL"), SQ = VR("SQ"), SS = VR("SS"), ST = VR("ST")
    public static let SV = VR("SV"), TM = VR("TM"), UC = VR("UC"), UI = VR("UI"), UL = VR("UL"), UN = VR("UN")
    public static let UR = VR("UR"), US = VR("US"), UT = VR("UT"), UV = VR("UV")

    /// VRs whose value is text (including numbers written as text: DS, IS).
    public var isString: Bool {
        ["AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"].contains(rawValue)
    }

    /// VRs whose value is binary numbers.
    public var isBinaryNumber: Bool { ["US", "SS", "UL", "SL", "FL", "FD", "SV", "UV"].contains(rawValue) }

    /// Bulk binary VRs.
    public var isBulk: Bool { ["OB", "OD", "OF", "OL", "OV", "OW", "UN"].contains(rawValue) }
}

/// DCMTK's data dictionary, read through the shim.
enum DataDictionary {
    /// Entries already read (the dictionary does not change while the process runs): a de-identifier asks for
    /// the same few hundred tags in every file. Only the dictionary's own tags are kept, so the cache stays as small
    /// as the dictionary whatever tags the files name.
    private static let entries = Mutex<[UInt32: (keyword: String, vr: VR)]>([:])

    static func lookup(_ tag: Tag) -> (keyword: String, vr: VR)? {
        if tag.isPrivate { return nil }
        if let known = entries.withLock({ $0[tag.combined] }) { return known }
        guard let entry = read(tag) else { return nil }
        entries.withLock { $0[tag.combined] = entry }
        return entry
    }

    private static func read(_ tag: Tag) -> (keyword: String, vr: VR)? {
        var keyword = [CChar](repeating: 0, count: 80)
        var vr = [CChar](repeating: 0, count: 3)
        guard dcmtk_dictionary_lookup(tag.group, tag.element, &keyword, keyword.count, &vr) == 1 else { return nil }
        return (cString(keyword), VR(cString(vr)))
    }
}

func cString(_ chars: [CChar]) -> String {
    let bytes = chars.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
    return String(decoding: bytes, as: UTF8.self)
}
