// SigV4: AWS Signature Version 4 for header-based authentication (the canonical request, the string to
// sign, the derived key and the Authorization header), with the URI encoding S3 expects.
import Crypto
import Foundation
import Secrets

/// Access credentials for S3-compatible servers.
public struct AWSCredentials: Sendable, Hashable, CustomStringConvertible {
    public var accessKeyID: String
    public var secretAccessKey: String
    public var sessionToken: String?

    public init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil) {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
    }

    /// The access key ID only: printing credentials never prints the secret.
    public var description: String { "AWSCredentials(accessKeyID: \(accessKeyID), secret: redacted)" }

    /// Credentials from, in order: `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (/ `AWS_SESSION_TOKEN`);
    /// the files named by `AWS_ACCESS_KEY_ID_FILE` / `AWS_SECRET_ACCESS_KEY_FILE` (mounted secrets); the
    /// shared credentials file (`AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`), profile
    /// `AWS_PROFILE` or `default`. Throws `missingCredentials` when none is found, and `SecretFileError` when
    /// a named file is missing or may be read by others than its owner (`chmod 600`, see `SecretFile`).
    public static func fromEnvironment(
        _ environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> AWSCredentials {
        if let id = environment["AWS_ACCESS_KEY_ID"], let secret = environment["AWS_SECRET_ACCESS_KEY"],
           !id.isEmpty, !secret.isEmpty
        {
            return AWSCredentials(accessKeyID: id, secretAccessKey: secret, sessionToken: environment["AWS_SESSION_TOKEN"])
        }
        if let idFile = environment["AWS_ACCESS_KEY_ID_FILE"], let secretFile = environment["AWS_SECRET_ACCESS_KEY_FILE"],
           let id = try readTrimmed(idFile, setting: "AWS_ACCESS_KEY_ID_FILE"),
           let secret = try readTrimmed(secretFile, setting: "AWS_SECRET_ACCESS_KEY_FILE")
        {
            return AWSCredentials(
                accessKeyID: id, secretAccessKey: secret,
                sessionToken: try environment["AWS_SESSION_TOKEN_FILE"].flatMap { try readTrimmed($0, setting: "AWS_SESSION_TOKEN_FILE") })
        }
        // The shared file is optional where it is looked for by default, required where it is named.
        let named = environment["AWS_SHARED_CREDENTIALS_FILE"]
        let file = named ?? environment["HOME"].map { $0 + "/.aws/credentials" }
        if let file, named != nil || FileManager.default.fileExists(atPath: file),
           let text = try readTrimmed(file, setting: named != nil ? "AWS_SHARED_CREDENTIALS_FILE" : "~/.aws/credentials"),
           let credentials = parseSharedCredentials(text, profile: environment["AWS_PROFILE"] ?? "default")
        {
            return credentials
        }
        throw ObjectStoreError(.missingCredentials)
    }

    /// Reads one profile of an INI-style shared credentials file.
    static func parseSharedCredentials(_ text: String, profile: String) -> AWSCredentials? {
        var section = ""
        var values: [String: String] = [:]
        for rawLine in text.split(whereSeparator: \.isNewline) {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("[") && line.hasSuffix("]") {
                section = String(line.dropFirst().dropLast()).trimmingCharacters(in: .whitespaces)
                continue
            }
            guard section == profile, let equals = line.firstIndex(of: "=") else { continue }
            values[line[..<equals].trimmingCharacters(in: .whitespaces).lowercased()] =
                line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)
        }
        guard let id = values["aws_access_key_id"], let secret = values["aws_secret_access_key"] else { return nil }
        return AWSCredentials(accessKeyID: id, secretAccessKey: secret, sessionToken: values["aws_session_token"])
    }

    /// A secret file's text without surrounding white space; nil when empty.
    static func readTrimmed(_ path: String, setting: String) throws(SecretFileError) -> String? {
        let text = try SecretFile.readText(path, setting: setting).trimmingCharacters(in: .whitespacesAndNewlines)
        return text.isEmpty ? nil : text
    }
}

/// A request as SigV4 sees it.
public struct SigV4Request: Sendable, Hashable {
    public var method: String
    /// The URI-encoded path, exactly as sent (e.g. `/bucket/a%20b.dcm`).
    public var encodedPath: String
    /// Query parameters, not encoded.
    public var query: [(name: String, value: String)]
    /// Every header to sign (names in any case); must include `host` and `x-amz-date`.
    public var headers: [(name: String, value: String)]
    /// Hex SHA-256 of the payload (or `UNSIGNED-PAYLOAD`).
    public var payloadHash: String

    public init(
        method: String, encodedPath: String, query: [(name: String, value: String)] = [],
        headers: [(name: String, value: String)], payloadHash: String
    ) {
        self.method = method
        self.encodedPath = encodedPath
        self.query = query
        self.headers = headers
        self.payloadHash = payloadHash
    }

