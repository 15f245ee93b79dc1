// TLS to PostgreSQL, against clusters these tests start: one with `ssl=on` and a server certificate for
// `localhost` from a throwaway CA, one without TLS. Each accepted configuration is shown to work (the
// migrations run over it, and the server reports the connection as TLS) beside a broken copy that is refused
// for the expected reason: another CA, the wrong host name, TLS required of a server without it, a missing or
// insecure client certificate.
#if canImport(Glibc)
import Glibc
#endif
import Catalog
import Foundation
import Logging
import PostgresNIO
import Testing

@Suite(.serialized, .enabled(if: ThrowawayPostgres.available && ThrowawayPKI.openssl != nil, "PostgreSQL 15 and openssl are needed"))
struct PostgresTLSTests {
    static let logger: Logger = {
        var logger = Logger(label: "security-tests")
        logger.logLevel = .critical
        return logger
    }()

    /// A TLS cluster and its PKI for `body`, stopped and removed afterwards.
    static func withTLSCluster(_ body: (ThrowawayPostgres, ThrowawayPKI) async throws -> Void) async throws {
        let folder = try ScratchFolder("dicom-etl-pki")
        defer { folder.remove() }
        let pki = try ThrowawayPKI(folder: folder.path)
        let cluster = try ThrowawayPostgres(pki: pki)
        defer { cluster.stop() }
        try await body(cluster, pki)
    }

    static func configuration(_ url: String, password: String?) throws -> DatabaseConfiguration {
        try DatabaseConfiguration.parse(url, environment: password.map { ["DICOM_ETL_DATABASE_PASSWORD": $0] } ?? [:])
    }

    /// Whether the server sees this configuration's connection as TLS (pg_stat_ssl), through PostgresClient.
    static func serverSeesTLS(_ configuration: DatabaseConfiguration) async throws -> Bool {
        try await Catalog.withRunningClient(configuration, logger: logger) { client in
            let rows = try await client.query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", logger: logger)
            for try await ssl in rows.decode(Bool.self) { return ssl }
            return false
        }
    }

    /// The error `checkConnection` throws, or nil when it connects.
    static func refusal(_ configuration: DatabaseConfiguration) async -> (any Error)? {
        do {
            try await configuration.checkConnection(logger: logger)
            return nil
        } catch {
            return error
        }
    }

    static func code(_ error: (any Error)?) -> CatalogError.Code? { (error as? CatalogError)?.code }

    @Test func verifyFullTrustsOnlyItsCAAndTheRightHostName() async throws {
        try await Self.withTLSCluster { cluster, pki in
            let password = cluster.etlPassword
            // The right CA and host name: connects, migrates, and the session is TLS.
            let good = try Self.configuration(cluster.url(options: "sslmode=verify-full&sslrootcert=\(pki.caCertificate)"), password: password)
            #expect(await Self.refusal(good) == nil)
            let report = try await Catalog.withRunningClient(good, logger: Self.logger) { client in
                try await Migrator(client: client, logger: Self.logger).migrate()
            }
            #expect(!report.applied.isEmpty)
            #expect(try await Self.serverSeesTLS(good))

            // Broken copies: another CA; the system's roots (which do not hold the throwaway CA).
            for options in ["sslmode=verify-full&sslrootcert=\(pki.otherCACertificate)", "sslmode=verify-full",
                            "sslmode=verify-ca&sslrootcert=\(pki.otherCACertificate)"] {
                let error = await Self.refusal(try Self.configuration(cluster.url(options: options), password: password))
                #expect(Self.code(error) == .tlsHandshakeFailed, "\(options): \(String(describing: error))")
            }

            // The wrong host name: the certificate names localhost, the URL 127.0.0.1.
            let wrongHost = try Self.configuration(
                cluster.url(host: "127.0.0.1", options: "sslmode=verify-full&sslrootcert=\(pki.caCertificate)"), password: password)
            let error = await Self.refusal(wrongHost)
            #expect(Self.code(error) == .tlsHandshakeFailed, "\(String(describing: error))")
            // The same URL under verify-ca (chain only) connects: it was the name that was refused.
            let chainOnly = try Self.configuration(
                cluster.url(host: "127.0.0.1", options: "sslmode=verify-ca&sslrootcert=\(pki.caCertificate)"), password: password)
            #expect(await Self.refusal(chainOnly) == nil)

            // require without sslrootcert encrypts without verifying (libpq's meaning): another CA is not noticed…
            let unverified = try Self.configuration(cluster.url(host: "127.0.0.1", options: "sslmode=require"), password: password)
            #expect(await Self.refusal(unverified) == nil)
            #expect(try await Self.serverSeesTLS(unverified))
            // …but with sslrootcert it verifies the chain, as libpq does.
            let requireOtherCA = try Self.configuration(
                cluster.url(options: "sslmode=require&sslrootcert=\(pki.otherCACertificate)"), password: password)
            #expect(Self.code(await Self.refusal(requireOtherCA)) == .tlsHandshakeFailed)

            // The wrong password is an authentication failure, and its text does not hold the password.
            let wrongPassword = "wrong-" + UUID().uuidString
            let denied = await Self.refusal(try Self.configuration(
                cluster.url(options: "sslmode=verify-full&sslrootcert=\(pki.caCertificate)"), password: wrongPassword))
            #expect(Self.code(denied) == .authenticationFailed)
            #expect(!String(describing: denied).contains(wrongPassword) && !String(reflecting: denied as Any).contains(wrongPassword))
        }
    }

