// ConnectionCheck: one connection opened and closed at start, so that a TLS or authentication failure is
// reported at once with its reason. PostgresClient's pool retries a failing connection for a minute and then
// reports only that its circuit breaker tripped.
import Logging
import NIOSSL
import PostgresNIO

extension CatalogError.Code {
    /// The TLS handshake failed: the server's certificate chain is not trusted or does not name the host.
    public static let tlsHandshakeFailed = CatalogError.Code(rawValue: "tls_handshake_failed")
    /// `sslmode` requires TLS and the server does not offer it.
    public static let tlsUnsupportedByServer = CatalogError.Code(rawValue: "tls_unsupported_by_server")
    /// The server refused the login (password, client certificate or pg_hba.conf); see `sqlState`.
    public static let authenticationFailed = CatalogError.Code(rawValue: "authentication_failed")
}

extension DatabaseConfiguration {
    /// Opens one connection with this configuration's endpoint, TLS and credentials, then closes it.
    ///
    /// Throws `tlsHandshakeFailed`, `tlsUnsupportedByServer` or `authenticationFailed` (failures no retry
    /// mends) and, unless `ignoringTransientFailures`, any other error as it came (server down, refused).
    /// - Parameters:
    ///   - logger: for the connection's own logging.
    ///   - ignoringTransientFailures: true where the caller retries anyway (the daemon, the worker).
    public func checkConnection(logger: Logger, ignoringTransientFailures: Bool = false) async throws {
        let configuration = try connectionConfiguration()
        let connection: PostgresConnection
        do {
            connection = try await PostgresConnection.connect(configuration: configuration, id: 0, logger: logger)
        } catch {
            let classified = Self.classify(error)
            if ignoringTransientFailures, !(classified is CatalogError) { return }
            throw classified
        }
        try? await connection.close()
    }

    /// A connection error as a `CatalogError` when it is one no retry mends; otherwise unchanged.
    static func classify(_ error: any Error) -> any Error {
        let psql = error as? PSQLError
        if psql?.code == .sslUnsupported {
            return CatalogError(.tlsUnsupportedByServer, detail: "sslmode=require or verify-* and the server offers no TLS")
        }
        if let sqlState = psql?.serverInfo?[.sqlState], sqlState.hasPrefix("28") {
            return CatalogError(.authenticationFailed, sqlState: sqlState)
        }
        for candidate in [error, psql?.underlying].compactMap({ $0 }) where isHandshakeFailure(candidate) {
            // NIOSSL's text names the failed check (CERTIFICATE_VERIFY_FAILED, the expected host name); no secret.
            return CatalogError(.tlsHandshakeFailed, detail: "the server's certificate was refused: \(candidate)")
        }
        return error
    }

    static func isHandshakeFailure(_ error: any Error) -> Bool {
        if error is NIOSSLExtraError { return true }
        if let error = error as? NIOSSLError, case .handshakeFailed = error { return true }
        return false
    }
}
