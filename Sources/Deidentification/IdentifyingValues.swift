// The identifying values of a dataset under a profile: every value of an element the profile removes,
// empties or replaces, at any depth. Used to clean descriptors and by the PHI verifier.
import DICOM
import Foundation

/// Values that must not survive de-identification, and values the profile legitimately keeps.
struct IdentifyingValues {
    /// Trimmed values (and person-name components) of replaced elements, at least 3 characters long,
    /// each with the tag of the first element it came from.
    var sources: [String: Tag] = [:]
    var values: Set<String> { Set(sources.keys) }
    /// Trimmed values of elements kept verbatim (by the table, an option, or as unlisted).
    var kept: Set<String> = []

    /// - Parameter keptValues: whether to gather `kept` too (the verifier's need; the de-identifier needs only
    ///   the replaced values, and reading every kept value is most of the walk's cost).
    static func collect(_ ds: DataSet, planner: Planner, keptValues: Bool = true) -> IdentifyingValues {
        var out = IdentifyingValues()
        out.visit(ds, planner: planner, keptValues: keptValues)
        return out
    }

    private mutating func visit(_ ds: DataSet, planner: Planner, keptValues: Bool) {
        for element in ds.elements {
            let plan = planner.plan(element, in: ds)
            if element.isSequence {
                switch plan {
                case .remove, .zeroLength:
                    for item in ds.items(element.tag) { collectAll(item) }
                default:
                    for item in ds.items(element.tag) { visit(item, planner: planner, keptValues: keptValues) }
                }
                continue
            }
            if element.tag == Tags.pixelData { continue }
            if plan.replacesValue {
                add(element, ds)
            } else if case .cleanText = plan {
                continue
            } else if keptValues {
                for v in Self.texts(element, ds) { kept.insert(v) }
            }
        }
    }

    private mutating func collectAll(_ ds: DataSet) {
        for element in ds.elements {
            if element.isSequence {
                for item in ds.items(element.tag) { collectAll(item) }
            } else if element.tag != Tags.pixelData {
                add(element, ds)
            }
        }
    }

    private mutating func add(_ element: Element, _ ds: DataSet) {
        for v in Self.texts(element, ds) {
            if element.vr == .UI && v.hasPrefix(Pseudonymizer.dicomRoot) { continue }
            if v.count >= 3 && sources[v] == nil { sources[v] = element.tag }
            if element.vr == .PN {
                for part in v.split(whereSeparator: { $0 == "^" || $0 == "=" || $0 == " " }) where part.count >= 3 {
                    if sources[String(part)] == nil { sources[String(part)] = element.tag }
                }
            }
        }
    }

    /// The text an element carries: its values (whole and, when multi-valued, each) for string VRs;
    /// printable runs of 4+ characters for UN/OB (private text stored without a VR).
    static func texts(_ element: Element, _ ds: DataSet) -> [String] {
        let vr = element.vr
        if Deidentifier.isText(vr) {
            // One read of the stored value: the whole (padding trimmed) and, when multi-valued, each value.
            guard let raw = ds.rawString(element.tag) else { return [] }
            let whole = raw.trimmingSpaces()
            guard !whole.isEmpty else { return [] }
            guard raw.utf8.contains(0x5C) else { return [whole] }
            let parts = raw.split(separator: "\\", omittingEmptySubsequences: false).map { String($0).trimmingSpaces() }.filter { !$0.isEmpty }
            return parts.count > 1 ? [whole] + parts : [whole]
        }
        if vr == .UN || vr == .OB {
            guard let bytes = ds.bytes(element.tag), bytes.count <= 1 << 16 else { return [] }
            return printableRuns(bytes, minimum: 4)
        }
        return []
    }

    static func printableRuns(_ bytes: [UInt8], minimum: Int) -> [String] {
        var runs: [String] = []
        var index = 0
        while index < bytes.count {
            guard Self.isPrintable(bytes[index]) else { index += 1; continue }
            var start = index
            while index < bytes.count && Self.isPrintable(bytes[index]) { index += 1 }
            // The run trimmed of spaces (printable ASCII: one character per byte).
            var end = index
            while start < end && bytes[start] == 0x20 { start += 1 }
            while end > start && bytes[end - 1] == 0x20 { end -= 1 }
            if end - start >= minimum { runs.append(String(decoding: bytes[start..<end], as: UTF8.self)) }
        }
        return runs
    }

    private static func isPrintable(_ b: UInt8) -> Bool { b >= 0x20 && b < 0x7F && b != 0x5C }
}

/// Removes identifying words from descriptor text (Clean Descriptors and the other text-cleaning options).
/// What it does, exactly: (1) every identifying value of the file (3+ characters; see IdentifyingValues)
/// is cut out wherever it occurs, ignoring case; (2) every remaining word (a run of letters and digits)
/// equal to a word of 3+ characters of an identifying value is cut out; (3) every run of 6 or more digits
/// (dates, IDs, phone numbers) is cut out; (4) spaces are collapsed. An empty result removes the element.
struct TextScrubber {
    /// Whole values, upper-cased, longest first.
    let wholes: [String]
    private let words: Set<String>
    /// `wholes` as bytes when every one is ASCII: text that is ASCII too is then cleaned byte by byte, with the
    /// same result as the Unicode path (case-insensitive matching of ASCII is ASCII upper-casing).
    let asciiWholes: [[UInt8]]?

