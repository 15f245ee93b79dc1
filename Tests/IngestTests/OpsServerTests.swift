// Tests of the operations HTTP server on a free port, over a plain socket, and of the JSON log handler.
#if canImport(Glibc)
import Glibc
#endif
import Foundation
@testable import Ingest
import Logging
import Operations
import Prometheus
import ServiceLifecycle
import TestSupport
import Testing

/// GET over a blocking TCP socket (a test-only client: status code and body).
func httpGet(port: Int, path: String) throws -> (Int, String) {
    let fd = try connectToLoopback(port: port)
    defer { close(fd) }
    let request = Array("GET \(path) HTTP/1.1\r\nHost: localhost\r\n\r\n".utf8)
    _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
    var response: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65_536)
    while true {
        let got = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if got <= 0 { break }
        response += buffer[0..<got]
    }
    let text = String(decoding: response, as: UTF8.self)
    let statusLine = text.split(separator: "\r\n", maxSplits: 1).first ?? ""
    let status = Int(statusLine.split(separator: " ").dropFirst().first ?? "") ?? 0
    let body = text.components(separatedBy: "\r\n\r\n").dropFirst().joined(separator: "\r\n\r\n")
    return (status, body)
}

final class Flag: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Bool
    init(_ value: Bool) { self.value = value }
    func get() -> Bool { lock.withLock { value } }
    func set(_ new: Bool) { lock.withLock { value = new } }
}

@Suite struct OpsServerTests {
    @Test func servesMetricsHealthAndReadiness() async throws {
        let (metrics, registry) = makeMetrics()
        metrics.filesSeen.increment(by: 3)
        metrics.quarantined(PipelineFailure(stage: .sandbox, reason: "process_crashed"))
        metrics.recordStage(.parse, duration: .milliseconds(5))
        metrics.backlog.record(17)
        let ready = Flag(false)
        let server = OpsServer(host: "127.0.0.1", port: 0, registry: registry, readiness: { ready.get() }, logger: testLogger)
        let group = ServiceGroup(services: [server], logger: testLogger)
        let running = Task { try await group.run() }
        let port = try #require(await server.boundPort())
        #expect(port > 0)

        let (metricsStatus, metricsBody) = try httpGet(port: port, path: "/metrics")
        #expect(metricsStatus == 200)
        #expect(metricsBody.contains("dicom_etl_files_seen_total 3"))
        #expect(metricsBody.contains(#"dicom_etl_files_quarantined_total{stage="sandbox",reason="process_crashed"} 1"#))
        #expect(metricsBody.contains(#"dicom_etl_stage_duration_seconds_count{stage="parse"} 1"#))
        #expect(metricsBody.contains("dicom_etl_backlog_files 17"))

        #expect(try httpGet(port: port, path: "/healthz").0 == 200)
        #expect(try httpGet(port: port, path: "/readyz").0 == 503)
        ready.set(true)
        #expect(try httpGet(port: port, path: "/readyz") == (200, "ready\n"))
        #expect(try httpGet(port: port, path: "/nope").0 == 404)

        await group.triggerGracefulShutdown()
        try await running.value
        #expect(await server.boundPort() == nil)   // stopped and unbound
    }
}

@Suite struct JSONLogHandlerTests {
    final class Lines: @unchecked Sendable {
        private let lock = NSLock()
        private var lines: [String] = []
        func append(_ line: String) { lock.withLock { lines.append(line) } }
        var all: [String] { lock.withLock { lines } }
    }

    @Test func writesOneJSONObjectPerLine() throws {
        let lines = Lines()
        var logger = Logger(label: "test") { JSONLogHandler(label: $0, level: .info, sink: JSONLogSink { lines.append($0) }) }
        logger[metadataKey: "component"] = "watcher"
        let file = makeFile("/drop/Doe^John/IM1.dcm", root: "/drop", size: 1234)
        logger.info("file \"quarantined\"\n", metadata: LogRedaction.metadata(for: file).merging(["n": .stringConvertible(5)]) { $1 })
        logger.debug("below the level")
        #expect(lines.all.count == 1)
        let line = try #require(lines.all.first)
        #expect(line.hasSuffix("}\n"))
        #expect(line.filter { $0 == "\n" }.count == 1)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(object["level"] as? String == "info")
        #expect(object["label"] as? String == "test")
        #expect(object["message"] as? String == "file \"quarantined\"\n")
        #expect(object["component"] as? String == "watcher")
        #expect(object["path_hash"] as? String == file.pathHash)
        #expect(object["size"] as? Int == 1234)
        #expect(object["n"] as? Int == 5)
        #expect((object["time"] as? String)?.hasSuffix("Z") == true)
        #expect(!line.contains("Doe"))
    }

    @Test func pathHashesAreKeyedAndStable() {
        let hasher = PathHasher(secret: Array("k1".utf8))
        #expect(hasher.hash("a/b.dcm") == hasher.hash("a/b.dcm"))
        #expect(hasher.hash("a/b.dcm").count == 32)
        #expect(hasher.hash("a/b.dcm") != hasher.hash("a/c.dcm"))
        #expect(hasher.hash("a/b.dcm") != PathHasher(secret: Array("k2".utf8)).hash("a/b.dcm"))
    }

    @Test func errorMetadataCarriesReasonsOnly() {
        let metadata = LogRedaction.metadata(for: PipelineFailure(stage: .parse, reason: "truncated"))
        #expect(metadata["reason"] == .string("truncated"))
        #expect(metadata["stage"] == .string("parse"))
        #expect(LogRedaction.metadata(for: PipelineOutage(.storeUnavailable)) == ["reason": .string("store_unavailable")])
        #expect(LogRedaction.metadata(for: FileDigest.Failure.changed) == ["reason": .string("file_changed")])
        struct Foreign: Error { let secret = "Doe^John" }
        let foreign = LogRedaction.metadata(for: Foreign())
        #expect(foreign["error_type"] != nil)
        #expect(!"\(foreign)".contains("Doe"))
    }
}
