// Migrations: bundled SQL equals schemas/, fresh → latest, a second run changes nothing, two concurrent
// migrators apply each migration once, an edited migration is refused.
import Catalog
import Foundation
import PostgresNIO
import Testing

@Suite struct BundledMigrationTests {
    @Test func bundledSQLMatchesTheSchemasFolder() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("schemas")
        let files = try FileManager.default.contentsOfDirectory(atPath: root.path)
            .filter { $0.range(of: #"^\d{3}_[a-z0-9_]+\.sql$"#, options: .regularExpression) != nil }
            .sorted()
        #expect(!files.isEmpty)
        #expect(files.count == Migration.bundled.count, "run schemas/generate-swift.py after editing schemas/")
        for (file, migration) in zip(files, Migration.bundled) {
            let sql = try String(contentsOf: root.appendingPathComponent(file), encoding: .utf8)
            #expect(Int(file.prefix(3)) == migration.version)
            #expect(String(file.dropFirst(4).dropLast(4)) == migration.name)
            #expect(sql == migration.sql, "\(file) differs from BundledMigrations.swift: run schemas/generate-swift.py")
        }
        #expect(Migration.bundled.map(\.version) == Array(1...Migration.bundled.count))
    }
}

@Suite(.enabled(if: TestDatabase.available, "needs DICOM_ETL_TEST_DATABASE_URL (scripts/with-services.sh)"))
struct MigrationTests {
    /// Every column of the four schemas, as text: the fingerprint a second run must not change.
    static func schemaFingerprint(_ client: PostgresClient) async throws -> [String] {
        let rows = try await client.query("""
            SELECT table_schema || '.' || table_name || '.' || column_name || ':' || data_type
            FROM information_schema.columns
            WHERE table_schema IN ('imaging', 'ingest', 'inference', 'vault', 'clinical')
            ORDER BY 1
            """, logger: TestDatabase.logger)
        var result: [String] = []
        for try await line in rows.decode(String.self) { result.append(line) }
        return result
    }

    @Test func freshDatabaseMigratesToLatestAndASecondRunChangesNothing() async throws {
        try await TestDatabase.withFreshDatabase { configuration in
            try await Catalog.withRunningClient(configuration, logger: TestDatabase.logger) { client in
                let migrator = Migrator(client: client, logger: TestDatabase.logger)
                #expect(try await migrator.appliedVersions() == [])
                let first = try await migrator.migrate()
                let all = Migration.bundled.map(\.version)
                #expect(first.applied == all)
                #expect(first.alreadyApplied == [])
                for table in ["imaging.patients", "imaging.studies", "imaging.series", "imaging.instances",
                              "ingest.source_files", "ingest.stage_events", "ingest.quarantine", "inference.models",
                              "inference.jobs", "inference.diagnoses", "vault.patients", "vault.studies",
                              "clinical.diagnoses"] {
                    #expect(try await scalar(client, "SELECT (to_regclass(\(table)) IS NOT NULL)::int") == 1, "\(table)")
                }
                let fingerprint = try await Self.schemaFingerprint(client)
                #expect(fingerprint.count > 80)
                // Headers compress with LZ4 where the server has it (the test cluster's Debian PostgreSQL does).
                let lz4 = try await scalar(client, """
                    SELECT count(*)::int FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)
                    """)
                let method = try await scalar(client, """
                    SELECT ascii(attcompression)::int FROM pg_attribute
                    WHERE attrelid = 'imaging.instances'::regclass AND attname = 'header'
                    """)
                #expect(lz4 == 1, "the test PostgreSQL is built with LZ4")
                #expect(method == Int(UInt8(ascii: "l")), "imaging.instances.header compresses with LZ4")

                let second = try await migrator.migrate()
                #expect(second.applied == [])
                #expect(second.alreadyApplied == all)
                #expect(try await Self.schemaFingerprint(client) == fingerprint)
                #expect(try await scalar(client, "SELECT count(*)::int FROM public.dicom_etl_migrations") == all.count)
            }
        }
    }