    public static func == (lhs: SigV4Request, rhs: SigV4Request) -> Bool {
        lhs.method == rhs.method && lhs.encodedPath == rhs.encodedPath && lhs.payloadHash == rhs.payloadHash
            && lhs.query.map { [$0.name, $0.value] } == rhs.query.map { [$0.name, $0.value] }
            && lhs.headers.map { [$0.name, $0.value] } == rhs.headers.map { [$0.name, $0.value] }
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(method)
        hasher.combine(encodedPath)
        hasher.combine(payloadHash)
    }
}

/// Computes SigV4 signatures for one credential scope (region and service).
public struct SigV4Signer: Sendable {
    public var credentials: AWSCredentials
    public var region: String
    public var service: String

    public init(credentials: AWSCredentials, region: String, service: String = "s3") {
        self.credentials = credentials
        self.region = region
        self.service = service
    }

    /// `YYYYMMDD'T'HHMMSS'Z'` in UTC.
    public static func amzDate(_ date: Date) -> String {
        var seconds = time_t(date.timeIntervalSince1970.rounded(.down))
        var parts = tm()
        gmtime_r(&seconds, &parts)
        return String(
            format: "%04d%02d%02dT%02d%02d%02dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday),
            Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec))
    }

    /// The canonical request (task 1 of the signing process).
    public func canonicalRequest(_ request: SigV4Request) -> String {
        let encoded: [(String, String)] = request.query.map { (Self.uriEncode($0.name), Self.uriEncode($0.value)) }
        let sorted = encoded.sorted { (a: (String, String), b: (String, String)) -> Bool in
            a.0 == b.0 ? a.1 < b.1 : a.0 < b.0
        }
        let query = sorted.map { (pair: (String, String)) -> String in pair.0 + "=" + pair.1 }.joined(separator: "&")
        let (canonicalHeaders, signedHeaders) = Self.canonicalHeaders(request.headers)
        return [request.method, request.encodedPath, query, canonicalHeaders, signedHeaders, request.payloadHash]
            .joined(separator: "\n")
    }

    /// The string to sign (task 2).
    public func stringToSign(canonicalRequest: String, amzDate: String) -> String {
        let hash = SHA256.hash(data: Data(canonicalRequest.utf8)).hex
        return ["AWS4-HMAC-SHA256", amzDate, scope(amzDate), hash].joined(separator: "\n")
    }

    /// The hex signature of a string to sign (tasks 3 and 4).
    public func signature(stringToSign: String, amzDate: String) -> String {
        let day = String(amzDate.prefix(8))
        var key = SymmetricKey(data: Data("AWS4\(credentials.secretAccessKey)".utf8))
        for part in [day, region, service, "aws4_request"] {
            key = SymmetricKey(data: Data(HMAC<SHA256>.authenticationCode(for: Data(part.utf8), using: key)))
        }
        return Data(HMAC<SHA256>.authenticationCode(for: Data(stringToSign.utf8), using: key)).hex
    }

    /// The `Authorization` header value for a request whose `x-amz-date` header is `amzDate`.
    public func authorization(_ request: SigV4Request, amzDate: String) -> String {
        let canonical = canonicalRequest(request)
        let signature = signature(stringToSign: stringToSign(canonicalRequest: canonical, amzDate: amzDate), amzDate: amzDate)
        let signedHeaders = Self.canonicalHeaders(request.headers).signed
        return "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyID)/\(scope(amzDate)), "
            + "SignedHeaders=\(signedHeaders), Signature=\(signature)"
    }

    func scope(_ amzDate: String) -> String {
        "\(amzDate.prefix(8))/\(region)/\(service)/aws4_request"
    }

    static func canonicalHeaders(_ headers: [(name: String, value: String)]) -> (canonical: String, signed: String) {
        var merged: [String: [String]] = [:]
        for (name, value) in headers {
            let trimmed = value.trimmingCharacters(in: .whitespaces)
                .split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
            merged[name.lowercased(), default: []].append(trimmed)
        }
        let names = merged.keys.sorted()
        let canonical = names.map { "\($0):\(merged[$0]!.joined(separator: ","))\n" }.joined()
        return (canonical, names.joined(separator: ";"))
    }

    /// RFC 3986 encoding of everything but unreserved characters (`/` too unless `keepSlash`).
    public static func uriEncode(_ text: String, keepSlash: Bool = false) -> String {
        var result = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."),
                 UInt8(ascii: "~"):
                result.unicodeScalars.append(Unicode.Scalar(byte))
            case UInt8(ascii: "/") where keepSlash:
                result.append("/")
            default:
                result += String(format: "%%%02X", byte)
            }
        }
        return result
    }
}

extension Sequence where Element == UInt8 {
    var hex: String { map { String(format: "%02x", $0) }.joined() }
}
