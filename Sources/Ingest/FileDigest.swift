// Streamed SHA-256 of a source file for the ingest ledger: read in fixed-size chunks, never the whole
// file at once, with the size and modification time seen while reading.
import CodedErrors
import Crypto
import Foundation

/// A file's content digest and the size and modification time it had while being read.
public struct FileDigest: Sendable, Hashable {
    /// Lower-case hex SHA-256 of the content.
    public let sha256: String
    /// Bytes read.
    public let size: Int64
    /// Modification time after reading.
    public let modificationTime: Date

    /// Why a file could not be digested. Carries no path.
    public struct Failure: CodedError, Hashable {
        /// Machine-readable reason.
        public struct Code: ErrorCode {
            public let rawValue: String
            public init(rawValue: String) { self.rawValue = rawValue }
            /// The file could not be opened, read or stat'ed.
            public static let unreadable = Code(rawValue: "file_unreadable")
            /// The file changed size or modification time while it was read.
            public static let changed = Code(rawValue: "file_changed")
        }

        public let code: Code
        public init(_ code: Code) { self.code = code }
        public var description: String { "file digest failed: \(code.rawValue)" }
        /// The file could not be read.
        public static let unreadable = Failure(.unreadable)
        /// The file changed size or modification time while it was read (still being written).
        public static let changed = Failure(.changed)
    }

    public init(sha256: String, size: Int64, modificationTime: Date) {
        self.sha256 = sha256
        self.size = size
        self.modificationTime = modificationTime
    }

    /// Reads the file at `path` in `chunkSize` chunks. Throws `Failure.changed` when its size or
    /// modification time differ before and after reading.
    public static func compute(path: String, chunkSize: Int = 1 << 20) throws -> FileDigest {
        let before = try status(path)
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw Failure.unreadable }
        defer { close(descriptor) }
        var hasher = SHA256()
        var buffer = [UInt8](repeating: 0, count: max(chunkSize, 4096))
        var total: Int64 = 0
        while true {
            let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw Failure.unreadable
            }
            if count == 0 { break }
            buffer.withUnsafeBytes { hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
            total += Int64(count)
        }
        let after = try status(path)
        guard before == after, after.size == total else { throw Failure.changed }
        return FileDigest(sha256: hex(hasher.finalize()), size: total, modificationTime: after.modified)
    }

    private struct Status: Equatable {
        var size: Int64
        var modified: Date
    }

    private static func status(_ path: String) throws -> Status {
        var info = stat()
        guard stat(path, &info) == 0 else { throw Failure.unreadable }
        let seconds = Double(info.st_mtim.tv_sec) + Double(info.st_mtim.tv_nsec) / 1e9
        return Status(size: Int64(info.st_size), modified: Date(timeIntervalSince1970: seconds))
    }
}
