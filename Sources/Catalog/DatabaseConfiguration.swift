// DatabaseConfiguration: where and how to connect, read from a postgres:// URL, and turned into a
// PostgresClient configuration (TCP with a TLS mode, or a unix socket).
import Foundation
import NIOSSL
import PostgresNIO
import Secrets

/// How to reach PostgreSQL.
///
/// URL forms:
/// - `postgres://user:pass@host:5432/db?sslmode=disable|prefer|require|verify-ca|verify-full&sslrootcert=/ca.pem&pool_size=10`
/// - `…&sslcert=/client.pem&sslkey=/client.key` (a client certificate, for `cert` authentication)
/// - `postgres://user@/db?host=/var/run/postgresql` (a unix socket directory; the socket is `.s.PGSQL.<port>`)
///
/// The password comes, in this order, from the URL, the `password_file=` URL option, the environment variable
/// `DICOM_ETL_DATABASE_PASSWORD`, the file named by `DICOM_ETL_DATABASE_PASSWORD_FILE`, or `PGPASSWORD`.
/// Password files and `sslkey` must be readable by their owner alone (`chmod 600`, see `SecretFile`).
public struct DatabaseConfiguration: Sendable, Equatable, CustomStringConvertible {
    /// TLS modes with libpq's meaning.
    public enum TLSMode: String, Sendable, CaseIterable {
        /// Never TLS.
        case disable
        /// TLS when the server offers it, without verification.
        case prefer
        /// TLS required; the certificate is not verified, unless `sslrootcert` is given (then as `verify-ca`, as libpq).
        case require
        /// TLS required, the certificate chain is verified, the host name is not.
        case verifyCA = "verify-ca"
        /// TLS required, the certificate chain and host name are verified.
        case verifyFull = "verify-full"
    }

    /// The host name for TCP; `nil` when `unixSocketDirectory` is set.
    public var host: String?
    /// The TCP port, also the suffix of the unix socket's file name.
    public var port: Int
    /// The directory holding the server's unix socket.
    public var unixSocketDirectory: String?
    public var username: String
    public var password: String?
    public var database: String
    public var tlsMode: TLSMode
    /// A PEM file of trusted roots for `verify-ca` / `verify-full` (the system's roots otherwise).
    public var rootCertificateFile: String?
    /// A PEM client certificate (chain) presented to the server, with its key in `clientKeyFile`.
    public var clientCertificateFile: String?
    /// The PEM private key of `clientCertificateFile`; a secret file (owner-only).
    public var clientKeyFile: String?
    /// The most connections the pool opens.
    public var poolSize: Int

    public init(
        host: String? = "127.0.0.1", port: Int = 5432, unixSocketDirectory: String? = nil,
        username: String = "postgres", password: String? = nil, database: String = "postgres",
        tlsMode: TLSMode = .prefer, rootCertificateFile: String? = nil, clientCertificateFile: String? = nil,
        clientKeyFile: String? = nil, poolSize: Int = 10
    ) {
        self.host = host
        self.port = port
        self.unixSocketDirectory = unixSocketDirectory
        self.username = username
        self.password = password
        self.database = database
        self.tlsMode = tlsMode
        self.rootCertificateFile = rootCertificateFile
        self.clientCertificateFile = clientCertificateFile
        self.clientKeyFile = clientKeyFile
        self.poolSize = poolSize
    }

