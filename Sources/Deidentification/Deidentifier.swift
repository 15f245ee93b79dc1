// The de-identifier: applies a profile to one DicomFile in place and returns what it did, including the
// original ↔ pseudonym mapping the daemon stores in the vault schema.
import DICOM
import OCR

/// One original value and what replaced it ("" when emptied or removed).
public struct IdentifierMapping: Sendable, Hashable {
    public let original: String
    public let pseudonym: String
    public init(original: String, pseudonym: String) {
        self.original = original
        self.pseudonym = pseudonym
    }
}

/// The identifiers of one file before and after de-identification (nil: absent from the original).
public struct PseudonymMapping: Sendable, Hashable {
    public var patientID: IdentifierMapping?
    public var patientName: IdentifierMapping?
    public var patientBirthDate: IdentifierMapping?
    public var accessionNumber: IdentifierMapping?
    public var studyInstanceUID: IdentifierMapping?
    public var seriesInstanceUID: IdentifierMapping?
    public var sopInstanceUID: IdentifierMapping?
    /// Every UID replaced anywhere in the file (references included), each once, sorted by original.
    public var uids: [IdentifierMapping] = []
}

/// What `Deidentifier.deidentify` did to one file.
public struct DeidentificationResult: Sendable {
    public let mapping: PseudonymMapping
    /// Days added to every DA/DT value (nil when dates were not shifted).
    public let dateShiftDays: Int?
    /// True when the patient key was the StudyInstanceUID (no PatientID; profile's `studyInstanceUID` policy).
    public let patientKeyFromStudy: Bool
    /// The options applied, as written to DeidentificationMethodCodeSequence (Clean Pixel Data when blanked).
    public let options: [ProfileOption]
    /// The CID 7050 code values written, the Basic Profile's 113100 first.
    public var methodCodeValues: [String] { [ProfileOption.basicProfileCodeValue] + options.map(\.codeValue) }
    /// The signature whose regions were blanked, if any.
    public let blankedBySignature: String?
    /// Set when pixels were rewritten: write the file in this transfer syntax (explicit VR little endian).
    public let requiredTransferSyntax: String?
    /// True when burned-in text is suspected and the profile lets such files pass unchecked (`burnedIn.reject: false`,
    /// policy `pass`, or the fallback `pass` for an image OCR cannot read).
    public let burnedInTextSuspected: Bool
    /// What OCR found and blanked, when the profile's burned-in policy read the pixels (nil otherwise).
    public let pixelText: PixelTextAudit?
}

/// Applies a profile with a key. Sendable and stateless: one instance serves every file and thread.
public struct Deidentifier: Sendable {
    public let profile: DeidentificationProfile
    let pseudonymizer: Pseudonymizer
    let planner: Planner
    let burnedInText: BurnedInTextCheck

    /// - Parameters:
    ///   - profile: what to do (see etl/deidentify/basic.yaml).
    ///   - key: the secret behind every pseudonym and date shift.
    ///   - recognizers: the OCR engines of the redact policies (nil: the process's shared pool for the profile's
    ///     language; an engine is loaded on the first image that needs one, once per thread that reads).
    public init(profile: DeidentificationProfile, key: PseudonymKey, recognizers: TextRecognizerPool? = nil) {
        self.profile = profile
        pseudonymizer = Pseudonymizer(key: key)
        planner = Planner(profile: profile)
        burnedInText = BurnedInTextCheck(profile: profile, planner: planner, recognizers: recognizers)
    }

    /// De-identifies `file` in place. Throws `DeidentificationError` (`burned_in_annotation`,
    /// `burned_in_text_unreadable`, `ocr_unavailable`, `missing_patient_id`, `pixel_blanking_failed`, `dicom_error`);
    /// on a throw the file may be half done and must be discarded.
    public func deidentify(_ file: DicomFile) throws -> DeidentificationResult {
        do {
            return try run(file)
        } catch let e as DicomError {
            throw DeidentificationError(.dicomError, detail: e.reason)
        }
    }

