// S3ObjectStore: an ObjectStore over any S3-compatible server, signed with SigV4 over AsyncHTTPClient.
// Retries with exponential backoff on 5xx, 429 and connection failures; 4xx become typed errors.
import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1

/// Where and how to reach an S3-compatible bucket.
public struct S3Configuration: Sendable, Hashable {
    /// How the bucket appears in request URLs.
    public enum Addressing: String, Sendable, Hashable {
        /// `https://endpoint/bucket/key` (MinIO, moto, most self-hosted servers).
        case path
        /// `https://bucket.endpoint/key` (AWS's default).
        case virtualHosted = "virtual"
    }

    public var bucket: String
    /// A key prefix prepended to every key (no leading `/`; empty or ending in `/`).
    public var prefix: String
    /// The server, e.g. `http://127.0.0.1:9000`; nil means `https://s3.<region>.amazonaws.com`.
    public var endpoint: String?
    public var region: String
    public var addressing: Addressing
    /// Attempts per request (1 = no retry).
    public var maxAttempts: Int
    /// First retry delay; doubled per attempt up to `maxRetryDelay`.
    public var retryDelay: Duration
    public var maxRetryDelay: Duration
    /// Per-request timeout.
    public var timeout: Duration
    /// Files from this size up are uploaded in parts (`put(fileAt:)`).
    public var multipartThreshold: Int
    /// The size of each part but the last (S3's minimum is 5 MiB).
    public var partSize: Int
    /// A PEM bundle of the CAs trusted for an `https://` endpoint instead of the system's roots (a private CA).
    public var caBundle: String?

    public init(
        bucket: String, prefix: String = "", endpoint: String? = nil, region: String = "us-east-1",
        addressing: Addressing = .virtualHosted, maxAttempts: Int = 6, retryDelay: Duration = .milliseconds(200),
        maxRetryDelay: Duration = .seconds(5), timeout: Duration = .seconds(120), multipartThreshold: Int = 16 << 20,
        partSize: Int = 8 << 20, caBundle: String? = nil
    ) {
        self.multipartThreshold = multipartThreshold
        self.partSize = partSize
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint = endpoint
        self.region = region
        self.addressing = addressing
        self.maxAttempts = maxAttempts
        self.retryDelay = retryDelay
        self.maxRetryDelay = maxRetryDelay
        self.timeout = timeout
        self.caBundle = caBundle
    }
}

/// An object store in an S3 bucket.
public struct S3ObjectStore: ObjectStore {
    public let configuration: S3Configuration
    let signer: SigV4Signer
    let httpClient: HTTPClient
    let logger: Logger
    let scheme: String
    let endpointHost: String  // host[:port] as sent in the Host header
    /// The clock of the pauses between retries.
    let clock: any Clock<Duration>

    /// - Parameters:
    ///   - credentials: by default from the environment (`AWSCredentials.fromEnvironment`).
    ///   - httpClient: for `http://` endpoints, a client whose lifetime the caller manages; `HTTPClient.shared` by
    ///     default. `https://` endpoints always use a client of `S3HTTPSClients` (TLS 1.2+, `caBundle`).
    ///   - clock: the clock of the pauses between retries.
    public init(
        configuration: S3Configuration, credentials: AWSCredentials? = nil, httpClient: HTTPClient = .shared,
        clock: any Clock<Duration> = ContinuousClock(), logger: Logger = Logger(label: "dicom-etl.s3")
    ) throws {
        self.clock = clock
        guard !configuration.bucket.isEmpty, configuration.maxAttempts >= 1 else {
            throw ObjectStoreError(.invalidStorageURL)
        }
        if !configuration.prefix.isEmpty {
            guard configuration.prefix.hasSuffix("/") else { throw ObjectStoreError(.invalidStorageURL) }
            try ObjectKey.validatePrefix(configuration.prefix)
        }
        let endpoint = configuration.endpoint ?? "https://s3.\(configuration.region).amazonaws.com"
        guard let url = URLComponents(string: endpoint), let scheme = url.scheme?.lowercased(),
              scheme == "http" || scheme == "https", let host = url.host, !host.isEmpty
        else { throw ObjectStoreError(.invalidStorageURL) }
        if configuration.caBundle != nil && scheme != "https" { throw ObjectStoreError(.invalidCABundle) }
        self.configuration = configuration
        self.signer = SigV4Signer(
            credentials: try credentials ?? AWSCredentials.fromEnvironment(), region: configuration.region, service: "s3")
        self.httpClient = scheme == "https" ? try S3HTTPSClients.client(caBundle: configuration.caBundle) : httpClient
        self.logger = logger
        self.scheme = scheme
        self.endpointHost = url.port.map { "\(host):\($0)" } ?? host
    }

