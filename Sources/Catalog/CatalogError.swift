// CatalogError: the one error type of the Catalog target. Its text is generic on purpose: it never carries
// patient data, SQL values or file paths, only a machine-readable code and a few safe numbers.
import CodedErrors
import Logging
import PostgresNIO
import Secrets

/// An error raised by the catalog, the migrator or the job queue.
public struct CatalogError: CodedError, Hashable {
    /// A machine-readable reason.
    public struct Code: ErrorCode {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }

        /// The database URL could not be parsed or holds an unsupported option.
        public static let invalidDatabaseURL = Code(rawValue: "invalid_database_url")
        /// The password file named by the configuration could not be read.
        public static let passwordFileUnreadable = Code(rawValue: "password_file_unreadable")
        /// A secret file (password, client key) may be read by group or others or belongs to another user.
        public static let secretFileInsecure = Code(rawValue: "secret_file_insecure")
        /// A TLS file (`sslrootcert`, `sslcert`, `sslkey`) could not be read or parsed.
        public static let tlsFileUnreadable = Code(rawValue: "tls_file_unreadable")
        /// An applied migration's SQL differs from the bundled one of the same version.
        public static let migrationChecksumMismatch = Code(rawValue: "migration_checksum_mismatch")
        /// The database holds a migration this binary does not know (it is older than the schema).
        public static let unknownMigrationApplied = Code(rawValue: "unknown_migration_applied")
        /// A migration failed; see `migrationVersion` and `sqlState`.
        public static let migrationFailed = Code(rawValue: "migration_failed")
        /// The job is no longer leased by this claim (its lease expired and another worker took it, or it ended).
        public static let leaseLost = Code(rawValue: "lease_lost")
        /// The source-file ledger row was not found or is not in a state that allows the transition.
        public static let ledgerTransitionRejected = Code(rawValue: "ledger_transition_rejected")
        /// An argument was outside its allowed range.
        public static let invalidArgument = Code(rawValue: "invalid_argument")
        /// An embedded PostgreSQL cluster could not be initialised, started or stopped.
        public static let embeddedPostgresFailed = Code(rawValue: "embedded_postgres_failed")
    }

    /// The reason.
    public var code: Code
    /// The migration concerned, for migration errors.
    public var migrationVersion: Int?
    /// The SQLSTATE reported by the server, when the error came from it.
    public var sqlState: String?
    /// For the embedded cluster: what failed and what to do (a tool's own message, a folder, its owner and
    /// mode). Operator data only (the data folder's paths), never patient data or SQL values.
    public var detail: String?

    public init(_ code: Code, migrationVersion: Int? = nil, sqlState: String? = nil, detail: String? = nil) {
        self.code = code
        self.migrationVersion = migrationVersion
        self.sqlState = sqlState
        self.detail = detail
    }

    /// A refused secret file: `secretFileInsecure` for its owner or mode, else `unreadable`; the detail says what
    /// to do (`chmod 600 …`) and never holds the file's contents.
    init(secretFileError error: SecretFileError, unreadable: Code) {
        let insecure = error.code == .groupOrOthersAccess || error.code == .wrongOwner
        self.init(insecure ? .secretFileInsecure : unreadable, detail: error.description)
    }

    public var description: String {
        var text = "CatalogError(\(code)"
        if let migrationVersion { text += ", migration: \(migrationVersion)" }
        if let sqlState { text += ", sqlstate: \(sqlState)" }
        if let detail { text += "): \(detail)" } else { text += ")" }
        return text
    }
}

/// Runs `body` between BEGIN and COMMIT on one pooled connection, rolling back and rethrowing the body's own
/// error (PostgresClient.withTransaction would wrap it) so that callers see `CatalogError`s as thrown.
func inTransaction<Result: Sendable>(
    _ client: PostgresClient, logger: Logger, _ body: (PostgresConnection) async throws -> Result
) async throws -> Result {
    try await client.withConnection { connection in
        try await connection.query("BEGIN", logger: logger)
        do {
            let value = try await body(connection)
            try await connection.query("COMMIT", logger: logger)
            return value
        } catch {
            _ = try? await connection.query("ROLLBACK", logger: logger)
            throw error
        }
    }
}

/// What a failed database call means for the work that made it.
public enum DatabaseFault: String, Sendable, Hashable {
    /// The database could not be reached or cannot work now (connection lost or refused, shutting down,
    /// out of disk or memory): nothing is wrong with the data; retry once it is back.
    case unavailable
    /// A serialization failure or deadlock: retry at once.
    case conflict
    /// The server answered and refused the statement (e.g. a value out of range): retrying the same data
    /// will fail the same way.
    case rejected

    /// The SQLSTATE the server answered with, if the error came from it (a code, never a value).
    public static func sqlState(of error: any Error) -> String? {
        serverState(of: error)
    }

    /// Classifies an error thrown by a catalogue call.
    public static func of(_ error: any Error) -> DatabaseFault {
        if error is CatalogError { return .rejected }
        guard let state = sqlState(of: error) else { return .unavailable }
        switch state {
        case "40001", "40P01": return .conflict
        // Connection exceptions, operator intervention (shutdown, cannot connect now), insufficient
        // resources (disk full, out of memory, too many connections), system errors.
        case _ where state.hasPrefix("08") || state.hasPrefix("57") || state.hasPrefix("53") || state.hasPrefix("58"):
            return .unavailable
        default: return .rejected
        }
    }
}
