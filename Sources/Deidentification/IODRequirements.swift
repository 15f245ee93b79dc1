// What the IOD of a file requires of an attribute at its place (PS3.3 attribute Types), so that
// de-identification removes or empties only what the IOD lets go (PS3.15 E.1.1: "Z unless D is required to
// maintain IOD conformance", and the like). The tables are generated (Generated/IODRequirementTables.swift).
import DICOM

/// What an IOD requires of an attribute that is present in a file.
public enum AttributeRequirement: Int, Sendable, Hashable {
    /// Type 1 or 1C: a value (a dummy where the original must go; never empty or absent).
    case value = 1
    /// Type 2 or 2C: presence (zero length is enough).
    case presence = 2
    /// Type 3, or not part of the IOD there: it may be removed.
    case optional = 3
}

/// The requirements of one file's IOD, found from its SOP Class UID.
public struct IODRequirements: Sendable {
    /// Index into `iodNames`; nil when the SOP Class is unknown (private, retired or absent).
    let iod: Int?

    /// - Parameter sopClassUID: the file's SOP Class UID (its data set's, else its file meta's).
    public init(sopClassUID: String?) {
        iod = sopClassUID.flatMap { Self.iodBySOPClass[$0] }
    }

    /// The requirements of `file`'s IOD: its data set's SOP Class UID, else its file meta's.
    public init(_ file: DicomFile) {
        let sopClass = Deidentifier.value(Tags.sopClassUID, file.dataset)
            ?? (file.hasFileMeta ? Deidentifier.value(Tags.mediaStorageSOPClassUID, file.metaInformation) : nil)
        self.init(sopClassUID: sopClass.map(Pseudonymizer.trimUID))
    }

    /// The IOD's name as the standard's tables key it (e.g. "computed-radiography-image"), if known.
    public var iodName: String? { iod.map { Self.iodNames[$0] } }

    /// The requirement on `tag` at the top level (`parent` nil) or in an item of the sequence `parent`.
    /// Nil at the top level of an unknown IOD. Inside sequences the strictest requirement of any IOD applies.
    public func requirement(of tag: Tag, parent: Tag?) -> AttributeRequirement? {
        if let parent {
            return Self.nestedTable[UInt64(parent.combined) << 32 | UInt64(tag.combined)] ?? .optional
        }
        guard let iod else { return nil }
        return Self.topTables[iod][tag.combined] ?? .optional
    }

    private static let topTables: [[UInt32: AttributeRequirement]] = topLevel.map { entries in
        var table: [UInt32: AttributeRequirement] = [:]
        for e in entries { table[UInt32(truncatingIfNeeded: e >> 8)] = AttributeRequirement(rawValue: Int(e & 0xFF)) }
        return table
    }

    private static let nestedTable: [UInt64: AttributeRequirement] = {
        var table: [UInt64: AttributeRequirement] = [:]
        for key in nestedPresenceRequired { table[key] = .presence }
        for key in nestedValueRequired { table[key] = .value }
        return table
    }()
}
