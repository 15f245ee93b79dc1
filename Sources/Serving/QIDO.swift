// QIDO: query parameters of a QIDO-RS search (PS3.18 8.3.4) turned into an `ArchiveSearch`, and the matches
// turned into DICOM JSON. Attributes are named by keyword (`PatientName`) or tag (`00100010`); values match
// exactly, by wildcard (`*`, `?`), by range (`20200101-20201231` for DA, TM, DT) or as a UID list (`a,b,c`).
import Catalog
import DICOM
import Foundation
import Hummingbird
import HummingbirdCore

/// The level a search returns.
enum QueryLevel: Sendable {
    case study, series, instance

    /// The attributes every match carries at this level (PS3.18 Table 6.7.1-2 and the counts OHIF reads).
    var defaultAttributes: [Tag] {
        switch self {
        case .study:
            [.specificCharacterSet, .studyDate, .studyTime, .accessionNumber, .referringPhysicianName, .patientName, .patientID,
             .patientBirthDate, .patientSex, .studyInstanceUID, .studyID, .studyDescription]
        case .series:
            [.specificCharacterSet, .modality, .seriesDescription, .seriesInstanceUID, .seriesNumber, .seriesDate, .seriesTime,
             .bodyPartExamined, .performedProcedureStepStartDate, .studyInstanceUID]
        case .instance:
            [.specificCharacterSet, .sopClassUID, .sopInstanceUID, .instanceNumber, .rows, .columns, .bitsAllocated,
             .numberOfFrames, .modality, .studyInstanceUID, .seriesInstanceUID]
        }
    }
}

/// A parsed QIDO request.
struct QIDORequest {
    /// The search; its `attributes` are the keys to return (nil for the whole header: `includefield=all`).
    var search: ArchiveSearch

    /// Parses the query of a search at `level`.
    /// - Throws: `ServingError.badRequest` naming the parameter.
    init(query: FlatDictionary<Substring, Substring>, level: QueryLevel, studyUID: String?, seriesUID: String?) throws(ServingError) {
        var search = ArchiveSearch(studyUID: studyUID, seriesUID: seriesUID)
        var attributes = level.defaultAttributes.map(\.jsonKey)
        var all = false
        for (rawName, rawValue) in query {
            let name = String(rawName).removingPercentEncoding ?? String(rawName), value = String(rawValue)  // values arrive decoded
            switch name.lowercased() {
            case "limit":
                guard let limit = Int(value), (1...10_000).contains(limit) else { throw .badRequest("limit") }
                search.limit = limit
            case "offset":
                guard let offset = Int(value), offset >= 0 else { throw .badRequest("offset") }
                search.offset = offset
            case "fuzzymatching":
                guard ["true", "false"].contains(value.lowercased()) else { throw .badRequest("fuzzymatching") }
            case "includefield":
                for field in value.split(separator: ",").map(String.init) {
                    if field == "all" { all = true; continue }
                    guard let tag = Self.tag(named: field) else { throw .badRequest("includefield") }
                    attributes.append(tag.jsonKey)
                }
            default:
                guard let tag = Self.tag(named: name) else { throw .badRequest(name) }
                if value.isEmpty { attributes.append(tag.jsonKey); continue }  // "return this attribute"
                search.filters.append(try Self.filter(tag, value, name: name))
                attributes.append(tag.jsonKey)
            }
        }
        var seen = Set<String>()
        search.attributes = all ? nil : attributes.filter { seen.insert($0).inserted }
        self.search = search
    }

    /// A keyword (`PatientName`) or an 8-hex-digit tag (`00100010`).
    static func tag(named name: String) -> Tag? {
        if name.count == 8, let combined = UInt32(name, radix: 16) { return Tag(combined) }
        return Tag(keyword: name)
    }

    static func filter(_ tag: Tag, _ value: String, name: String) throws(ServingError) -> AttributeFilter {
        let vr = tag == .modalitiesInStudy ? VR.CS : (tag.dictionaryVR ?? .UN)
        let key = tag.jsonKey
        if vr == .SQ || vr.isBulk || vr.isBinaryNumber && vr != .US { throw .badRequest(name) }
        if vr == .UI {
            let uids = value.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            guard !uids.isEmpty, uids.allSatisfy({ $0.allSatisfy { $0.isNumber || $0 == "." } }) else { throw .badRequest(name) }
            return AttributeFilter(tag: key, match: uids.count == 1 ? .exact(uids[0]) : .anyOf(uids))
        }
        if [VR.DA, .TM, .DT].contains(vr), value.contains("-") {
            let bounds = value.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            let valid = bounds.allSatisfy { $0.allSatisfy { $0.isNumber || $0 == "." || $0 == "+" } }
            guard bounds.count == 2, valid, !(bounds[0].isEmpty && bounds[1].isEmpty) else { throw .badRequest(name) }
            return AttributeFilter(tag: key, match: .range(from: bounds[0].isEmpty ? nil : bounds[0], to: bounds[1].isEmpty ? nil : bounds[1]))
        }
        let isPersonName = vr == .PN
        if value.contains("*") || value.contains("?") {
            return AttributeFilter(tag: key, isPersonName: isPersonName, match: .wildcard(value))
        }
        return AttributeFilter(tag: key, isPersonName: isPersonName, match: .exact(value))
    }
}

/// DICOM JSON text built from a header object's text and attributes computed by the catalogue.
enum DicomJSONText {
    /// `header` (a JSON object) with `extra` attributes (`"key":{…}` members) added.
    static func merging(_ header: String, _ extra: [String]) -> String {
        guard !extra.isEmpty else { return header }
        let trimmed = header.trimmingCharacters(in: .whitespacesAndNewlines)
        guard trimmed.hasSuffix("}") else { return "{" + extra.joined(separator: ",") + "}" }
        let body = trimmed.dropLast().trimmingCharacters(in: .whitespacesAndNewlines)
        return body == "{" ? "{" + extra.joined(separator: ",") + "}" : body + "," + extra.joined(separator: ",") + "}"
    }

    static func integer(_ tag: Tag, _ value: Int) -> String { "\"\(tag.jsonKey)\":{\"vr\":\"IS\",\"Value\":[\(value)]}" }

    static func strings(_ tag: Tag, vr: VR, _ values: [String]) -> String {
        values.isEmpty
            ? "\"\(tag.jsonKey)\":{\"vr\":\"\(vr.rawValue)\"}"
            : "\"\(tag.jsonKey)\":{\"vr\":\"\(vr.rawValue)\",\"Value\":[" + values.map(DicomJSON.quoted).joined(separator: ",") + "]}"
    }

    /// A JSON array of objects.
    static func array(_ objects: [String]) -> ByteBuffer {
        ByteBuffer(string: "[" + objects.joined(separator: ",") + "]")
    }
}
