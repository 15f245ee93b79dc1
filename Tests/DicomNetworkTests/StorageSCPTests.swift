// The Storage SCP in-process on loopback against real clients: DCMTK's echoscu and storescu (4 associations
// at once, TCP_NODELAY=1), pynetdicom as an independent SCU; refusals (unknown calling AE, wrong host, wrong
// called AE); an association cut mid-instance leaves nothing behind; a bounded fuzzer of mutated PDUs and
// command sets never takes the SCP down. Files come from the corpus' pydicom folder (DICOM_ETL_CORPUS), or
// from pydicom's own test files in the venv when the corpus is absent.
#if canImport(Glibc)
import Glibc
#endif
import DICOM
@testable import DicomNetwork
import Foundation
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import TestSupport
import Testing

/// An SCP running on a free loopback port with its drop folder in a temporary directory.
final class RunningSCP: Sendable {
    let drop: String
    let port: Int
    let group: ServiceGroup
    let task: Task<Void, any Error>
    let intake: DurableIntake

    init(allowed: [AllowedPeer] = [AllowedPeer(aeTitle: "TESTSCU", host: "127.0.0.1"), AllowedPeer(aeTitle: "STORESCU", host: nil)],
         maximumAssociations: Int = 32, minimumFreeBytes: UInt64 = 0, available: @escaping @Sendable () -> Bool = { true },
         idleTimeout: Duration = .seconds(60)) async throws {
        drop = FileManager.default.temporaryDirectory.appendingPathComponent("scp-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: drop, withIntermediateDirectories: true)
        intake = DurableIntake(dropFolder: drop, minimumFreeBytes: minimumFreeBytes, isAvailable: available)
        try intake.prepare()
        var configuration = StorageSCPConfiguration(
            host: "127.0.0.1", port: 0, aeTitle: "DICOM_ETL", allowedPeers: allowed, maximumAssociations: maximumAssociations)
        configuration.idleTimeout = idleTimeout
        let (stream, continuation) = AsyncStream.makeStream(of: Int.self)
        let scp = StorageSCP(
            configuration: configuration, intake: intake, metrics: NetworkMetrics(), logger: RunningSCP.logger,
            onListening: { continuation.yield($0) })
        group = ServiceGroup(configuration: .init(services: [scp], logger: Logger(label: "scp-test", factory: { _ in SwiftLogNoOpLogHandler() })))
        let group = self.group
        task = Task { try await group.run() }
        var iterator = stream.makeAsyncIterator()
        port = try #require(await iterator.next())
    }

    /// Silent unless DICOM_ETL_SCP_TEST_LOG is set.
    static let logger: Logger = {
        guard ProcessInfo.processInfo.environment["DICOM_ETL_SCP_TEST_LOG"] != nil else {
            return Logger(label: "scp-test", factory: { _ in SwiftLogNoOpLogHandler() })
        }
        var logger = Logger(label: "scp-test", factory: { StreamLogHandler.standardError(label: $0) })
        logger.logLevel = .trace
        return logger
    }()

    func stop() async {
        await group.triggerGracefulShutdown()
        _ = try? await task.value
        try? FileManager.default.removeItem(atPath: drop)
    }

    /// Names in `<drop>/network` (hidden temporaries included).
    var received: [String] { ((try? FileManager.default.contentsOfDirectory(atPath: drop + "/network")) ?? []).sorted() }
}

/// Runs a command on a thread of its own (waiting for a client must not hold the cooperative threads the
/// in-process SCP runs on); returns its exit status and combined output.
@discardableResult
func run(_ executable: String, _ arguments: [String], environment extra: [String: String] = [:]) async throws -> (status: Int32, output: String) {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread {
            continuation.resume(with: Result { try runBlocking(executable, arguments, environment: extra) })
        }
    }
}

