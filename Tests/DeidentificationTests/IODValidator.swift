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
    /// Four dciodvfy processes at a time, each writing to its own file.
    func reports(_ paths: [String]) throws -> [(errors: Set<String>, readWhole: Bool)] {
        let dir = NSTemporaryDirectory() + "dciodvfy-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var out: [(errors: Set<String>, readWhole: Bool)] = []
        for start in stride(from: 0, to: paths.count, by: 4) {
            var running: [(Process, String)] = []
            for (i, path) in paths[start..<min(start + 4, paths.count)].enumerated() {
                let log = dir + "/\(i).txt"
                _ = FileManager.default.createFile(atPath: log, contents: nil)
                let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
                let p = Process()
                p.executableURL = URL(fileURLWithPath: executable)
                p.arguments = [path]
                p.standardOutput = handle
                p.standardError = handle
                try p.run()
                running.append((p, log))
            }
            for (p, log) in running {
                p.waitUntilExit()
                let text = String(decoding: try Data(contentsOf: URL(fileURLWithPath: log)), as: UTF8.self)
                let errors = text.split(whereSeparator: \.isNewline).filter { $0.hasPrefix("Error") }.map { Self.blank(String($0)) }
                out.append((Set(errors), !Self.unreadable.contains { text.contains($0) }))
            }
        }
        return out
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

/// Identifying attributes added to corpus files that lack them, so that every file is de-identified (a
/// PatientID) and rows of several Types are exercised: all of the Patient and General Study modules, which
/// every composite IOD has (an attribute of a user-optional module would make dciodvfy check that module in
/// the output but not in the unprepared input). Directories (DICOMDIR) are left as they are.
enum SyntheticPHI {
    static let values: [(DICOM.Tag, VR, String)] = [
        (Tags.patientID, .LO, "SYNTH-MRN-0042"), (Tags.patientName, .PN, "SYNTHETIC^PATIENT^Q"),
        (Tags.patientBirthDate, .DA, "19610704"), (DICOM.Tag(0x0010, 0x1040), .LO, "12 Synthetic Road, Testville"),
        (DICOM.Tag(0x0010, 0x1000), .LO, "SYNTH-OTHER-77"), (DICOM.Tag(0x0008, 0x0090), .PN, "SYNTHETIC^REFERRER"),
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