    // MARK: ObjectStore

    @discardableResult
    public func put(_ key: String, data: Data, contentType: String, sha256: String?) async throws -> ObjectInfo {
        try ObjectKey.validate(key)
        let digest = sha256Hex(data)
        if let sha256, sha256.lowercased() != digest { throw ObjectStoreError(.checksumMismatch) }
        let response = try await send(
            "PUT", key: key,
            headers: [("content-type", contentType), ("x-amz-meta-sha256", digest)],
            body: data, payloadHash: digest)
        guard response.status == 200 else { throw error(for: response) }
        return ObjectInfo(key: key, size: Int64(data.count), contentType: contentType, sha256: digest, lastModified: Date())
    }

    /// Uploads the file (in parts from `multipartThreshold` up; the caller's SHA-256 recorded, not recomputed
    /// for a single PUT) and removes it once the server has it.
    @discardableResult
    public func put(_ key: String, fileAt path: String, sha256: String, contentType: String) async throws -> ObjectInfo {
        try ObjectKey.validate(key)
        guard let handle = FileHandle(forReadingAtPath: path) else { throw ObjectStoreError(.io, errno: ENOENT) }
        defer { try? handle.close() }
        let size = Int((try? handle.seekToEnd()) ?? 0)
        try handle.seek(toOffset: 0)
        let digest = sha256.lowercased()
        if size < configuration.multipartThreshold {
            let data = try handle.readToEnd() ?? Data()
            let response = try await send(
                "PUT", key: key, headers: [("content-type", contentType), ("x-amz-meta-sha256", digest)], body: data, payloadHash: digest)
            guard response.status == 200 else { throw error(for: response) }
        } else {
            try await uploadInParts(key, handle: handle, size: size, sha256: digest, contentType: contentType)
        }
        try? FileManager.default.removeItem(atPath: path)
        return ObjectInfo(key: key, size: Int64(size), contentType: contentType, sha256: digest, lastModified: Date())
    }

    /// CreateMultipartUpload, UploadPart × n, CompleteMultipartUpload; AbortMultipartUpload on failure.
    func uploadInParts(_ key: String, handle: FileHandle, size: Int, sha256: String, contentType: String) async throws {
        let created = try await send(
            "POST", key: key, query: [("uploads", "")], headers: [("content-type", contentType), ("x-amz-meta-sha256", sha256)],
            body: Data(), payloadHash: sha256Hex(Data()))
        guard created.status == 200, let uploadID = ListPage.value("UploadId", in: Substring(String(decoding: created.body, as: UTF8.self)))
        else { throw error(for: created) }
        do {
            var parts: [(number: Int, etag: String)] = []
            var number = 1
            while let chunk = try handle.read(upToCount: configuration.partSize), !chunk.isEmpty {
                let response = try await send(
                    "PUT", key: key, query: [("partNumber", String(number)), ("uploadId", uploadID)], body: chunk, payloadHash: sha256Hex(chunk))
                guard response.status == 200, let etag = response.headers.first(name: "etag") else { throw error(for: response) }
                parts.append((number, etag))
                number += 1
            }
            let list = parts.map { "<Part><PartNumber>\($0.number)</PartNumber><ETag>\(Self.xmlEscape($0.etag))</ETag></Part>" }.joined()
            let body = Data("<CompleteMultipartUpload>\(list)</CompleteMultipartUpload>".utf8)
            let completed = try await send("POST", key: key, query: [("uploadId", uploadID)], body: body, payloadHash: sha256Hex(body))
            // A 200 may still carry an error in its body.
            guard completed.status == 200, completed.serverCode == nil else { throw error(for: completed) }
        } catch {
            _ = try? await send("DELETE", key: key, query: [("uploadId", uploadID)])
            throw error
        }
    }

    static func xmlEscape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    public func get(_ key: String) async throws -> Data {
        try ObjectKey.validate(key)
        let response = try await send("GET", key: key)
        guard response.status == 200 else { throw error(for: response) }
        return response.body
    }

    public func head(_ key: String) async throws -> ObjectInfo? {
        try ObjectKey.validate(key)
        let response = try await send("HEAD", key: key)
        if response.status == 404 { return nil }
        guard response.status == 200 else { throw error(for: response) }
        let size = response.headers.first(name: "content-length").flatMap { Int64($0) } ?? 0
        let modified = response.headers.first(name: "last-modified").flatMap(Self.parseHTTPDate)
        return ObjectInfo(
            key: key, size: size, contentType: response.headers.first(name: "content-type"),
            sha256: response.headers.first(name: "x-amz-meta-sha256"), lastModified: modified)
    }

