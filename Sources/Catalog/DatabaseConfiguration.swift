// DatabaseConfiguration: where and how to connect, read from a postgres:// URL, and turned into a
// PostgresClient configuration (TCP with a TLS mode, or a unix socket).
import Foundation
import NIOSSL
import PostgresNIO

/// How to reach PostgreSQL.
///
/// URL forms:
/// - `postgres://user:pass@host:5432/db?sslmode=disable|prefer|require|verify-full&sslrootcert=/ca.pem&pool_size=10`
/// - `postgres://user@/db?host=/var/run/postgresql` (a unix socket directory; the socket is `.s.PGSQL.<port>`)
///
/// The password comes, in this order, from the URL, the `password_file=` URL option, the environment variable
/// `DICOM_ETL_DATABASE_PASSWORD`, the file named by `DICOM_ETL_DATABASE_PASSWORD_FILE`, or `PGPASSWORD`.
public struct DatabaseConfiguration: Sendable, Equatable {
    /// TLS modes with libpq's meaning.
    public enum TLSMode: String, Sendable, CaseIterable {
        /// Never TLS.
        case disable
        /// TLS when the server offers it, without verification.
        case prefer
        /// TLS required, the certificate is not verified.
        case require
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
    /// A PEM file of trusted roots for `verify-full` (the system's roots otherwise).
    public var rootCertificateFile: String?
    /// The most connections the pool opens.
    public var poolSize: Int

    public init(
        host: String? = "127.0.0.1", port: Int = 5432, unixSocketDirectory: String? = nil,
        username: String = "postgres", password: String? = nil, database: String = "postgres",
        tlsMode: TLSMode = .prefer, rootCertificateFile: String? = nil, poolSize: Int = 10
    ) {
        self.host = host
        self.port = port
        self.unixSocketDirectory = unixSocketDirectory
        self.username = username
        self.password = password
        self.database = database
        self.tlsMode = tlsMode
        self.rootCertificateFile = rootCertificateFile
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
        config.rootCertificateFile = options["sslrootcert"]
        if let pool = options["pool_size"] {
            guard let size = Int(pool), size > 0 else { throw CatalogError(.invalidDatabaseURL) }
            config.poolSize = size
        }

        if let password = components.password {
            config.password = password
        } else if let file = options["password_file"] {
            config.password = try readPasswordFile(file)
        } else if let password = environment["DICOM_ETL_DATABASE_PASSWORD"] {
            config.password = password
        } else if let file = environment["DICOM_ETL_DATABASE_PASSWORD_FILE"] {
            config.password = try readPasswordFile(file)
        } else if let password = environment["PGPASSWORD"] {
            config.password = password
        }
        return config
    }

    static func readPasswordFile(_ path: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw CatalogError(.passwordFileUnreadable)
        }
        return text.trimmingCharacters(in: .newlines)
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

    /// The configuration for `PostgresClient`.
    public func clientConfiguration() throws -> PostgresClient.Configuration {
        var configuration: PostgresClient.Configuration
        if let directory = unixSocketDirectory {
            let socket = (directory as NSString).appendingPathComponent(".s.PGSQL.\(port)")
            configuration = .init(unixSocketPath: socket, username: username, password: password, database: database)
        } else {
            let tls: PostgresClient.Configuration.TLS
            switch tlsMode {
            case .disable:
                tls = .disable
            case .prefer, .require:
                var tlsConfiguration = TLSConfiguration.makeClientConfiguration()
                tlsConfiguration.certificateVerification = .none
                tls = tlsMode == .prefer ? .prefer(tlsConfiguration) : .require(tlsConfiguration)
            case .verifyFull:
                var tlsConfiguration = TLSConfiguration.makeClientConfiguration()
                tlsConfiguration.certificateVerification = .fullVerification
                if let rootCertificateFile { tlsConfiguration.trustRoots = .file(rootCertificateFile) }
                tls = .require(tlsConfiguration)
            }
            configuration = .init(
                host: host ?? "127.0.0.1", port: port, username: username, password: password, database: database, tls: tls)
        }
        configuration.options.maximumConnections = max(1, poolSize)
        return configuration
    }

    /// A URL for logs: no password, no options beyond the TLS mode.
    public var redactedDescription: String {
        let place = unixSocketDirectory.map { _ in "[unix socket]:\(port)" } ?? "\(host ?? "?"):\(port)"
        return "postgres://\(username)@\(place)/\(database)?sslmode=\(tlsMode.rawValue)&pool_size=\(poolSize)"
    }
}
