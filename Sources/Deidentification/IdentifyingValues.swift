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

    static func collect(_ ds: DataSet, planner: Planner) -> IdentifyingValues {
        var out = IdentifyingValues()
        out.visit(ds, planner: planner)
        return out
    }

    private mutating func visit(_ ds: DataSet, planner: Planner) {
        for element in ds.elements {
            let plan = planner.plan(element, in: ds)
            if element.isSequence {
                switch plan {
                case .remove, .zeroLength:
                    for item in ds.items(element.tag) { collectAll(item) }
                default:
                    for item in ds.items(element.tag) { visit(item, planner: planner) }
                }
                continue
            }
            if element.tag == Tags.pixelData { continue }
            if plan.replacesValue {
                add(element, ds)
            } else if case .cleanText = plan {
                continue
            } else {
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
            guard let whole = ds.string(element.tag)?.trimmingSpaces(), !whole.isEmpty else { return [] }
            let parts = ds.strings(element.tag).map { $0.trimmingSpaces() }.filter { !$0.isEmpty }
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
        var current: [UInt8] = []
        func flush() {
            let s = String(decoding: current, as: UTF8.self).trimmingSpaces()
            if s.count >= minimum { runs.append(s) }
            current.removeAll(keepingCapacity: true)
        }
        for b in bytes {
            if b >= 0x20 && b < 0x7F && b != 0x5C { current.append(b) } else { flush() }
        }
        flush()
        return runs
    }
}

/// Removes identifying words from descriptor text (Clean Descriptors and the other text-cleaning options).
/// What it does, exactly: (1) every identifying value of the file (3+ characters; see IdentifyingValues)
/// is cut out wherever it occurs, ignoring case; (2) every remaining word (a run of letters and digits)
/// equal to a word of 3+ characters of an identifying value is cut out; (3) every run of 6 or more digits
/// (dates, IDs, phone numbers) is cut out; (4) spaces are collapsed. An empty result removes the element.
struct TextScrubber {
    private let wholes: [String]
    private let words: Set<String>

    init(identifying: Set<String>) {
        wholes = identifying.map { $0.uppercased() }.filter { $0.count >= 3 }.sorted { $0.count > $1.count }
        var w = Set<String>()
        for v in identifying {
            for part in Self.words(of: v.uppercased()) where part.count >= 3 { w.insert(part) }
        }
        words = w
    }

    static func words(of s: String) -> [String] {
        var out: [String] = []
        var cur = ""
        for c in s {
            if c.isLetter || c.isNumber { cur.append(c) } else if !cur.isEmpty { out.append(cur); cur = "" }
        }
        if !cur.isEmpty { out.append(cur) }
        return out
    }

    func clean(_ text: String) -> String {
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
}
