// What may appear in logs and reason files: path hashes, never paths or DICOM values.
import CodedErrors
import Crypto
import Foundation
import Logging
import Sandbox

/// Keyed hash of a source path. The same path and key always give the same hash, so hospital IT can
/// find a file's log lines by hashing its path with `dicom-etl` — outsiders without the key cannot.
public struct PathHasher: Sendable {
    private let key: [UInt8]

    /// - Parameter secret: key material (e.g. the pseudonymisation key file's bytes); a separate key is
    ///   derived from it so path hashes never reveal pseudonyms.
    public init(secret: [UInt8]) {
        let derived = HKDF<SHA256>.deriveKey(
            inputKeyMaterial: SymmetricKey(data: secret), info: Array("dicom-etl path hash v1".utf8), outputByteCount: 32)
        key = derived.withUnsafeBytes { Array($0) }
    }

    /// Hex digest (32 characters) of the path, relative to the drop folder.
    public func hash(_ relativePath: String) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: Array(relativePath.utf8), using: SymmetricKey(data: key))
        return mac.prefix(16).map { String(format: "%02x", $0) }.joined()
    }
}

/// The logging rules, in one place: metadata keys that are safe to log and how to render a file.
public enum LogRedaction {
    /// Metadata key of a file's path hash.
    public static let pathHashKey = "path_hash"

    /// Metadata for a file: its path hash and size, never its path.
    public static func metadata(for file: DiscoveredFile) -> Logger.Metadata {
        [pathHashKey: .string(file.pathHash), "size": .stringConvertible(file.size)]
    }

    /// Metadata for an error: its machine-readable reason only. Errors of this project carry generic
    /// descriptions; errors of other libraries may not, so only their type name is logged.
    public static func metadata(for error: any Error) -> Logger.Metadata {
        if let failure = error as? PipelineFailure {
            return ["stage": .string(failure.stage.rawValue), "reason": .string(failure.reason)]
        }
        if let coded = error as? any CodedError {
            return ["reason": .string(coded.reason)]
        }
        return ["error_type": .string(String(reflecting: type(of: error)))]
    }
}
