// The PHI verifier: for an original and its de-identified output, every identifying value of the original
// (a value of any element the profile must remove, empty or replace, at any depth) that still appears in
// the output's elements or raw bytes.
import DICOM

/// One identifying value of the original found in the output. Carries tags and a length, never the value.
public struct PHILeak: Sendable, Hashable, CustomStringConvertible {
    /// The original element the value came from, e.g. "(0010,0010)".
    public let sourceTag: String
    /// Where it was found: an output element's tag, or "raw bytes".
    public let foundIn: String
    /// The length of the leaked value.
    public let length: Int
    public var description: String { "value of \(sourceTag) (\(length) characters) found in \(foundIn)" }
}

/// Checks de-identified outputs against their originals under a profile.
public struct PHIVerifier: Sendable {
    let planner: Planner
    let writtenTexts: [String]

    public init(profile: DeidentificationProfile) {
        planner = Planner(profile: profile)
        writtenTexts = Self.fixedTexts + ["DICOM-ETL " + profile.name.uppercased()]
    }

    /// Attributes the de-identifier writes from fixed texts (method, codes): not searched.
    static let recordTags: Set<Tag> = [Tags.patientIdentityRemoved, Tags.deidentificationMethod,
                                       Tags.deidentificationMethodCodeSequence, Tags.longitudinalTemporalInformationModified]

    /// Fixed texts the de-identifier writes; a removed value that is part of one of them is no leak.
    static let fixedTexts: [String] = (["DICOM PS3.15 E.1 BASIC PROFILE", ProfileOption.basicProfileCodeMeaning.uppercased()]
        + ProfileOption.allCases.map { $0.codeMeaning.uppercased() })

    /// Values the de-identifier itself writes; a removed attribute holding one of them is no leak.
    static let writtenConstants: Set<String> = [
        "YES", "NO", "MODIFIED", "UNMODIFIED", "REMOVED", "DCM", "DEIDENTIFIED", "19000101", "19000101000000",
        "000000", "000D", "URN:DEIDENTIFIED", "ANON",
    ]

    /// Leaks of `original`'s identifying values in `output` (its elements) and `outputBytes` (the output file).
    /// Values shorter than 3 characters are ignored; values also found in an original element the profile
    /// keeps verbatim (by the table, an option or as unlisted) are legitimately present. Element values are
    /// compared ignoring case, by containment for values with a letter or of 8+ characters, else by
    /// equality. Raw bytes are searched for values of 6+ characters with a letter, or 8+ characters (shorter
    /// strings occur by chance in pixel data).
    public func verify(original: DicomFile, output: DicomFile, outputBytes: [UInt8]) -> [PHILeak] {
        let iv = IdentifyingValues.collect(original.dataset, planner: planner)
        let keptUpper = iv.kept.map { $0.uppercased() }
        var candidates: [(value: String, source: Tag)] = []
        for (v, tag) in iv.sources {
            let u = v.uppercased()
            if u.count < 3 || Self.writtenConstants.contains(u) || writtenTexts.contains(where: { $0.contains(u) }) { continue }
            if keptUpper.contains(where: { $0.contains(u) }) { continue }
            candidates.append((u, tag))
        }
        candidates.sort { $0.value < $1.value }
        var texts: [(String, Tag)] = []
        Self.gather(output.metaInformation, into: &texts)
        Self.gather(output.dataset, into: &texts)
        let exact = Dictionary(texts.map { ($0.0, $0.1) }, uniquingKeysWith: { a, _ in a })

        var leaks: [PHILeak] = []
        var raw: [(String, Tag)] = []
        for (v, source) in candidates {
            let hasLetter = v.contains { $0.isLetter }
            if let t = exact[v] {
                leaks.append(PHILeak(sourceTag: source.description, foundIn: t.description, length: v.count))
                continue
            }
            if hasLetter || v.count >= 8, let hit = texts.first(where: { $0.0.contains(v) }) {
                leaks.append(PHILeak(sourceTag: source.description, foundIn: hit.1.description, length: v.count))
                continue
            }
            if (hasLetter && v.utf8.count >= 6) || v.utf8.count >= 8 { raw.append((v, source)) }
        }
        for (v, source) in Self.searchRaw(outputBytes, raw) {
            leaks.append(PHILeak(sourceTag: source.description, foundIn: "raw bytes", length: v.count))
        }
        return leaks
    }

    /// Opens both files and verifies them (see `verify(original:output:outputBytes:)`).
    public func verify(originalPath: String, outputPath: String) throws -> [PHILeak] {
        let original = try DicomFile.open(path: originalPath)
        let output = try DicomFile.open(path: outputPath)
        guard let raw = readAll(outputPath) else { throw DeidentificationError(.dicomError, detail: "io_error") }
        return verify(original: original, output: output, outputBytes: raw)
    }

    private static func gather(_ ds: DataSet, into texts: inout [(String, Tag)]) {
        for element in ds.elements where !recordTags.contains(element.tag) {
            if element.isSequence {
                for item in ds.items(element.tag) { gather(item, into: &texts) }
            } else if element.tag != Tags.pixelData {
                for t in IdentifyingValues.texts(element, ds) { texts.append((t.uppercased(), element.tag)) }
            }
        }
    }

    /// Case-insensitive (ASCII) search of many strings in bytes: a 2-byte prefix bitmap, then a full compare.
    static func searchRaw(_ bytes: [UInt8], _ needles: [(String, Tag)]) -> [(String, Tag)] {
        let ns = needles.map { (Array($0.0.utf8), $0) }.filter { $0.0.count >= 2 }
        guard !ns.isEmpty, bytes.count >= 2 else { return [] }
        var upper = bytes
        for i in upper.indices where upper[i] >= 0x61 && upper[i] <= 0x7A { upper[i] -= 0x20 }
        var bitmap = [UInt64](repeating: 0, count: 1024)
        var byPrefix: [UInt16: [Int]] = [:]
        for (i, n) in ns.enumerated() {
            let p = UInt16(n.0[0]) << 8 | UInt16(n.0[1])
            bitmap[Int(p >> 6)] |= 1 << UInt64(p & 63)
            byPrefix[p, default: []].append(i)
        }
        var found = Set<Int>()
        upper.withUnsafeBufferPointer { u in
            bitmap.withUnsafeBufferPointer { bm in
                var i = 0
                let end = u.count - 1
                while i < end {
                    let p = UInt16(u[i]) << 8 | UInt16(u[i + 1])
                    if bm[Int(p >> 6)] & (1 << UInt64(p & 63)) != 0 {
                        for k in byPrefix[p] ?? [] where !found.contains(k) {
                            let n = ns[k].0
                            if i + n.count <= u.count {
                                var j = 2
                                while j < n.count && u[i + j] == n[j] { j += 1 }
                                if j == n.count { found.insert(k) }
                            }
                        }
                    }
                    i += 1
                }
            }
        }
        return found.sorted().map { ns[$0].1 }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

func readAll(_ path: String) -> [UInt8]? {
    guard let f = fopen(path, "rb") else { return nil }
    defer { fclose(f) }
    var out: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let n = fread(&buffer, 1, buffer.count, f)
        if n > 0 { out.append(contentsOf: buffer[0..<n]) }
        if n < buffer.count { break }
    }
    return ferror(f) == 0 ? out : nil
}