    init(identifying: Set<String>) {
        // Longest first (a value cut before a shorter one it contains); ties in byte order, so that every run
        // cleans the same text the same way.
        var counted: [(text: String, count: Int)] = []
        var w = Set<String>()
        for value in identifying {
            // ASCII upper-casing is byte-wise, and an ASCII string's characters are its bytes but for CR LF (one).
            let ascii = value.utf8.allSatisfy { $0 < 0x80 }
            let upper = ascii ? String(decoding: value.utf8.map(Self.upper), as: UTF8.self) : value.uppercased()
            counted.append((upper, ascii ? Self.asciiCharacterCount(upper.utf8) : upper.count))
            for part in Self.words(of: upper) where (ascii ? part.utf8.count : part.count) >= 3 { w.insert(part) }
        }
        wholes = counted.filter { $0.count >= 3 }.sorted { $0.count != $1.count ? $0.count > $1.count : $0.text < $1.text }.map(\.text)
        words = w
        asciiWholes = wholes.allSatisfy { $0.utf8.allSatisfy { $0 < 0x80 } } ? wholes.map { Array($0.utf8) } : nil
    }

    static func words(of s: String) -> [String] {
        if s.utf8.allSatisfy({ $0 < 0x80 }) {
            return s.utf8.split(whereSeparator: { !Self.isAlphanumeric($0) }).map { String(decoding: $0, as: UTF8.self) }
        }
        var out: [String] = []
        var cur = ""
        for c in s {
            if c.isLetter || c.isNumber { cur.append(c) } else if !cur.isEmpty { out.append(cur); cur = "" }
        }
        if !cur.isEmpty { out.append(cur) }
        return out
    }

    /// Characters of an ASCII text: its bytes, each CR LF counted once (the one ASCII pair that is one character).
    static func asciiCharacterCount(_ bytes: String.UTF8View) -> Int {
        var count = 0, afterCR = false
        for b in bytes {
            if !(afterCR && b == 0x0A) { count += 1 }
            afterCR = b == 0x0D
        }
        return count
    }

    private static func isAlphanumeric(_ b: UInt8) -> Bool { (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) }
    private static func upper(_ b: UInt8) -> UInt8 { b >= 0x61 && b <= 0x7A ? b - 0x20 : b }

    func clean(_ text: String) -> String {
        if let asciiWholes, text.utf8.allSatisfy({ $0 < 0x80 }) { return cleanASCII(Array(text.utf8), wholes: asciiWholes) }
        return cleanUnicode(text)
    }

    /// `clean` of any text, character by character.
    func cleanUnicode(_ text: String) -> String {
        var s = text
        // (1) whole values, ignoring case.
        for w in wholes {
            while let r = s.range(of: w, options: .caseInsensitive) { s.replaceSubrange(r, with: " ") }
        }
        // (2) and (3) word by word.
        var out = ""
        var cur = ""
        func flush() {
            if !cur.isEmpty {
                let upper = cur.uppercased()
                let digits = cur.allSatisfy { $0.isASCII && $0.isNumber }
                if !(words.contains(upper) || (digits && cur.count >= 6)) { out += cur }
                cur = ""
            }
        }
        for c in s {
            if c.isLetter || c.isNumber { cur.append(c) } else { flush(); out.append(c) }
        }
        flush()
        // (4)
        let collapsed = out.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
        return collapsed.trimmingSpaces()
    }

    /// `clean` of ASCII text, every whole value ASCII (upper-cased).
    func cleanASCII(_ text: [UInt8], wholes: [[UInt8]]) -> String {
        var s = text
        // (1) whole values, ignoring case, each looked for again from the start after a cut (as the Unicode path).
        for w in wholes where w.count <= s.count {
            while w.count <= s.count {
                var index = 0
                var found = -1
                while index + w.count <= s.count {
                    var k = 0
                    while k < w.count && Self.upper(s[index + k]) == w[k] { k += 1 }
                    if k == w.count { found = index; break }
                    index += 1
                }
                guard found >= 0 else { break }
                s.replaceSubrange(found..<(found + w.count), with: [0x20])
            }
        }
        // (2) and (3) word by word.
        var out: [UInt8] = []
        out.reserveCapacity(s.count)
        var start = -1
        func flush(_ end: Int) {
            guard start >= 0 else { return }
            let word = s[start..<end]
            let digits = word.allSatisfy { $0 >= 0x30 && $0 <= 0x39 }
            if !((digits && word.count >= 6) || words.contains(String(decoding: word.map(Self.upper), as: UTF8.self))) { out += word }
            start = -1
        }
        for (index, b) in s.enumerated() {
            if Self.isAlphanumeric(b) {
                if start < 0 { start = index }
            } else {
                flush(index)
                out.append(b)
            }
        }
        flush(s.count)
        // (4)
        let collapsed = out.split(separator: 0x20, omittingEmptySubsequences: true).joined(separator: [0x20])
        return String(decoding: Array(collapsed), as: UTF8.self).trimmingSpaces()
    }
}
