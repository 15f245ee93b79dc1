// JSON log lines: one object per line on standard error, for every long-running command. What goes into a
// line is the caller's choice; the daemon logs path hashes and machine-readable reasons only.
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import JSONText
import Logging

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
        JSONText.appendQuoted(string, to: &line)
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

/// The log line format of a long-running command.
public enum LogFormat: String, Sendable, CaseIterable {
    /// One JSON object per line (`JSONLogHandler`).
    case json
    /// swift-log's plain text format.
    case text

    /// Sends every logger of the process to standard error in this format, at `level` and above. Call it once, at
    /// start, before any logger is made.
    public func bootstrap(level: Logger.Level) {
        switch self {
        case .json: LoggingSystem.bootstrap { JSONLogHandler(label: $0, level: level) }
        case .text:
            LoggingSystem.bootstrap {
                var handler = StreamLogHandler.standardError(label: $0)
                handler.logLevel = level
                return handler
            }
        }
    }
}
