// Which words read in the pixels identify the patient: the header's identifying values (every value the profile
// replaces, with dates in their common written forms and names by component) searched in each line of text read,
// tolerant of OCR's usual confusions (0/O/D, 1/I/L, 5/S, 2/Z, a dotted zero read as 8 or 6) and of a few edits;
// and the profile's patterns. Never logs or returns the text: only which words matched and in which category.
import DICOM
import Foundation
import OCR

/// What a blanked box held, as recorded in the audit (never the text itself).
public enum PixelTextCategory: String, Sendable, Hashable, Codable, CaseIterable {
    /// A person's name (PatientName, any PN value).
    case name
    /// PatientID, other patient IDs, admission or account IDs.
    case id
    /// A date of the header, in one of its written forms.
    case date
    case accession
    /// Institution name, address or department.
    case institution
    /// Another value the profile replaces (e.g. a station name or a UID).
    case other
    /// A configured pattern (long numbers, dates, phone numbers …).
    case pattern
    /// Any text (`redact_all_text`).
    case text
}

/// The identifying values of one dataset, folded for comparison with OCR output.
struct IdentifyingText {
    struct Needle: Hashable {
        let folded: [UInt8]
        let category: PixelTextCategory
        /// Edits (insertions, deletions, substitutions) tolerated.
        let maxEdits: Int
        /// Folded characters of the whole value this needle is a part of ("SMITH" of "SMITH^ANA": 8), its own otherwise.
        var whole: Int

        init(folded: [UInt8], category: PixelTextCategory, maxEdits: Int, whole: Int? = nil) {
            self.folded = folded
            self.category = category
            self.maxEdits = maxEdits
            self.whole = max(folded.count, whole ?? folded.count)
        }
    }

    private(set) var needles: [Needle] = []

    init(needles: [Needle]) { self.needles = needles }

    /// The values of `ds` the profile replaces (see IdentifyingValues), as needles.
    init(_ ds: DataSet, planner: Planner) {
        let values = IdentifyingValues.collect(ds, planner: planner)
        var seen: [[UInt8]: Int] = [:]
        for (value, tag) in values.sources.sorted(by: { $0.key < $1.key }) {
            let forms = Self.forms(of: value, tag: tag)
            // A date's written forms are each whole; a name's or an institution's parts follow its whole value.
            let whole = forms.first.map { $0.1 == .date ? nil : Self.fold($0.0).count } ?? nil
            for (text, category) in forms {
                let folded = Self.fold(text)
                guard folded.count >= Self.minimumLength(category) else { continue }
                // A part met again (a name's component is also a value of its own): the largest whole it is part of.
                if let index = seen[folded] { needles[index].whole = max(needles[index].whole, whole ?? 0); continue }
                seen[folded] = needles.count
                needles.append(Needle(folded: folded, category: category, maxEdits: Self.edits(forLength: folded.count), whole: whole))
            }
        }
    }

    static func minimumLength(_ category: PixelTextCategory) -> Int { category == .name ? 3 : 4 }

    /// Edits tolerated for a needle of `n` folded characters: none below 5, one for 5–7, then one per 4 characters,
    /// at most 4.
    static func edits(forLength n: Int) -> Int { n < 5 ? 0 : min(4, max(1, n / 4)) }

    static let nameTags: Set<Tag> = [Tags.patientName, Tag(0x0010, 0x1001), Tag(0x0010, 0x1005), Tag(0x0010, 0x1060)]
    static let idTags: Set<Tag> = [Tags.patientID, Tag(0x0010, 0x1000), Tag(0x0010, 0x0021), Tag(0x0038, 0x0010), Tag(0x0038, 0x0400),
                                   Tag(0x0010, 0x1050), Tag(0x0010, 0x1090), Tag(0x0020, 0x0010)]
    static let institutionTags: Set<Tag> = [Tag(0x0008, 0x0080), Tag(0x0008, 0x0081), Tag(0x0008, 0x1040), Tag(0x0008, 0x0082)]

    /// The written forms of a header value and their category.
    static func forms(of value: String, tag: Tag) -> [(String, PixelTextCategory)] {
        let trimmed = value.trimmingSpaces()
        if let date = HeaderDate(trimmed) { return date.writtenForms().map { ($0, .date) } }
        let category: PixelTextCategory
        if tag == Tags.accessionNumber { category = .accession }
        else if idTags.contains(tag) { category = .id }
        else if institutionTags.contains(tag) { category = .institution }
        else if nameTags.contains(tag) || trimmed.contains("^") { category = .name }
        else { category = .other }
        var out = [(trimmed, category)]
        if category == .name {
            // "SMITH^ANA^B" → SMITH, ANA; names are written in every order, so components match on their own.
            for part in trimmed.split(whereSeparator: { "^= ,".contains($0) }) { out.append((String(part), .name)) }
        } else if category == .institution || category == .other {
            // "ST MARY HOSPITAL": a line may hold part of it; words of 5+ letters match on their own.
            let words = trimmed.split(whereSeparator: { !$0.isLetter && !$0.isNumber }).map(String.init)
            if words.count > 1 { for w in words where w.count >= 5 { out.append((w, category)) } }
        }
        return out
    }

