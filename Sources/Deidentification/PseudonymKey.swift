// The secret key behind every pseudonym. It never lives in a profile: a file or an environment variable.
import Crypto
import Secrets

/// The HMAC key of the pseudonymiser: at least 32 bytes, read from a file or an environment variable.
public struct PseudonymKey: Sendable, CustomStringConvertible {
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
    /// The file must be readable by its owner alone (`chmod 600`; see `SecretFile`), else `key_file_insecure`.
    /// - Parameters:
    ///   - path: the key file.
    ///   - setting: what named the file, for the error text (`--key-file`, `DICOM_ETL_KEY_FILE`, `key_file`).
    public init(contentsOfFile path: String, setting: String = PseudonymKey.fileVariable) throws {
        var bytes: [UInt8]
        do {
            bytes = try SecretFile.read(path, setting: setting)
        } catch {
            let code: DeidentificationError.Code = error.code == .groupOrOthersAccess || error.code == .wrongOwner ? .keyFileInsecure : .keyUnreadable
            throw DeidentificationError(code, detail: error.description)
        }
        if bytes.last == 0x0A { bytes.removeLast() }
        if bytes.last == 0x0D { bytes.removeLast() }
        try self.init(bytes: bytes)
    }

    /// The key from the environment: DICOM_ETL_KEY_FILE (a path) first, then DICOM_ETL_KEY (the key).
    public static func fromEnvironment(_ environment: [String: String]) throws -> PseudonymKey {
        if let path = environment[fileVariable], !path.isEmpty { return try PseudonymKey(contentsOfFile: path, setting: fileVariable) }
        if let value = environment[valueVariable], !value.isEmpty { return try PseudonymKey(bytes: Array(value.utf8)) }
        throw DeidentificationError(.keyMissing, detail: "set \(fileVariable) or \(valueVariable)")
    }

    /// The fingerprint only: printing a key never prints the key.
    public var description: String { "PseudonymKey(fingerprint: \(fingerprint))" }

    /// A short non-secret fingerprint of the key (first 8 bytes of SHA-256 over an HMAC of a constant),
    /// to tell keys apart in logs and the vault without revealing them.
    public var fingerprint: String {
        let mac = HMAC<SHA256>.authenticationCode(for: Array("fingerprint".utf8), using: symmetricKey)
        return Array(mac).prefix(8).map { String($0, radix: 16).leftPadded(2) }.joined()
    }
}

extension String {
    func leftPadded(_ width: Int, with pad: Character = "0") -> String {
        count >= width ? self : String(repeating: pad, count: width - count) + self
    }
}
