// `dicom-etl deidentify IN… --out DIR --profile P --key-file K`: de-identifies files with a profile, for
// hospital IT to try a profile before go-live. Outputs mirror the inputs' relative paths under --out.
import ArgumentParser
import DICOM
import Deidentification
import Foundation
import Synchronization

struct Deidentify: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "deidentify",
        abstract: "De-identify DICOM files with a profile (PS3.15 Basic Profile and options).",
        discussion: """
            Each input file is written to --out under its path relative to the folder given (a file given \
            directly keeps its name). The key comes from --key-file, else DICOM_ETL_KEY_FILE or DICOM_ETL_KEY.
            Prints counts only; --report writes a TSV of relative path and outcome, which may name files.
            """)

    @Argument(help: "DICOM files or folders (searched recursively).")
    var inputs: [String]

    @Option(help: "Output folder.")
    var out: String

    @Option(help: "Profile YAML.")
    var profile: String = "etl/deidentify/basic.yaml"

    @Option(name: .customLong("key-file"), help: "File holding the pseudonym key (at least 32 bytes).")
    var keyFile: String?

    @Option(help: "Files processed in parallel.")
    var jobs: Int = 2

    @Option(help: "Write a TSV (relative path, outcome) to this file.")
    var report: String?

    func validate() throws {
        guard !inputs.isEmpty else { throw ValidationError("give at least one input file or folder") }
        guard jobs >= 1 else { throw ValidationError("--jobs must be at least 1") }
    }

    func run() async throws {
        let key = try keyFile.map { try PseudonymKey(contentsOfFile: $0, setting: "--key-file") } ?? PseudonymKey.fromEnvironment(ProcessInfo.processInfo.environment)
        let deidentifier = Deidentifier(profile: try DeidentificationProfile.load(path: profile), key: key)
        let work = DeidFiles.pairs(inputs: inputs, out: out)
        let outcomes = OutcomeList(count: work.count)
        let started = Date()
        let next = Counter()
        DispatchQueue.concurrentPerform(iterations: jobs) { _ in
            while let i = next.take(below: work.count) {
                outcomes.set(i, Self.process(work[i], deidentifier))
            }
        }
        let seconds = Date().timeIntervalSince(started)
        let all = outcomes.values
        var counts: [String: Int] = [:]
        for o in all { counts[o, default: 0] += 1 }
        let done = counts["deidentified"] ?? 0
        print("deidentified \(done) of \(work.count) files in \(String(format: "%.2f", seconds)) s (\(String(format: "%.1f", Double(done) / max(seconds, 1e-9))) files/s)")
        for (outcome, n) in counts.sorted(by: { $0.key < $1.key }) where outcome != "deidentified" { print("  \(outcome): \(n)") }
        if let report {
            let lines = zip(work, all).map { "\($0.0.relative)\t\($0.1)" }.joined(separator: "\n") + "\n"
            try lines.write(toFile: report, atomically: true, encoding: .utf8)
        }
    }

    static func process(_ pair: DeidFiles.Pair, _ deidentifier: Deidentifier) -> String {
        let file: DicomFile
        do { file = try DicomFile.open(path: pair.input) } catch let e as DicomError { return "not_read:\(e.reason)" } catch { return "not_read" }
        do {
            let result = try deidentifier.deidentify(file)
            try FileManager.default.createDirectory(atPath: (pair.output as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try file.write(to: pair.output, transferSyntax: result.requiredTransferSyntax)
            return "deidentified"
        } catch let e as DeidentificationError {
            return "rejected:\(e.reason)\(e.detail.map { "(\($0))" } ?? "")"
        } catch let e as DicomError {
            try? FileManager.default.removeItem(atPath: pair.output)  // no partial output
            return "write_failed:\(e.reason)"
        } catch {
            try? FileManager.default.removeItem(atPath: pair.output)
            return "write_failed"
        }
    }
}

/// Input files and where their outputs go.
enum DeidFiles {
    struct Pair: Sendable { let input: String; let output: String; let relative: String }

    /// Every regular file under the inputs, paired with its path under `out`: files of a folder keep their
    /// path relative to it; files given directly keep their path relative to their deepest common folder.
    static func pairs(inputs: [String], out: String) -> [Pair] {
        var pairs: [Pair] = []
        var loose: [String] = []
        let fm = FileManager.default
        for input in inputs {
            var isDir: ObjCBool = false
            guard fm.fileExists(atPath: input, isDirectory: &isDir) else { continue }
            if isDir.boolValue {
                for rel in regularFiles(under: input) {
                    pairs.append(Pair(input: input + "/" + rel, output: out + "/" + rel, relative: rel))
                }
            } else {
                loose.append(input)
            }
        }
        let absolute = loose.map { URL(fileURLWithPath: $0).standardizedFileURL.pathComponents }
        var common = absolute.first.map { Array($0.dropLast()) } ?? []
        for parts in absolute.dropFirst() {
            var n = 0
            while n < common.count, n < parts.count - 1, common[n] == parts[n] { n += 1 }
            common = Array(common.prefix(n))
        }
        for (input, parts) in zip(loose, absolute) {
            let rel = parts.dropFirst(common.count).joined(separator: "/")
            pairs.append(Pair(input: input, output: out + "/" + rel, relative: rel))
        }
        return pairs
    }

    /// Relative paths of the regular files under `root`, sorted.
    static func regularFiles(under root: String) -> [String] {
        let fm = FileManager.default
        guard let e = fm.enumerator(atPath: root) else { return [] }
        var out: [String] = []
        while let rel = e.nextObject() as? String {
            var isDir: ObjCBool = false
            if fm.fileExists(atPath: root + "/" + rel, isDirectory: &isDir), !isDir.boolValue { out.append(rel) }
        }
        return out.sorted()
    }
}

/// A shared index for worker threads.
final class Counter: Sendable {
    private let value = Mutex(0)
    func take(below limit: Int) -> Int? {
        value.withLock { value in
            guard value < limit else { return nil }
            value += 1
            return value - 1
        }
    }
}

/// Per-file outcomes written by worker threads.
final class OutcomeList: Sendable {
    private let storage: Mutex<[String]>
    init(count: Int) { storage = Mutex(Array(repeating: "", count: count)) }
    func set(_ i: Int, _ v: String) { storage.withLock { $0[i] = v } }
    var values: [String] { storage.withLock { $0 } }
}
