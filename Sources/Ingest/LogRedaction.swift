// What may appear in logs and reason files: path hashes, never paths or DICOM values.
import CodedErrors
import Crypto
import DICOM
#if canImport(Glibc)
import Glibc
#endif
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

/// A swift-log handler writing one JSON object per line: `time`, `level`, `label`, `message`, then
/// the metadata. Log only path hashes and reasons (see `LogRedaction`); this handler does not guess.
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String
    private let sink: JSONLogSink

    /// - Parameters:
    ///   - label: the logger's label.
    ///   - level: minimum level.
    ///   - sink: where lines go (standard error by default).
    public init(label: String, level: Logger.Level = .info, sink: JSONLogSink = .standardError, metadataProvider: Logger.MetadataProvider? = nil) {
        self.label = label
        self.logLevel = level
        self.sink = sink
        self.metadataProvider = metadataProvider
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        var line = "{\"time\":"
        Self.appendString(Self.timestamp(), to: &line)
        line += ",\"level\":"
        Self.appendString(event.level.rawValue, to: &line)
        line += ",\"label\":"
        Self.appendString(label, to: &line)
        line += ",\"message\":"
        Self.appendString(event.message.description, to: &line)
        for key in merged.keys.sorted() where !["time", "level", "label", "message"].contains(key) {
            line += ","
            Self.appendString(key, to: &line)
            line += ":"
            Self.appendValue(merged[key]!, to: &line)
        }
        line += "}\n"
        sink.write(line)
    }

    static func appendValue(_ value: Logger.Metadata.Value, to line: inout String) {
        switch value {
        case .string(let string): appendString(string, to: &line)
        case .stringConvertible(let convertible):
            if let number = convertible as? any BinaryInteger {
                line += String(describing: number)
            } else if let number = convertible as? Double, number.isFinite {
                line += String(number)
            } else if let bool = convertible as? Bool {
                line += bool ? "true" : "false"
            } else {
                appendString(convertible.description, to: &line)
            }
        case .array(let values):
            line += "["
            for (index, element) in values.enumerated() {
                if index > 0 { line += "," }
                appendValue(element, to: &line)
            }
            line += "]"
        case .dictionary(let dictionary):
            line += "{"
            for (index, key) in dictionary.keys.sorted().enumerated() {
                if index > 0 { line += "," }
                appendString(key, to: &line)
                line += ":"
                appendValue(dictionary[key]!, to: &line)
            }
            line += "}"
        }
    }

    static func appendString(_ string: String, to line: inout String) {
        line += DicomJSON.quoted(string)
    }

    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = now.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        return String(
            format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday),
            Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec), Int(now.tv_nsec / 1_000_000))
    }
}

/// Where `JSONLogHandler` writes: a file descriptor (whole lines, one `write` each) or a closure.
public struct JSONLogSink: Sendable {
    let write: @Sendable (String) -> Void

    public init(_ write: @escaping @Sendable (String) -> Void) { self.write = write }

    /// Standard error.
    public static let standardError = JSONLogSink { line in
        var line = line
        line.withUTF8 { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = Glibc.write(2, bytes.baseAddress! + offset, bytes.count - offset)
                if written <= 0 { if written < 0 && errno == EINTR { continue }; return }
                offset += written
            }
        }
    }
}