    /// Parses a database URL; see the type's documentation for the accepted forms.
    /// - Parameters:
    ///   - url: the URL (`postgres://` or `postgresql://`).
    ///   - environment: where password variables are looked up.
    public static func parse(
        _ url: String, environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> DatabaseConfiguration {
        guard let components = URLComponents(string: url),
              let scheme = components.scheme?.lowercased(), scheme == "postgres" || scheme == "postgresql"
        else { throw CatalogError(.invalidDatabaseURL) }

        var config = DatabaseConfiguration()
        var options: [String: String] = [:]
        for item in components.queryItems ?? [] { options[item.name.lowercased()] = item.value ?? "" }

        if let port = components.port { config.port = port }
        if let portOption = options["port"] {
            guard let port = Int(portOption), (1...65535).contains(port) else { throw CatalogError(.invalidDatabaseURL) }
            config.port = port
        }
        let urlHost = components.host.flatMap { $0.isEmpty ? nil : $0 }
        if let hostOption = options["host"], hostOption.hasPrefix("/") {
            config.unixSocketDirectory = hostOption
            config.host = nil
        } else if let hostOption = options["host"], !hostOption.isEmpty {
            config.host = hostOption
        } else if let urlHost {
            config.host = urlHost
        } else {
            config.host = "127.0.0.1"
        }
        if let user = components.user, !user.isEmpty { config.username = user }
        let path = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
        if !path.isEmpty { config.database = path } else { config.database = config.username }

        if let mode = options["sslmode"] {
            guard let parsed = TLSMode(rawValue: mode) else { throw CatalogError(.invalidDatabaseURL) }
            config.tlsMode = parsed
        } else if config.unixSocketDirectory != nil {
            config.tlsMode = .disable
        }
        config.rootCertificateFile = options["sslrootcert"].flatMap { $0.isEmpty ? nil : $0 }
        config.clientCertificateFile = options["sslcert"].flatMap { $0.isEmpty ? nil : $0 }
        config.clientKeyFile = options["sslkey"].flatMap { $0.isEmpty ? nil : $0 }
        // A certificate without its key (or a key without its certificate) is a mistake, not a choice.
        guard (config.clientCertificateFile == nil) == (config.clientKeyFile == nil) else { throw CatalogError(.invalidDatabaseURL) }
        if let pool = options["pool_size"] {
            guard let size = Int(pool), size > 0 else { throw CatalogError(.invalidDatabaseURL) }
            config.poolSize = size
        }

        if let password = components.password {
            config.password = password
        } else if let file = options["password_file"] {
            config.password = try readPasswordFile(file, setting: "password_file")
        } else if let password = environment["DICOM_ETL_DATABASE_PASSWORD"] {
            config.password = password
        } else if let file = environment["DICOM_ETL_DATABASE_PASSWORD_FILE"] {
            config.password = try readPasswordFile(file, setting: "DICOM_ETL_DATABASE_PASSWORD_FILE")
        } else if let password = environment["PGPASSWORD"] {
            config.password = password
        }
        return config
    }

    static func readPasswordFile(_ path: String, setting: String) throws -> String {
        do {
            return try SecretFile.readText(path, setting: setting).trimmingCharacters(in: .newlines)
        } catch {
            throw CatalogError(secretFileError: error, unreadable: .passwordFileUnreadable)
        }
    }

    /// The same configuration for another database of the same server.
    public func with(database: String) -> DatabaseConfiguration {
        var copy = self
        copy.database = database
        return copy
    }

    /// The same configuration for another user (no password unless given).
    public func with(username: String, password: String?) -> DatabaseConfiguration {
        var copy = self
        copy.username = username
        copy.password = password
        return copy
    }

    /// What TLS a TCP connection uses: none, TLS if offered, or TLS required.
    enum TLSUse {
        case disable
        case prefer(TLSConfiguration)
        case require(TLSConfiguration)
    }

    /// The TLS of a TCP connection for `tlsMode`. Reads the TLS files now, so that a missing CA or an insecure
    /// client key stops the start with a clear error instead of failing every connection.
    func tlsUse() throws -> TLSUse {
        switch tlsMode {
        case .disable: return .disable
        case .prefer: return .prefer(try tlsConfiguration(verification: .none))
        case .require: return .require(try tlsConfiguration(verification: rootCertificateFile == nil ? .none : .noHostnameVerification))
        case .verifyCA: return .require(try tlsConfiguration(verification: .noHostnameVerification))
        case .verifyFull: return .require(try tlsConfiguration(verification: .fullVerification))
        }
    }

    /// The configuration for `PostgresClient`.
    public func clientConfiguration() throws -> PostgresClient.Configuration {
        var configuration: PostgresClient.Configuration
        if let directory = unixSocketDirectory {
            configuration = .init(unixSocketPath: socketPath(directory), username: username, password: password, database: database)
        } else {
            let tls: PostgresClient.Configuration.TLS
            switch try tlsUse() {
            case .disable: tls = .disable
            case .prefer(let configuration): tls = .prefer(configuration)
            case .require(let configuration): tls = .require(configuration)
            }
            configuration = .init(
                host: host ?? "127.0.0.1", port: port, username: username, password: password, database: database, tls: tls)
        }
        configuration.options.maximumConnections = max(1, poolSize)
        return configuration
    }

    /// The configuration of one `PostgresConnection`, with the same endpoint and TLS as `clientConfiguration()`.
    func connectionConfiguration() throws -> PostgresConnection.Configuration {
        if let directory = unixSocketDirectory {
            return .init(unixSocketPath: socketPath(directory), username: username, password: password, database: database)
        }
        let tls: PostgresConnection.Configuration.TLS
        switch try tlsUse() {
        case .disable: tls = .disable
        case .prefer(let configuration): tls = .prefer(try NIOSSLContext(configuration: configuration))
        case .require(let configuration): tls = .require(try NIOSSLContext(configuration: configuration))
        }
        return .init(host: host ?? "127.0.0.1", port: port, username: username, password: password, database: database, tls: tls)
    }

    func socketPath(_ directory: String) -> String {
        (directory as NSString).appendingPathComponent(".s.PGSQL.\(port)")
    }

    /// TLS 1.2 or later, the given verification, the trusted roots of `sslrootcert` (else the system's) and
    /// the client certificate, if any.
    func tlsConfiguration(verification: CertificateVerification) throws -> TLSConfiguration {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        tls.certificateVerification = verification
        if let rootCertificateFile, verification != .none {
            tls.trustRoots = .certificates(try Self.certificates(rootCertificateFile, setting: "sslrootcert"))
        }
        if let clientCertificateFile, let clientKeyFile {
            tls.certificateChain = try Self.certificates(clientCertificateFile, setting: "sslcert").map { .certificate($0) }
            let keyBytes: [UInt8]
            do { keyBytes = try SecretFile.read(clientKeyFile, setting: "sslkey") } catch {
                throw CatalogError(secretFileError: error, unreadable: .tlsFileUnreadable)
            }
            do { tls.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: keyBytes, format: .pem)) } catch {
                throw CatalogError(.tlsFileUnreadable, detail: "sslkey (\(clientKeyFile)) is not a PEM private key")
            }
        }
        return tls
    }

    static func certificates(_ path: String, setting: String) throws -> [NIOSSLCertificate] {
        let certificates = try? NIOSSLCertificate.fromPEMFile(path)
        guard let certificates, !certificates.isEmpty else {
            throw CatalogError(.tlsFileUnreadable, detail: "\(setting) (\(path)) is not a readable PEM certificate file")
        }
        return certificates
    }

    /// A URL for logs: no password, no options beyond the TLS mode.
    public var redactedDescription: String {
        let place = unixSocketDirectory.map { _ in "[unix socket]:\(port)" } ?? "\(host ?? "?"):\(port)"
        return "postgres://\(username)@\(place)/\(database)?sslmode=\(tlsMode.rawValue)&pool_size=\(poolSize)"
    }

    /// The redacted URL: printing a configuration never prints its password.
    public var description: String { redactedDescription }
}
