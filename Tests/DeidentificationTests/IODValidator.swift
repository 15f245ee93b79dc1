// David Clunie's IOD validator (dciodvfy, Debian dicom3tools) as the tests use it: the set of `Error` lines of
// a file, values and UIDs blanked so that a changed value is not a new error.
import DICOM
import Foundation
@testable import Deidentification

struct IODValidator {
    let executable: String

    /// Nil when dciodvfy is not installed.
    init?(executable: String = "/usr/bin/dciodvfy") {
        guard FileManager.default.isExecutableFile(atPath: executable) else { return nil }
        self.executable = executable
    }

    /// What dciodvfy prints when it could not read a data set to its end: its errors then say little.
    static let unreadable = ["Dicom dataset read failed", "Tags out of order", "Tag read failed"]

    /// One report per path, in order: the blanked Error lines, and whether the data set was read whole.
    func reports(_ paths: [String]) -> [(errors: Set<String>, readWhole: Bool)] {
        let results = ResultList<(errors: Set<String>, readWhole: Bool)>(count: paths.count, empty: ([], true))
        let next = Counter()
        DispatchQueue.concurrentPerform(iterations: 4) { _ in
            while let i = next.take(below: paths.count) {
                let r = try? run(executable, [paths[i]])
                let text = r.map { String(decoding: $0.stdout + $0.stderr, as: UTF8.self) } ?? "Error - dciodvfy did not run"
                let errors = Set(text.split(whereSeparator: \.isNewline).filter { $0.hasPrefix("Error") }.map { Self.blank(String($0)) })
                results.set(i, (errors, !Self.unreadable.contains { text.contains($0) }))
            }
        }
        return results.values
    }

    private static let value = try! NSRegularExpression(pattern: "(?<!Element=)(?<!Module=)(?<!attribute )<[^<>]*>")
    private static let number = try! NSRegularExpression(pattern: "(?<!Type )\\b[0-9][0-9.]*\\b")

    /// An Error line with its values (`<…>`, except attribute and module names) and numbers (UIDs, lengths,
    /// counts; not a Type) blanked.
    static func blank(_ line: String) -> String {
        var s = line.trimmingCharacters(in: .whitespaces)
        s = value.stringByReplacingMatches(in: s, range: NSRange(s.startIndex..., in: s), withTemplate: "<>")
        s = number.stringByReplacingMatches(in: s, range: NSRange(s.startIndex..., in: s), withTemplate: "N")
        return s
    }
}

/// Values written by worker threads at their index.
final class ResultList<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var storage: [T]
    init(count: Int, empty: T) { storage = Array(repeating: empty, count: count) }
    func set(_ i: Int, _ v: T) {
        lock.lock()
        storage[i] = v
        lock.unlock()
    }
    var values: [T] {
        lock.lock()
        defer { lock.unlock() }
        return storage
    }
}

/// A shared index for worker threads.
final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0
    func take(below limit: Int) -> Int? {
        lock.lock()
        defer { lock.unlock() }
        guard value < limit else { return nil }
        value += 1
        return value - 1
    }
}

/// Identifying attributes added to corpus files that lack them, so that every file is de-identified (a
/// PatientID) and rows of several Types are exercised. Directories (DICOMDIR) are left as they are.
enum SyntheticPHI {
    static let values: [(DICOM.Tag, VR, String)] = [
        (Tags.patientID, .LO, "SYNTH-MRN-0042"), (Tags.patientName, .PN, "SYNTHETIC^PATIENT^Q"),
        (Tags.patientBirthDate, .DA, "19610704"), (DICOM.Tag(0x0010, 0x1040), .LO, "12 Synthetic Road, Testville"),
        (DICOM.Tag(0x0010, 0x1000), .LO, "SYNTH-OTHER-77"), (DICOM.Tag(0x0008, 0x0090), .PN, "SYNTHETIC^REFERRER"),
        (DICOM.Tag(0x0008, 0x0080), .LO, "Synthetic General Hospital"),
    ]

    static func add(_ file: DicomFile) throws {
        let ds = file.dataset
        let sopClass = Deidentifier.value(Tags.sopClassUID, ds) ?? (file.hasFileMeta ? Deidentifier.value(Tags.mediaStorageSOPClassUID, file.metaInformation) : nil)
        guard sopClass.map(Pseudonymizer.trimUID) != FileIdentity.directoryStorage else { return }
        for (tag, vr, value) in values where trimmed(Deidentifier.value(tag, ds)).isEmpty {
            try ds.set(tag, string: value, vr: vr)
        }
    }
}
