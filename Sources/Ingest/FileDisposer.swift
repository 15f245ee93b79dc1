// What happens to a source file after the pipeline: moved to processed/ or deleted, or moved to
// quarantine/ beside a <name>.reason.json. Moves never overwrite, and a move a killed daemon left half done (the
// new name linked, the old one not yet removed; a reason file written, the file not yet moved) completes under the
// name it took when the file is disposed of again at the next start — never a second copy under a free name.
import CodedErrors
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Sandbox

/// Why a source file could not be moved or deleted.
public struct DisposalError: CodedError, Hashable {
    /// Machine-readable reason.
    public struct Code: ErrorCode {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        /// The source file could not be deleted.
        public static let deleteFailed = Code(rawValue: "delete_failed")
        /// The quarantine record could not be encoded.
        public static let reasonEncodeFailed = Code(rawValue: "reason_encode_failed")
        /// Every candidate name in the target folder is taken.
        public static let noFreeName = Code(rawValue: "no_free_name")
        /// The source file could not be unlinked after it was linked into place.
        public static let unlinkFailed = Code(rawValue: "unlink_failed")
        /// The source file is gone.
        public static let sourceMissing = Code(rawValue: "source_missing")
        /// The target folder is on another file system.
        public static let crossDevice = Code(rawValue: "cross_device")
        /// Renaming the file into place failed.
        public static let renameFailed = Code(rawValue: "rename_failed")
        /// The target folder could not be created.
        public static let mkdirFailed = Code(rawValue: "mkdir_failed")
        /// The quarantine reason file could not be written.
        public static let reasonWriteFailed = Code(rawValue: "reason_write_failed")
    }

    public let code: Code
    /// errno of the failed call.
    public let errorNumber: Int32

    public init(_ code: Code, errorNumber: Int32) {
        self.code = code
        self.errorNumber = errorNumber
    }

    public var description: String { "disposal failed: \(code.rawValue) (errno \(errorNumber))" }
}

/// The content of a `<name>.reason.json` beside a quarantined file. No patient data, no path in clear.
public struct QuarantineRecord: Codable, Sendable, Hashable {
    /// Stage that rejected the file.
    public let stage: String
    /// Machine-readable reason.
    public let reason: String
    /// When the file was quarantined (ISO 8601, UTC).
    public let time: String
    /// Keyed hash of the file's original path relative to the drop folder.
    public let pathHash: String
    /// Size of the file in bytes.
    public let size: Int64

    enum CodingKeys: String, CodingKey {
        case stage, reason, time
        case pathHash = "path_hash"
        case size
    }
}

/// Moves, deletes and quarantines source files.
public struct FileDisposer: Sendable {
    /// The drop folder.
    public let layout: DropFolderLayout
    /// What happens to ingested files.
    public let processedFiles: DaemonConfiguration.ProcessedFilePolicy
    private let now: @Sendable () -> Date

    public init(layout: DropFolderLayout, processedFiles: DaemonConfiguration.ProcessedFilePolicy, now: @escaping @Sendable () -> Date = { Date() }) {
        self.layout = layout
        self.processedFiles = processedFiles
        self.now = now
    }

    /// Disposes of an ingested (or duplicate) file by the policy.
    /// - Returns: the new path (`processed/…`), or nil when deleted.
    @discardableResult
    public func finishProcessed(_ file: DiscoveredFile) throws(DisposalError) -> String? {
        switch processedFiles {
        case .delete:
            if unlink(file.path) != 0 && errno != ENOENT { throw DisposalError(.deleteFailed, errorNumber: errno) }
            return nil
        case .move:
            return try move(file, under: layout.processedRoot)
        }
    }