func runBlocking(_ executable: String, _ arguments: [String], environment extra: [String: String] = [:]) throws -> (status: Int32, output: String) {
    try runInterleaved(executable, arguments, environment: ProcessInfo.processInfo.environment.merging(extra) { $1 })
}

enum Corpus {
    static let environment = ProcessInfo.processInfo.environment
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static var python: String { environment["DICOM_ETL_PYTHON"] ?? packageRoot.path + "/.venv/bin/python" }

    /// Readable DICOM files with a SOP Instance UID: path → (SOP class, SOP instance, transfer syntax).
    static let files: [(path: String, sopClass: String, sopInstance: String, syntax: String)] = {
        let shared = TestEnvironment.corpus + "/pydicom"
        let root = FileManager.default.fileExists(atPath: shared) ? shared : TestEnvironment.pydicomTestFiles() ?? ""
        var found: [(String, String, String, String)] = []
        guard let walker = FileManager.default.enumerator(atPath: root) else { return [] }
        var seen = Set<String>()
        while let relative = walker.nextObject() as? String {
            let path = root + "/" + relative
            guard (walker.fileAttributes?[.type] as? FileAttributeType) == .typeRegular,
                  let bytes = FileManager.default.contents(atPath: path), let file = try? DicomFile.open(bytes: Array(bytes)),
                  file.hasFileMeta,
                  let sopClass = file.dataset.string(.sopClassUID), let instance = file.dataset.string(.sopInstanceUID),
                  sopClass.hasPrefix("1.2.840.10008.5.1.4.1.1."), !seen.contains(instance),
                  let syntax = file.metaInformation.string(.transferSyntaxUID),
                  AcceptedSyntaxes.transferSyntaxes.contains(syntax), storescuOption(transferSyntax: syntax) != nil
            else { continue }
            seen.insert(instance)
            found.append((path, sopClass, instance, syntax))
        }
        return found.sorted { $0.0 < $1.0 }
    }()

}

@Suite(.serialized) struct StorageSCPTests {
    static let dcmtk = FileManager.default.fileExists(atPath: "/usr/bin/storescu")

