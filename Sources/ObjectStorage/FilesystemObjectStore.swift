// FilesystemObjectStore: the embedded default store. Objects live under <root>/data/<key>, their content
// type and SHA-256 in a sidecar <root>/meta/<key>.json; every write goes to a temporary file in <root>/tmp,
// is fsynced and renamed into place, so a reader sees the old object or the new one, never a partial one.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// An object store in a local folder.
public struct FilesystemObjectStore: ObjectStore {
    /// The folder holding `data/`, `meta/` and `tmp/`.
    public let root: URL

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

    func dataPath(_ key: String) -> String { root.appendingPathComponent("data").path + "/" + key }
    func metaPath(_ key: String) -> String { root.appendingPathComponent("meta").path + "/" + key + ".json" }

    @discardableResult
    public func put(_ key: String, data: Data, contentType: String, sha256: String?) async throws -> ObjectInfo {
        try ObjectKey.validate(key)
        let digest = sha256Hex(data)
        if let sha256, sha256.lowercased() != digest { throw ObjectStoreError(.checksumMismatch) }
        let sidecar = try JSONEncoder().encode(Sidecar(contentType: contentType, sha256: digest, size: Int64(data.count)))
        try writeAtomically(data, to: dataPath(key))
        try writeAtomically(sidecar, to: metaPath(key))
        return ObjectInfo(key: key, size: Int64(data.count), contentType: contentType, sha256: digest, lastModified: Date())
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
        var status = stat()
        guard stat(dataPath(key), &status) == 0 else {
            if errno == ENOENT || errno == ENOTDIR { return nil }
            throw ObjectStoreError(.io, errno: errno)
        }
        guard (status.st_mode & S_IFMT) == S_IFREG else { return nil }
        let size = Int64(status.st_size)
        let modified = Date(timeIntervalSince1970: Double(status.st_mtim.tv_sec) + Double(status.st_mtim.tv_nsec) / 1e9)
        if let raw = FileManager.default.contents(atPath: metaPath(key)),
           let sidecar = try? JSONDecoder().decode(Sidecar.self, from: raw), sidecar.size == size
        {
            return ObjectInfo(key: key, size: size, contentType: sidecar.contentType, sha256: sidecar.sha256,
                              lastModified: modified)
        }
        // A crash between the data and the sidecar renames: recompute what the sidecar would say.
        guard let data = FileManager.default.contents(atPath: dataPath(key)) else { return nil }
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

    /// Writes to a temporary file, fsyncs it, renames it over `path` and fsyncs the folder.
    func writeAtomically(_ data: Data, to path: String) throws {
        let folder = (path as NSString).deletingLastPathComponent
        do {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        } catch {
            throw ObjectStoreError(.io, errno: EIO)
        }
        let temporary = root.appendingPathComponent("tmp").path + "/" + UUID().uuidString
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ObjectStoreError(.io, errno: errno) }
        var failure: Int32?
        data.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = write(fd, buffer.baseAddress! + offset, buffer.count - offset)
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
            unlink(temporary)
            throw ObjectStoreError(.io, errno: failure)
        }
        guard rename(temporary, path) == 0 else {
            let code = errno
            unlink(temporary)
            throw ObjectStoreError(.io, errno: code)
        }
        let folderFD = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if folderFD >= 0 {
            _ = fsync(folderFD)
            close(folderFD)
        }
    }
}
