// Tests of FileDigest: streamed SHA-256 equals the one-shot digest across chunk boundaries.
import Crypto
import Foundation
import Ingest
import Testing

@Suite struct FileDigestTests {
    @Test(arguments: [0, 1, 4095, 4096, 4097, 3 * 4096 + 17])
    func streamedDigestEqualsOneShotDigest(size: Int) throws {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<size).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("digest-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(FileManager.default.createFile(atPath: path, contents: Data(bytes)))
        let digest = try FileDigest.compute(path: path, chunkSize: 4096)
        let expected = SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
        #expect(digest.sha256 == expected)
        #expect(digest.size == Int64(size))
    }

    @Test func missingFileIsUnreadable() {
        #expect(throws: FileDigest.Failure.unreadable) { try FileDigest.compute(path: "/nonexistent/file.dcm") }
    }
}