    /// The data sets received: SOP Instance UID → file, each a Part-10 file that parses.
    static func receivedInstances(_ scp: RunningSCP) throws -> [String: String] {
        var instances: [String: String] = [:]
        for name in scp.received {
            #expect(!name.hasPrefix("."), "a temporary was left behind")
            let file = try DicomFile.open(bytes: Array(try #require(FileManager.default.contents(atPath: scp.drop + "/network/" + name))))
            let instance = try #require(file.dataset.string(.sopInstanceUID))
            #expect(file.metaInformation.string(.mediaStorageSOPInstanceUID) == instance)
            #expect(instances[instance] == nil)
            instances[instance] = name
        }
        return instances
    }

    @Test(.enabled(if: dcmtk)) func echoscuIsAnswered() async throws {
        let scp = try await RunningSCP()
        defer { Task { await scp.stop() } }
        let echo = try await run("/usr/bin/echoscu", ["-aet", "TESTSCU", "-aec", "DICOM_ETL", "127.0.0.1", String(scp.port)])
        #expect(echo.status == 0, "\(echo.output)")
        #expect(scp.received.isEmpty)
        await scp.stop()
    }

    @Test(.enabled(if: dcmtk)) func storescuOverFourAssociationsStoresEveryInstanceOnce() async throws {
        let files = Corpus.files
        try #require(files.count >= 8, "no corpus files")
        let scp = try await RunningSCP(idleTimeout: .seconds(5))
        let start = ContinuousClock.now
        // Four storescu processes at once, each its own association, files dealt round-robin.
        let results = try await withThrowingTaskGroup(of: (Int32, String).self) { group in
            for lane in 0..<4 {
                let mine = files.enumerated().filter { $0.offset % 4 == lane }.map(\.element)
                group.addTask {
                    var status: Int32 = 0, output = ""
                    for (option, group) in Dictionary(grouping: mine, by: { storescuOption(transferSyntax: $0.syntax)! }) {
                        let result = try await run(
                            "/usr/bin/storescu", ["-v", "-aet", "STORESCU", "-aec", "DICOM_ETL", "-R"] + (option.map { [$0] } ?? [])
                                + ["127.0.0.1", String(scp.port)] + group.map(\.path), environment: ["TCP_NODELAY": "1"])
                        if result.status != 0 { status = result.status }
                        output += result.output
                    }
                    return (status, output)
                }
            }
            var results: [(Int32, String)] = []
            for try await result in group { results.append(result) }
            return results
        }
        let elapsed = ContinuousClock.now - start
        for (status, output) in results { #expect(status == 0, "\(output.suffix(2000))") }
        let received = try Self.receivedInstances(scp)
        #expect(Set(received.keys) == Set(files.map(\.sopInstance)))
        print("storescu ×4 associations: \(received.count) of \(files.count) instances durable in \(elapsed)")
        // The data set as sent follows the file meta the SCP wrote: byte-identical to the source's data set.
        for entry in files.prefix(10) {
            guard let name = received[entry.sopInstance] else { continue }
            let original = try DicomFile.open(bytes: Array(try #require(FileManager.default.contents(atPath: entry.path))))
            let stored = try DicomFile.open(bytes: Array(try #require(FileManager.default.contents(atPath: scp.drop + "/network/" + name))))
            #expect(stored.metaInformation.string(.transferSyntaxUID) == original.metaInformation.string(.transferSyntaxUID))
            #expect(stored.dataset.string(.sopClassUID) == entry.sopClass)
        }
        await scp.stop()
    }

    @Test func pynetdicomStoresAndEchoes() async throws {
        let check = try await run(Corpus.python, ["-c", "import pynetdicom"])
        try #require(check.status == 0, "pynetdicom is not installed in the venv")
        let files = Array(Corpus.files.prefix(12))
        try #require(!files.isEmpty)
        let scp = try await RunningSCP()
        let script = """
            import sys
            from pydicom import dcmread
            from pynetdicom import AE, StoragePresentationContexts
            from pynetdicom.sop_class import Verification
            ae = AE(ae_title="TESTSCU")
            datasets = [dcmread(p) for p in sys.argv[2:]]
            for ds in datasets:
                ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
            ae.add_requested_context(Verification)
            assoc = ae.associate("127.0.0.1", int(sys.argv[1]), ae_title="DICOM_ETL")
            assert assoc.is_established, "not established"
            assert assoc.send_c_echo().Status == 0
            bad = 0
            for ds in datasets:
                status = assoc.send_c_store(ds)
                if not status or status.Status != 0:
                    bad += 1
            assoc.release()
            print("failed", bad)
            sys.exit(1 if bad else 0)
            """
        let result = try await run(Corpus.python, ["-c", script, String(scp.port)] + files.map(\.path))
        #expect(result.status == 0, "\(result.output.suffix(2000))")
        let received = try Self.receivedInstances(scp)
        #expect(Set(received.keys) == Set(files.map(\.sopInstance)))
        await scp.stop()
    }

    @Test(.enabled(if: dcmtk)) func unknownCallersAreRejected() async throws {
        let scp = try await RunningSCP(allowed: [AllowedPeer(aeTitle: "TESTSCU", host: "127.0.0.1"), AllowedPeer(aeTitle: "FARAWAY", host: "10.9.9.9")])
        let unknown = try await run("/usr/bin/echoscu", ["-aet", "INTRUDER", "-aec", "DICOM_ETL", "127.0.0.1", String(scp.port)])
        #expect(unknown.status != 0)
        #expect(unknown.output.contains("Rejected") || unknown.output.contains("rejected"), "\(unknown.output)")
        let wrongHost = try await run("/usr/bin/echoscu", ["-aet", "FARAWAY", "-aec", "DICOM_ETL", "127.0.0.1", String(scp.port)])
        #expect(wrongHost.status != 0)
        let wrongCalled = try await run("/usr/bin/echoscu", ["-aet", "TESTSCU", "-aec", "SOMEONE", "127.0.0.1", String(scp.port)])
        #expect(wrongCalled.status != 0)
        let known = try await run("/usr/bin/echoscu", ["-aet", "TESTSCU", "-aec", "DICOM_ETL", "127.0.0.1", String(scp.port)])
        #expect(known.status == 0)
        await scp.stop()
    }

    @Test(.enabled(if: dcmtk)) func outageAndDiskFloorAnswerOutOfResources() async throws {
        let file = try #require(Corpus.files.first { $0.syntax == "1.2.840.10008.1.2.1" })
        let outage = try await RunningSCP(available: { false })
        let refused = try await run("/usr/bin/storescu", ["-v", "-aet", "STORESCU", "-aec", "DICOM_ETL", "-R", "127.0.0.1", String(outage.port), file.path])
        #expect(refused.output.contains("Refused: OutOfResources"), "\(refused.output)")
        #expect(outage.received.isEmpty)
        await outage.stop()
        let full = try await RunningSCP(minimumFreeBytes: UInt64.max / 2)
        let short = try await run("/usr/bin/storescu", ["-v", "-aet", "STORESCU", "-aec", "DICOM_ETL", "-R", "127.0.0.1", String(full.port), file.path])
        #expect(short.output.contains("Refused: OutOfResources"), "\(short.output)")
        #expect(full.received.isEmpty)
        await full.stop()
    }

    @Test func associationCutMidInstanceLeavesNothing() async throws {
        let scp = try await RunningSCP()
        for abort in [false, true] {
            let client = try RawClient(port: scp.port)
            try client.send(RawClient.associateRequest(calling: "TESTSCU"))
            let answer = try client.readPDU()
            #expect(answer.type == 0x02)
            try client.send(RawClient.pData(contextID: 1, command: true, last: true, RawClient.storeCommand()))
            try client.send(RawClient.pData(contextID: 1, command: false, last: false, [UInt8](repeating: 0x41, count: 4000)))
            // The temporary exists while the instance is incomplete.
            #expect(await eventually { scp.received.contains { $0.hasPrefix(".") } })
            if abort { try client.send([0x07, 0, 0, 0, 0, 4, 0, 0, 0, 0]) }
            client.close()
            #expect(await eventually { scp.received.isEmpty }, "\(scp.received)")
        }
        await scp.stop()
    }

    /// 32 senders that each open an association and trickle an instance's data: all are served at once, a 33rd
    /// is rejected (local limit), the process' resident memory grows by a bounded amount (each association
    /// buffers at most a few PDUs: the data goes to disk), and closing them leaves nothing behind.
    @Test func thirtyTwoSlowSendersStayBounded() async throws {
        let scp = try await RunningSCP(maximumAssociations: 32)
        let before = Self.residentKiB()
        let outcome: (accepted: Int, extraRejected: Bool, peakKiB: Int) = try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(with: Result {
                    var clients: [RawClient] = []
                    defer { clients.forEach { $0.close() } }
                    var accepted = 0
                    for _ in 0..<32 {
                        let client = try RawClient(port: scp.port)
                        clients.append(client)
                        try client.send(RawClient.associateRequest(calling: "TESTSCU"))
                        if try client.readPDU().type == 0x02 { accepted += 1 }
                        try client.send(RawClient.pData(contextID: 1, command: true, last: true, RawClient.storeCommand()))
                    }
                    let extra = try RawClient(port: scp.port)
                    defer { extra.close() }
                    try extra.send(RawClient.associateRequest(calling: "TESTSCU"))
                    let extraRejected = try extra.readPDU().type == 0x03
                    var peak = 0
                    let fragment = [UInt8](repeating: 0x20, count: 64 * 1024)
                    for _ in 0..<8 {
                        for client in clients { try client.send(RawClient.pData(contextID: 1, command: false, last: false, fragment)) }
                        Thread.sleep(forTimeInterval: 0.05)
                        peak = max(peak, StorageSCPTests.residentKiB())
                    }
                    return (accepted, extraRejected, peak)
                })
            }
        }
        #expect(outcome.accepted == 32)
        #expect(outcome.extraRejected)
        let growth = outcome.peakKiB - before
        print("32 slow senders: resident memory grew by \(growth) KiB (16 MiB of data in flight to disk)")
        #expect(growth < 96 * 1024)
        #expect(await eventually { scp.received.isEmpty }, "\(scp.received.count) files left")
        await scp.stop()
    }

    static func residentKiB() -> Int {
        let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
        return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
    }

    /// Mutated PDUs and command sets, bounded in count and time: every connection ends (answered, aborted
    /// or closed), and the SCP still answers C-ECHO afterwards.
    @Test func fuzzedPDUsNeverTakeTheSCPDown() async throws {
        let scp = try await RunningSCP(idleTimeout: .seconds(2))
        let cases = Int(ProcessInfo.processInfo.environment["DICOM_ETL_FUZZ_CASES"] ?? "") ?? 3000
        var generator = SplitMix64(seed: 0x5CB_D1C0)
        let deadline = ContinuousClock.now + .seconds(90)
        var ran = 0
        let valid = RawClient.associateRequest(calling: "TESTSCU")
        let command = RawClient.pData(contextID: 1, command: true, last: true, RawClient.storeCommand())
        let data = RawClient.pData(contextID: 1, command: false, last: true, [UInt8](repeating: 0, count: 64))
        while ran < cases && ContinuousClock.now < deadline {
            ran += 1
            let stream: [UInt8]
            switch generator.next() % 4 {
            case 0: stream = Self.mutate(valid, &generator)
            case 1: stream = valid + Self.mutate(command, &generator) + data
            case 2: stream = valid + command + Self.mutate(data, &generator)
            default: stream = (0..<Int(generator.next() % 64)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
            }
            let client = try RawClient(port: scp.port)
            try? client.send(stream)
            client.shutdownWrite()
            // The SCP must end the connection by itself (answer then close, abort, or idle timeout).
            let ended = client.drainUntilClosed(timeout: 5)
            #expect(ended, "case \(ran) did not end")
            client.close()
            if !ended { break }
        }
        print("fuzzer: \(ran) cases")
        let echo = try RawClient(port: scp.port)
        try echo.send(valid)
        #expect(try echo.readPDU().type == 0x02)
        echo.close()
        #expect(await eventually { !scp.received.contains { $0.hasPrefix(".") } })
        await scp.stop()
    }

    static func mutate(_ bytes: [UInt8], _ generator: inout SplitMix64) -> [UInt8] {
        var bytes = bytes
        let edits = 1 + Int(generator.next() % 4)
        for _ in 0..<edits where !bytes.isEmpty {
            let index = Int(generator.next() % UInt64(bytes.count))
            switch generator.next() % 4 {
            case 0: bytes[index] = UInt8(truncatingIfNeeded: generator.next())
            case 1: bytes[index] ^= 0xFF
            case 2: bytes = Array(bytes.prefix(index))
            default: bytes.insert(contentsOf: (0..<Int(generator.next() % 8)).map { _ in 0xFF }, at: index)
            }
        }
        return bytes
    }
}


func eventually(within seconds: Double = 10, _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(50))
    }
    return try await condition()
}

/// A blocking TCP client that writes raw bytes: the hostile side of the tests.
final class RawClient: @unchecked Sendable {
    let fd: Int32

    init(port: Int) throws {
        fd = try connectToLoopback(port: port)
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard written > 0 else { throw POSIXError(.EPIPE) }
            offset += written
        }
    }

    func readExactly(_ count: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var offset = 0
        while offset < count {
            let got = bytes.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + offset, count - offset, 0) }
            guard got > 0 else { throw POSIXError(.ECONNRESET) }
            offset += got
        }
        return bytes
    }

    func readPDU() throws -> (type: UInt8, body: [UInt8]) {
        let header = try readExactly(6)
        let length = Int(header[2]) << 24 | Int(header[3]) << 16 | Int(header[4]) << 8 | Int(header[5])
        return (header[0], try readExactly(length))
    }

    func shutdownWrite() { shutdown(fd, Int32(SHUT_WR)) }

    /// Reads until the peer closes; false if it is still open after `timeout` seconds.
    func drainUntilClosed(timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        var buffer = [UInt8](repeating: 0, count: 4096)
        while Date() < deadline {
            let got = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) { return true }
        }
        return false
    }