    @Test func requireRefusesAServerWithoutTLS() async throws {
        let cluster = try ThrowawayPostgres(pki: nil)
        defer { cluster.stop() }
        let password = cluster.etlPassword
        for mode in ["require", "verify-ca", "verify-full"] {
            let error = await Self.refusal(try Self.configuration(cluster.url(options: "sslmode=\(mode)"), password: password))
            #expect(Self.code(error) == .tlsUnsupportedByServer, "\(mode): \(String(describing: error))")
        }
        // The same server under prefer and disable: plain text, which is what require refused.
        for mode in ["prefer", "disable"] {
            let configuration = try Self.configuration(cluster.url(options: "sslmode=\(mode)"), password: password)
            #expect(await Self.refusal(configuration) == nil, "\(mode)")
            #expect(try await Self.serverSeesTLS(configuration) == false)
        }
    }

    @Test func clientCertificateAuthentication() async throws {
        try await Self.withTLSCluster { cluster, pki in
            let base = "postgres://tls_client@localhost:\(cluster.port)/etl?sslmode=verify-full&sslrootcert=\(pki.caCertificate)"
            let withCertificate = try Self.configuration(base + "&sslcert=\(pki.clientCertificate)&sslkey=\(pki.clientKey)", password: nil)
            #expect(await Self.refusal(withCertificate) == nil)
            #expect(try await Self.serverSeesTLS(withCertificate))
            // Without a certificate, the server's `cert` rule refuses the login.
            #expect(Self.code(await Self.refusal(try Self.configuration(base, password: nil))) == .authenticationFailed)
            // Another user's certificate (its CN is tls_client, the login tls_other) is refused too.
            let otherUser = try Self.configuration(
                "postgres://tls_other@localhost:\(cluster.port)/etl?sslmode=verify-full&sslrootcert=\(pki.caCertificate)"
                    + "&sslcert=\(pki.clientCertificate)&sslkey=\(pki.clientKey)",
                password: nil)
            #expect(Self.code(await Self.refusal(otherUser)) == .authenticationFailed)
            // A client key others could read is refused before any connection.
            chmod(pki.clientKey, 0o644)
            #expect(throws: CatalogError.self) { try withCertificate.clientConfiguration() }
        }
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: dicomETLBinary), "the dicom-etl binary is built by swift build"))
    func migrateCommandAsAnOperatorRunsIt() async throws {
        try await Self.withTLSCluster { cluster, pki in
            var environment = ProcessInfo.processInfo.environment
            environment["DICOM_ETL_DATABASE_URL"] = nil
            environment["DICOM_ETL_DATABASE_PASSWORD"] = cluster.etlPassword
            func migrate(_ url: String) throws -> (status: Int32, output: String) {
                try runTool(dicomETLBinary, ["migrate", "--database-url", url], environment: environment)
            }
            let good = try migrate(cluster.url(options: "sslmode=verify-full&sslrootcert=\(pki.caCertificate)"))
            #expect(good.status == 0, "\(good.output)")
            #expect(good.output.contains("sslmode=verify-full"))
            let otherCA = try migrate(cluster.url(options: "sslmode=verify-full&sslrootcert=\(pki.otherCACertificate)"))
            #expect(otherCA.status != 0)
            #expect(otherCA.output.contains("tls_handshake_failed"), "\(otherCA.output)")
            let wrongHost = try migrate(cluster.url(host: "127.0.0.1", options: "sslmode=verify-full&sslrootcert=\(pki.caCertificate)"))
            #expect(wrongHost.status != 0)
            #expect(wrongHost.output.contains("tls_handshake_failed"), "\(wrongHost.output)")
            // A password on the command line is refused before anything else, and not echoed.
            let inURL = try migrate("postgres://etl:\(cluster.etlPassword)@localhost:\(cluster.port)/etl?sslmode=verify-full")
            #expect(inURL.status != 0)
            #expect(inURL.output.contains("secret_on_command_line"))
            #expect(!inURL.output.contains(cluster.etlPassword))
        }
    }
}
