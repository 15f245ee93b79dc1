// S3ObjectStore against the moto server of scripts/with-services.sh (signatures checked through IAM):
// round trip, a 50 MB object, typed errors for a missing bucket and a wrong secret; and against a moto
// started by the test itself, stopped and started again while a request is being retried.
import Foundation
import ObjectStorage
import Testing

enum S3TestEnvironment {
    static let environment = ProcessInfo.processInfo.environment
    static var endpoint: String? { environment["DICOM_ETL_TEST_S3_ENDPOINT"] }
    static var available: Bool {
        endpoint != nil && environment["DICOM_ETL_TEST_S3_ACCESS_KEY"] != nil && environment["DICOM_ETL_TEST_S3_SECRET_KEY"] != nil
    }
    static var credentials: AWSCredentials {
        AWSCredentials(accessKeyID: environment["DICOM_ETL_TEST_S3_ACCESS_KEY"] ?? "",
                       secretAccessKey: environment["DICOM_ETL_TEST_S3_SECRET_KEY"] ?? "")
    }
    /// The Python that has moto installed: DICOM_ETL_PYTHON, or the one beside moto_server of the running server.
    static var python: String? { environment["DICOM_ETL_PYTHON"] }

    static func bucketName() -> String { "t-" + UUID().uuidString.lowercased().prefix(18) }

    /// A path-style store. Against the signature-checking moto, keep `prefix` empty and list prefixes free of
    /// `/`: moto 5.2 checks a ListObjects signature against the query as decoded by its web server, so a `/`
    /// in `prefix=` (sent as `%2F`, as AWS requires) fails there even for boto3.
    static func store(bucket: String, prefix: String = "", credentials: AWSCredentials = credentials,
                      endpoint: String? = endpoint, maxAttempts: Int = 3) throws -> S3ObjectStore {
        try S3ObjectStore(
            configuration: S3Configuration(bucket: bucket, prefix: prefix, endpoint: endpoint, region: "us-east-1",
                                           addressing: .path, maxAttempts: maxAttempts, retryDelay: .milliseconds(100),
                                           maxRetryDelay: .milliseconds(800), timeout: .seconds(60)),
            credentials: credentials)
    }
}

func randomData(_ count: Int) -> Data {
    var bytes = [UInt8](repeating: 0, count: count)
    var generator = SystemRandomNumberGenerator()
    bytes.withUnsafeMutableBytes { buffer in
        var offset = 0
        while offset + 8 <= count {
            buffer.storeBytes(of: generator.next(), toByteOffset: offset, as: UInt64.self)
            offset += 8
        }
        while offset < count {
            buffer[offset] = UInt8.random(in: 0...255)
            offset += 1
        }
    }
    return Data(bytes)
}

