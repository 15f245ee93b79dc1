// FilesystemObjectStore: the embedded default store. Objects live under <root>/data/<key>; their content type
// and SHA-256 travel with the file as extended attributes (`user.dicom-etl.*`, set before the file is renamed
// into place), or in a sidecar <root>/meta/<key>.json where the filesystem has no user attributes. A put
// writes a temporary file in <root>/tmp, fsyncs it and renames it into place, so a reader sees the old object
// or the new one, never a partial one. The pipeline's puts take a file already written into
// <root>/tmp/<writer>/ by rename, and `makeDurable` syncs a batch of them together.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CLinux
import Foundation
import Synchronization

/// An object store in a local folder.
public struct FilesystemObjectStore: ObjectStore {
    /// The folder holding `data/`, `meta/` and `tmp/`.
    public let root: URL
    private let folders = FolderCache()

    /// - Parameter root: the store's folder; created when missing.
    public init(root: URL) throws {
        self.root = root.standardizedFileURL
        for sub in ["data", "meta", "tmp"] {
            do {
                try FileManager.default.createDirectory(
                    at: self.root.appendingPathComponent(sub), withIntermediateDirectories: true)
            } catch {
                throw ObjectStoreError(.io, errno: (error as NSError).code == 0 ? nil : Int32((error as NSError).code))
            }
        }
    }

    struct Sidecar: Codable {
        var contentType: String
        var sha256: String
        var size: Int64
    }

    static let sha256Attribute = "user.dicom-etl.sha256"
    static let contentTypeAttribute = "user.dicom-etl.content-type"

    func dataPath(_ key: String) -> String { root.appendingPathComponent("data").path + "/" + key }
    func metaPath(_ key: String) -> String { root.appendingPathComponent("meta").path + "/" + key + ".json" }

    @discardableResult
    public func put(_ key: String, data: Data, contentType: String, sha256: String?) async throws -> ObjectInfo {
        try ObjectKey.validate(key)
        let digest = sha256Hex(data)
        if let sha256, sha256.lowercased() != digest { throw ObjectStoreError(.checksumMismatch) }
        let temporary = root.appendingPathComponent("tmp").path + "/" + UUID().uuidString
        try write(data, to: temporary)
        try place(temporary, at: key, sha256: digest, contentType: contentType, size: Int64(data.count))
        let folder = (dataPath(key) as NSString).deletingLastPathComponent
        try syncFolder(folder)
        return ObjectInfo(key: key, size: Int64(data.count), contentType: contentType, sha256: digest, lastModified: Date())
    }

    @discardableResult
    public func put(_ key: String, fileAt path: String, sha256: String, contentType: String) async throws -> ObjectInfo {
        try ObjectKey.validate(key)
        var status = stat()
        guard stat(path, &status) == 0 else { throw ObjectStoreError(.io, errno: errno) }
        try place(path, at: key, sha256: sha256.lowercased(), contentType: contentType, size: Int64(status.st_size))
        return ObjectInfo(key: key, size: Int64(status.st_size), contentType: contentType, sha256: sha256.lowercased(), lastModified: Date())
    }

