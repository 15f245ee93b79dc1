// Helpers of the security tests: a throwaway PKI made with openssl, throwaway PostgreSQL clusters (with or
// without TLS) and moto behind TLS, each started by the test that needs it and stopped after it.
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import TestSupport
import Testing

/// Runs a tool to its end; returns its exit status and its standard output and error together. Spawned and
/// reaped directly, its output through a file: a server the tool leaves running (pg_ctl start) keeps what it
/// inherited, and Foundation's Process then waits for ever.
@discardableResult
func runTool(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) throws -> (status: Int32, output: String) {
    var template = Array((NSTemporaryDirectory() + "/dicom-etl-tool-XXXXXX").utf8CString)
    let output = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
    guard output >= 0 else { throw POSIXError(.EIO) }
    let outputPath = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    defer {
        close(output)
        unlink(outputPath)
    }
    let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
    let envp: [UnsafeMutablePointer<CChar>?] = (environment ?? ProcessInfo.processInfo.environment).map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer { for pointer in argv + envp { free(pointer) } }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_adddup2(&actions, output, 1)
    posix_spawn_file_actions_adddup2(&actions, output, 2)
    var pid: pid_t = 0
    let spawned = posix_spawn(&pid, executable, &actions, nil, argv, envp)
    guard spawned == 0 else { throw POSIXError(POSIXErrorCode(rawValue: spawned) ?? .EIO) }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    let exitStatus: Int32 = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    let data = FileManager.default.contents(atPath: outputPath) ?? Data()
    return (exitStatus, String(decoding: data, as: UTF8.self))
}

/// A folder under /tmp that the `postgres` user can enter, removed by `remove()`.
struct ScratchFolder {
    let path: String

    init(_ prefix: String) throws {
        var template = Array("/tmp/\(prefix)-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw POSIXError(.EIO) }
        path = String(cString: made)
        chmod(path, 0o755)
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }

    /// Writes a file with the given mode (the umask does not apply).
    @discardableResult
    func write(_ name: String, _ text: String, mode: mode_t = 0o600) throws -> String {
        let file = path + "/" + name
        try Data(text.utf8).write(to: URL(fileURLWithPath: file))
        chmod(file, mode)
        return file
    }
}

/// Two certificate authorities (the one the servers use and another one) and the certificates they sign,
/// made with the openssl command-line tool: EC P-256 keys, valid for two days.
struct ThrowawayPKI {
    let folder: String

    var caCertificate: String { folder + "/ca.pem" }
    var otherCACertificate: String { folder + "/other-ca.pem" }
    /// A server certificate for the DNS name `localhost` only (so `127.0.0.1` is the wrong host name).
    var serverCertificate: String { folder + "/server.pem" }
    var serverKey: String { folder + "/server.key" }
    /// A client certificate whose common name is the PostgreSQL user `tls_client`.
    var clientCertificate: String { folder + "/client.pem" }
    var clientKey: String { folder + "/client.key" }

    static let openssl = ["/usr/bin/openssl", "/usr/local/bin/openssl"].first { FileManager.default.isExecutableFile(atPath: $0) }

