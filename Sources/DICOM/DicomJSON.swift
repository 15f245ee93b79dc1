// DICOM JSON (PS3.18 Annex F.2) for a dataset: what `inspect` prints and the catalog stores.
import Foundation

/// Encodes a dataset as the DICOM JSON model.
public enum DicomJSON {
    /// - Parameters:
    ///   - dataset: the dataset (or item) to encode.
    ///   - bulkDataLimit: binary values longer than this many bytes are left out (the attribute keeps its "vr").
    ///   - skip: attributes to leave out entirely (at any depth).
    public static func encode(_ dataset: DataSet, bulkDataLimit: Int? = nil, skip: (Tag) -> Bool = { _ in false }) -> String {
        var out = ""
        out.reserveCapacity(4096)
        write(dataset, into: &out, bulkDataLimit: bulkDataLimit, skip: skip)
        return out
    }

    private static func write(_ dataset: DataSet, into out: inout String, bulkDataLimit: Int?, skip: (Tag) -> Bool) {
        out += "{"
        var first = true
        for element in dataset.elements where !element.tag.isGroupLength && !skip(element.tag) {
            if !first { out += "," }
            first = false
            out += "\"\(element.tag.jsonKey)\":{\"vr\":\"\(element.vr.rawValue)\""
            writeValue(element, of: dataset, into: &out, bulkDataLimit: bulkDataLimit, skip: skip)
            out += "}"
        }
        out += "}"
    }

    private static func writeValue(_ element: Element, of dataset: DataSet, into out: inout String, bulkDataLimit: Int?, skip: (Tag) -> Bool) {
        let tag = element.tag
        let vr = element.vr
        if element.isSequence {
            let items = dataset.items(tag)
            guard !items.isEmpty else { return }
            out += ",\"Value\":["
            for (i, item) in items.enumerated() {
                if i > 0 { out += "," }
                write(item, into: &out, bulkDataLimit: bulkDataLimit, skip: skip)
            }
            out += "]"
            return
        }
        if element.length == 0 { return }
        switch vr.rawValue {
        case "OB", "OD", "OF", "OL", "OV", "OW", "UN":
            if element.isEncapsulated { return }
            if let limit = bulkDataLimit, Int(element.length) > limit { return }
            guard let bytes = dataset.bytes(tag) else { return }
            out += ",\"InlineBinary\":\"\(Data(bytes).base64EncodedString())\""
        case "FL", "FD", "SL", "SS", "UL", "US", "SV", "UV":
            let values = vr.rawValue == "SV" || vr.rawValue == "UV" ? dataset.integers(tag).map(Double.init) : dataset.doubles(tag)
            guard !values.isEmpty else { return }
            out += ",\"Value\":[" + values.map(number).joined(separator: ",") + "]"
        case "AT":
            let tags = dataset.tags(tag)
            guard !tags.isEmpty else { return }
            out += ",\"Value\":[" + tags.map { "\"\($0.jsonKey)\"" }.joined(separator: ",") + "]"
        case "DS", "IS":
            let values = dataset.strings(tag)
            guard !values.isEmpty else { return }
            out += ",\"Value\":[" + values.map { text -> String in
                if text.isEmpty { return "null" }
                if let v = Double(text), v.isFinite { return vr.rawValue == "IS" && v == v.rounded() && abs(v) < 1e15 ? String(Int64(v)) : number(v) }
                return quoted(text)
            }.joined(separator: ",") + "]"
        case "PN":
            let values = dataset.strings(tag)
            guard !values.isEmpty else { return }
            out += ",\"Value\":[" + values.map { name -> String in
                if name.isEmpty { return "null" }
                let groups = name.split(separator: "=", omittingEmptySubsequences: false).map(String.init)
                var parts: [String] = []
                for (key, value) in zip(["Alphabetic", "Ideographic", "Phonetic"], groups) where !value.isEmpty {
                    parts.append("\"\(key)\":\(quoted(value))")
                }
                return "{" + parts.joined(separator: ",") + "}"
            }.joined(separator: ",") + "]"
        case "LT", "ST", "UT", "UR":
            guard let text = dataset.string(tag), !text.isEmpty else { return }
            out += ",\"Value\":[\(quoted(text))]"
        default:
            let values = dataset.strings(tag)
            guard !values.isEmpty else { return }
            out += ",\"Value\":[" + values.map { $0.isEmpty ? "null" : quoted($0) }.joined(separator: ",") + "]"
        }
    }

    static func number(_ v: Double) -> String {
        if !v.isFinite { return "null" }
        if v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
        return "\(v)"
    }

    /// A JSON string literal.
    public static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}