    /// fdatasync of every object (several at once: the filesystem joins them into few journal commits), then
    /// one fsync per folder they were renamed into.
    public func makeDurable(_ keys: [String]) async throws {
        guard !keys.isEmpty else { return }
        let paths = keys.map(dataPath)
        let folderPaths = Array(Set(paths.map { ($0 as NSString).deletingLastPathComponent })).sorted()
        let failure = ErrorBox()
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            // Blocking syscalls: on threads of their own, not the cooperative pool.
            let thread = Thread {
                let all = paths + folderPaths
                DispatchQueue.concurrentPerform(iterations: min(8, all.count)) { lane in
                    for index in stride(from: lane, to: all.count, by: min(8, all.count)) {
                        let fd = open(all[index], O_RDONLY | O_CLOEXEC)
                        guard fd >= 0 else { failure.set(errno); continue }
                        if (index < paths.count ? fdatasync(fd) : fsync(fd)) != 0 { failure.set(errno) }
                        close(fd)
                    }
                }
                continuation.resume()
            }
            thread.start()
        }
        if let code = failure.value { throw ObjectStoreError(.io, errno: code) }
    }

    public func stagingDirectory(named name: String) throws -> String? {
        let folder = root.appendingPathComponent("tmp").path + "/" + name
        do {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        } catch {
            throw ObjectStoreError(.io, errno: EIO)
        }
        return folder
    }

    public func get(_ key: String) async throws -> Data {
        try ObjectKey.validate(key)
        guard let data = FileManager.default.contents(atPath: dataPath(key)) else {
            throw ObjectStoreError(.notFound)
        }
        return data
    }

    public func head(_ key: String) async throws -> ObjectInfo? {
        try ObjectKey.validate(key)
        return try info(key)
    }

    func info(_ key: String) throws -> ObjectInfo? {
        let path = dataPath(key)
        var status = stat()
        guard stat(path, &status) == 0 else {
            if errno == ENOENT || errno == ENOTDIR { return nil }
            throw ObjectStoreError(.io, errno: errno)
        }
        guard (status.st_mode & S_IFMT) == S_IFREG else { return nil }
        let size = Int64(status.st_size)
        let modified = Date(timeIntervalSince1970: Double(status.st_mtim.tv_sec) + Double(status.st_mtim.tv_nsec) / 1e9)
        if let sha256 = Self.attribute(Self.sha256Attribute, of: path) {
            return ObjectInfo(key: key, size: size, contentType: Self.attribute(Self.contentTypeAttribute, of: path), sha256: sha256,
                              lastModified: modified)
        }
        if let raw = FileManager.default.contents(atPath: metaPath(key)),
           let sidecar = try? JSONDecoder().decode(Sidecar.self, from: raw), sidecar.size == size
        {
            return ObjectInfo(key: key, size: size, contentType: sidecar.contentType, sha256: sidecar.sha256,
                              lastModified: modified)
        }
        // A crash between the data and the sidecar renames: recompute what the sidecar would say.
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return ObjectInfo(key: key, size: size, contentType: nil, sha256: sha256Hex(data), lastModified: modified)
    }

    public func list(prefix: String) async throws -> [ObjectInfo] {
        try ObjectKey.validatePrefix(prefix)
        let base = root.appendingPathComponent("data").path
        // Walk only the deepest folder the prefix names.
        let folder = prefix.range(of: "/", options: .backwards).map { String(prefix[..<$0.lowerBound]) } ?? ""
        let start = folder.isEmpty ? base : base + "/" + folder
        guard let enumerator = FileManager.default.enumerator(atPath: start) else { return [] }
        var result: [ObjectInfo] = []
        while let relative = enumerator.nextObject() as? String {
            let key = folder.isEmpty ? relative : folder + "/" + relative
            guard key.hasPrefix(prefix), let info = try info(key) else { continue }
            result.append(info)
        }
        return result.sorted { $0.key < $1.key }
    }

    public func delete(_ key: String) async throws {
        try ObjectKey.validate(key)
        for path in [dataPath(key), metaPath(key)] {
            if unlink(path) != 0 && errno != ENOENT && errno != ENOTDIR { throw ObjectStoreError(.io, errno: errno) }
        }
    }

    /// Labels `file` with its hash and type, then renames it to `key`'s path (its folder made once).
    private func place(_ file: String, at key: String, sha256: String, contentType: String, size: Int64) throws {
        let target = dataPath(key)
        let folder = (target as NSString).deletingLastPathComponent
        if !folders.contains(folder) {
            do {
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            } catch {
                throw ObjectStoreError(.io, errno: EIO)
            }
            folders.insert(folder)
        }
        let labelled = Self.setAttribute(Self.sha256Attribute, sha256, of: file) && Self.setAttribute(Self.contentTypeAttribute, contentType, of: file)
        if !labelled {
            // No user attributes here (e.g. some network filesystems): a sidecar, written before the data appears.
            let sidecar = try JSONEncoder().encode(Sidecar(contentType: contentType, sha256: sha256, size: size))
            let temporary = root.appendingPathComponent("tmp").path + "/" + UUID().uuidString
            try write(sidecar, to: temporary)
            let metaFolder = (metaPath(key) as NSString).deletingLastPathComponent
            try? FileManager.default.createDirectory(atPath: metaFolder, withIntermediateDirectories: true)
            guard rename(temporary, metaPath(key)) == 0 else {
                let code = errno
                unlink(temporary)
                throw ObjectStoreError(.io, errno: code)
            }
        } else {
            // An older sidecar would now describe other bytes.
            unlink(metaPath(key))
        }
        if rename(file, target) != 0 {
            // The folder was removed behind the cache's back: make it again, once.
            guard errno == ENOENT, (try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)) != nil,
                rename(file, target) == 0
            else { throw ObjectStoreError(.io, errno: errno) }
        }
    }

    /// Writes `data` to a new file at `path` and fsyncs it.
    private func write(_ data: Data, to path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ObjectStoreError(.io, errno: errno) }
        var failure: Int32?
        data.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = Glibc.write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    failure = errno
                    return
                }
                offset += written
            }
        }
        if failure == nil && fsync(fd) != 0 { failure = errno }
        close(fd)
        if let failure {
            unlink(path)
            throw ObjectStoreError(.io, errno: failure)
        }
    }

    private func syncFolder(_ folder: String) throws {
        let fd = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 {
            _ = fsync(fd)
            close(fd)
        }
    }

    static func setAttribute(_ name: String, _ value: String, of path: String) -> Bool {
        let bytes = Array(value.utf8)
        return setxattr(path, name, bytes, bytes.count, 0) == 0
    }

    static func attribute(_ name: String, of path: String) -> String? {
        var buffer = [UInt8](repeating: 0, count: 256)
        let count = getxattr(path, name, &buffer, buffer.count)
        guard count > 0 else { return nil }
        return String(decoding: buffer[0..<count], as: UTF8.self)
    }
}

/// Folders known to exist (made by this store): a folder is made once, not once per object.
final class FolderCache: Sendable {
    private let known = Mutex<Set<String>>([])
    func contains(_ folder: String) -> Bool { known.withLock { $0.contains(folder) } }
    func insert(_ folder: String) { _ = known.withLock { $0.insert(folder) } }
}

/// The first errno of concurrent calls.
final class ErrorBox: Sendable {
    private let first = Mutex<Int32?>(nil)
    var value: Int32? { first.withLock { $0 } }
    func set(_ code: Int32) { first.withLock { if $0 == nil { $0 = code } } }
}
