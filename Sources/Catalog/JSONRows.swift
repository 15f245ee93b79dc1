// JSONRows: the rows of one multi-row statement as a JSON array of flat objects, written directly (no
// Codable round trip) for `jsonb_to_recordset`. A value that is JSON already (the DICOM JSON header) is
// spliced in as it is, so the server parses it once, as jsonb.
import JSONText

/// Builds `[{"col": value, …}, …]` text.
struct JSONRows {
    private(set) var text = "["
    private var rowOpen = false
    private var firstField = true
    private(set) var count = 0

    init(capacity: Int = 0) {
        text.reserveCapacity(capacity)
    }

    mutating func row(_ fields: (inout JSONRows) -> Void) {
        if count > 0 { text += "," }
        text += "{"
        firstField = true
        fields(&self)
        text += "}"
        count += 1
    }

    private mutating func key(_ name: String) {
        if !firstField { text += "," }
        firstField = false
        text += "\""
        text += name
        text += "\":"
    }

    mutating func string(_ name: String, _ value: String?) {
        key(name)
        guard let value else { text += "null"; return }
        JSONText.appendQuoted(value, to: &text, droppingNUL: true)
    }

    mutating func int(_ name: String, _ value: Int?) {
        key(name)
        text += value.map(String.init) ?? "null"
    }

    mutating func int64(_ name: String, _ value: Int64?) {
        key(name)
        text += value.map(String.init) ?? "null"
    }

    mutating func double(_ name: String, _ value: Double?) {
        key(name)
        guard let value, value.isFinite else { text += "null"; return }
        text += "\(value)"
    }

    mutating func doubles(_ name: String, _ values: [Double]?) {
        key(name)
        guard let values, values.allSatisfy(\.isFinite) else { text += "null"; return }
        text += "[" + values.map { "\($0)" }.joined(separator: ",") + "]"
    }

    /// A value that is JSON text already.
    mutating func json(_ name: String, _ value: String) {
        key(name)
        text += value
    }

    func finished() -> String { text + "]" }
}
