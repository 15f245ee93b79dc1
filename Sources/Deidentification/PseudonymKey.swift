// The secret key behind every pseudonym. It never lives in a profile: a file or an environment variable.
import Crypto
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The HMAC key of the pseudonymiser: at least 32 bytes, read from a file or an environment variable.
public struct PseudonymKey: Sendable {
    /// The minimum key length in bytes.
    public static let minimumLength = 32
    /// Environment variable naming a key file.
    public static let fileVariable = "DICOM_ETL_KEY_FILE"
    /// Environment variable holding the key itself (its UTF-8 bytes).
    public static let valueVariable = "DICOM_ETL_KEY"

    /// The key bytes (SymmetricKey is not Sendable; one is made per use).
    let bytes: [UInt8]
    var symmetricKey: SymmetricKey { SymmetricKey(data: bytes) }

    /// A key from raw bytes; throws `key_too_short` below 32 bytes.
    public init(bytes: [UInt8]) throws {
        guard bytes.count >= Self.minimumLength else {
            throw DeidentificationError(.keyTooShort, detail: "at least \(Self.minimumLength) bytes are required")
        }
        self.bytes = bytes
    }

    /// A key read from a file: its bytes, without one trailing newline (so `openssl rand -hex 32 > k` works).
    public init(contentsOfFile path: String) throws {
        guard let bytes = Self.readFile(path) else {
            throw DeidentificationError(.keyUnreadable, detail: "the key file could not be read")
        }
        var trimmed = bytes
        if trimmed.last == 0x0A { trimmed.removeLast() }
        if trimmed.last == 0x0D { trimmed.removeLast() }
        try self.init(bytes: trimmed)
    }

    /// The key from the environment: DICOM_ETL_KEY_FILE (a path) first, then DICOM_ETL_KEY (the key).
    public static func fromEnvironment(_ environment: [String: String]) throws -> PseudonymKey {
        if let path = environment[fileVariable], !path.isEmpty { return try PseudonymKey(contentsOfFile: path) }
        if let value = environment[valueVariable], !value.isEmpty { return try PseudonymKey(bytes: Array(value.utf8)) }
        throw DeidentificationError(.keyMissing, detail: "set \(fileVariable) or \(valueVariable)")
    }

    /// A short non-secret fingerprint of the key (first 8 bytes of SHA-256 over an HMAC of a constant),
    /// to tell keys apart in logs and the vault without revealing them.
    public var fingerprint: String {
        let mac = HMAC<SHA256>.authenticationCode(for: Array("fingerprint".utf8), using: symmetricKey)
        return Array(mac).prefix(8).map { String($0, radix: 16).leftPadded(2) }.joined()
    }

    private static func readFile(_ path: String) -> [UInt8]? {
        guard let f = fopen(path, "rb") else { return nil }
        defer { fclose(f) }
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = fread(&buffer, 1, buffer.count, f)
            if n > 0 { out.append(contentsOf: buffer[0..<n]) }
            if n < buffer.count { break }
            if out.count > 1 << 20 { return nil }
        }
        return ferror(f) == 0 ? out : nil
    }
}

extension String {
    func leftPadded(_ width: Int, with pad: Character = "0") -> String {
        count >= width ? self : String(repeating: pad, count: width - count) + self
    }
}
