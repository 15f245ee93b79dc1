// AccessTokens: bearer tokens mapped to roles. The tokens file holds only SHA-256 hashes, one token a line:
//   sha256:<64 hex digits> <role> <name>
// `#` starts a comment. A token is 32 random bytes, base64url: `dicom-etl token` makes one and prints its line.
import CodedErrors
import Crypto
import Foundation

/// What a token may do. A route names the roles it admits.
public enum Role: String, Sendable, Hashable, CaseIterable, Codable {
    /// De-identified archive: QIDO-RS, WADO-RS, tensors.
    case analyst
    /// The results (original identifiers, audited) and the de-identified archive.
    case clinician
    /// Network ingress (STOW-RS).
    case uploader
    /// The audit of identified reads.
    case `operator`
}

/// The holder of a token.
public struct Principal: Sendable, Hashable {
    /// The token's name in the tokens file (a person or a system, e.g. `ehr-bridge`).
    public var name: String
    public var role: Role

    public init(name: String, role: Role) {
        self.name = name
        self.role = role
    }
}

/// Why the tokens file was refused. Names the line, never its content.
public struct AccessTokensError: CodedError, Hashable {
    /// Machine-readable reason.
    public struct Code: ErrorCode {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        /// The file cannot be read.
        public static let unreadable = Code(rawValue: "unreadable")
        /// A line is not `sha256:<64 hex digits> <role> <name>`.
        public static let malformedLine = Code(rawValue: "malformed_line")
        /// A line names a role that does not exist.
        public static let unknownRole = Code(rawValue: "unknown_role")
        /// Two lines hold the same token hash.
        public static let duplicateToken = Code(rawValue: "duplicate_token")
    }

    public let code: Code
    /// The offending line (1-based), when the fault is in one.
    public let line: Int?

    init(_ code: Code, line: Int? = nil) {
        self.code = code
        self.line = line
    }

    public var description: String { "tokens file refused: \(code.rawValue)" + (line.map { " (line \($0))" } ?? "") }
}

/// The configured tokens, by hash.
public struct AccessTokens: Sendable {
    private let principals: [String: Principal]

    /// The number of tokens.
    public var count: Int { principals.count }

    /// - Parameter principals: principals by the hex SHA-256 of their token.
    public init(hashes principals: [String: Principal]) {
        self.principals = principals
    }

    /// Parses the text of a tokens file.
    public init(parsing text: String) throws(AccessTokensError) {
        var principals: [String: Principal] = [:]
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
            if fields.isEmpty { continue }
            guard fields.count == 3, fields[0].hasPrefix("sha256:") else { throw AccessTokensError(.malformedLine, line: index + 1) }
            let hash = fields[0].dropFirst("sha256:".count).lowercased()
            guard hash.count == 64, hash.allSatisfy(\.isHexDigit) else { throw AccessTokensError(.malformedLine, line: index + 1) }
            guard let role = Role(rawValue: String(fields[1])) else { throw AccessTokensError(.unknownRole, line: index + 1) }
            guard principals[hash] == nil else { throw AccessTokensError(.duplicateToken, line: index + 1) }
            principals[hash] = Principal(name: String(fields[2]), role: role)
        }
        self.principals = principals
    }

    /// Reads a tokens file.
    public init(contentsOfFile path: String) throws(AccessTokensError) {
        guard let data = FileManager.default.contents(atPath: path) else { throw AccessTokensError(.unreadable) }
        try self.init(parsing: String(decoding: data, as: UTF8.self))
    }

    /// The holder of `token`, or nil.
    public func principal(for token: String) -> Principal? {
        principals[Self.hash(token)]
    }

    /// Hex SHA-256 of a token as the file records it.
    public static func hash(_ token: String) -> String {
        SHA256.hash(data: Data(token.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// A new random token (32 bytes, base64url without padding) and its line for the tokens file.
    public static func generate(role: Role, name: String) -> (token: String, line: String) {
        let bytes = (0..<32).map { _ in UInt8.random(in: .min ... .max) }
        let token = Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
        return (token, "sha256:\(hash(token)) \(role.rawValue) \(name)")
    }
}
