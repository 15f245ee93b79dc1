// Keyed, deterministic pseudonyms: UIDs, PatientID, AccessionNumber, the patient label and the
// per-patient date shift. Same input and key give the same output on any machine; another key, another output.
import Crypto

/// Derives every pseudonym from one secret key with HMAC-SHA256, a distinct prefix per kind of value.
public struct Pseudonymizer: Sendable {
    /// HMAC-SHA256 keyed once; each pseudonym continues a copy of it. Never mutated: a copy's first update
    /// copies the shared hash state (copy on write), so concurrent callers only read it. (`HMAC` is not
    /// declared Sendable.)
    nonisolated(unsafe) private let keyed: HMAC<SHA256>

    public init(key: PseudonymKey) { keyed = HMAC<SHA256>(key: SymmetricKey(data: key.bytes)) }

    /// The root of well-known UIDs defined by the standard (never replaced).
    public static let dicomRoot = "1.2.840.10008."

    private func mac(_ domain: String, _ value: String) -> [UInt8] {
        var hmac = keyed
        hmac.update(data: Array((domain + value).utf8))
        return Array(hmac.finalize())
    }

    /// `2.25.<decimal of the first 128 bits of HMAC-SHA256(key, "uid:" + uid)>` (at most 44 characters).
    /// Well-known UIDs under 1.2.840.10008. are returned unchanged; padding (NUL, space) is ignored.
    public func uid(_ uid: String) -> String {
        let trimmed = Self.trimUID(uid)
        if trimmed.isEmpty || trimmed.hasPrefix(Self.dicomRoot) { return trimmed }
        let m = mac("uid:", trimmed)
        var hi: UInt64 = 0, lo: UInt64 = 0
        for i in 0..<8 { hi = hi << 8 | UInt64(m[i]) }
        for i in 8..<16 { lo = lo << 8 | UInt64(m[i]) }
        return "2.25." + Self.decimal(hi: hi, lo: lo)
    }

    /// A stable pseudonym for PatientID: "P" + 19 hex digits (76 bits) of HMAC(key, "patient-id:" + id).
    public func patientID(_ id: String) -> String { "P" + hex(mac("patient-id:", id), digits: 19) }

    /// A stable pseudonym for AccessionNumber (SH, at most 16 characters): "A" + 15 hex digits.
    public func accessionNumber(_ accession: String) -> String { "A" + hex(mac("accession:", accession), digits: 15) }

    /// The label written as PatientName: derived from the PatientID pseudonym, "ANON^<pseudonym>".
    public func patientName(forPseudonymousID pseudonymousID: String) -> String { "ANON^" + pseudonymousID }

    /// A stable pseudonym for any other text identifier of a kind (e.g. "study-id"), `digits` hex digits.
    public func identifier(kind: String, _ value: String, digits: Int = 15) -> String {
        hex(mac(kind + ":", value), digits: digits)
    }

    /// The date shift of one patient, in days, inside `range` (inclusive): deterministic from the key
    /// and the original PatientID, so every file of that patient moves by the same number of days.
    public func dateShiftDays(patientKey: String, range: ClosedRange<Int>) -> Int {
        let m = mac("date-shift:", patientKey)
        var v: UInt64 = 0
        for i in 0..<8 { v = v << 8 | UInt64(m[i]) }
        let width = UInt64(range.upperBound - range.lowerBound) + 1
        return range.lowerBound + Int(v % width)
    }

    private func hex(_ bytes: [UInt8], digits: Int) -> String {
        let all = bytes.map { String($0, radix: 16, uppercase: true).leftPadded(2) }.joined()
        return String(all.prefix(digits))
    }

    /// A UID without its padding (trailing NUL or spaces) and surrounding whitespace.
    static func trimUID(_ uid: String) -> String {
        var s = Substring(uid)
        while let last = s.last, last == "\0" || last == " " { s.removeLast() }
        while let first = s.first, first == " " { s.removeFirst() }
        return String(s)
    }

    /// The decimal digits of the unsigned 128-bit number hi·2⁶⁴ + lo.
    static func decimal(hi: UInt64, lo: UInt64) -> String {
        if hi == 0 { return String(lo) }
        var hi = hi, lo = lo
        var chunks: [UInt64] = []  // base 10^18 chunks, least significant first
        let base: UInt64 = 1_000_000_000_000_000_000
        while hi != 0 || lo != 0 {
            // (hi·2⁶⁴ + lo) divided by base, long division on 64-bit halves.
            let (qHi, rHi) = hi.quotientAndRemainder(dividingBy: base)
            let (qLo, r) = base.dividingFullWidth((high: rHi, low: lo))
            chunks.append(r)
            hi = qHi
            lo = qLo
        }
        var s = String(chunks.last!)
        for c in chunks.dropLast().reversed() { s += String(c).leftPadded(18) }
        return s
    }
}
