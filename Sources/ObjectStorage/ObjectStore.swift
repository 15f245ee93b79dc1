// ObjectStore: the storage protocol the pipeline writes de-identified files, tensors and previews through,
// its error type and the key rules every store enforces.
import CodedErrors
#if canImport(Glibc)
import Glibc
#endif
import Crypto
import Foundation

/// What a store knows about one object.
public struct ObjectInfo: Sendable, Hashable {
    public var key: String
    public var size: Int64
    public var contentType: String?
    /// Hex SHA-256 of the bytes, when the store recorded it (`list` on S3 does not return it).
    public var sha256: String?
    public var lastModified: Date?

    public init(key: String, size: Int64, contentType: String? = nil, sha256: String? = nil, lastModified: Date? = nil) {
        self.key = key
        self.size = size
        self.contentType = contentType
        self.sha256 = sha256
        self.lastModified = lastModified
    }
}

/// An object store: flat keys made of `/`-separated segments.
///
/// Keys must be non-empty, relative (no leading `/`), without empty, `.` or `..` segments, without NUL, at most
/// 1,024 UTF-8 bytes. A rewrite of the same key replaces the object atomically.
public protocol ObjectStore: Sendable {
    /// Stores `data` under `key`.
    /// - Parameters:
    ///   - contentType: the MIME type recorded with the object.
    ///   - sha256: the hex SHA-256 the caller computed; checked against the data (computed when nil).
    /// - Returns: the stored object's description.
    @discardableResult
    func put(_ key: String, data: Data, contentType: String, sha256: String?) async throws -> ObjectInfo
    /// The object's bytes; throws `ObjectStoreError` with code `notFound` when absent.
    func get(_ key: String) async throws -> Data
    /// The object's description, or nil when absent.
    func head(_ key: String) async throws -> ObjectInfo?
    /// Every object whose key starts with `prefix`, sorted by key.
    func list(prefix: String) async throws -> [ObjectInfo]
    /// Removes the object; removing an absent object is not an error.
    func delete(_ key: String) async throws
    /// Stores the file at `path` under `key` and takes it over: the file is gone afterwards (moved into the store,
    /// or uploaded and removed). The object is readable at once, durable after `makeDurable`.
    /// - Parameters:
    ///   - sha256: the hex SHA-256 the writer computed while writing the file (trusted, not recomputed).
    ///   - contentType: the MIME type recorded with the object.
    @discardableResult
    func put(_ key: String, fileAt path: String, sha256: String, contentType: String) async throws -> ObjectInfo
    /// Makes the objects put under `keys` durable together (one group commit for a batch): once it returns, they
    /// survive a crash of the machine.
    func makeDurable(_ keys: [String]) async throws
    /// A local folder for the files meant for `put(fileAt:)`, created when missing: on the store's own filesystem
    /// when it has one (so that a put is a rename), else nil (use any local folder).
    /// - Parameter name: a name of the writer's own (e.g. a replica's), so that writers sharing a store do not
    ///   share a folder.
    func stagingDirectory(named name: String) throws -> String?
}

extension ObjectStore {
    /// Reads the file, stores its bytes with `put(_:data:…)` and removes it: for stores without a better way.
    @discardableResult
    public func put(_ key: String, fileAt path: String, sha256: String, contentType: String) async throws -> ObjectInfo {
        guard let data = FileManager.default.contents(atPath: path) else { throw ObjectStoreError(.io, errno: ENOENT) }
        let info = try await put(key, data: data, contentType: contentType, sha256: sha256)
        try? FileManager.default.removeItem(atPath: path)
        return info
    }

    /// Nothing to do for stores whose puts are durable when they return.
    public func makeDurable(_ keys: [String]) async throws {}

    /// No folder of the store's own.
    public func stagingDirectory(named name: String) throws -> String? { nil }

    /// Stores `data`, computing its SHA-256.
    @discardableResult
    public func put(_ key: String, data: Data, contentType: String) async throws -> ObjectInfo {
        try await put(key, data: data, contentType: contentType, sha256: nil)
    }
}

/// An error of an object store. Its text names only the reason and status, never a key (keys derive
/// from pseudonyms, but paths and keys stay out of error texts on principle).
public struct ObjectStoreError: CodedError, Hashable {
    /// A machine-readable reason.
    public struct Code: ErrorCode {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }

        /// The key breaks the key rules.
        public static let invalidKey = Code(rawValue: "invalid_key")
        /// No object under that key.
        public static let notFound = Code(rawValue: "not_found")
        /// The bucket does not exist.
        public static let bucketNotFound = Code(rawValue: "bucket_not_found")
        /// The credentials were refused (403: wrong secret, unknown key, no permission).
        public static let accessDenied = Code(rawValue: "access_denied")
        /// The data does not match the SHA-256 given (or the server rejected the payload hash).
        public static let checksumMismatch = Code(rawValue: "checksum_mismatch")
        /// The storage URL could not be parsed.
        public static let invalidStorageURL = Code(rawValue: "invalid_storage_url")
        /// No credentials were found for S3.
        public static let missingCredentials = Code(rawValue: "missing_credentials")
        /// The server answered with an unexpected status; see `httpStatus` and `serverCode`.
        public static let requestFailed = Code(rawValue: "request_failed")
        /// The server could not be reached or kept failing (5xx) after every retry.
        public static let unavailable = Code(rawValue: "unavailable")
        /// A filesystem operation failed; see `errno`.
        public static let io = Code(rawValue: "io")
    }

    public var code: Code
    /// The HTTP status, for S3 errors.
    public var httpStatus: Int?
    /// S3's error code (e.g. `NoSuchBucket`, `SignatureDoesNotMatch`).
    public var serverCode: String?
    /// The errno, for filesystem errors.
    public var errno: Int32?

    public init(_ code: Code, httpStatus: Int? = nil, serverCode: String? = nil, errno: Int32? = nil) {
        self.code = code
        self.httpStatus = httpStatus
        self.serverCode = serverCode
        self.errno = errno
    }

    public var description: String {
        var text = "ObjectStoreError(\(code)"
        if let httpStatus { text += ", status: \(httpStatus)" }
        if let serverCode { text += ", server: \(serverCode)" }
        if let errno { text += ", errno: \(errno)" }
        return text + ")"
    }
}

/// The key rules shared by every store.
public enum ObjectKey {
    /// Throws `invalidKey` unless `key` is a valid object key.
    public static func validate(_ key: String) throws {
        guard !key.isEmpty, key.utf8.count <= 1024, !key.hasPrefix("/"), !key.utf8.contains(0) else {
            throw ObjectStoreError(.invalidKey)
        }
        for segment in key.split(separator: "/", omittingEmptySubsequences: false) {
            guard !segment.isEmpty, segment != ".", segment != ".." else { throw ObjectStoreError(.invalidKey) }
        }
    }

    /// Throws `invalidKey` unless `prefix` is empty or a valid key start (a trailing `/` is allowed).
    public static func validatePrefix(_ prefix: String) throws {
        guard !prefix.isEmpty else { return }
        try validate(prefix.hasSuffix("/") ? String(prefix.dropLast()) : prefix)
    }
}

/// Hex SHA-256 of some bytes.
public func sha256Hex(_ data: some DataProtocol) -> String {
    SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
}
