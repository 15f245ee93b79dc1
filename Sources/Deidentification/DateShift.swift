// Shifting DA and DT values by a whole number of days (Retain Longitudinal Temporal Information with
// Modified Dates). A whole-day shift keeps order and intervals, and leaves TM (time of day) unchanged.

/// Shifts DICOM dates by a fixed number of days.
public struct DateShift: Sendable, Hashable {
    /// Days added to every date (negative: into the past).
    public let days: Int

    public init(days: Int) { self.days = days }

    /// A DA value shifted: each value of a multi-valued element and each end of a range ("A-B") moves.
    /// Accepts YYYYMMDD and the old YYYY.MM.DD; nil when any part is not a date (the caller removes it).
    public func shiftDA(_ value: String) -> String? {
        let values = value.split(separator: "\\", omittingEmptySubsequences: false)
        var out: [String] = []
        for v in values {
            let t = v.trimmingSpaces()
            if t.isEmpty { out.append(""); continue }
            if t.contains("-") {
                let ends = t.split(separator: "-", omittingEmptySubsequences: false)
                guard ends.count == 2 else { return nil }
                var shifted: [String] = []
                for e in ends {
                    if e.isEmpty { shifted.append(""); continue }
                    guard let s = shiftDate8(String(e)) else { return nil }
                    shifted.append(s)
                }
                out.append(shifted.joined(separator: "-"))
            } else {
                guard let s = shiftDate8(t) else { return nil }
                out.append(s)
            }
        }
        return out.joined(separator: "\\")
    }

    /// A DT value shifted: the date part moves, the time and UTC offset stay. A value of year or
    /// year-month precision moves its first day and keeps its precision. nil when not a date-time.
    public func shiftDT(_ value: String) -> String? {
        let values = value.split(separator: "\\", omittingEmptySubsequences: false)
        var out: [String] = []
        for v in values {
            let t = v.trimmingSpaces()
            if t.isEmpty { out.append(""); continue }
            let digits = t.prefix { $0.isASCII && $0.isNumber }
            let rest = t.dropFirst(digits.count)
            switch digits.count {
            case 4, 6:
                let full = String(digits) + (digits.count == 4 ? "0101" : "01")
                guard let s = shiftDate8(full) else { return nil }
                out.append(String(s.prefix(digits.count)) + rest)
            case 8...:
                guard let s = shiftDate8(String(digits.prefix(8))) else { return nil }
                out.append(s + digits.dropFirst(8) + rest)
            default:
                return nil
            }
        }
        return out.joined(separator: "\\")
    }

    private func shiftDate8(_ s: String) -> String? {
        var t = s
        if t.count == 10, t.filter({ $0 == "." }).count == 2 { t.removeAll { $0 == "." } }  // YYYY.MM.DD
        guard t.count == 8, t.allSatisfy({ $0.isASCII && $0.isNumber }),
              let y = Int(t.prefix(4)), let m = Int(t.dropFirst(4).prefix(2)), let d = Int(t.suffix(2)),
              (1...12).contains(m), d >= 1, d <= Self.daysInMonth(y, m)
        else { return nil }
        let (ny, nm, nd) = Self.civil(fromDays: Self.days(fromCivil: y, m, d) + days)
        guard (0...9999).contains(ny) else { return nil }
        return String(ny).leftPadded(4) + String(nm).leftPadded(2) + String(nd).leftPadded(2)
    }

    static func daysInMonth(_ y: Int, _ m: Int) -> Int {
        switch m {
        case 2: return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
    static func days(fromCivil y0: Int, _ m: Int, _ d: Int) -> Int {
        let y = m <= 2 ? y0 - 1 : y0
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146097 + doe - 719468
    }

    /// The proleptic Gregorian date of a day count since 1970-01-01.
    static func civil(fromDays z0: Int) -> (Int, Int, Int) {
        let z = z0 + 719468
        let era = (z >= 0 ? z : z - 146096) / 146097
        let doe = z - era * 146097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (m <= 2 ? 1 : 0), m, d)
    }
}

extension StringProtocol {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while let c = s.last, c == " " || c == "\0" { s.removeLast() }
        while let c = s.first, c == " " { s.removeFirst() }
        return String(s)
    }
}
