// EmbeddedPostgres: a private PostgreSQL cluster in the daemon's data folder, for the no-configuration
// default. initdb on first use, pg_ctl start/stop, a unix socket only (no TCP), run as the `postgres`
// system user when the process is root (initdb refuses root).
//
// Every folder is made with its mode set explicitly, whatever the umask. When the process is root and the
// `postgres` user cannot reach the data folder (a root user's clone under /root, mode 0700), the cluster,
// its socket and its log live in a folder of their own under /var/lib/dicom-etl/postgres, linked from the
// data folder by symlinks, so the server never has to pass through the user's folders.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Logging

/// Where the private cluster lives and how it is run.
public struct EmbeddedPostgresConfiguration: Sendable, Hashable {
    /// The folder holding `cluster/` (PGDATA), `socket/` and `log/` (each a folder, or a symlink to one
    /// under `externalBase` when the system user cannot reach this folder).
    public var root: String
    /// PostgreSQL's binaries; nil means `DICOM_ETL_PG_BIN`, else the newest `/usr/lib/postgresql/*/bin`.
    public var binDirectory: String?
    /// Names the socket file `.s.PGSQL.<port>`; no TCP port is opened.
    public var port: Int
    /// The database created for the catalogue.
    public var database: String
    /// The cluster's superuser.
    public var superuser: String
    /// The system user that runs the server when this process is root.
    public var systemUserWhenRoot: String
    /// Where a cluster goes when the system user cannot reach `root` (root process only).
    public var externalBase: String

    public init(
        root: String, binDirectory: String? = nil, port: Int = 5432, database: String = "dicom_etl",
        superuser: String = "postgres", systemUserWhenRoot: String = "postgres",
        externalBase: String = "/var/lib/dicom-etl/postgres"
    ) {
        self.root = root
        self.binDirectory = binDirectory
        self.port = port
        self.database = database
        self.superuser = superuser
        self.systemUserWhenRoot = systemUserWhenRoot
        self.externalBase = externalBase
    }
}