    func close() { Glibc.close(fd) }

    static func item(_ type: UInt8, _ body: [UInt8]) -> [UInt8] {
        [type, 0, UInt8(body.count >> 8), UInt8(body.count & 0xFF)] + body
    }

    static func ae(_ title: String) -> [UInt8] {
        Array(title.utf8) + [UInt8](repeating: 0x20, count: 16 - title.utf8.count)
    }

    static func pdu(_ type: UInt8, _ body: [UInt8]) -> [UInt8] {
        let n = UInt32(body.count)
        return [type, 0, UInt8(n >> 24), UInt8((n >> 16) & 0xFF), UInt8((n >> 8) & 0xFF), UInt8(n & 0xFF)] + body
    }

    /// An A-ASSOCIATE-RQ proposing CT Image Storage (context 1, explicit VR LE) and Verification (context 3).
    static func associateRequest(calling: String) -> [UInt8] {
        var body: [UInt8] = [0, 1, 0, 0] + ae("DICOM_ETL") + ae(calling) + [UInt8](repeating: 0, count: 32)
        body += item(0x10, Array("1.2.840.10008.3.1.1.1".utf8))
        body += item(0x20, [1, 0, 0, 0] + item(0x30, Array("1.2.840.10008.5.1.4.1.1.2".utf8)) + item(0x40, Array("1.2.840.10008.1.2.1".utf8)))
        body += item(0x20, [3, 0, 0, 0] + item(0x30, Array("1.2.840.10008.1.1".utf8)) + item(0x40, Array("1.2.840.10008.1.2".utf8)))
        body += item(0x50, item(0x51, [0, 0, 0x40, 0]))
        return pdu(0x01, body)
    }

