// DatabaseConfiguration: URL forms, TLS modes, unix sockets, password sources.
import Catalog
import Foundation
import Testing

@Suite struct DatabaseConfigurationTests {
    /// Debian's bundle of trusted roots (package ca-certificates): a real PEM file to name as sslrootcert.
    static let systemBundle = "/etc/ssl/certs/ca-certificates.crt"

    @Test func tcpURLWithEverything() throws {
        let c = try DatabaseConfiguration.parse(
            "postgres://etl:s%40cret@db.example:6543/imaging?sslmode=verify-full&sslrootcert=\(Self.systemBundle)&pool_size=7",
            environment: [:])
        #expect(c.host == "db.example")
        #expect(c.port == 6543)
        #expect(c.unixSocketDirectory == nil)
        #expect(c.username == "etl")
        #expect(c.password == "s@cret")
        #expect(c.database == "imaging")
        #expect(c.tlsMode == .verifyFull)
        #expect(c.rootCertificateFile == Self.systemBundle)
        #expect(c.poolSize == 7)
        #expect(!c.redactedDescription.contains("s@cret"))
        #expect(!c.redactedDescription.contains("cret"))
        let client = try c.clientConfiguration()
        #expect(client.host == "db.example")
        #expect(client.port == 6543)
        #expect(client.options.maximumConnections == 7)
        // The CA file is read when the client is configured: a missing one stops the start, not each connection.
        var missing = c
        missing.rootCertificateFile = "/nonexistent/ca.pem"
        #expect { try missing.clientConfiguration() } throws: { ($0 as? CatalogError)?.code == .tlsFileUnreadable }
    }

    @Test func unixSocketDirectory() throws {
        let c = try DatabaseConfiguration.parse("postgresql://postgres@/etl?host=/run/pg&port=5433", environment: [:])
        #expect(c.unixSocketDirectory == "/run/pg")
        #expect(c.host == nil)
        #expect(c.port == 5433)
        #expect(c.tlsMode == .disable)
        #expect(try c.clientConfiguration().unixSocketPath == "/run/pg/.s.PGSQL.5433")
    }

    @Test func passwordSourcesInOrder() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("pw-\(UUID().uuidString)")
        try "from-file\n".write(to: file, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: file.path)  // owner-only, as required
        defer { try? FileManager.default.removeItem(at: file) }
        let url = "postgres://etl@h/db?sslmode=disable"
        #expect(try DatabaseConfiguration.parse(url, environment: [:]).password == nil)
        #expect(try DatabaseConfiguration.parse(url, environment: ["PGPASSWORD": "pg"]).password == "pg")
        #expect(try DatabaseConfiguration.parse(url, environment: ["DICOM_ETL_DATABASE_PASSWORD_FILE": file.path,
                                                                   "PGPASSWORD": "pg"]).password == "from-file")
        #expect(try DatabaseConfiguration.parse(url, environment: ["DICOM_ETL_DATABASE_PASSWORD": "env",
                                                                   "DICOM_ETL_DATABASE_PASSWORD_FILE": file.path]).password == "env")
        #expect(try DatabaseConfiguration.parse(url + "&password_file=\(file.path)",
                                                environment: ["DICOM_ETL_DATABASE_PASSWORD": "env"]).password == "from-file")
        #expect(try DatabaseConfiguration.parse("postgres://etl:inurl@h/db", environment: ["PGPASSWORD": "pg"]).password == "inurl")
        #expect {
            try DatabaseConfiguration.parse(url + "&password_file=/nonexistent/pw", environment: [:])
        } throws: { ($0 as? CatalogError)?.code == .passwordFileUnreadable }
    }

    @Test func rejectsBadURLs() {
        for bad in ["mysql://h/db", "postgres://h/db?sslmode=sometimes", "postgres://h/db?pool_size=0", "not a url",
                    "postgres://h/db?port=99999"] {
            #expect(throws: CatalogError(.invalidDatabaseURL), "\(bad)") { try DatabaseConfiguration.parse(bad, environment: [:]) }
        }
    }

    @Test func defaults() throws {
        let c = try DatabaseConfiguration.parse("postgres://h", environment: [:])
        #expect(c.port == 5432)
        #expect(c.username == "postgres")
        #expect(c.database == "postgres")
        #expect(c.tlsMode == .prefer)
        #expect(c.poolSize == 10)
    }

    @Test func retryPolicyDoublesAndCaps() {
        let policy = RetryPolicy(base: .seconds(2), multiplier: 2, maximum: .seconds(10))
        #expect(policy.delay(afterAttempts: 1) == .seconds(2))
        #expect(policy.delay(afterAttempts: 2) == .seconds(4))
        #expect(policy.delay(afterAttempts: 3) == .seconds(8))
        #expect(policy.delay(afterAttempts: 4) == .seconds(10))
    }
}