    private func run(_ file: DicomFile) throws -> DeidentificationResult {
        let ds = file.dataset
        // 0. How the output is written: its transfer syntax, and its instance UID where the input names none.
        var transferSyntax = try OutputSyntax.prepare(file)
        let identity = try FileIdentity(file)

        // 1. Burned-in text: reject, blank by signature, read with OCR and blank, or (if allowed) pass.
        let pixels = try burnedInText.run(file)
        if let rewritten = pixels.transferSyntax { transferSyntax = rewritten }
        let ageOver89 = profile.capAgesOver89 && SafeHarborAges.over89(ds)

        // 2. The patient key: PatientID, or the study when the profile allows.
        let originalPatientID = Self.value(Tags.patientID, ds)?.trimmingSpaces() ?? ""
        var patientKey = originalPatientID
        var keyFromStudy = false
        if patientKey.isEmpty {
            let study = Self.value(Tags.studyInstanceUID, ds).map(Pseudonymizer.trimUID) ?? ""
            guard profile.missingPatientID == .studyInstanceUID, !study.isEmpty else {
                throw DeidentificationError(.missingPatientID)
            }
            patientKey = "study:" + study
            keyFromStudy = true
        }
        let shift: DateShift? = profile.options.contains(.retainLongitudinalModifiedDates)
            ? DateShift(days: pseudonymizer.dateShiftDays(patientKey: patientKey, range: profile.dateShiftDays)) : nil
        let pseudoPatientID = pseudonymizer.patientID(patientKey)

        var mapping = PseudonymMapping()
        mapping.patientID = IdentifierMapping(original: originalPatientID, pseudonym: pseudoPatientID)
        func record(_ tag: Tag, into path: WritableKeyPath<PseudonymMapping, IdentifierMapping?>) {
            if let v = Self.value(tag, ds) { mapping[keyPath: path] = IdentifierMapping(original: tag == Tags.patientName ? v : Pseudonymizer.trimUID(v), pseudonym: "") }
        }
        record(Tags.patientName, into: \.patientName)
        record(Tags.patientBirthDate, into: \.patientBirthDate)
        record(Tags.accessionNumber, into: \.accessionNumber)
        record(Tags.studyInstanceUID, into: \.studyInstanceUID)
        record(Tags.seriesInstanceUID, into: \.seriesInstanceUID)
        record(Tags.sopInstanceUID, into: \.sopInstanceUID)

        // 3. Words that may not survive in cleaned text: every value the profile replaces.
        let scrubber = TextScrubber(identifying: IdentifyingValues.collect(ds, planner: planner, keptValues: false).values)

        // 4. Every element at every depth.
        var context = Context(shift: shift, pseudoPatientID: pseudoPatientID, scrubber: scrubber, requirements: IODRequirements(file))
        try process(ds, parent: nil, &context)

        // PatientID and PatientName are Type 2: present, with the pseudonyms, even when the original lacked them.
        if !ds.contains(Tags.patientID) { try ds.set(Tags.patientID, string: pseudoPatientID, vr: .LO) }
        if !ds.contains(Tags.patientName) { try ds.set(Tags.patientName, string: pseudonymizer.patientName(forPseudonymousID: pseudoPatientID), vr: .PN) }
        if profile.capAgesOver89 { try SafeHarborAges.cap(ds, over89: ageOver89) }

        // 5. What was done, recorded in the file.
        var applied = OptionActions.columns.filter { profile.options.contains($0) }
        if pixels.cleaned { applied.insert(.cleanPixelData, at: 0) }
        try ds.set(Tags.patientIdentityRemoved, string: "YES", vr: .CS)
        try ds.set(Tags.deidentificationMethod, strings: ["DICOM PS3.15 E.1 Basic Profile", String("dicom-etl \(profile.name)".prefix(64))], vr: .LO)
        try ds.remove(Tags.deidentificationMethodCodeSequence)
        try ds.setEmpty(Tags.deidentificationMethodCodeSequence, vr: .SQ)
        for (value, meaning) in [(ProfileOption.basicProfileCodeValue, ProfileOption.basicProfileCodeMeaning)] + applied.map({ ($0.codeValue, $0.codeMeaning) }) {
            let item = try ds.appendItem(to: Tags.deidentificationMethodCodeSequence)
            try item.set(Tags.codeValue, string: value, vr: .SH)
            try item.set(Tags.codingSchemeDesignator, string: "DCM", vr: .SH)
            try item.set(Tags.codeMeaning, string: meaning, vr: .LO)
        }
        let longitudinal = shift != nil ? "MODIFIED" : profile.options.contains(.retainLongitudinalFullDates) ? "UNMODIFIED" : "REMOVED"
        try ds.set(Tags.longitudinalTemporalInformationModified, string: longitudinal, vr: .CS)
        if pixels.cleaned { try ds.set(Tags.burnedInAnnotation, string: "NO", vr: .CS) }
        try identity.settle(file, pseudonymizer: pseudonymizer)

        // 6. The mapping, with the values written.
        func fill(_ tag: Tag, _ path: WritableKeyPath<PseudonymMapping, IdentifierMapping?>) {
            if let m = mapping[keyPath: path] {
                let now = Self.value(tag, ds).map { tag == Tags.patientName ? $0 : Pseudonymizer.trimUID($0) } ?? ""
                mapping[keyPath: path] = IdentifierMapping(original: m.original, pseudonym: now)
            }
        }
        fill(Tags.patientName, \.patientName)
        fill(Tags.patientBirthDate, \.patientBirthDate)
        fill(Tags.accessionNumber, \.accessionNumber)
        fill(Tags.studyInstanceUID, \.studyInstanceUID)
        fill(Tags.seriesInstanceUID, \.seriesInstanceUID)
        fill(Tags.sopInstanceUID, \.sopInstanceUID)
        mapping.uids = context.uids.sorted { $0.key < $1.key }.map { IdentifierMapping(original: $0.key, pseudonym: $0.value) }

        return DeidentificationResult(
            mapping: mapping, dateShiftDays: shift?.days, patientKeyFromStudy: keyFromStudy, options: applied,
            blankedBySignature: pixels.blankedBySignature, requiredTransferSyntax: transferSyntax,
            burnedInTextSuspected: pixels.suspectedPassed, pixelText: pixels.audit)
    }