    static func pData(contextID: UInt8, command: Bool, last: Bool, _ fragment: [UInt8]) -> [UInt8] {
        let n = UInt32(fragment.count + 2)
        return pdu(0x04, [UInt8(n >> 24), UInt8((n >> 16) & 0xFF), UInt8((n >> 8) & 0xFF), UInt8(n & 0xFF), contextID,
                          (command ? 1 : 0) | (last ? 2 : 0)] + fragment)
    }

    /// A C-STORE-RQ command set for a CT image.
    static func storeCommand() -> [UInt8] {
        func element(_ tag: UInt16, _ value: [UInt8]) -> [UInt8] {
            let n = UInt32(value.count)
            return [UInt8(0), 0, UInt8(tag & 0xFF), UInt8(tag >> 8), UInt8(n & 0xFF), UInt8((n >> 8) & 0xFF), 0, 0] + value
        }
        func uid(_ text: String) -> [UInt8] { Array(text.utf8) + (text.utf8.count % 2 == 1 ? [0] : []) }
        return element(0x0002, uid("1.2.840.10008.5.1.4.1.1.2")) + element(0x0100, [0x01, 0x00]) + element(0x0110, [0x07, 0x00])
            + element(0x0700, [0, 0]) + element(0x0800, [0x02, 0x01]) + element(0x1000, uid("1.2.826.0.1.3680043.8.498.1"))
    }
}
