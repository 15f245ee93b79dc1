// FilesystemObjectStore: round trip, atomic replacement, checksums, listing, key safety.
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import ObjectStorage
import Testing

@Suite struct FilesystemObjectStoreTests {
    func makeStore() throws -> (FilesystemObjectStore, URL) {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("fs-store-\(UUID().uuidString)")
        return (try FilesystemObjectStore(root: root), root)
    }

    @Test func roundTrip() async throws {
        let (store, root) = try makeStore()
        defer { try? FileManager.default.removeItem(at: root) }
        do {
            let data = Data((0..<10_000).map { UInt8($0 % 251) })
            let info = try await store.put("dicom/1.2/3.dcm", data: data, contentType: "application/dicom")
            #expect(info.sha256 == sha256Hex(data))
            #expect(try await store.get("dicom/1.2/3.dcm") == data)
            let head = try #require(try await store.head("dicom/1.2/3.dcm"))
            #expect(head.size == 10_000)
            #expect(head.contentType == "application/dicom")
            #expect(head.sha256 == sha256Hex(data))
            #expect(try await store.head("dicom/1.2/none.dcm") == nil)

            try await store.put("dicom/1.2/4.dcm", data: Data("x".utf8), contentType: "application/dicom")
            try await store.put("tensors/1.2/3.npy", data: Data("y".utf8), contentType: "application/octet-stream")
            #expect(try await store.list(prefix: "dicom/").map(\.key) == ["dicom/1.2/3.dcm", "dicom/1.2/4.dcm"])
            #expect(try await store.list(prefix: "dicom/1.2/4").map(\.key) == ["dicom/1.2/4.dcm"])
            #expect(try await store.list(prefix: "").count == 3)
            #expect(try await store.list(prefix: "nothing/").isEmpty)

            // Replacing is atomic and leaves no temporary files.
            try await store.put("dicom/1.2/3.dcm", data: Data("new".utf8), contentType: "application/dicom")
            #expect(try await store.get("dicom/1.2/3.dcm") == Data("new".utf8))
            #expect(try FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent("tmp").path).isEmpty)

            try await store.delete("dicom/1.2/3.dcm")
            try await store.delete("dicom/1.2/3.dcm")
            await #expect(throws: ObjectStoreError(.notFound)) { try await store.get("dicom/1.2/3.dcm") }
            #expect(try await store.list(prefix: "dicom/").map(\.key) == ["dicom/1.2/4.dcm"])
        }
    }

    @Test func checksumAndKeySafety() async throws {
        let (store, root) = try makeStore()
        defer { try? FileManager.default.removeItem(at: root) }
        do {
            await #expect(throws: ObjectStoreError(.checksumMismatch)) {
                try await store.put("a", data: Data("abc".utf8), contentType: "text/plain", sha256: String(repeating: "0", count: 64))
            }
            #expect(try await store.head("a") == nil)
            let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  // FIPS 180-2 "abc"
            #expect(try await store.put("a", data: Data("abc".utf8), contentType: "text/plain", sha256: abc).sha256 == abc)
            for bad in ["../escape", "/etc/passwd", "a//b", "x/../../y"] {
                await #expect(throws: ObjectStoreError(.invalidKey)) {
                    try await store.put(bad, data: Data(), contentType: "text/plain")
                }
            }
            #expect(!FileManager.default.fileExists(atPath: root.deletingLastPathComponent().appendingPathComponent("escape").path))
        }
    }

    @Test func labelsTravelWithTheObjectAndAreRecomputedWhenLost() async throws {
        let (store, root) = try makeStore()
        defer { try? FileManager.default.removeItem(at: root) }
        do {
            try await store.put("k/v", data: Data("hello".utf8), contentType: "text/plain")
            // Hash and type are attributes of the file itself: no sidecar is written.
            #expect(!FileManager.default.fileExists(atPath: root.appendingPathComponent("meta/k/v.json").path))
            #expect(try await store.head("k/v")?.contentType == "text/plain")
            // A copy without the attributes (as a backup tool might restore it): the hash is recomputed.
            let path = root.appendingPathComponent("data/k/v").path
            try FileManager.default.copyItem(atPath: path, toPath: path + ".copy")
            #expect(rename(path + ".copy", path) == 0)
            let head = try #require(try await store.head("k/v"))
            #expect(head.sha256 == sha256Hex(Data("hello".utf8)))
        }
    }

    @Test func aStagedFileIsTakenByRenameAndMadeDurable() async throws {
        let (store, root) = try makeStore()
        defer { try? FileManager.default.removeItem(at: root) }
        let staging = try #require(try store.stagingDirectory(named: "writer-1"))
        #expect(staging.hasPrefix(root.path))
        let data = Data(repeating: 7, count: 100_000)
        let staged = staging + "/1-1.dcm"
        #expect(FileManager.default.createFile(atPath: staged, contents: data))
        var before = stat()
        #expect(stat(staged, &before) == 0)
        let info = try await store.put("dicom/s/t/u.dcm", fileAt: staged, sha256: sha256Hex(data), contentType: "application/dicom")
        #expect(info.size == 100_000)
        #expect(!FileManager.default.fileExists(atPath: staged))
        // The same inode: moved, not copied.
        var after = stat()
        #expect(stat(root.appendingPathComponent("data/dicom/s/t/u.dcm").path, &after) == 0)
        #expect(after.st_ino == before.st_ino)
        #expect(try await store.get("dicom/s/t/u.dcm") == data)
        let head = try #require(try await store.head("dicom/s/t/u.dcm"))
        #expect(head.sha256 == sha256Hex(data) && head.contentType == "application/dicom")
        try await store.makeDurable(["dicom/s/t/u.dcm"])
        await #expect(throws: ObjectStoreError.self) { try await store.makeDurable(["dicom/s/t/missing.dcm"]) }
    }
}