/// A private PostgreSQL cluster: `start()` initialises it if needed, starts it and returns how to connect.
public actor EmbeddedPostgres {
    public let configuration: EmbeddedPostgresConfiguration
    let logger: Logger
    /// The real folder of `cluster/`, `socket/` and `log/` (`root`, or its external home), once known.
    private var home: String?

    public init(configuration: EmbeddedPostgresConfiguration, logger: Logger = Logger(label: "dicom-etl.embedded-postgres")) {
        self.configuration = configuration
        self.logger = logger
    }

    static let parts = ["cluster", "socket", "log"]

    var serverHome: String { home ?? configuration.root }
    var cluster: String { serverHome + "/cluster" }
    var socket: String { serverHome + "/socket" }
    var log: String { serverHome + "/log" }

    /// The connection for the catalogue database (unix socket, no password).
    public var databaseConfiguration: DatabaseConfiguration {
        DatabaseConfiguration(
            host: nil, port: configuration.port, unixSocketDirectory: socket, username: configuration.superuser,
            password: nil, database: configuration.database, tlsMode: .disable, poolSize: 10)
    }

    /// Initialises the cluster on first use, starts it unless it runs already, creates the database if missing.
    @discardableResult
    public func start() async throws -> DatabaseConfiguration {
        let bin = try binDirectory()
        home = try prepareFolders()
        let socketFile = socket + "/.s.PGSQL.\(configuration.port)"
        guard socketFile.utf8.count < 108 else {
            throw failure("the socket path \(socketFile) is longer than the 107 bytes a unix socket allows: use a shorter data folder")
        }
        if !FileManager.default.fileExists(atPath: cluster + "/PG_VERSION") {
            logger.info("initialising the embedded PostgreSQL cluster")
            try run(bin + "/initdb", ["-D", cluster, "-U", configuration.superuser, "--auth=trust", "-E", "UTF8", "--locale=C"])
        }
        if try run(bin + "/pg_ctl", ["-D", cluster, "status"], allowFailure: true) != 0 {
            do {
                try run(bin + "/pg_ctl", [
                    "-D", cluster, "-w", "-t", "60", "-l", log + "/postgres.log",
                    "-o", "-k \(socket) -p \(configuration.port) -c listen_addresses=''", "start",
                ])
            } catch var error as CatalogError {
                let serverLog = Self.lastLines(of: (try? String(contentsOfFile: log + "/postgres.log", encoding: .utf8)) ?? "", count: 5)
                if !serverLog.isEmpty { error.detail = (error.detail ?? "") + "; server log (\(log)/postgres.log): " + serverLog }
                throw error
            }
        }
        try await Self.createDatabaseIfMissing(
            configuration.database, on: databaseConfiguration.with(database: "postgres"), logger: logger)
        return databaseConfiguration
    }

    static func createDatabaseIfMissing(_ database: String, on admin: DatabaseConfiguration, logger: Logger) async throws {
        _ = try await Catalog.withRunningClient(admin, logger: logger) { client in
            let rows = try await client.query("SELECT count(*)::int FROM pg_database WHERE datname = \(database)", logger: logger)
            var exists = false
            for try await count in rows.decode(Int.self) { exists = count > 0 }
            if !exists {
                let quoted = "\"" + database.replacingOccurrences(of: "\"", with: "\"\"") + "\""
                try await client.query("CREATE DATABASE \(unescaped: quoted)", logger: logger)
            }
            return exists
        }
    }

    /// Stops the cluster (fast shutdown: open transactions roll back).
    public func stop() throws {
        let bin = try binDirectory()
        if home == nil { home = Self.linkedHome(of: configuration.root) }
        if try run(bin + "/pg_ctl", ["-D", cluster, "status"], allowFailure: true) == 0 {
            try run(bin + "/pg_ctl", ["-D", cluster, "-m", "fast", "-w", "-t", "60", "stop"])
        }
    }

    func binDirectory() throws -> String {
        if let bin = configuration.binDirectory ?? ProcessInfo.processInfo.environment["DICOM_ETL_PG_BIN"] { return bin }
        let base = "/usr/lib/postgresql"
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: base))?
            .compactMap(Int.init).sorted() ?? []
        guard let newest = versions.last else {
            throw failure("no PostgreSQL server found in \(base): install Debian's postgresql package or set DICOM_ETL_PG_BIN")
        }
        return "\(base)/\(newest)/bin"
    }

    // MARK: Folders

    /// Makes `root` and the server's folders with explicit modes, hands them to the system user when root,
    /// and returns the folder that really holds them.
    func prepareFolders() throws -> String {
        let root = configuration.root
        try makeFolder(root, mode: 0o711)
        guard geteuid() == 0 else {
            for part in Self.parts { try makeFolder(root + "/" + part, mode: 0o700) }
            return root
        }
        let user = try systemUser()
        let home: String
        if let linked = Self.linkedHome(of: root) {
            home = linked
        } else if systemUserCanEnter(root) {
            home = root
        } else {
            // A cluster made here earlier, when the user could still reach it, cannot be moved silently.
            if FileManager.default.fileExists(atPath: root + "/cluster/PG_VERSION") {
                throw failure(
                    "the embedded cluster in \(root)/cluster cannot be started: the \(configuration.systemUserWhenRoot) system user "
                        + "cannot enter \(blockingFolder(of: root, user: user)). Give it passage (chmod o+x on that folder) or move the data folder")
            }
            home = configuration.externalBase + "/" + UUID().uuidString.lowercased()
            try makeFolder(configuration.externalBase, mode: 0o755)
            try makeFolder(home, mode: 0o711)
            for part in Self.parts {
                try makeFolder(home + "/" + part, mode: 0o700)
                guard symlink(home + "/" + part, root + "/" + part) == 0 else {
                    throw failure("could not link \(root)/\(part) to \(home)/\(part) (errno \(errno))")
                }
            }
            logger.notice("the data folder is out of the PostgreSQL system user's reach; the embedded cluster lives in a folder of its own",
                          metadata: ["cluster_home": .string(home), "blocked_at": .string(blockingFolder(of: root, user: user))])
        }
        for part in Self.parts {
            let folder = home + "/" + part
            try makeFolder(folder, mode: 0o700)
            guard chown(folder, user.uid, user.gid) == 0 else {
                throw failure("could not give \(folder) to the \(configuration.systemUserWhenRoot) system user (errno \(errno))")
            }
        }
        guard systemUserCanEnter(home + "/cluster") else {
            throw failure(
                "the \(configuration.systemUserWhenRoot) system user cannot enter \(blockingFolder(of: home + "/cluster", user: user)), "
                    + "so PostgreSQL cannot use \(home)/cluster. Give it passage (chmod o+x on that folder)")
        }
        return home
    }

    /// The external home a previous start linked `root/cluster` to, if any.
    static func linkedHome(of root: String) -> String? {
        guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: root + "/cluster") else { return nil }
        return (target as NSString).deletingLastPathComponent
    }

    /// Creates the folder (and its parents) and sets its mode, so the umask does not decide it.
    func makeFolder(_ path: String, mode: mode_t) throws {
        var isDirectory: ObjCBool = false
        if !FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
            do {
                try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            } catch {
                throw failure("could not create the folder \(path): \(Self.errnoText(error))")
            }
        } else if !isDirectory.boolValue {
            throw failure("\(path) exists and is not a folder")
        }
        guard chmod(path, mode) == 0 else { throw failure("could not set the mode of \(path) (errno \(errno))") }
    }

    struct SystemUser { var uid: uid_t; var gid: gid_t }

    func systemUser() throws -> SystemUser {
        guard let entry = getpwnam(configuration.systemUserWhenRoot) else {
            throw failure("the system user \(configuration.systemUserWhenRoot) does not exist: install Debian's postgresql package")
        }
        return SystemUser(uid: entry.pointee.pw_uid, gid: entry.pointee.pw_gid)
    }

    /// Whether the system user can reach and enter `path` (asked of the system itself, as that user).
    func systemUserCanEnter(_ path: String) -> Bool {
        (try? run("/usr/bin/test", ["-x", path], allowFailure: true)) == 0
    }

    /// The first folder on the way to `path` that `user` may not pass, as "PATH (owner NAME, mode NNNN)".
    func blockingFolder(of path: String, user: SystemUser) -> String {
        var prefix = ""
        for component in path.split(separator: "/") {
            prefix += "/" + component
            var info = stat()
            guard stat(prefix, &info) == 0 else { break }
            let mode = info.st_mode
            let allowed = info.st_uid == user.uid ? mode & S_IXUSR != 0
                : info.st_gid == user.gid ? mode & S_IXGRP != 0 : mode & S_IXOTH != 0
            if !allowed {
                let owner = getpwuid(info.st_uid).map { String(decoding: UnsafeRawBufferPointer(start: $0.pointee.pw_name, count: strlen($0.pointee.pw_name)), as: UTF8.self) } ?? String(info.st_uid)
                return "\(prefix) (owner \(owner), mode \(String(mode & 0o7777, radix: 8)))"
            }
        }
        return path
    }

    // MARK: Tools

    /// Runs a PostgreSQL tool (as the system user when root) and returns its exit status; a failure names
    /// the tool, its status and the last lines it printed. posix_spawn + waitpid: the tool's children (the
    /// postmaster) outlive it and must not be waited for; its output goes to a temporary file, not a pipe,
    /// for the same reason.
    @discardableResult
    func run(_ tool: String, _ arguments: [String], allowFailure: Bool = false) throws -> Int32 {
        let command = geteuid() == 0
            ? ["/usr/sbin/runuser", "-u", configuration.systemUserWhenRoot, "--", tool] + arguments
            : [tool] + arguments
        var argv: [UnsafeMutablePointer<CChar>?] = command.map { strdup($0) }
        argv.append(nil)
        defer { for pointer in argv { free(pointer) } }
        var template = Array("/tmp/dicom-etl-pg-XXXXXX".utf8CString)
        let output = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        let outputPath = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        defer {
            if output >= 0 { close(output) }
            unlink(outputPath)
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        if output >= 0 {
            posix_spawn_file_actions_adddup2(&actions, output, 1)
            posix_spawn_file_actions_adddup2(&actions, output, 2)
        } else {
            posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
            posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        }
        let name = (tool as NSString).lastPathComponent
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, command[0], &actions, nil, argv, environ)
        guard spawned == 0 else { throw failure("\(name) could not be started (errno \(spawned))") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            guard errno == EINTR else { throw failure("\(name) could not be waited for (errno \(errno))") }
        }
        let exitStatus = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        if exitStatus != 0 && !allowFailure {
            let printed = Self.lastLines(of: (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "", count: 5)
            logger.error("embedded PostgreSQL command failed", metadata: ["tool": "\(name)", "status": "\(exitStatus)"])
            throw failure("\(name) failed (exit \(exitStatus))" + (printed.isEmpty ? "" : ": " + printed))
        }
        return exitStatus
    }

    func failure(_ detail: String) -> CatalogError {
        CatalogError(.embeddedPostgresFailed, detail: detail)
    }

    static func lastLines(of text: String, count: Int) -> String {
        text.split(whereSeparator: \.isNewline).suffix(count).map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: " | ")
    }

    static func errnoText(_ error: any Error) -> String {
        let code = ((error as NSError).userInfo[NSUnderlyingErrorKey] as? NSError)?.code ?? (error as NSError).code
        return String(cString: strerror(Int32(code)))
    }
}
