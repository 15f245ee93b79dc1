// DICOM JSON (PS3.18 Annex F.2) for a dataset: what `inspect` prints and the catalog stores.
import Foundation

/// Encodes a dataset as the DICOM JSON model.
public enum DicomJSON {
    /// - Parameters:
    ///   - dataset: the dataset (or item) to encode.
    ///   - bulkDataLimit: binary values longer than this many bytes are left out (the attribute keeps its "vr").
    ///   - skip: attributes to leave out entirely (at any depth).
    public static func encode(_ dataset: DataSet, bulkDataLimit: Int? = nil, skip: (Tag) -> Bool = { _ in false }) -> String {
        var out = Output()
        out.bytes.reserveCapacity(8192)
        write(dataset, into: &out, bulkDataLimit: bulkDataLimit, skip: skip)
        return String(decoding: out.bytes, as: UTF8.self)
    }

    /// The text being written, as UTF-8 bytes.
    struct Output {
        var bytes: [UInt8] = []
        mutating func append(_ text: StaticString) {
            text.withUTF8Buffer { bytes.append(contentsOf: $0) }
        }
        mutating func append(_ text: String) { bytes.append(contentsOf: text.utf8) }
        mutating func append(hex value: UInt16) {
            for shift in stride(from: 12, through: 0, by: -4) {
                let digit = UInt8((value >> UInt16(shift)) & 0xF)
                bytes.append(digit < 10 ? 0x30 + digit : 0x37 + digit)
            }
        }
        /// `"0010,0010"` as DICOM JSON keys it: `"00100010"`.
        mutating func append(key tag: Tag) {
            bytes.append(0x22)
            append(hex: tag.group)
            append(hex: tag.element)
            bytes.append(0x22)
        }
        /// A JSON string literal.
        mutating func append(quoted text: String) {
            bytes.append(0x22)
            let utf8 = text.utf8
            if utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F && $0 != 0x22 && $0 != 0x5C }) {
                bytes.append(contentsOf: utf8)
            } else {
                for scalar in text.unicodeScalars {
                    switch scalar {
                    case "\"": append("\\\"")
                    case "\\": append("\\\\")
                    case "\n": append("\\n")
                    case "\r": append("\\r")
                    case "\t": append("\\t")
                    default:
                        if scalar.value < 0x20 || scalar.value == 0x7F {
                            let hex = String(scalar.value, radix: 16)
                            append("\\u" + String(repeating: "0", count: 4 - hex.count) + hex)
                        } else {
                            bytes.append(contentsOf: String(scalar).utf8)
                        }
                    }
                }
            }
            bytes.append(0x22)
        }
        /// Values as a JSON array member: `,"Value":[a,b]`.
        mutating func appendValues<S: Sequence>(_ values: S, _ each: (inout Output, S.Element) -> Void) {
            append(",\"Value\":[")
            var first = true
            for value in values {
                if !first { bytes.append(0x2C) }
                first = false
                each(&self, value)
            }
            bytes.append(0x5D)
        }
    }

    private static func write(_ dataset: DataSet, into out: inout Output, bulkDataLimit: Int?, skip: (Tag) -> Bool) {
        out.append("{")
        var first = true
        for element in dataset.elements where !element.tag.isGroupLength && !skip(element.tag) {
            if !first { out.append(",") }
            first = false
            out.append(key: element.tag)
            out.append(":{\"vr\":\"")
            out.append(element.vr.rawValue)
            out.append("\"")
            writeValue(element, of: dataset, into: &out, bulkDataLimit: bulkDataLimit, skip: skip)
            out.append("}")
        }
        out.append("}")
    }

    private static func writeValue(_ element: Element, of dataset: DataSet, into out: inout Output, bulkDataLimit: Int?, skip: (Tag) -> Bool) {
        let tag = element.tag
        let vr = element.vr
        if element.isSequence {
            let items = dataset.items(tag)
            guard !items.isEmpty else { return }
            out.appendValues(items) { write($1, into: &$0, bulkDataLimit: bulkDataLimit, skip: skip) }
            return
        }
        if element.length == 0 { return }
        switch vr.rawValue {
        case "OB", "OD", "OF", "OL", "OV", "OW", "UN":
            if element.isEncapsulated { return }
            if let limit = bulkDataLimit, Int(element.length) > limit { return }
            guard let bytes = dataset.bytes(tag) else { return }
            out.append(",\"InlineBinary\":\"")
            out.append(Data(bytes).base64EncodedString())
            out.append("\"")
        case "FL", "FD", "SL", "SS", "UL", "US", "SV", "UV":
            let values = vr.rawValue == "SV" || vr.rawValue == "UV" ? dataset.integers(tag).map(Double.init) : dataset.doubles(tag)
            guard !values.isEmpty else { return }
            out.appendValues(values) { $0.append(number($1)) }
        case "AT":
            let tags = dataset.tags(tag)
            guard !tags.isEmpty else { return }
            out.appendValues(tags) { $0.append(key: $1) }
        case "DS", "IS":
            let values = dataset.strings(tag)
            guard !values.isEmpty else { return }
            let isIS = vr.rawValue == "IS"
            out.appendValues(values) { out, text in
                if text.isEmpty { out.append("null"); return }
                if let v = Double(text), v.isFinite {
                    out.append(isIS && v == v.rounded() && abs(v) < 1e15 ? String(Int64(v)) : number(v))
                    return
                }
                out.append(quoted: text)
            }
        case "PN":
            let values = dataset.strings(tag)
            guard !values.isEmpty else { return }
            out.appendValues(values) { out, name in
                if name.isEmpty { out.append("null"); return }
                let groups = name.split(separator: "=", omittingEmptySubsequences: false).map(String.init)
                out.append("{")
                var first = true
                for (key, value) in zip(["Alphabetic", "Ideographic", "Phonetic"], groups) where !value.isEmpty {
                    if !first { out.append(",") }
                    first = false
                    out.append(quoted: key)
                    out.append(":")
                    out.append(quoted: value)
                }
                out.append("}")
            }
        case "LT", "ST", "UT", "UR":
            guard let text = dataset.string(tag), !text.isEmpty else { return }
            out.append(",\"Value\":[")
            out.append(quoted: text)
            out.append("]")
        default:
            let values = dataset.strings(tag)
            guard !values.isEmpty else { return }
            out.appendValues(values) { out, text in
                if text.isEmpty { out.append("null") } else { out.append(quoted: text) }
            }
        }
    }

    static func number(_ v: Double) -> String {
        if !v.isFinite { return "null" }
        if v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
        return "\(v)"
    }

    /// A JSON string literal.
    public static func quoted(_ text: String) -> String {
        var out = Output()
        out.append(quoted: text)
        return String(decoding: out.bytes, as: UTF8.self)
    }
}