    /// Moves a rejected file to `quarantine/<relative path>` (a free name) and writes `<name>.reason.json` beside it.
    /// - Returns: the quarantined file's new path.
    @discardableResult
    public func quarantine(_ file: DiscoveredFile, failure: PipelineFailure) throws(DisposalError) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let record = QuarantineRecord(
            stage: failure.stage.rawValue, reason: failure.reason, time: formatter.string(from: now()),
            pathHash: file.pathHash, size: file.size)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data: Data
        do { data = try encoder.encode(record) } catch { throw DisposalError(.reasonEncodeFailed, errorNumber: 0) }
        // The reason is written first, beside the name the file is about to take: a quarantined file never lacks one.
        return try move(file, under: layout.quarantineRoot) { (candidate: String) throws(DisposalError) in
            try writeAtomically(data, to: candidate + ".reason.json")
        }
    }

    /// Renames the file to `root/<relative path>`, creating folders; a taken name gets `.1`, `.2`, … before its extension.
    /// `before` runs once a name is chosen, before the file takes it (the quarantine's reason file).
    private func move(
        _ file: DiscoveredFile, under root: String, before: (String) throws(DisposalError) -> Void = { _ in }
    ) throws(DisposalError) -> String {
        let target = root + "/" + file.relativePath
        let directory = (target as NSString).deletingLastPathComponent
        try makeDirectories(directory)
        let name = (file.relativePath as NSString).lastPathComponent
        let base = (name as NSString).deletingPathExtension
        let ext = (name as NSString).pathExtension
        for attempt in 0..<10_000 {
            let candidateName: String
            if attempt == 0 {
                candidateName = name
            } else {
                candidateName = ext.isEmpty || base.isEmpty ? "\(name).\(attempt)" : "\(base).\(attempt).\(ext)"
            }
            let candidate = directory + "/" + candidateName
            // A name is free when neither it nor its reason file exists — or when what is there is this file's own,
            // left by a disposal a kill interrupted.
            if access(candidate + ".reason.json", F_OK) == 0 && !Self.isReason(candidate + ".reason.json", of: file, beside: candidate) { continue }
            if access(candidate, F_OK) == 0 && !Self.sameFile(candidate, file.path) { continue }
            try before(candidate)
            if try renameNoReplace(file.path, candidate) { return candidate }
        }
        throw DisposalError(.noFreeName, errorNumber: EEXIST)
    }

    /// Whether `target` and `source` are one file (the link of an interrupted move).
    private static func sameFile(_ target: String, _ source: String) -> Bool {
        var a = stat(), b = stat()
        guard stat(target, &a) == 0, stat(source, &b) == 0 else { return false }
        return a.st_dev == b.st_dev && a.st_ino == b.st_ino
    }

    /// Whether the reason file at `path` was written for `file` by a quarantine a kill interrupted before the move:
    /// the name beside it is free or is the file itself, and the record names this file's path hash and size.
    private static func isReason(_ path: String, of file: DiscoveredFile, beside candidate: String) -> Bool {
        guard access(candidate, F_OK) != 0 || sameFile(candidate, file.path),
              let data = FileManager.default.contents(atPath: path),
              let record = try? JSONDecoder().decode(QuarantineRecord.self, from: data)
        else { return false }
        return record.pathHash == file.pathHash && record.size == file.size
    }

    /// Renames without replacing: link + unlink (atomic claim of the name), or, where hard links are not
    /// supported, an existence check followed by rename. Returns false when the target exists.
    private func renameNoReplace(_ source: String, _ target: String) throws(DisposalError) -> Bool {
        if link(source, target) == 0 {
            if unlink(source) != 0 && errno != ENOENT { throw DisposalError(.unlinkFailed, errorNumber: errno) }
            return true
        }
        let linkError = errno
        switch linkError {
        case EEXIST:
            // The file itself under the new name: an earlier move linked it and was killed before the unlink.
            guard Self.sameFile(target, source) else { return false }
            if unlink(source) != 0 && errno != ENOENT { throw DisposalError(.unlinkFailed, errorNumber: errno) }
            return true
        case ENOENT: throw DisposalError(.sourceMissing, errorNumber: linkError)
        case EXDEV: throw DisposalError(.crossDevice, errorNumber: linkError)
        default:
            if access(target, F_OK) == 0 { return false }
            if rename(source, target) != 0 { throw DisposalError(.renameFailed, errorNumber: errno) }
            return true
        }
    }

    private func makeDirectories(_ path: String) throws(DisposalError) {
        // Nearly always there already: a stat, where mkdir would lock the parent folder the drop's copies write into.
        var info = stat()
        if stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR { return }
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw DisposalError(.mkdirFailed, errorNumber: errno)
        }
    }

    /// Removes the temporary reason files a daemon killed while quarantining left in `quarantine/` (each is the
    /// unfinished copy of a `<name>.reason.json` that was never renamed into place; the file it was for is still in
    /// the drop folder, or beside a complete reason written by a later attempt). Run at start, before any disposal.
    /// No quarantined file has such a name: hidden names are never taken from the drop folder.
    /// - Returns: how many were removed.
    @discardableResult
    public func removeInterruptedReasonFiles() -> Int {
        let root = layout.quarantineRoot
        guard let walker = FileManager.default.enumerator(atPath: root) else { return 0 }
        var removed = 0
        while let relative = walker.nextObject() as? String {
            let name = (relative as NSString).lastPathComponent
            guard name.hasPrefix(Self.temporaryReasonPrefix), name.hasSuffix(Self.temporaryReasonSuffix) else { continue }
            if unlink(root + "/" + relative) == 0 { removed += 1 }
        }
        return removed
    }

    static let temporaryReasonPrefix = ".reason-"
    static let temporaryReasonSuffix = ".tmp"

    private func writeAtomically(_ data: Data, to path: String) throws(DisposalError) {
        let directory = (path as NSString).deletingLastPathComponent
        let temporary = directory + "/" + Self.temporaryReasonPrefix + UUID().uuidString + Self.temporaryReasonSuffix
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw DisposalError(.reasonWriteFailed, errorNumber: errno) }
        let ok = data.withUnsafeBytes { bytes -> Bool in
            var offset = 0
            while offset < bytes.count {
                let written = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
                if written < 0 { if errno == EINTR { continue }; return false }
                offset += written
            }
            return fsync(fd) == 0
        }
        close(fd)
        guard ok, rename(temporary, path) == 0 else {
            let error = errno
            unlink(temporary)
            throw DisposalError(.reasonWriteFailed, errorNumber: error)
        }
    }
}
