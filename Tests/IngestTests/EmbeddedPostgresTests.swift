// Tests of EmbeddedPostgres: a real private cluster initialised in a temporary data folder, reused
// while running, stopped, and restarted with its data kept.
import Foundation
import Ingest
import Logging
import Testing

@Suite struct EmbeddedPostgresTests {
    static var binDirectory: String? {
        ProcessInfo.processInfo.environment["DICOM_ETL_TEST_PG_BIN"] ?? EmbeddedPostgres.defaultBinDirectory()
    }

    /// Runs psql on the endpoint and returns its trimmed output, or nil when it fails.
    static func psql(_ endpoint: EmbeddedPostgres.Endpoint, bin: String, _ sql: String) -> String? {
        let process = Process()
        let psql = (bin as NSString).appendingPathComponent("psql")
        if geteuid() == 0 {
            process.executableURL = URL(fileURLWithPath: "/usr/sbin/runuser")
            process.arguments = ["-u", "postgres", "--", psql]
        } else {
            process.executableURL = URL(fileURLWithPath: psql)
            process.arguments = []
        }
        process.arguments! += ["-h", endpoint.socketDirectory, "-p", "\(endpoint.port)", "-U", endpoint.user, "-d", endpoint.database, "-tAc", sql]
        process.currentDirectoryURL = URL(fileURLWithPath: "/")
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return nil }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { return nil }
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test(.enabled(if: binDirectory != nil)) func initialisesStartsReusesStopsAndKeepsData() async throws {
        let bin = try #require(Self.binDirectory)
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("epg-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let postgres = try EmbeddedPostgres(directory: folder, binDirectory: bin, logger: Logger(label: "test"))
        let endpoint = try await postgres.start()
        #expect(endpoint.database == "dicom_etl")
        #expect(endpoint.url.hasPrefix("postgres://postgres@/dicom_etl?host=/"))
        #expect(Self.psql(endpoint, bin: bin, "CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)") != nil)

        // A second start (a daemon restarted while the server kept running) reuses the server.
        let again = try await EmbeddedPostgres(directory: folder, binDirectory: bin, logger: Logger(label: "test")).start()
        #expect(again == endpoint)
        #expect(Self.psql(again, bin: bin, "SELECT v FROM kept") == "42")

        await postgres.stop()
        #expect(Self.psql(endpoint, bin: bin, "SELECT 1") == nil)

        let restarted = try await postgres.start()
        #expect(Self.psql(restarted, bin: bin, "SELECT v FROM kept") == "42")
        // Only the unix socket: no TCP listener configured.
        #expect(Self.psql(restarted, bin: bin, "SHOW listen_addresses") == "")
        await postgres.stop()
    }

    @Test func missingBinariesAreATypedError() {
        #expect(throws: EmbeddedPostgresError(.binariesMissing)) {
            _ = try EmbeddedPostgres(directory: "/tmp/unused", binDirectory: "/nonexistent/bin", logger: Logger(label: "test"))
        }
    }
}
