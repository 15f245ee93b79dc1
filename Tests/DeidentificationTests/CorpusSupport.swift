// Real files of DICOM_ETL_CORPUS for the de-identification tests, and helpers shared by them.
import DICOM
import Foundation
import TestSupport
import Testing
@testable import Deidentification

enum Corpus {
    /// The test corpus (TestEnvironment.corpus), nil when there is none.
    static let root: String? = TestEnvironment.hasCorpus ? TestEnvironment.corpus : nil

    /// Every file of the corpus that the DICOM layer opens, with its path relative to the corpus.
    /// The deeply nested orthanc file is left out: it crashes DCMTK's own tools (FACTS.md), and parsing it
    /// is the DICOM layer's test, not this target's.
    static let files: [(relative: String, path: String)] = {
        guard let root else { return [] }
        var out: [(String, String)] = []
        let fm = FileManager.default
        guard let e = fm.enumerator(atPath: root) else { return [] }
        while let rel = e.nextObject() as? String {
            let name = (rel as NSString).lastPathComponent
            if name.hasPrefix("_source") || name.hasSuffix(".tsv") || name.hasSuffix(".md") || name.hasSuffix(".txt") || rel.contains("Deeply-Nested") { continue }
            var isDir: ObjCBool = false
            guard fm.fileExists(atPath: root + "/" + rel, isDirectory: &isDir), !isDir.boolValue else { continue }
            if (try? DicomFile.open(path: root + "/" + rel)) != nil { out.append((rel, root + "/" + rel)) }
        }
        return out.sorted { $0.0 < $1.0 }
    }()

    static var available: Bool { !files.isEmpty }
}

let testKey = try! PseudonymKey(bytes: Array("dicom-etl test key, not a secret: 0123456789".utf8))
let otherKey = try! PseudonymKey(bytes: Array("another dicom-etl test key, not secret either".utf8))

func loadProfile(_ name: String) throws -> DeidentificationProfile { try DeidentificationProfile.load(path: TestPaths.profile(name)) }

/// De-identifies a fresh copy of `path`; returns the result and the output re-read from its serialized bytes.
func deidentified(_ path: String, _ deidentifier: Deidentifier, prepare: (DicomFile) throws -> Void = { _ in }) throws
    -> (result: DeidentificationResult, output: DicomFile, bytes: [UInt8], original: DicomFile)
{
    let original = try DicomFile.open(path: path)
    try prepare(original)
    let file = try DicomFile.open(path: path)
    try prepare(file)
    let result = try deidentifier.deidentify(file)
    let bytes = try file.serialized(transferSyntax: result.requiredTransferSyntax)
    return (result, try DicomFile.open(bytes: bytes), bytes, original)
}

/// The corpus de-identified under a committed profile with `testKey`: every file of `Corpus.files` (in that order)
/// done once for the test process, on every core. Under basic.yaml it reads burned-in text with OCR, the costliest
/// work of these tests, and two tests check the same outputs. Each call hands out files opened afresh from the
/// outputs' bytes, so no test sees another's changes.
enum CorpusOutputs {
    typealias Output = (result: DeidentificationResult, output: DicomFile, bytes: [UInt8], original: DicomFile)

    private static let lock = NSLock()
    nonisolated(unsafe) private static var done: [String: [Result<(DeidentificationResult, [UInt8]), any Error>]] = [:]  // guarded by lock

    static func deidentified(profile name: String) throws -> [Result<Output, any Error>] {
        let stored: [Result<(DeidentificationResult, [UInt8]), any Error>] = try lock.withLock {
            if let stored = done[name] { return stored }
            let deidentifier = Deidentifier(profile: try loadProfile(name), key: testKey)
            let files = Corpus.files
            let all = concurrentMap(files.count) { i in
                Result { () throws -> (DeidentificationResult, [UInt8]) in
                    let out = try DeidentificationTests.deidentified(files[i].path, deidentifier)
                    return (out.result, out.bytes)
                }
            }
            done[name] = all
            return all
        }
        return zip(Corpus.files, stored).map { file, stored in
            Result {
                let (result, bytes) = try stored.get()
                return (result, try DicomFile.open(bytes: bytes), bytes, try DicomFile.open(path: file.path))
            }
        }
    }
}

/// `transform` of 0..<count, run on every core; the results in index order.
func concurrentMap<T>(_ count: Int, _ transform: @Sendable (Int) -> T) -> [T] {
    let results = ConcurrentResults<T>(count)
    DispatchQueue.concurrentPerform(iterations: count) { i in results.set(i, transform(i)) }
    return results.values
}

private final class ConcurrentResults<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var slots: [T?]
    init(_ count: Int) { slots = Array(repeating: nil, count: count) }
    func set(_ index: Int, _ value: T) { lock.withLock { slots[index] = value } }
    var values: [T] { lock.withLock { slots.map { $0! } } }
}

func trimmed(_ s: String?) -> String { (s ?? "").trimmingSpaces() }
