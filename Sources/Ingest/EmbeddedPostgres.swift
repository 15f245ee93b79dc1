// The embedded default database: a private PostgreSQL cluster inside the daemon's data folder,
// reachable only through a unix socket there. Initialised on first start, reused afterwards (also
// when a previous daemon was killed and left it running), stopped on shutdown.
import Foundation
import Logging

/// Why the embedded cluster cannot be used. Carries no paths (the data folder is the operator's).
public struct EmbeddedPostgresError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Machine-readable reason.
    public struct Code: RawRepresentable, Hashable, Sendable {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        /// No PostgreSQL server binaries (initdb, pg_ctl) were found.
        public static let binariesMissing = Code(rawValue: "postgres_binaries_missing")
        /// The data folder cannot be prepared (permissions, disk).
        public static let folderUnusable = Code(rawValue: "postgres_folder_unusable")
        /// `initdb` failed (its log is in the cluster folder's `initdb.log`).
        public static let initFailed = Code(rawValue: "postgres_init_failed")
        /// The server did not start (its log is `postgres.log` beside the socket).
        public static let startFailed = Code(rawValue: "postgres_start_failed")
        /// The database could not be created.
        public static let createDatabaseFailed = Code(rawValue: "postgres_create_database_failed")
    }

    public let code: Code
    /// Exit status of the failing tool, when one failed.
    public let status: Int32?

    public init(_ code: Code, status: Int32? = nil) {
        self.code = code
        self.status = status
    }

    public var description: String { "embedded PostgreSQL: \(code.rawValue)" + (status.map { " (exit \($0))" } ?? "") }
}