    init(folder: String) throws {
        self.folder = folder
        guard let openssl = Self.openssl else { throw POSIXError(.ENOENT) }
        func run(_ arguments: [String]) throws {
            let result = try runTool(openssl, arguments)
            guard result.status == 0 else { Issue.record("openssl \(arguments.first ?? ""): \(result.output)"); throw POSIXError(.EIO) }
        }
        let curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        for name in ["ca", "other-ca"] {
            try run(["req", "-x509"] + curve + ["-keyout", "\(folder)/\(name).key", "-out", "\(folder)/\(name).pem", "-days", "2",
                     "-subj", "/CN=dicom-etl throwaway \(name)", "-addext", "basicConstraints=critical,CA:TRUE",
                     "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        }
        for (name, subject, extensions) in [
            ("server", "localhost", "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n"),
            ("client", "tls_client", "extendedKeyUsage=clientAuth\n"),
        ] {
            try Data(extensions.utf8).write(to: URL(fileURLWithPath: "\(folder)/\(name).ext"))
            try run(["req", "-new"] + curve + ["-keyout", "\(folder)/\(name).key", "-out", "\(folder)/\(name).csr", "-subj", "/CN=\(subject)"])
            try run(["x509", "-req", "-in", "\(folder)/\(name).csr", "-CA", caCertificate, "-CAkey", "\(folder)/ca.key",
                     "-set_serial", name == "server" ? "2" : "3", "-days", "2", "-extfile", "\(folder)/\(name).ext",
                     "-out", "\(folder)/\(name).pem"])
            chmod("\(folder)/\(name).key", 0o600)
        }
        for file in ["ca.pem", "other-ca.pem", "server.pem", "client.pem"] { chmod("\(folder)/\(file)", 0o644) }
    }
}

/// A PostgreSQL 15 cluster of its own on 127.0.0.1 (Debian's binaries; run as `postgres` when the tests run
/// as root), with TLS when given a PKI. Roles: `etl` (superuser, password `etlPassword`, scram-sha-256),
/// `tls_client` and `tls_other` (certificate authentication only, over TLS; the PKI has a certificate for the first).
final class ThrowawayPostgres {
    static let bin = ProcessInfo.processInfo.environment["DICOM_ETL_TEST_PG_BIN"]
        ?? (try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql"))?.sorted().last.map { "/usr/lib/postgresql/\($0)/bin" }
        ?? "/usr/lib/postgresql/15/bin"
    static var available: Bool { FileManager.default.isExecutableFile(atPath: bin + "/initdb") }

    let folder: ScratchFolder
    let port: Int
    let etlPassword: String
    var dataDirectory: String { folder.path + "/data" }
    var socketDirectory: String { folder.path + "/socket" }

    /// Initialises and starts the cluster; with `pki`, `ssl=on` with its server certificate and CA.
    init(pki: ThrowawayPKI?, etlPassword: String = "etl-" + UUID().uuidString) throws {
        folder = try ScratchFolder("dicom-etl-pg")
        port = try freeLocalPort()
        self.etlPassword = etlPassword
        do {
            try start(pki: pki)
        } catch {
            stop()
            throw error
        }
    }

    private func start(pki: ThrowawayPKI?) throws {
        for path in [dataDirectory, socketDirectory] { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) }
        try Self.giveToServerUser(dataDirectory, socketDirectory)
        try expectSuccess(Self.asServerUser(Self.bin + "/initdb", ["-D", dataDirectory, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"]))
        var hba = "local all all trust\n"
        var settings = ["-c", "listen_addresses=127.0.0.1", "-p", String(port), "-k", socketDirectory, "-c", "fsync=off"]
        if let pki {
            // The server's key must belong to the server's user with mode 0600, as PostgreSQL checks.
            for (source, name) in [(pki.serverCertificate, "server.crt"), (pki.serverKey, "server.key"), (pki.caCertificate, "root.crt")] {
                try FileManager.default.copyItem(atPath: source, toPath: dataDirectory + "/" + name)
                chmod(dataDirectory + "/" + name, name == "server.key" ? 0o600 : 0o644)
                try Self.giveToServerUser(dataDirectory + "/" + name)
            }
            settings += ["-c", "ssl=on", "-c", "ssl_cert_file=server.crt", "-c", "ssl_key_file=server.key", "-c", "ssl_ca_file=root.crt"]
            hba += "hostssl all tls_client,tls_other 127.0.0.1/32 cert\nhostssl all etl 127.0.0.1/32 scram-sha-256\n"
        } else {
            hba += "host all etl 127.0.0.1/32 scram-sha-256\n"
        }
        try Data(hba.utf8).write(to: URL(fileURLWithPath: dataDirectory + "/pg_hba.conf"))
        try Self.giveToServerUser(dataDirectory + "/pg_hba.conf")
        // The server's log goes where the server's user may write: beside its socket.
        try expectSuccess(Self.asServerUser(Self.bin + "/pg_ctl", ["-D", dataDirectory, "-w", "-l", socketDirectory + "/server.log",
                                                                   "-o", settings.joined(separator: " "), "start"]))
        try psql("CREATE ROLE etl LOGIN SUPERUSER PASSWORD '\(etlPassword)'; CREATE ROLE tls_client LOGIN; CREATE ROLE tls_other LOGIN")
        try psql("CREATE DATABASE etl OWNER etl")
    }

    /// Runs SQL as the superuser over the unix socket.
    @discardableResult
    func psql(_ sql: String, database: String = "postgres") throws -> String {
        let result = try Self.asServerUser(Self.bin + "/psql", ["-h", socketDirectory, "-p", String(port), "-U", "postgres", "-d", database,
                                                               "-v", "ON_ERROR_STOP=1", "-tAc", sql])
        try expectSuccess(result)
        return result.output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// A URL for `etl` on this cluster (no password: it comes from DICOM_ETL_DATABASE_PASSWORD).
    func url(host: String = "localhost", options: String) -> String {
        "postgres://etl@\(host):\(port)/etl?\(options)"
    }

    func stop() {
        _ = try? Self.asServerUser(Self.bin + "/pg_ctl", ["-D", dataDirectory, "-m", "immediate", "stop"])
        folder.remove()
    }

    /// Runs a tool, as the server's user when root, started in `/`: a clone under a 0700 folder (such as /root)
    /// is no place that user may enter, and psql would say so amid the query's result.
    static func asServerUser(_ tool: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        geteuid() == 0 ? try runTool("/usr/sbin/runuser", ["-u", "postgres", "--", "/usr/bin/env", "-C", "/", tool] + arguments)
            : try runTool(tool, arguments)
    }

    static func giveToServerUser(_ paths: String...) throws {
        guard geteuid() == 0 else { return }
        for path in paths { try expectSuccess(runTool("/bin/chown", ["postgres:postgres", path])) }
    }
}

/// moto's S3 server behind TLS with the PKI's server certificate (`https://localhost:<port>`).
final class TLSMoto {
    let process: Process
    let port: Int

    static var python: String? {
        let candidates = [ProcessInfo.processInfo.environment["DICOM_ETL_PYTHON"], packageRoot + "/.venv/bin/python"]
        return candidates.compactMap { $0 }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    static var available: Bool {
        guard let python else { return false }
        return FileManager.default.isExecutableFile(atPath: (python as NSString).deletingLastPathComponent + "/moto_server")
    }

    /// - Parameter signatureChecking: when true, the first three requests may run unsigned (to make an IAM user
    ///   and its key, see scripts/moto-credentials.py); every later request must be signed with that key.
    init(pki: ThrowawayPKI, log: String, signatureChecking: Bool = false) throws {
        guard let python = Self.python else { throw POSIXError(.ENOENT) }
        port = try freeLocalPort()
        process = Process()
        if signatureChecking {
            var environment = ProcessInfo.processInfo.environment
            environment["INITIAL_NO_AUTH_ACTION_COUNT"] = "3"
            process.environment = environment
        }
        process.executableURL = URL(fileURLWithPath: (python as NSString).deletingLastPathComponent + "/moto_server")
        process.arguments = ["-H", "127.0.0.1", "-p", String(port), "--ssl-cert", pki.serverCertificate, "--ssl-key", pki.serverKey]
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let handle = FileHandle(forWritingAtPath: log)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        // Up once the port accepts connections (moto imports for a few seconds first).
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline, process.isRunning {
            if Self.accepts(port: port) { return }
            usleep(100_000)
        }
        stop()
        throw POSIXError(.ETIMEDOUT)
    }

    /// SIGTERM, then SIGKILL after 2 s: moto's development server may hang on a connection a client dropped
    /// in its TLS handshake (as the refusals do).
    func stop() {
        guard process.isRunning else { return }
        process.terminate()
        let deadline = Date().addingTimeInterval(2)
        while process.isRunning, Date() < deadline { usleep(50_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    static func accepts(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        return withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }
}

let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

/// The `dicom-etl` binary built beside this test binary.
var dicomETLBinary: String {
    var directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    // On Linux the test binary sits in the build folder; on macOS inside the .xctest bundle.
    if directory.path.contains(".xctest") { directory = directory.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent() }
    return directory.appendingPathComponent("dicom-etl").path
}

struct ToolFailed: Error, CustomStringConvertible {
    let output: String
    var description: String { "tool failed: \(output)" }
}

func expectSuccess(_ result: (status: Int32, output: String)) throws {
    guard result.status == 0 else { throw ToolFailed(output: result.output) }
}
