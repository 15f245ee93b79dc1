// S3TLS: how the S3 store speaks HTTPS. Every https:// endpoint gets an HTTP client that requires TLS 1.2
// or later and verifies the server's chain and host name, against the system's roots or a private CA
// bundle (`ca_bundle=` in the storage URL, for an on-premises MinIO). Certificate failures are reported at
// once as `tlsHandshakeFailed`, never retried as if the server were down.
import AsyncHTTPClient
import Foundation
import Logging
import NIOSSL

extension ObjectStoreError.Code {
    /// The `ca_bundle` file could not be read as PEM certificates, or was given for an `http://` endpoint.
    public static let invalidCABundle = ObjectStoreError.Code(rawValue: "invalid_ca_bundle")
    /// The TLS handshake failed: the server's certificate is not trusted or does not name the host.
    public static let tlsHandshakeFailed = ObjectStoreError.Code(rawValue: "tls_handshake_failed")
}

/// The HTTP clients of HTTPS endpoints, one per trust configuration, kept for the life of the process
/// (an `HTTPClient` must be shut down before it is released; these never are).
enum S3HTTPSClients {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var clients: [String: HTTPClient] = [:]

    /// The client trusting the PEM bundle at `caBundle`, or the system's roots when nil.
    static func client(caBundle: String?) throws -> HTTPClient {
        lock.lock()
        defer { lock.unlock() }
        let cacheKey = caBundle ?? ""
        if let client = clients[cacheKey] { return client }
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        tls.certificateVerification = .fullVerification
        if let caBundle {
            guard let roots = try? NIOSSLCertificate.fromPEMFile(caBundle), !roots.isEmpty else {
                throw ObjectStoreError(.invalidCABundle)
            }
            tls.trustRoots = .certificates(roots)
        }
        var configuration = HTTPClient.Configuration.singletonConfiguration
        configuration.tlsConfiguration = tls
        // A failed connection fails its request at once; S3ObjectStore.send retries what is worth retrying.
        configuration.connectionPool.retryConnectionEstablishment = false
        let client = HTTPClient(
            eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration,
            backgroundActivityLogger: Logger(label: "dicom-etl.s3.http", factory: { _ in SwiftLogNoOpLogHandler() }))
        clients[cacheKey] = client
        return client
    }

    /// True for errors of the TLS handshake itself (untrusted chain, wrong host name), which no retry mends.
    static func isHandshakeFailure(_ error: any Error) -> Bool {
        if error is NIOSSLExtraError { return true }
        if let error = error as? NIOSSLError, case .handshakeFailed = error { return true }
        return false
    }
}