    /// Uppercase ASCII letters and digits, diacritics dropped, every other character removed, and the characters
    /// OCR confuses mapped to one representative: 0 O D Q U 6 8 B G → 0; 1 I L J | ! → 1; 5 S → 5; 2 Z → 2.
    static func fold(_ text: String) -> [UInt8] {
        let plain = text.folding(options: [.diacriticInsensitive, .caseInsensitive], locale: nil).uppercased()
        var out: [UInt8] = []
        out.reserveCapacity(plain.utf8.count)
        for b in plain.utf8 {
            switch b {
            case UInt8(ascii: "0"), UInt8(ascii: "O"), UInt8(ascii: "D"), UInt8(ascii: "Q"), UInt8(ascii: "U"), UInt8(ascii: "6"),
                 UInt8(ascii: "8"), UInt8(ascii: "B"), UInt8(ascii: "G"):
                out.append(UInt8(ascii: "0"))
            case UInt8(ascii: "1"), UInt8(ascii: "I"), UInt8(ascii: "L"), UInt8(ascii: "J"), UInt8(ascii: "|"), UInt8(ascii: "!"):
                out.append(UInt8(ascii: "1"))
            case UInt8(ascii: "S"): out.append(UInt8(ascii: "5"))
            case UInt8(ascii: "Z"): out.append(UInt8(ascii: "2"))
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"): out.append(b)
            default: continue
            }
        }
        return out
    }

    /// For each word of one line (left to right), the category of the first needle found in the line that spans it.
    func match(line words: [String]) -> [PixelTextCategory?] { matches(line: words).categories }

    /// `match(line:)`, and how many characters of the whole values found OCR did not read in the line (the most
    /// of any match): the rest of a name beside the part read, a first glyph dropped. Their ink lies beside the words
    /// read, on either side.
    func matches(line words: [String]) -> (categories: [PixelTextCategory?], unread: Int) {
        var text: [UInt8] = []
        var owner: [Int] = []
        for (i, w) in words.enumerated() {
            let f = Self.fold(w)
            text += f
            owner += Array(repeating: i, count: f.count)
        }
        var result = [PixelTextCategory?](repeating: nil, count: words.count)
        guard !text.isEmpty else { return (result, 0) }
        var found: [(span: ClosedRange<Int>, whole: Int)] = []
        for needle in needles {
            for span in Self.occurrences(of: needle.folded, in: text, maxEdits: needle.maxEdits) {
                for i in owner[span] where result[i] == nil { result[i] = needle.category }
                found.append((span, needle.whole))
            }
        }
        // A part's whole value against what was read around it: every match that overlaps it (the surname beside the
        // given name, the whole name itself).
        var unread = 0
        for (span, whole) in found {
            let around = found.filter { $0.span.overlaps(span) }
            let read = around.map(\.span.upperBound).max()! - around.map(\.span.lowerBound).min()! + 1
            unread = max(unread, whole - read)
        }
        return (result, unread)
    }

    /// The edit distance of two folded strings (Levenshtein).
    static func distance(_ a: [UInt8], _ b: [UInt8]) -> Int {
        guard !a.isEmpty else { return b.count }
        guard !b.isEmpty else { return a.count }
        var previous = Array(0...b.count), current = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            current[0] = i
            for j in 1...b.count {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            swap(&previous, &current)
        }
        return previous[b.count]
    }