    public func list(prefix: String) async throws -> [ObjectInfo] {
        try ObjectKey.validatePrefix(prefix)
        var result: [ObjectInfo] = []
        var token: String?
        repeat {
            var query: [(name: String, value: String)] = [("list-type", "2"), ("prefix", configuration.prefix + prefix)]
            if let token { query.append(("continuation-token", token)) }
            let response = try await send("GET", key: nil, query: query)
            guard response.status == 200 else { throw error(for: response) }
            let page = ListPage(xml: String(decoding: response.body, as: UTF8.self))
            for object in page.objects where object.key.hasPrefix(configuration.prefix) {
                result.append(ObjectInfo(
                    key: String(object.key.dropFirst(configuration.prefix.count)), size: object.size,
                    lastModified: object.lastModified))
            }
            token = page.truncated ? page.nextToken : nil
        } while token != nil
        return result.sorted { $0.key < $1.key }
    }

    public func delete(_ key: String) async throws {
        try ObjectKey.validate(key)
        let response = try await send("DELETE", key: key)
        guard response.status == 204 || response.status == 200 || response.status == 404 && response.serverCode == "NoSuchKey"
        else { throw error(for: response) }
    }

    /// Creates the bucket; succeeds when this account already owns it.
    public func createBucket() async throws {
        var body = Data()
        if configuration.region != "us-east-1" {
            body = Data("""
                <CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">\
                <LocationConstraint>\(configuration.region)</LocationConstraint></CreateBucketConfiguration>
                """.utf8)
        }
        let response = try await send("PUT", key: nil, body: body, payloadHash: sha256Hex(body))
        if response.status == 200 || response.serverCode == "BucketAlreadyOwnedByYou" { return }
        throw error(for: response)
    }

    // MARK: Requests

    struct Response {
        var status: Int
        var headers: HTTPHeaders
        var body: Data
        var serverCode: String? {
            guard let text = String(data: body, encoding: .utf8),
                  let start = text.range(of: "<Code>"), let end = text.range(of: "</Code>", range: start.upperBound..<text.endIndex)
            else { return nil }
            return String(text[start.upperBound..<end.lowerBound])
        }
    }

    func error(for response: Response) -> ObjectStoreError {
        let code = response.serverCode
        switch (response.status, code) {
        case (404, "NoSuchBucket"): return ObjectStoreError(.bucketNotFound, httpStatus: 404, serverCode: code)
        case (404, _): return ObjectStoreError(.notFound, httpStatus: 404, serverCode: code)
        case (403, _): return ObjectStoreError(.accessDenied, httpStatus: 403, serverCode: code)
        case (400, "BadDigest"), (400, "XAmzContentSHA256Mismatch"):
            return ObjectStoreError(.checksumMismatch, httpStatus: 400, serverCode: code)
        case (500..., _): return ObjectStoreError(.unavailable, httpStatus: response.status, serverCode: code)
        default: return ObjectStoreError(.requestFailed, httpStatus: response.status, serverCode: code)
        }
    }

    /// Sends a signed request, retrying 5xx, 429 and connection failures with exponential backoff.
    func send(
        _ method: String, key: String?, query: [(name: String, value: String)] = [],
        headers extra: [(String, String)] = [], body: Data? = nil, payloadHash: String? = nil
    ) async throws -> Response {
        let hash = payloadHash ?? sha256Hex(Data())
        var attempt = 0
        while true {
            attempt += 1
            do {
                let response = try await sendOnce(method, key: key, query: query, headers: extra, body: body, payloadHash: hash)
                let retryable = response.status >= 500 || response.status == 429
                if !retryable || attempt >= configuration.maxAttempts { return response }
                logger.debug("S3 request will be retried", metadata: ["status": "\(response.status)", "attempt": "\(attempt)"])
            } catch let error as ObjectStoreError {
                throw error
            } catch where S3HTTPSClients.isHandshakeFailure(error) {
                throw ObjectStoreError(.tlsHandshakeFailed)
            } catch {
                if attempt >= configuration.maxAttempts { throw ObjectStoreError(.unavailable) }
                logger.debug("S3 connection failed; will retry", metadata: ["attempt": "\(attempt)"])
            }
            try await clock.sleep(for: backoff(attempt))
        }
    }