@Suite(.enabled(if: S3TestEnvironment.available, "needs the moto server of scripts/with-services.sh"))
struct S3ObjectStoreTests {
    @Test func roundTrip() async throws {
        let store = try S3TestEnvironment.store(bucket: S3TestEnvironment.bucketName())
        try await store.createBucket()
        try await store.createBucket()  // owning it already is fine
        let data = Data("de-identified bytes".utf8)
        let info = try await store.put("dicom/1.2.3/4.dcm", data: data, contentType: "application/dicom")
        #expect(info.sha256 == sha256Hex(data))
        try await store.put("dicom/1.2.3/with space.dcm", data: Data("2".utf8), contentType: "application/dicom")
        try await store.put("tensors/1.2.3/4.npy", data: Data("3".utf8), contentType: "application/octet-stream")
        #expect(try await store.get("dicom/1.2.3/4.dcm") == data)
        #expect(try await store.get("dicom/1.2.3/with space.dcm") == Data("2".utf8))
        let head = try #require(try await store.head("dicom/1.2.3/4.dcm"))
        #expect(head.size == Int64(data.count))
        #expect(head.contentType == "application/dicom")
        #expect(head.sha256 == sha256Hex(data))
        #expect(try await store.head("dicom/none") == nil)
        #expect(try await store.list(prefix: "dicom").map(\.key) == ["dicom/1.2.3/4.dcm", "dicom/1.2.3/with space.dcm"])
        #expect(try await store.list(prefix: "").count == 3)
        try await store.delete("dicom/1.2.3/4.dcm")
        try await store.delete("dicom/1.2.3/4.dcm")
        await #expect(throws: ObjectStoreError(.notFound, httpStatus: 404, serverCode: "NoSuchKey")) {
            try await store.get("dicom/1.2.3/4.dcm")
        }
        #expect(try await store.list(prefix: "dicom").map(\.key) == ["dicom/1.2.3/with space.dcm"])
    }

    @Test func listPagesBeyondAThousandKeys() async throws {
        let store = try S3TestEnvironment.store(bucket: S3TestEnvironment.bucketName())
        try await store.createBucket()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<4 {
                group.addTask {
                    for index in stride(from: worker, to: 1010, by: 4) {
                        try await store.put(String(format: "p/%05d", index), data: Data([UInt8(index % 256)]), contentType: "x/y")
                    }
                }
            }
            try await group.waitForAll()
        }
        let keys = try await store.list(prefix: "p").map(\.key)
        #expect(keys.count == 1010)
        #expect(keys == (0..<1010).map { String(format: "p/%05d", $0) })
    }

    @Test func aFiftyMegabyteObject() async throws {
        let store = try S3TestEnvironment.store(bucket: S3TestEnvironment.bucketName())
        try await store.createBucket()
        let data = randomData(50 * 1024 * 1024)
        let digest = sha256Hex(data)
        try await store.put("big/volume.npy", data: data, contentType: "application/octet-stream", sha256: digest)
        let head = try #require(try await store.head("big/volume.npy"))
        #expect(head.size == 50 * 1024 * 1024)
        #expect(head.sha256 == digest)
        let back = try await store.get("big/volume.npy")
        #expect(back.count == data.count)
        #expect(sha256Hex(back) == digest)
    }

    @Test func aFileIsUploadedWholeOrInParts() async throws {
        let bucket = S3TestEnvironment.bucketName()
        var configuration = S3Configuration(bucket: bucket, endpoint: S3TestEnvironment.endpoint, region: "us-east-1", addressing: .path,
                                            maxAttempts: 3, retryDelay: .milliseconds(100))
        configuration.multipartThreshold = 5 << 20
        configuration.partSize = 5 << 20
        let store = try S3ObjectStore(configuration: configuration, credentials: S3TestEnvironment.credentials)
        try await store.createBucket()
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("s3-staging-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        for (name, size) in [("small.dcm", 1_000), ("large.npy", 12 * 1024 * 1024 + 17)] {
            let data = randomData(size)
            let path = folder + "/" + name
            try data.write(to: URL(fileURLWithPath: path))
            try await store.put("staged/\(name)", fileAt: path, sha256: sha256Hex(data), contentType: "application/octet-stream")
            #expect(!FileManager.default.fileExists(atPath: path), "the staging file is removed once uploaded")
            let head = try #require(try await store.head("staged/\(name)"))
            #expect(head.size == Int64(size) && head.sha256 == sha256Hex(data))
            #expect(sha256Hex(try await store.get("staged/\(name)")) == sha256Hex(data))
        }
    }

    @Test func typedErrors() async throws {
        let missing = try S3TestEnvironment.store(bucket: S3TestEnvironment.bucketName())
        await #expect(throws: ObjectStoreError(.bucketNotFound, httpStatus: 404, serverCode: "NoSuchBucket")) {
            try await missing.put("a", data: Data("x".utf8), contentType: "text/plain")
        }
        await #expect(throws: ObjectStoreError(.bucketNotFound, httpStatus: 404, serverCode: "NoSuchBucket")) {
            _ = try await missing.list(prefix: "")
        }

        let bucket = S3TestEnvironment.bucketName()
        try await S3TestEnvironment.store(bucket: bucket).createBucket()
        var wrong = S3TestEnvironment.credentials
        wrong.secretAccessKey += "x"
        let forged = try S3TestEnvironment.store(bucket: bucket, credentials: wrong)
        do {
            try await forged.put("a", data: Data("x".utf8), contentType: "text/plain")
            Issue.record("a wrong secret must be refused")
        } catch let error as ObjectStoreError {
            #expect(error.code == .accessDenied)
            #expect(error.httpStatus == 403)
            #expect(error.serverCode == "SignatureDoesNotMatch")
        }
        // Nothing was written by the forged request.
        #expect(try await S3TestEnvironment.store(bucket: bucket).head("a") == nil)
        await #expect(throws: ObjectStoreError(.checksumMismatch)) {
            try await S3TestEnvironment.store(bucket: bucket).put(
                "a", data: Data("x".utf8), contentType: "text/plain", sha256: String(repeating: "0", count: 64))
        }
    }
}

