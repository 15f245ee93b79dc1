// Tests of moving, deleting and quarantining source files.
#if canImport(Glibc)
import Glibc
#endif
import DICOM
import Foundation
@testable import Ingest
import Sandbox
import Testing

@Suite struct FileDisposerTests {
    @Test func processedFilesMoveKeepingTheirSubpathWithoutOverwriting() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let layout = DropFolderLayout(root: folder.path)
        let disposer = FileDisposer(layout: layout, processedFiles: .move)
        let first = try folder.write("Doe^John/IM1.dcm", bytes: [1])
        #expect(try disposer.finishProcessed(makeFile(first, root: folder.path)) == folder.path + "/processed/Doe^John/IM1.dcm")
        let second = try folder.write("Doe^John/IM1.dcm", bytes: [2])
        #expect(try disposer.finishProcessed(makeFile(second, root: folder.path)) == folder.path + "/processed/Doe^John/IM1.1.dcm")
        #expect(!folder.exists("Doe^John/IM1.dcm"))
        #expect(try Data(contentsOf: URL(fileURLWithPath: folder.path + "/processed/Doe^John/IM1.dcm")) == Data([1]))
        #expect(try Data(contentsOf: URL(fileURLWithPath: folder.path + "/processed/Doe^John/IM1.1.dcm")) == Data([2]))
    }

    @Test func processedFilesAreDeletedByPolicy() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let disposer = FileDisposer(layout: DropFolderLayout(root: folder.path), processedFiles: .delete)
        let path = try folder.write("a/IM1")
        #expect(try disposer.finishProcessed(makeFile(path, root: folder.path)) == nil)
        #expect(!folder.exists("a/IM1"))
        #expect(!folder.exists("processed/a/IM1"))
    }

    @Test func quarantineWritesAReasonFileWithoutThePath() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let fixed = Date(timeIntervalSince1970: 1_800_000_000)
        let disposer = FileDisposer(layout: DropFolderLayout(root: folder.path), processedFiles: .move, now: { fixed })
        let path = try folder.write("Doe^Jane/series/IM7", bytes: Array(repeating: 9, count: 10))
        let file = makeFile(path, root: folder.path, size: 10)
        let failure = PipelineFailure(stage: .parse, error: DicomError(.notDICOM))
        let destination = try disposer.quarantine(file, failure: failure)
        #expect(destination == folder.path + "/quarantine/Doe^Jane/series/IM7")
        #expect(!folder.exists("Doe^Jane/series/IM7"))
        let reasonData = try Data(contentsOf: URL(fileURLWithPath: destination + ".reason.json"))
        let record = try JSONDecoder().decode(QuarantineRecord.self, from: reasonData)
        #expect(record == QuarantineRecord(stage: "parse", reason: "not_dicom", time: "2027-01-15T08:00:00.000Z", pathHash: file.pathHash, size: 10))
        let text = String(decoding: reasonData, as: UTF8.self)
        #expect(!text.contains("Doe"))
        #expect(!text.contains("IM7"))
        // Same name again: a free name, its own reason file, the first untouched.
        let again = try folder.write("Doe^Jane/series/IM7")
        let second = try disposer.quarantine(makeFile(again, root: folder.path), failure: PipelineFailure(stage: .sandbox, error: SandboxError(.processCrashed)))
        #expect(second == folder.path + "/quarantine/Doe^Jane/series/IM7.1")
        #expect(folder.exists("quarantine/Doe^Jane/series/IM7.1.reason.json"))
        let first = try JSONDecoder().decode(QuarantineRecord.self, from: Data(contentsOf: URL(fileURLWithPath: destination + ".reason.json")))
        #expect(first.reason == "not_dicom")
    }

    /// A failure's reason is its error's code (or a forwarded job reason); its JSON form is `stage` and `reason`.
    @Test func failuresTakeTheirReasonsFromCodes() throws {
        #expect(PipelineFailure(stage: .parse, error: DicomError(.notDICOM)) == PipelineFailure(stage: .parse, reason: "not_dicom"))
        #expect(PipelineFailure(stage: .sandbox, error: SandboxError(.jobFailed, jobReason: "burned_in_annotation")).reason == "burned_in_annotation")
        #expect(PipelineFailure(stage: .claim, code: .claimRejected).code == .claimRejected)
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let json = String(decoding: try encoder.encode(PipelineFailure(stage: .store, code: .scratchUnwritable)), as: UTF8.self)
        #expect(json == #"{"reason":"scratch_unwritable","stage":"store"}"#)
        #expect(try JSONDecoder().decode(PipelineFailure.self, from: Data(json.utf8)) == PipelineFailure(stage: .store, reason: "scratch_unwritable"))
    }

    /// A daemon killed between writing a reason's temporary file and renaming it leaves `.reason-<uuid>.tmp` in
    /// quarantine/: the next start removes it and nothing else.
    @Test func reasonFilesAKillLeftUnfinishedAreRemovedAtStart() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let disposer = FileDisposer(layout: DropFolderLayout(root: folder.path), processedFiles: .move)
        let path = try folder.write("study1/IM1", bytes: [1, 2, 3])
        let quarantined = try disposer.quarantine(makeFile(path, root: folder.path, size: 3), failure: PipelineFailure(stage: .parse, reason: "not_dicom"))
        let leftovers = ["quarantine/study1/.reason-\(UUID().uuidString).tmp", "quarantine/study2/deeper/.reason-\(UUID().uuidString).tmp"]
        for leftover in leftovers { _ = try folder.write(leftover, bytes: Array("{\"stage\":".utf8)) }
        let unrelated = try folder.write("processed/study3/.reason-\(UUID().uuidString).tmp", bytes: [0])

        #expect(disposer.removeInterruptedReasonFiles() == 2)
        for leftover in leftovers { #expect(!folder.exists(leftover)) }
        #expect(FileManager.default.fileExists(atPath: quarantined))
        #expect(FileManager.default.fileExists(atPath: quarantined + ".reason.json"))
        #expect(FileManager.default.fileExists(atPath: unrelated))
        #expect(disposer.removeInterruptedReasonFiles() == 0)
        // An empty or missing quarantine folder is nothing to do.
        #expect(FileDisposer(layout: DropFolderLayout(root: folder.path + "/none"), processedFiles: .move).removeInterruptedReasonFiles() == 0)
    }

    @Test func missingSourceIsATypedError() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let disposer = FileDisposer(layout: DropFolderLayout(root: folder.path), processedFiles: .move)
        #expect(throws: DisposalError.self) {
            try disposer.finishProcessed(makeFile(folder.path + "/gone.dcm", root: folder.path))
        }
    }

    /// A daemon killed inside a move (the new name linked, the old not yet unlinked) finds the file in the drop folder
    /// again at its next start: the move completes under the name it took, never a second copy under a free name.
    @Test func aMoveInterruptedAfterItsLinkCompletesUnderTheSameName() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let disposer = FileDisposer(layout: DropFolderLayout(root: folder.path), processedFiles: .move)
        let path = try folder.write("study/IM1.dcm", bytes: [7])
        try FileManager.default.createDirectory(atPath: folder.path + "/processed/study", withIntermediateDirectories: true)
        #expect(link(path, folder.path + "/processed/study/IM1.dcm") == 0)
        #expect(try disposer.finishProcessed(makeFile(path, root: folder.path)) == folder.path + "/processed/study/IM1.dcm")
        #expect(!folder.exists("study/IM1.dcm") && !folder.exists("processed/study/IM1.1.dcm"))

        // Quarantine: the same after the link, and after the reason file alone was written.
        let rejected = try folder.write("study/IM2.dcm", bytes: [8, 8])
        try FileManager.default.createDirectory(atPath: folder.path + "/quarantine/study", withIntermediateDirectories: true)
        #expect(link(rejected, folder.path + "/quarantine/study/IM2.dcm") == 0)
        let failure = PipelineFailure(stage: .parse, reason: "not_dicom")
        #expect(try disposer.quarantine(makeFile(rejected, root: folder.path, size: 2), failure: failure) == folder.path + "/quarantine/study/IM2.dcm")
        #expect(!folder.exists("study/IM2.dcm") && !folder.exists("quarantine/study/IM2.1.dcm"))
        #expect(folder.exists("quarantine/study/IM2.dcm.reason.json"))

        let third = try folder.write("study/IM3.dcm", bytes: [9, 9, 9])
        let file = makeFile(third, root: folder.path, size: 3)
        let reason = QuarantineRecord(stage: "parse", reason: "not_dicom", time: "2027-01-15T08:00:00.000Z", pathHash: file.pathHash, size: 3)
        try JSONEncoder().encode(reason).write(to: URL(fileURLWithPath: folder.path + "/quarantine/study/IM3.dcm.reason.json"))
        #expect(try disposer.quarantine(file, failure: failure) == folder.path + "/quarantine/study/IM3.dcm")
        #expect(!folder.exists("study/IM3.dcm") && !folder.exists("quarantine/study/IM3.1.dcm") && !folder.exists("quarantine/study/IM3.1.dcm.reason.json"))
    }
}