    /// Spans of `text` within `maxEdits` edits of `needle` (Sellers' approximate substring search), leftmost-longest
    /// per end, overlapping ones merged.
    static func occurrences(of needle: [UInt8], in text: [UInt8], maxEdits: Int) -> [ClosedRange<Int>] {
        let m = needle.count, n = text.count
        guard m > 0, n > 0, n >= m - maxEdits else { return [] }
        // cost[i] and start[i]: best edits for needle[0..<i] ending at the current text position, and where it began.
        var cost = Array(0...m), start = [Int](repeating: 0, count: m + 1)
        var spans: [ClosedRange<Int>] = []
        for j in 0..<n {
            var diagCost = cost[0], diagStart = start[0]
            cost[0] = 0
            start[0] = j + 1
            for i in 1...m {
                let upCost = cost[i], upStart = start[i]
                var best = diagCost + (needle[i - 1] == text[j] ? 0 : 1), bestStart = diagStart
                if upCost + 1 < best { best = upCost + 1; bestStart = upStart }              // text[j] inserted
                if cost[i - 1] + 1 < best { best = cost[i - 1] + 1; bestStart = start[i - 1] }  // needle[i-1] missing
                diagCost = upCost
                diagStart = upStart
                cost[i] = best
                start[i] = bestStart
            }
            if cost[m] <= maxEdits {
                let span = min(start[m], j)...j
                if let last = spans.last, last.overlaps(span) { spans[spans.count - 1] = min(last.lowerBound, span.lowerBound)...j } else { spans.append(span) }
            }
        }
        return spans
    }
}

/// A DA value (or the date of a DT value) of the header, written out the ways dates appear in images.
struct HeaderDate {
    let year: Int, month: Int, day: Int

    /// `text` is 8 digits (DA) or 12+ characters of digits, "+", "-" and "." starting with 8 digits (DT).
    init?(_ text: String) {
        let bytes = Array(text.utf8)
        func digit(_ b: UInt8) -> Bool { b >= 48 && b <= 57 }
        guard bytes.count == 8 || (bytes.count >= 12 && bytes.allSatisfy { digit($0) || $0 == 43 || $0 == 45 || $0 == 46 }),
              bytes.prefix(8).allSatisfy(digit) else { return nil }
        let n = bytes.prefix(8).map { Int($0) - 48 }
        let y = n[0] * 1000 + n[1] * 100 + n[2] * 10 + n[3], m = n[4] * 10 + n[5], d = n[6] * 10 + n[7]
        guard (1800...2200).contains(y), (1...12).contains(m), (1...31).contains(d) else { return nil }
        year = y
        month = m
        day = d
    }

    static let months = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
    static let monthNames = ["JANUARY", "FEBRUARY", "MARCH", "APRIL", "MAY", "JUNE", "JULY", "AUGUST", "SEPTEMBER", "OCTOBER",
                             "NOVEMBER", "DECEMBER"]

    /// YYYYMMDD, YYYY-MM-DD, MM/DD/YYYY, DD/MM/YYYY, DD.MM.YYYY, DD-Mon-YYYY, Mon DD, YYYY, DD MON YYYY, the same with
    /// a two-digit year and without leading zeros (separators do not matter once folded).
    func writtenForms() -> [String] {
        let y4 = String(year), y2 = String(format: "%02d", year % 100)
        let m2 = String(format: "%02d", month), d2 = String(format: "%02d", day), m1 = String(month), d1 = String(day)
        let mon = Self.months[month - 1], full = Self.monthNames[month - 1]
        var forms = [y4 + m2 + d2, m2 + d2 + y4, d2 + m2 + y4, m2 + d2 + y2, d2 + m2 + y2, y2 + m2 + d2,
                     d2 + mon + y4, d1 + mon + y4, mon + d2 + y4, mon + d1 + y4, d1 + full + y4, full + d1 + y4,
                     d2 + mon + y2, mon + d1 + y2]
        if m1 != m2 || d1 != d2 { forms += [m1 + "/" + d1 + "/" + y4, d1 + "." + m1 + "." + y4, y4 + "-" + m1 + "-" + d1] }
        return forms
    }
}

/// The profile's patterns, compiled once.
struct PixelTextPatterns: @unchecked Sendable {  // NSRegularExpression is immutable and thread-safe
    let expressions: [NSRegularExpression]

    init(_ patterns: [String]) {
        expressions = patterns.compactMap { try? NSRegularExpression(pattern: $0, options: [.caseInsensitive]) }
    }

    /// For each word of one line, whether a pattern matched text of it (words joined by single spaces).
    func match(line words: [String]) -> [Bool] {
        var line = ""
        var ranges: [Range<Int>] = []
        for w in words {
            if !line.isEmpty { line += " " }
            let start = line.utf16.count
            line += w
            ranges.append(start..<line.utf16.count)
        }
        var hit = [Bool](repeating: false, count: words.count)
        let ns = line as NSString
        for e in expressions {
            for m in e.matches(in: line, range: NSRange(location: 0, length: ns.length)) {
                let r = m.range.location..<(m.range.location + m.range.length)
                for (i, wr) in ranges.enumerated() where wr.overlaps(r) { hit[i] = true }
            }
        }
        return hit
    }
}
