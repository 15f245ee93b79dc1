// `dicom-etl verify-deid --originals DIR --outputs DIR`: looks for identifying values of each original in
// its de-identified output (same relative path). Exit status 1 on any leak.
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

    @Flag(name: .customLong("list-files"), help: "Print the relative path of each file with a leak.")
    var listFiles = false

    func run() async throws {
        let verifier = PHIVerifier(profile: try DeidentificationProfile.load(path: profile))
        var checked = 0, leakyFiles = 0, unpaired = 0, unreadable = 0
        var byTag: [String: Int] = [:]
        for rel in DeidFiles.regularFiles(under: outputs) {
            let original = originals + "/" + rel
            guard FileManager.default.fileExists(atPath: original) else { unpaired += 1; continue }
            let leaks: [PHILeak]
            do { leaks = try verifier.verify(originalPath: original, outputPath: outputs + "/" + rel) } catch { unreadable += 1; continue }
            checked += 1
            if leaks.isEmpty { continue }
            leakyFiles += 1
            for l in leaks { byTag["\(l.sourceTag) → \(l.foundIn)", default: 0] += 1 }
            if listFiles { print("\(rel): \(leaks.map(\.description).joined(separator: "; "))") }
        }
        print("verified \(checked) files: \(leakyFiles) with leaks, \(byTag.values.reduce(0, +)) leaked values; \(unpaired) without original, \(unreadable) unreadable")
        for (k, n) in byTag.sorted(by: { $0.key < $1.key }) { print("  \(k): \(n)") }
        if leakyFiles > 0 { throw ExitCode(1) }
    }
}