/// A private PostgreSQL cluster in `<directory>/postgres` with its socket in `<directory>/postgres-run`.
///
/// When the daemon runs as root, the cluster belongs to the `postgres` user (PostgreSQL refuses to
/// run as root) and its tools are run through `runuser`. Authentication is `trust` on the unix
/// socket only (no TCP listener): the socket folder is the access control.
public actor EmbeddedPostgres {
    /// Where clients connect.
    public struct Endpoint: Sendable, Hashable {
        /// Folder holding the socket `.s.PGSQL.<port>`.
        public let socketDirectory: String
        /// Port number (names the socket file; no TCP listener).
        public let port: Int
        /// Database user.
        public let user: String
        /// Database name.
        public let database: String

        /// A `postgres://` URL naming the socket folder (`?host=`), as DatabaseConfiguration parses it.
        public var url: String {
            let host = socketDirectory.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "/-._~"))) ?? socketDirectory
            return "postgres://\(user)@/\(database)?host=\(host)&port=\(port)"
        }
    }

    /// The folder holding the cluster and socket folders.
    public let directory: String
    /// PostgreSQL's server binaries.
    public let binDirectory: String
    /// Database created for the daemon.
    public let database: String
    /// Port naming the socket file.
    public let port: Int
    private let logger: Logger
    private var startedHere = false

    /// The cluster folder.
    public var clusterDirectory: String { (directory as NSString).appendingPathComponent("postgres") }
    /// The socket folder (also holds the server log).
    public var socketDirectory: String { (directory as NSString).appendingPathComponent("postgres-run") }

    /// - Parameters:
    ///   - directory: the daemon's data folder.
    ///   - binDirectory: PostgreSQL server binaries; nil: the newest `/usr/lib/postgresql/*/bin`.
    public init(directory: String, binDirectory: String? = nil, database: String = "dicom_etl", port: Int = 5432, logger: Logger) throws {
        self.directory = directory
        guard let bin = binDirectory ?? Self.defaultBinDirectory(),
            FileManager.default.isExecutableFile(atPath: (bin as NSString).appendingPathComponent("pg_ctl"))
        else { throw EmbeddedPostgresError(.binariesMissing) }
        self.binDirectory = bin
        self.database = database
        self.port = port
        self.logger = logger
    }

    /// The newest Debian PostgreSQL server binaries, if installed.
    public static func defaultBinDirectory() -> String? {
        let root = "/usr/lib/postgresql"
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
        return versions.compactMap { Int($0) }.sorted().reversed().map { "\(root)/\($0)/bin" }
            .first { FileManager.default.isExecutableFile(atPath: "\($0)/pg_ctl") }
    }

    private var runsAsRoot: Bool { geteuid() == 0 }

    /// Initialises the cluster if needed, starts it unless already running, creates the database if
    /// missing, and returns where to connect.
    public func start() throws -> Endpoint {
        let fileManager = FileManager.default
        do {
            try fileManager.createDirectory(atPath: directory, withIntermediateDirectories: true)
            for folder in [clusterDirectory, socketDirectory] where !fileManager.fileExists(atPath: folder) {
                try fileManager.createDirectory(atPath: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            }
            if runsAsRoot {
                // The postgres user must reach the folders: own them, and let it traverse the data folder.
                try chownToPostgres(clusterDirectory)
                try chownToPostgres(socketDirectory)
                let attributes = try fileManager.attributesOfItem(atPath: directory)
                let mode = (attributes[.posixPermissions] as? NSNumber)?.intValue ?? 0o700
                if mode & 0o001 == 0 { try fileManager.setAttributes([.posixPermissions: mode | 0o711], ofItemAtPath: directory) }
            }
        } catch let error as EmbeddedPostgresError {
            throw error
        } catch {
            throw EmbeddedPostgresError(.folderUnusable)
        }

        if !fileManager.fileExists(atPath: (clusterDirectory as NSString).appendingPathComponent("PG_VERSION")) {
            logger.notice("initialising the embedded PostgreSQL cluster")
            let log = (socketDirectory as NSString).appendingPathComponent("initdb.log")
            let status = try runTool(
                "initdb", ["-D", clusterDirectory, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"], logFile: log)
            guard status == 0 else { throw EmbeddedPostgresError(.initFailed, status: status) }
        }

        if try runTool("pg_ctl", ["-D", clusterDirectory, "status"]) != 0 {
            // Not running (a previous daemon's server stays up after a crash and is reused).
            let log = (socketDirectory as NSString).appendingPathComponent("postgres.log")
            let options = "-k '\(socketDirectory)' -p \(port) -c listen_addresses="
            let status = try runTool("pg_ctl", ["-D", clusterDirectory, "-w", "-t", "60", "-l", log, "-o", options, "start"])
            guard status == 0 else { throw EmbeddedPostgresError(.startFailed, status: status) }
            startedHere = true
            logger.notice("embedded PostgreSQL started")
        } else {
            logger.notice("embedded PostgreSQL already running; reusing it")
        }

        let exists = try runTool(
            "psql", ["-h", socketDirectory, "-p", "\(port)", "-U", "postgres", "-d", "postgres", "-tAc",
                     "SELECT 1 FROM pg_database WHERE datname = '\(database)'"], captureContains: "1")
        if exists != 0 {
            let status = try runTool("createdb", ["-h", socketDirectory, "-p", "\(port)", "-U", "postgres", database])
            guard status == 0 else { throw EmbeddedPostgresError(.createDatabaseFailed, status: status) }
        }
        return Endpoint(socketDirectory: socketDirectory, port: port, user: "postgres", database: database)
    }

    /// Stops the server (fast shutdown: open sessions are ended, committed work is kept).
    public func stop() {
        guard (try? runTool("pg_ctl", ["-D", clusterDirectory, "status"])) == 0 else { return }
        let status = (try? runTool("pg_ctl", ["-D", clusterDirectory, "-w", "-t", "60", "-m", "fast", "stop"])) ?? -1
        if status == 0 { logger.notice("embedded PostgreSQL stopped") } else { logger.warning("embedded PostgreSQL did not stop", metadata: ["status": "\(status)"]) }
        startedHere = false
    }

    private func chownToPostgres(_ path: String) throws {
        guard let entry = getpwnam("postgres") else { throw EmbeddedPostgresError(.folderUnusable) }
        guard chown(path, entry.pointee.pw_uid, entry.pointee.pw_gid) == 0 else { throw EmbeddedPostgresError(.folderUnusable) }
    }

    /// Runs a PostgreSQL tool (as the postgres user when root) and returns its exit status. Output
    /// goes to `logFile` or is discarded; with `captureContains`, a zero status also needs the
    /// trimmed standard output to equal that text. Spawned and reaped directly (posix_spawn,
    /// waitpid): `pg_ctl start` leaves a daemon behind that must not tie the wait to its lifetime.
    private func runTool(_ tool: String, _ arguments: [String], logFile: String? = nil, captureContains: String? = nil) throws -> Int32 {
        let toolPath = (binDirectory as NSString).appendingPathComponent(tool)
        let argv = runsAsRoot ? ["/usr/sbin/runuser", "-u", "postgres", "--", toolPath] + arguments : [toolPath] + arguments
        var environment = ProcessInfo.processInfo.environment
        environment["LC_ALL"] = "C"
        for key in ["PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGPASSWORD", "PGSERVICE"] { environment[key] = nil }
        let envp = environment.map { "\($0.key)=\($0.value)" }

        var pipeFDs: [Int32] = [-1, -1]
        if captureContains != nil { guard pipe(&pipeFDs) == 0 else { throw EmbeddedPostgresError(.binariesMissing) } }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        if let logFile {
            posix_spawn_file_actions_addopen(&actions, 1, logFile, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        } else {
            posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
            if captureContains == nil { posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0) }
        }
        if captureContains != nil {
            posix_spawn_file_actions_adddup2(&actions, pipeFDs[1], 1)
            posix_spawn_file_actions_addclose(&actions, pipeFDs[0])
            posix_spawn_file_actions_addclose(&actions, pipeFDs[1])
        }
        let cArgs = argv.map { strdup($0) } + [nil]
        let cEnv = envp.map { strdup($0) } + [nil]
        defer {
            cArgs.forEach { free($0) }
            cEnv.forEach { free($0) }
        }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, argv[0], &actions, nil, cArgs, cEnv)
        if captureContains != nil { close(pipeFDs[1]) }
        guard spawned == 0 else {
            if captureContains != nil { close(pipeFDs[0]) }
            throw EmbeddedPostgresError(.binariesMissing)
        }
        var captured: [UInt8] = []
        if captureContains != nil {
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let count = buffer.withUnsafeMutableBytes { read(pipeFDs[0], $0.baseAddress, $0.count) }
                if count < 0 && errno == EINTR { continue }
                if count <= 0 { break }
                captured += buffer[0..<count]
            }
            close(pipeFDs[0])
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            if errno != EINTR { return -1 }
        }
        let exitStatus: Int32 = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        if let expected = captureContains, exitStatus == 0 {
            let text = String(decoding: captured, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            return text == expected ? 0 : 1
        }
        return exitStatus
    }
}