    func backoff(_ attempt: Int) -> Duration {
        let base = configuration.retryDelay * Int(1 << min(attempt - 1, 20))
        let capped = min(base, configuration.maxRetryDelay)
        // Up to 20 % jitter so that replicas do not retry in lockstep.
        return capped + capped * Double.random(in: 0...0.2)
    }

    func sendOnce(
        _ method: String, key: String?, query: [(name: String, value: String)], headers extra: [(String, String)],
        body: Data?, payloadHash: String
    ) async throws -> Response {
        let host: String
        var path: String
        switch configuration.addressing {
        case .path:
            host = endpointHost
            path = "/" + SigV4Signer.uriEncode(configuration.bucket)
            if let key { path += "/" + SigV4Signer.uriEncode(configuration.prefix + key, keepSlash: true) }
        case .virtualHosted:
            host = "\(configuration.bucket).\(endpointHost)"
            path = "/" + (key.map { SigV4Signer.uriEncode(configuration.prefix + $0, keepSlash: true) } ?? "")
        }
        let amzDate = SigV4Signer.amzDate(Date())
        var headers: [(name: String, value: String)] = [
            ("host", host), ("x-amz-date", amzDate), ("x-amz-content-sha256", payloadHash),
        ]
        if let token = signer.credentials.sessionToken { headers.append(("x-amz-security-token", token)) }
        headers += extra.map { (name: $0.0, value: $0.1) }
        let signed = SigV4Request(method: method, encodedPath: path, query: query, headers: headers, payloadHash: payloadHash)
        let authorization = signer.authorization(signed, amzDate: amzDate)

        let queryString = query
            .map { "\(SigV4Signer.uriEncode($0.name))=\(SigV4Signer.uriEncode($0.value))" }
            .joined(separator: "&")
        var request = HTTPClientRequest(url: "\(scheme)://\(host)\(path)" + (queryString.isEmpty ? "" : "?" + queryString))
        request.method = HTTPMethod(rawValue: method)
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        request.headers.add(name: "authorization", value: authorization)
        if let body {
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        let response = try await httpClient.execute(request, timeout: .nanoseconds(Int64(configuration.timeout.components.seconds) * 1_000_000_000))
        var collected = Data()
        if method != "HEAD" {
            var buffer = try await response.body.collect(upTo: Int.max)
            if let bytes = buffer.readBytes(length: buffer.readableBytes) { collected = Data(bytes) }
        }
        return Response(status: Int(response.status.code), headers: response.headers, body: collected)
    }

    static func parseHTTPDate(_ text: String) -> Date? {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        return formatter.date(from: text)
    }
}

/// One page of a ListObjectsV2 answer, read with plain string scanning (the XML is flat and fixed).
struct ListPage {
    struct Object {
        var key: String
        var size: Int64
        var lastModified: Date?
    }

    var objects: [Object] = []
    var truncated = false
    var nextToken: String?

    init(xml: String) {
        truncated = Self.value("IsTruncated", in: Substring(xml)) == "true"
        nextToken = Self.value("NextContinuationToken", in: Substring(xml))
        var rest = Substring(xml)
        while let start = rest.range(of: "<Contents>"), let end = rest.range(of: "</Contents>", range: start.upperBound..<rest.endIndex) {
            let block = rest[start.upperBound..<end.lowerBound]
            if let key = Self.value("Key", in: block) {
                let formatter = ISO8601DateFormatter()
                formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
                let modified = Self.value("LastModified", in: block).flatMap {
                    formatter.date(from: $0) ?? ISO8601DateFormatter().date(from: $0)
                }
                objects.append(Object(key: key, size: Self.value("Size", in: block).flatMap { Int64($0) } ?? 0, lastModified: modified))
            }
            rest = rest[end.upperBound...]
        }
    }

    static func value(_ tag: String, in text: Substring) -> String? {
        guard let start = text.range(of: "<\(tag)>"),
              let end = text.range(of: "</\(tag)>", range: start.upperBound..<text.endIndex)
        else { return nil }
        return unescape(String(text[start.upperBound..<end.lowerBound]))
    }

    static func unescape(_ text: String) -> String {
        guard text.contains("&") else { return text }
        return text.replacingOccurrences(of: "&lt;", with: "<").replacingOccurrences(of: "&gt;", with: ">")
            .replacingOccurrences(of: "&quot;", with: "\"").replacingOccurrences(of: "&apos;", with: "'")
            .replacingOccurrences(of: "&#13;", with: "\r").replacingOccurrences(of: "&amp;", with: "&")
    }
}