    private struct Context {
        let shift: DateShift?
        let pseudoPatientID: String
        let scrubber: TextScrubber
        /// What the file's IOD requires where (see `IODRequirements`).
        let requirements: IODRequirements
        var uids: [String: String] = [:]
    }

    /// Every element of `ds`, an item of the sequence `parent` (nil: the data set itself).
    private func process(_ ds: DataSet, parent: Tag?, _ context: inout Context) throws {
        for element in ds.elements {
            do {
                try process(element, in: ds, parent: parent, &context)
            } catch let e as DicomError {
                throw DeidentificationError(.dicomError, detail: "\(e.reason) at \(element.tag)")
            }
        }
    }

    private func process(_ element: Element, in ds: DataSet, parent: Tag?, _ context: inout Context) throws {
            let tag = element.tag
            let vr = Planner.vr(of: element)
            let requirement = context.requirements.requirement(of: tag, parent: parent)
            let plan = planner.plan(element, in: ds, requirement: requirement)
            /// Removes a value that cannot be kept, or under the conformant policy, empties it (Type 2) or
            /// writes a dummy (Type 1) where the IOD requires it.
            func drop() throws {
                let floor = profile.combinedActions == .conformant ? requirement.map { Planner.conformant(.remove, isSequence: element.isSequence, requirement: $0) } : nil
                switch floor {
                case .dummy?: try writeDummy(element, vr: vr, in: ds)
                case .zeroLength?: try ds.setEmpty(tag)
                default: try ds.remove(tag)
                }
            }
            switch plan {
            case .keep, .keepByOption, .cleanSequence:
                if element.isSequence { for item in ds.items(tag) { try process(item, parent: tag, &context) } }
            case .remove:
                try ds.remove(tag)
            case .zeroLength:
                try ds.setEmpty(tag)
            case .dummy:
                if element.isSequence {
                    for item in ds.items(tag) { try process(item, parent: tag, &context) }
                } else {
                    try writeDummy(element, vr: vr, in: ds)
                }
            case .uid:
                if element.isSequence {
                    for item in ds.items(tag) { try process(item, parent: tag, &context) }
                } else if vr == .UI {
                    let values = Self.texts(element, ds)
                    if values.isEmpty || values.allSatisfy({ $0.isEmpty }) { return }
                    let mapped = values.map { v -> String in
                        let t = Pseudonymizer.trimUID(v)
                        let p = pseudonymizer.uid(t)
                        if p != t { context.uids[t] = p }
                        return p
                    }
                    if vr == .UN { try ds.remove(tag) }
                    try ds.set(tag, strings: mapped, vr: .UI)
                } else {
                    try ds.remove(tag)
                }
            case .shiftDate:
                guard let shift = context.shift, let value = Self.texts(element, ds).first, !value.isEmpty else { return }
                let shifted: String?
                switch vr {
                case .DA: shifted = shift.shiftDA(value)
                case .DT: shifted = shift.shiftDT(value)
                case .TM: shifted = value  // a whole-day shift leaves the time of day as it is
                default: shifted = element.isSequence ? nil : value
                }
                if let shifted { try setText(shifted, element, ds) } else { try drop() }
            case .cleanText:
                if element.isSequence {
                    for item in ds.items(tag) { try process(item, parent: tag, &context) }
                } else if vr == .LT || vr == .UT || !Self.isText(vr) {
                    try drop()  // free text (comments, reports) cannot be checked: removed
                } else if let value = Self.texts(element, ds).first {
                    let cleaned = context.scrubber.clean(value)
                    if cleaned.isEmpty { try drop() } else if cleaned != value { try setText(cleaned, element, ds) }
                }
            case .cleanDevice:
                if !Self.isText(vr) { try ds.remove(tag); return }
                guard let value = Self.texts(element, ds).first?.trimmingSpaces(), !value.isEmpty else { return }
                let limit = vr == .AE || vr == .SH || vr == .CS ? 16 : 64
                let pseudo = "DEV" + pseudonymizer.identifier(kind: "device", value, digits: limit - 3)
                try setText(pseudo, element, ds)
            case .patientID:
                try setText(context.pseudoPatientID, element, ds)
            case .patientName:
                try setText(pseudonymizer.patientName(forPseudonymousID: context.pseudoPatientID), element, ds)
            case .accessionNumber:
                let value = Self.texts(element, ds).first?.trimmingSpaces() ?? ""
                if value.isEmpty { try ds.setEmpty(tag) } else { try setText(pseudonymizer.accessionNumber(value), element, ds) }
            }
    }

