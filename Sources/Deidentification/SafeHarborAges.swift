// HIPAA Safe Harbor, §164.514(b)(2)(i)(C): ages over 89 and the dates that reveal them are aggregated into one
// category of 90 or older. Every AS value of more than 89 years becomes 090Y; a birth date still present in the
// output of such a patient is emptied (the Basic Profile empties it anyway; a profile keeping it must not keep it
// for them).
import DICOM

enum SafeHarborAges {
    static let patientAge = Tag(0x0010, 0x1010)
    static let dateTags = [Tag(0x0008, 0x0020), Tag(0x0008, 0x0021), Tag(0x0008, 0x0022), Tag(0x0008, 0x0023)]  // study, series, acquisition, content

    /// Years of an AS value ("045Y", "006M", "003W", "012D"), nil when malformed.
    static func years(_ age: String) -> Double? {
        let t = age.trimmingSpaces()
        guard t.count == 4, let n = Int(t.prefix(3)), let unit = t.last else { return nil }
        switch unit {
        case "Y": return Double(n)
        case "M": return Double(n) / 12
        case "W": return Double(n) * 7 / 365.25
        case "D": return Double(n) / 365.25
        default: return nil
        }
    }

    /// Whether the original says the patient is 90 or older: by PatientAge, else by the birth date and the first of
    /// the study, series, acquisition or content date.
    static func over89(_ ds: DataSet) -> Bool {
        if let age = ds.string(patientAge), let y = years(age) { return y >= 90 }
        guard let birth = ds.string(Tags.patientBirthDate).flatMap({ HeaderDate($0.trimmingSpaces()) }),
              let seen = dateTags.lazy.compactMap({ ds.string($0).flatMap { HeaderDate($0.trimmingSpaces()) } }).first else { return false }
        var age = seen.year - birth.year
        if (seen.month, seen.day) < (birth.month, birth.day) { age -= 1 }
        return age >= 90
    }

    /// Caps every AS value over 89 years at 090Y (at any depth) and, for a patient over 89, empties a birth date left.
    static func cap(_ ds: DataSet, over89: Bool) throws {
        var capped: [(DataSet, Tag)] = []
        ds.walk { _, element, owner in
            if element.vr == .AS, let value = owner.string(element.tag), let y = years(value), y >= 90 { capped.append((owner, element.tag)) }
        }
        for (owner, tag) in capped { try owner.set(tag, string: "090Y", vr: .AS) }
        if over89, let birth = ds.string(Tags.patientBirthDate), !birth.trimmingSpaces().isEmpty {
            try ds.setEmpty(Tags.patientBirthDate, vr: .DA)
        }
    }
}
