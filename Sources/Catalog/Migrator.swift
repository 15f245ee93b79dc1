// Migrator: applies the numbered SQL migrations of schemas/ (bundled in BundledMigrations.swift) in order,
// each once, recorded in public.dicom_etl_migrations, under a transaction-scoped advisory lock so that
// replicas migrating at the same time apply every migration exactly once.
import Crypto
import Foundation
import Logging
import PostgresNIO

/// One numbered migration.
public struct Migration: Sendable, Hashable {
    public var version: Int
    public var name: String
    public var sql: String

    public init(version: Int, name: String, sql: String) {
        self.version = version
        self.name = name
        self.sql = sql
    }

    /// The SQL split into single statements at top-level semicolons (outside quotes, dollar-quoted bodies,
    /// quoted identifiers and comments); statements that are only comments are dropped.
    public var statements: [String] {
        let scalars = Array(sql.unicodeScalars)
        var statements: [String] = []
        var current = String.UnicodeScalarView()
        var hasCode = false
        var i = 0
        func flush() {
            let text = String(current).trimmingCharacters(in: .whitespacesAndNewlines)
            if hasCode && !text.isEmpty { statements.append(text) }
            current = String.UnicodeScalarView()
            hasCode = false
        }
        func starts(_ token: String, at index: Int) -> Bool {
            let t = Array(token.unicodeScalars)
            return index + t.count <= scalars.count && Array(scalars[index..<index + t.count]) == t
        }
        while i < scalars.count {
            let c = scalars[i]
            if starts("--", at: i) {  // line comment
                while i < scalars.count && scalars[i] != "\n" { current.append(scalars[i]); i += 1 }
                continue
            }
            if starts("/*", at: i) {  // block comment (PostgreSQL nests them)
                var depth = 0
                repeat {
                    if starts("/*", at: i) { depth += 1; current.append(contentsOf: "/*".unicodeScalars); i += 2 }
                    else if starts("*/", at: i) { depth -= 1; current.append(contentsOf: "*/".unicodeScalars); i += 2 }
                    else { current.append(scalars[i]); i += 1 }
                } while depth > 0 && i < scalars.count
                continue
            }
            if c == "'" || c == "\"" {  // string or quoted identifier; doubled quotes stay inside
                current.append(c)
                hasCode = true
                i += 1
                while i < scalars.count {
                    current.append(scalars[i])
                    if scalars[i] == c {
                        if i + 1 < scalars.count && scalars[i + 1] == c { current.append(c); i += 2; continue }
                        i += 1
                        break
                    }
                    i += 1
                }
                continue
            }
            if c == "$" {  // dollar quote: $tag$ … $tag$
                var j = i + 1
                while j < scalars.count && (scalars[j] == "_" || scalars[j].properties.isAlphabetic
                                            || ("0"..."9").contains(scalars[j])) { j += 1 }
                if j < scalars.count && scalars[j] == "$" && !(i + 1 < scalars.count && ("0"..."9").contains(scalars[i + 1])) {
                    let tag = String(String.UnicodeScalarView(scalars[i...j]))
                    current.append(contentsOf: tag.unicodeScalars)
                    hasCode = true
                    i = j + 1
                    while i < scalars.count && !starts(tag, at: i) { current.append(scalars[i]); i += 1 }
                    if i < scalars.count { current.append(contentsOf: tag.unicodeScalars); i += tag.unicodeScalars.count }
                    continue
                }
            }
            if c == ";" {
                flush()
                i += 1
                continue
            }
            if !c.properties.isWhitespace { hasCode = true }
            current.append(c)
            i += 1
        }
        flush()
        return statements
    }

    /// The hex SHA-256 of the SQL, recorded when applied and checked on every later run.
    public var checksum: String {
        SHA256.hash(data: Data(sql.utf8)).map { String(format: "%02x", $0) }.joined()
    }
}