/// A moto server this test owns, so it can stop and restart it.
final class OwnMoto: @unchecked Sendable {
    let python: String
    let port: Int
    var process: Process?

    init(python: String) throws {
        self.python = python
        // A free port: bind to 0 and read it back.
        let probe = Process()
        probe.executableURL = URL(fileURLWithPath: python)
        probe.arguments = ["-c", "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])"]
        let pipe = Pipe()
        probe.standardOutput = pipe
        try probe.run()
        probe.waitUntilExit()
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        guard let port = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)) else { throw ObjectStoreError(.unavailable) }
        self.port = port
    }

    var endpoint: String { "http://127.0.0.1:\(port)" }

    func start() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = ["-m", "moto.server", "-H", "127.0.0.1", "-p", String(port)]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        self.process = process
    }

    /// Kills the server outright (SIGKILL): moto exits on SIGTERM only once every keep-alive connection
    /// has closed, and a crash is the harsher test anyway.
    func stop() {
        guard let process else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        self.process = nil
    }

    deinit { stop() }
}

@Suite(.enabled(if: S3TestEnvironment.python != nil, "needs DICOM_ETL_PYTHON with moto (scripts/test.sh)"))
struct S3RetryTests {
    @Test func requestsRetryWhileTheServerIsStoppedAndStartedAgain() async throws {
        let moto = try OwnMoto(python: try #require(S3TestEnvironment.python))
        defer { moto.stop() }
        try moto.start()
        // This moto has no IAM users, so it accepts any signature.
        let credentials = AWSCredentials(accessKeyID: "retry", secretAccessKey: "retry")
        let store = try S3TestEnvironment.store(
            bucket: "retry", credentials: credentials, endpoint: moto.endpoint, maxAttempts: 60)
        try await store.createBucket()  // retried until the fresh server listens
        try await store.put("before", data: Data("1".utf8), contentType: "text/plain")

        moto.stop()
        // Stopped: the request below keeps failing to connect and is retried with backoff...
        let pending = Task {
            try await store.createBucket()  // the restarted server has lost its state: recreate, then write
            return try await store.put("after", data: Data("2".utf8), contentType: "text/plain")
        }
        try await Task.sleep(for: .seconds(2))
        // ...until the server is back.
        try moto.start()
        let info = try await pending.value
        #expect(info.key == "after")
        #expect(try await store.get("after") == Data("2".utf8))

        // A key prefix in the store and `/` in list prefixes (this moto does not check signatures).
        let prefixed = try S3TestEnvironment.store(
            bucket: "retry", prefix: "site-a/deid/", credentials: credentials, endpoint: moto.endpoint)
        try await prefixed.put("dicom/1/2.dcm", data: Data("3".utf8), contentType: "application/dicom")
        try await prefixed.put("dicom/10/2.dcm", data: Data("4".utf8), contentType: "application/dicom")
        #expect(try await prefixed.list(prefix: "dicom/1/").map(\.key) == ["dicom/1/2.dcm"])
        #expect(try await prefixed.list(prefix: "dicom/").map(\.key) == ["dicom/1/2.dcm", "dicom/10/2.dcm"])
        #expect(try await store.head("site-a/deid/dicom/1/2.dcm")?.size == 1)
        #expect(try await store.list(prefix: "").map(\.key) == ["after", "site-a/deid/dicom/1/2.dcm", "site-a/deid/dicom/10/2.dcm"])

        // With no retries allowed, a stopped server is a typed `unavailable` error.
        moto.stop()
        let impatient = try S3TestEnvironment.store(bucket: "retry", credentials: credentials, endpoint: moto.endpoint, maxAttempts: 1)
        await #expect(throws: ObjectStoreError(.unavailable)) { _ = try await impatient.get("after") }
    }
}