    /// The whole text value of `tag` (also for an element read as UN), nil when absent.
    static func value(_ tag: Tag, _ ds: DataSet) -> String? {
        guard let e = ds.element(tag) else { return nil }
        return texts(e, ds).joined(separator: "\\")
    }

    /// The text of an element: its values joined by "\\" as one string, for UI each value. An element read
    /// as UN is decoded from its bytes.
    static func texts(_ element: Element, _ ds: DataSet) -> [String] {
        let vr = Planner.vr(of: element)
        if element.vr == .UN {
            guard let bytes = ds.bytes(element.tag) else { return [] }
            let s = String(decoding: bytes, as: UTF8.self).trimmingSpaces()
            return vr == .UI ? s.split(separator: "\\", omittingEmptySubsequences: false).map { $0.trimmingSpaces() } : [s]
        }
        if vr == .UI { return ds.strings(element.tag) }
        return ds.string(element.tag).map { [$0] } ?? []
    }

    /// Writes text into an element, keeping its VR; an element read as UN gets its dictionary VR.
    private func setText(_ value: String, _ element: Element, _ ds: DataSet) throws {
        if element.vr == .UN {
            try ds.remove(element.tag)
            try ds.set(element.tag, string: value, vr: Planner.vr(of: element))
        } else {
            try ds.set(element.tag, string: value, vr: element.vr)
        }
    }

    /// The dummy of `vr` in place of the element's value (removed when the VR has none).
    private func writeDummy(_ element: Element, vr: VR, in ds: DataSet) throws {
        guard let dummy = Self.dummy(for: vr), vr != .UN else { try ds.remove(element.tag); return }
        if element.vr == .UN { try ds.remove(element.tag) }
        try write(dummy, to: element.tag, vr: vr, in: ds)
    }

    private func write(_ dummy: Dummy, to tag: Tag, vr: VR, in ds: DataSet) throws {
        switch dummy {
        case let .text(s): try ds.set(tag, string: s, vr: vr)
        case let .number(n): try ds.set(tag, numbers: [n], vr: vr)
        case let .bytes(b): try ds.set(tag, bytes: b, vr: vr)
        }
    }

    enum Dummy { case text(String), number(Double), bytes([UInt8]) }

    /// The dummy value of D for each VR: recognisably not real, valid for the VR.
    static func dummy(for vr: VR) -> Dummy? {
        switch vr {
        case .AE, .CS, .SH, .LO, .ST, .LT, .UT, .UC: return .text("DEIDENTIFIED")
        case .PN: return .text("DEIDENTIFIED")
        case .DA: return .text("19000101")
        case .DT: return .text("19000101000000")
        case .TM: return .text("000000")
        case .AS: return .text("000D")
        case .DS, .IS: return .text("0")
        case .UR: return .text("urn:deidentified")
        case .US, .SS, .UL, .SL, .FL, .FD, .SV, .UV: return .number(0)
        case .OB, .OW, .OD, .OF, .OL, .OV, .UN: return .bytes([0, 0, 0, 0, 0, 0, 0, 0])
        default: return nil
        }
    }

    static func isText(_ vr: VR) -> Bool {
        switch vr {
        case .AE, .AS, .CS, .DA, .DS, .DT, .IS, .LO, .LT, .PN, .SH, .ST, .TM, .UC, .UI, .UR, .UT: true
        default: false
        }
    }
}