/// What a migration run did.
public struct MigrationReport: Sendable, Equatable {
    /// Versions applied by this run, in order.
    public var applied: [Int]
    /// Versions that were already present.
    public var alreadyApplied: [Int]
}

/// Applies migrations to the database the client points at.
public struct Migrator: Sendable {
    /// The advisory lock key (the ASCII of "dicometl" as a 64-bit integer).
    public static let lockKey: Int64 = 0x6469_636F_6D65_746C
    /// The table recording applied migrations.
    public static let table = "public.dicom_etl_migrations"

    let client: PostgresClient
    let migrations: [Migration]
    let logger: Logger

    /// - Parameters:
    ///   - client: a running `PostgresClient`.
    ///   - migrations: the migrations to apply, by default those bundled from `schemas/`.
    public init(client: PostgresClient, migrations: [Migration] = Migration.bundled, logger: Logger) {
        self.client = client
        self.migrations = migrations.sorted { $0.version < $1.version }
        self.logger = logger
    }

    /// Applies every pending migration in one transaction and returns what it did.
    public func migrate() async throws -> MigrationReport {
        let migrations = self.migrations
        let logger = self.logger
        return try await inTransaction(client, logger: logger) { connection in
            try await connection.query("SELECT pg_advisory_xact_lock(\(Self.lockKey))", logger: logger)
            try await connection.query("""
                CREATE TABLE IF NOT EXISTS public.dicom_etl_migrations (
                    version integer PRIMARY KEY,
                    name text NOT NULL,
                    checksum text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now())
                """, logger: logger)
            var applied: [Int: String] = [:]
            let rows = try await connection.query(
                "SELECT version, checksum FROM public.dicom_etl_migrations ORDER BY version", logger: logger)
            for try await (version, checksum) in rows.decode((Int, String).self) { applied[version] = checksum }

            let known = Dictionary(uniqueKeysWithValues: migrations.map { ($0.version, $0) })
            for (version, checksum) in applied {
                guard let migration = known[version] else {
                    throw CatalogError(.unknownMigrationApplied, migrationVersion: version)
                }
                guard migration.checksum == checksum else {
                    throw CatalogError(.migrationChecksumMismatch, migrationVersion: version)
                }
            }

            var report = MigrationReport(applied: [], alreadyApplied: applied.keys.sorted())
            for migration in migrations where applied[migration.version] == nil {
                do {
                    // PostgresNIO speaks only the extended protocol: one statement per query.
                    for statement in migration.statements {
                        try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                    }
                } catch {
                    throw CatalogError(.migrationFailed, migrationVersion: migration.version, sqlState: sqlState(of: error))
                }
                try await connection.query("""
                    INSERT INTO public.dicom_etl_migrations (version, name, checksum)
                    VALUES (\(migration.version), \(migration.name), \(migration.checksum))
                    """, logger: logger)
                logger.info("applied migration", metadata: ["version": "\(migration.version)", "name": "\(migration.name)"])
                report.applied.append(migration.version)
            }
            return report
        }
    }

    /// The versions recorded in the database, in order (empty before the first run).
    public func appliedVersions() async throws -> [Int] {
        let exists = try await client.query("SELECT to_regclass('public.dicom_etl_migrations') IS NOT NULL", logger: logger)
        var present = false
        for try await value in exists.decode(Bool.self) { present = value }
        guard present else { return [] }
        var versions: [Int] = []
        let rows = try await client.query("SELECT version FROM public.dicom_etl_migrations ORDER BY version", logger: logger)
        for try await version in rows.decode(Int.self) { versions.append(version) }
        return versions
    }
}

/// The SQLSTATE of a server error, if the error is one.
func sqlState(of error: any Error) -> String? { serverState(of: error) }

/// The SQLSTATE of a server error.
func serverState(of error: any Error) -> String? {
    if let error = error as? PSQLError { return error.serverInfo?[.sqlState] }
    if let error = error as? PostgresError, case .server(let message) = error { return message.fields[.sqlState] }
    return nil
}
