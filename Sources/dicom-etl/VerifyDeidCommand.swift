// `dicom-etl verify-deid --originals DIR --outputs DIR [--safe-harbor]`: looks for identifying values of each
// original in its de-identified output (same relative path). Exit status 1 on any leak. With --safe-harbor, also
// reports per output file what is left of each of HIPAA Safe Harbor's eighteen identifiers (tags and counts only).
import ArgumentParser
import DICOM
import Deidentification
import Foundation

struct VerifyDeid: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify-deid",
        abstract: "Report identifying values of originals that remain in their de-identified outputs.",
        discussion: """
            Pairs each file under --outputs with the file at the same relative path under --originals. \
            Prints the tags involved, never the values; --list-files also prints the relative paths. \
            Exits with status 1 when any leak is found.
            """)

    @Option(help: "Folder of original files.")
    var originals: String

    @Option(help: "Folder of de-identified files (as written by `deidentify`).")
    var outputs: String

    @Option(help: "The profile the outputs were made with.")
    var profile: String = "etl/deidentify/basic.yaml"

    @Flag(name: .customLong("list-files"), help: "Print the relative path of each file with a leak (with --safe-harbor: of every file).")
    var listFiles = false

    @Flag(name: .customLong("safe-harbor"), help: """
        Report per output file the eighteen identifiers of HIPAA Safe Harbor (§164.514(b)(2)(i) A–R): absent,         pseudonymised, generalised, shifted, present or not applicable, with the tags behind each; then totals.
        """)
    var safeHarbor = false

    func run() async throws {
        let loaded = try DeidentificationProfile.load(path: profile)
        let verifier = PHIVerifier(profile: loaded)
        let checker = SafeHarborChecker(profile: loaded)
        var checked = 0, leakyFiles = 0, unpaired = 0, unreadable = 0, meeting = 0
        var byTag: [String: Int] = [:]
        var tally: [SafeHarborIdentifier: [SafeHarborStatus: Int]] = [:]
        for (index, rel) in DeidFiles.regularFiles(under: outputs).enumerated() {
            let original = originals + "/" + rel
            guard FileManager.default.fileExists(atPath: original) else { unpaired += 1; continue }
            let leaks: [PHILeak]
            do { leaks = try verifier.verify(originalPath: original, outputPath: outputs + "/" + rel) } catch { unreadable += 1; continue }
            checked += 1
            if safeHarbor, let output = try? DicomFile.open(path: outputs + "/" + rel) {
                let report = checker.check(output: output, leaks: leaks)
                if report.meetsSafeHarbor { meeting += 1 }
                for f in report.findings { tally[f.identifier, default: [:]][f.status, default: 0] += 1 }
                print("file \(index)" + (listFiles ? " \(rel)" : "") + ": Safe Harbor " + (report.meetsSafeHarbor ? "met" : "not met"))
                for f in report.findings {
                    let detail = ([f.count > 0 ? "\(f.count) value(s)" : nil, f.tags.isEmpty ? nil : f.tags.joined(separator: " "), f.note]).compactMap { $0 }
                    print("  \(f.identifier.rawValue) \(f.identifier.title): \(f.status.rawValue)" + (detail.isEmpty ? "" : " (" + detail.joined(separator: "; ") + ")"))
                }
            }
            if leaks.isEmpty { continue }
            leakyFiles += 1
            for l in leaks { byTag["\(l.sourceTag) → \(l.foundIn)", default: 0] += 1 }
            if listFiles { print("\(rel): \(leaks.map(\.description).joined(separator: "; "))") }
        }
        print("verified \(checked) files: \(leakyFiles) with leaks, \(byTag.values.reduce(0, +)) leaked values; \(unpaired) without original, \(unreadable) unreadable")
        for (k, n) in byTag.sorted(by: { $0.key < $1.key }) { print("  \(k): \(n)") }
        if safeHarbor {
            print("safe harbor: \(meeting) of \(checked) files meet it")
            for id in SafeHarborIdentifier.allCases {
                let counts = (tally[id] ?? [:]).sorted { $0.key.rawValue < $1.key.rawValue }.map { "\($0.key.rawValue) \($0.value)" }
                print("  \(id.rawValue) \(id.title): " + counts.joined(separator: ", "))
            }
        }
        if leakyFiles > 0 { throw ExitCode(1) }
    }
}
