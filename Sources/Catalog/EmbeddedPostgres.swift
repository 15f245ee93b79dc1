// EmbeddedPostgres: a private PostgreSQL cluster in the daemon's data folder, for the no-configuration
// default. initdb on first use, pg_ctl start/stop, a unix socket only (no TCP), run as the `postgres`
// system user when the process is root (initdb refuses root).
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Logging

/// Where the private cluster lives and how it is run.
public struct EmbeddedPostgresConfiguration: Sendable, Hashable {
    /// The folder holding `cluster/` (PGDATA), `socket/` and `log/`.
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

    public init(
        root: String, binDirectory: String? = nil, port: Int = 5432, database: String = "dicom_etl",
        superuser: String = "postgres", systemUserWhenRoot: String = "postgres"
    ) {
        self.root = root
        self.binDirectory = binDirectory
        self.port = port
        self.database = database
        self.superuser = superuser
        self.systemUserWhenRoot = systemUserWhenRoot
    }
}

/// A private PostgreSQL cluster: `start()` initialises it if needed, starts it and returns how to connect.
public actor EmbeddedPostgres {
    public let configuration: EmbeddedPostgresConfiguration
    let logger: Logger

    public init(configuration: EmbeddedPostgresConfiguration, logger: Logger = Logger(label: "dicom-etl.embedded-postgres")) {
        self.configuration = configuration
        self.logger = logger
    }

    var cluster: String { configuration.root + "/cluster" }
    var socket: String { configuration.root + "/socket" }
    var log: String { configuration.root + "/log" }

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
        let fileManager = FileManager.default
        for folder in [configuration.root, cluster, socket, log] {
            try? fileManager.createDirectory(atPath: folder, withIntermediateDirectories: true)
        }
        try handOver([cluster, socket, log])
        chmod(cluster, 0o700)
        chmod(socket, 0o700)

        if !fileManager.fileExists(atPath: cluster + "/PG_VERSION") {
            logger.info("initialising the embedded PostgreSQL cluster")
            try run(bin + "/initdb", ["-D", cluster, "-U", configuration.superuser, "--auth=trust", "-E", "UTF8",
                                      "--locale=C"])
        }
        if try run(bin + "/pg_ctl", ["-D", cluster, "status"], allowFailure: true) != 0 {
            try run(bin + "/pg_ctl", [
                "-D", cluster, "-w", "-t", "60", "-l", log + "/postgres.log",
                "-o", "-k \(socket) -p \(configuration.port) -c listen_addresses=''", "start",
            ])
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
        if try run(bin + "/pg_ctl", ["-D", cluster, "status"], allowFailure: true) == 0 {
            try run(bin + "/pg_ctl", ["-D", cluster, "-m", "fast", "-w", "-t", "60", "stop"])
        }
    }

    func binDirectory() throws -> String {
        if let bin = configuration.binDirectory ?? ProcessInfo.processInfo.environment["DICOM_ETL_PG_BIN"] { return bin }
        let base = "/usr/lib/postgresql"
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: base))?
            .compactMap(Int.init).sorted() ?? []
        guard let newest = versions.last else { throw CatalogError(.embeddedPostgresFailed) }
        return "\(base)/\(newest)/bin"
    }

    /// When root, gives the folders to the system user that will run the server.
    func handOver(_ folders: [String]) throws {
        guard geteuid() == 0 else { return }
        guard let entry = getpwnam(configuration.systemUserWhenRoot) else { throw CatalogError(.embeddedPostgresFailed) }
        let (uid, gid) = (entry.pointee.pw_uid, entry.pointee.pw_gid)
        for folder in folders where chown(folder, uid, gid) != 0 { throw CatalogError(.embeddedPostgresFailed) }
    }

    /// Runs a PostgreSQL tool (as the system user when root), output discarded, and returns its exit status.
    /// posix_spawn + waitpid: the tool's children (the postmaster) outlive it and must not be waited for.
    @discardableResult
    func run(_ tool: String, _ arguments: [String], allowFailure: Bool = false) throws -> Int32 {
        let command = geteuid() == 0
            ? ["/usr/sbin/runuser", "-u", configuration.systemUserWhenRoot, "--", tool] + arguments
            : [tool] + arguments
        var argv: [UnsafeMutablePointer<CChar>?] = command.map { strdup($0) }
        argv.append(nil)
        defer { for pointer in argv { free(pointer) } }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        var pid: pid_t = 0
        guard posix_spawn(&pid, command[0], &actions, nil, argv, environ) == 0 else {
            throw CatalogError(.embeddedPostgresFailed)
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            guard errno == EINTR else { throw CatalogError(.embeddedPostgresFailed) }
        }
        let exitStatus = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        if exitStatus != 0 && !allowFailure {
            logger.error("embedded PostgreSQL command failed", metadata: [
                "tool": "\((tool as NSString).lastPathComponent)", "status": "\(exitStatus)"])
            throw CatalogError(.embeddedPostgresFailed)
        }
        return exitStatus
    }
}