    @Test func twoConcurrentMigratorsApplyEachMigrationOnce() async throws {
        try await TestDatabase.withFreshDatabase { configuration in
            async let a = Catalog.withRunningClient(configuration, logger: TestDatabase.logger) {
                try await Migrator(client: $0, logger: TestDatabase.logger).migrate()
            }
            async let b = Catalog.withRunningClient(configuration, logger: TestDatabase.logger) {
                try await Migrator(client: $0, logger: TestDatabase.logger).migrate()
            }
            let (first, second) = try await (a, b)
            let all = Migration.bundled.map(\.version)
            // One of them applied everything, the other found everything applied.
            #expect((first.applied + second.applied).sorted() == all)
            #expect(Set([first.applied.isEmpty, second.applied.isEmpty]) == [true, false])
            try await Catalog.withRunningClient(configuration, logger: TestDatabase.logger) { client async throws in
                #expect(try await scalar(client, "SELECT count(*)::int FROM public.dicom_etl_migrations") == all.count)
                #expect(try await scalar(client, "SELECT count(DISTINCT version)::int FROM public.dicom_etl_migrations") == all.count)
            }
        }
    }

    @Test func anEditedMigrationIsRefused() async throws {
        try await TestDatabase.withFreshDatabase { configuration in
            try await Catalog.withRunningClient(configuration, logger: TestDatabase.logger) { client in
                let original = [Migration(version: 1, name: "one", sql: "CREATE TABLE public.one (id int);")]
                _ = try await Migrator(client: client, migrations: original, logger: TestDatabase.logger).migrate()
                let edited = [Migration(version: 1, name: "one", sql: "CREATE TABLE public.one (id bigint);")]
                await #expect(throws: CatalogError(.migrationChecksumMismatch, migrationVersion: 1)) {
                    try await Migrator(client: client, migrations: edited, logger: TestDatabase.logger).migrate()
                }
                // A failing migration rolls back with the whole run: the good one before it is not recorded.
                let failing = original + [
                    Migration(version: 2, name: "two", sql: "CREATE TABLE public.two (id int);"),
                    Migration(version: 3, name: "three", sql: "SELECT * FROM public.missing_table;"),
                ]
                do {
                    _ = try await Migrator(client: client, migrations: failing, logger: TestDatabase.logger).migrate()
                    Issue.record("a failing migration must throw")
                } catch let error as CatalogError {
                    #expect(error.code == .migrationFailed)
                    #expect(error.migrationVersion == 3)
                    #expect(error.sqlState == "42P01")
                }
                #expect(try await scalar(client, "SELECT count(*)::int FROM public.dicom_etl_migrations") == 1)
                #expect(try await scalar(client, "SELECT (to_regclass('public.two') IS NULL)::int") == 1)
            }
        }
    }
}

@Suite struct StatementSplitterTests {
    @Test func splitsAtTopLevelSemicolonsOnly() {
        let sql = """
            -- a comment; with a semicolon
            CREATE TABLE a (x text DEFAULT 'it''s; fine');
            /* block; /* nested; */ still comment */
            CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $body$
            BEGIN PERFORM 1; RETURN 2; END;
            $body$;
            DO $$ BEGIN RAISE NOTICE 'x;y'; END $$;
            SELECT "weird;name" FROM a;
            -- trailing comment only
            """
        let statements = Migration(version: 1, name: "x", sql: sql).statements
        #expect(statements.count == 4)
        #expect(statements[0].hasSuffix("CREATE TABLE a (x text DEFAULT 'it''s; fine')"))
        #expect(statements[1].contains("BEGIN PERFORM 1; RETURN 2; END;"))
        #expect(statements[1].hasSuffix("$body$"))
        #expect(statements[2] == "DO $$ BEGIN RAISE NOTICE 'x;y'; END $$")
        #expect(statements[3] == #"SELECT "weird;name" FROM a"#)
    }

    @Test func everyBundledMigrationSplitsIntoStatements() {
        // Most migrations hold several statements; one may be a single DO block.
        #expect(Migration.bundled.map(\.statements.count).reduce(0, +) >= 3 * Migration.bundled.count)
        for migration in Migration.bundled {
            #expect(!migration.statements.isEmpty, "migration \(migration.version)")
            #expect(migration.statements.allSatisfy { !$0.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty })
            #expect(migration.statements.allSatisfy { !$0.hasSuffix(";") || $0.hasSuffix("END;") == false })
        }
    }
}
