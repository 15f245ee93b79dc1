// JSONText: a string as a JSON string literal, written straight into text (no Codable round trip). The catalogue's
// batch rows and the JSON log lines both write their strings with it.

public enum JSONText {
    /// Appends `value` to `text` as a JSON string literal: quotes, backslashes and control characters (C0 and
    /// DEL) escaped, every other character as it is.
    /// - Parameter droppingNUL: leave NUL characters out (PostgreSQL text cannot hold them).
    @inlinable
    public static func appendQuoted(_ value: String, to text: inout String, droppingNUL: Bool = false) {
        text += "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": text += "\\\""
            case "\\": text += "\\\\"
            case "\n": text += "\\n"
            case "\r": text += "\\r"
            case "\t": text += "\\t"
            case "\u{0}" where droppingNUL: continue
            case _ where scalar.value < 0x20 || scalar.value == 0x7F:
                text += scalar.value < 0x10 ? "\\u000" : "\\u00"
                text += String(scalar.value, radix: 16)
            default: text.unicodeScalars.append(scalar)
            }
        }
        text += "\""
    }
}
