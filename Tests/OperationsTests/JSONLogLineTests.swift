// The JSON log handler's lines: one object each, whatever the message and metadata hold.
import Foundation
import JSONText
import Logging
import Operations
import Synchronization
import Testing

@Suite struct JSONLogLineTests {
    final class Lines: Sendable {
        private let lines = Mutex<[String]>([])
        func append(_ line: String) { lines.withLock { $0.append(line) } }
        var all: [String] { lines.withLock { $0 } }
    }

    private func logger(_ lines: Lines, level: Logger.Level = .info) -> Logger {
        Logger(label: "ops \"test\"") { JSONLogHandler(label: $0, level: level, sink: JSONLogSink { lines.append($0) }) }
    }

    private func object(_ line: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
    }

    @Test func everyCharacterSurvivesTheRoundTrip() throws {
        let lines = Lines()
        // Quotes, backslashes, every C0 control, DEL, non-ASCII letters and a character outside the BMP.
        let controls = String(String.UnicodeScalarView((0..<0x20).compactMap(Unicode.Scalar.init)))
        let message = "a \"quoted\" \\ path\(controls)\u{7F} Zürich 東京 🩻 end"
        logger(lines).warning("\(message)", metadata: ["detail": .string(message)])
        let line = try #require(lines.all.first)
        #expect(line.filter { $0 == "\n" }.count == 1 && line.hasSuffix("}\n"))   // the only newline ends the line
        #expect(!line.utf8.dropLast().contains { $0 < 0x20 || $0 == 0x7F })     // no raw control byte
        let decoded = try object(line)
        #expect(decoded["message"] as? String == message)
        #expect(decoded["detail"] as? String == message)
        #expect(decoded["label"] as? String == "ops \"test\"")
        #expect(decoded["level"] as? String == "warning")
    }

    @Test func metadataKeepsItsJSONTypes() throws {
        let lines = Lines()
        var logger = logger(lines, level: .debug)
        logger[metadataKey: "component"] = "worker"
        logger.debug("batch", metadata: [
            "count": .stringConvertible(12), "ratio": .stringConvertible(0.5), "ok": .stringConvertible(true),
            "ids": .array([.string("a"), .stringConvertible(2)]), "nested": .dictionary(["k": .string("v\n")]),
            "message": .string("metadata cannot replace the message"),
        ])
        logger.trace("below the level")
        #expect(lines.all.count == 1)
        let decoded = try object(try #require(lines.all.first))
        #expect(decoded["message"] as? String == "batch")
        #expect(decoded["component"] as? String == "worker")
        #expect(decoded["count"] as? Int == 12)
        #expect(decoded["ratio"] as? Double == 0.5)
        #expect(decoded["ok"] as? Bool == true)
        #expect((decoded["ids"] as? [Any])?.count == 2)
        #expect((decoded["nested"] as? [String: String])?["k"] == "v\n")
        let time = try #require(decoded["time"] as? String)
        #expect(time.count == 24 && time.hasSuffix("Z"))   // 2026-12-05T13:45:00.123Z
    }

    @Test func nulIsEscapedOrDroppedForPostgreSQL() throws {
        var escaped = "", dropped = ""
        JSONText.appendQuoted("a\u{0}b\u{1F}c", to: &escaped)
        JSONText.appendQuoted("a\u{0}b\u{1F}c", to: &dropped, droppingNUL: true)
        #expect(escaped == #""a\u0000b\u001fc""#)
        #expect(dropped == #""ab\u001fc""#)
        let decoded = try JSONSerialization.jsonObject(with: Data(escaped.utf8), options: .fragmentsAllowed) as? String
        #expect(decoded == "a\u{0}b\u{1F}c")
    }
}
