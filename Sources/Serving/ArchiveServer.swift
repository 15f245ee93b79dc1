// ArchiveServer: the one HTTP server (Hummingbird) as a ServiceLifecycle Service. It is built from route
// groups, each a `ServerRoutes` value that adds its routes to the shared router: DICOMweb (QIDO-RS, WADO-RS,
// tensors), results (JSON, FHIR R4), the results page and the audit. Another group (STOW-RS) is one more value
// in `routes`: it gets the same authentication, error shape and CORS.
import CodedErrors
import Catalog
import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore
import NIOSSL
import ObjectStorage
import ServiceLifecycle

/// Where and how the server listens. Read once at start (see `DaemonConfiguration`'s `serve_*` keys).
public struct ServingConfiguration: Sendable, Equatable {
    public var host: String
    /// 0 picks a free port (see `ArchiveServer.boundPort()`).
    public var port: Int
    /// Origins a browser viewer may call from (CORS); empty: none, `*`: any.
    public var corsOrigins: [String]
    /// PEM certificate chain and private key for native TLS; both nil: plain HTTP (behind a TLS proxy).
    public var tlsCertificateFile: String?
    public var tlsKeyFile: String?

    public init(host: String = "127.0.0.1", port: Int = 8080, corsOrigins: [String] = [], tlsCertificateFile: String? = nil, tlsKeyFile: String? = nil) {
        self.host = host
        self.port = port
        self.corsOrigins = corsOrigins
        self.tlsCertificateFile = tlsCertificateFile
        self.tlsKeyFile = tlsKeyFile
    }
}

/// A group of routes of the archive server.
///
/// A group adds its handlers to the router and names, per route, the roles it admits with
/// `context.require([...])`; it throws `ServingError` (or lets store and database errors through, which the
/// server shapes into 503/500). Example, network ingress:
///
///     struct StowRoutes: ServerRoutes {
///         func register(on router: Router<ServerContext>, services: ArchiveServices) {
///             router.post("/studies") { request, context in
///                 let uploader = try context.require([.uploader])
///                 …
///             }
///         }
///     }
public protocol ServerRoutes: Sendable {
    func register(on router: Router<ServerContext>, services: ArchiveServices)
}

/// What the routes read and write through.
public struct ArchiveServices: Sendable {
    public let catalog: Catalog
    public let store: any ObjectStore
    public let logger: Logger

    public init(catalog: Catalog, store: any ObjectStore, logger: Logger) {
        self.catalog = catalog
        self.store = store
        self.logger = logger
    }
}

/// The HTTP server: a `Service` to run in the daemon's (or `dicom-etl serve`'s) service group.
public final class ArchiveServer: Service, Sendable {
    /// The route groups every archive server has: DICOMweb, results, results page, audit.
    public static let standardRoutes: [any ServerRoutes] = [DICOMwebRoutes(), ResultsRoutes(), ResultsPageRoutes(), AuditRoutes()]

    private let configuration: ServingConfiguration
    private let application: Application<RouterResponder<ServerContext>>
    private let bound = BoundPort()

    /// - Parameters:
    ///   - configuration: address, CORS, TLS.
    ///   - tokens: the bearer tokens and their roles.
    ///   - services: the catalogue (whose client runs beside) and the object store.
    ///   - routes: the route groups (`standardRoutes` plus any others).
    public init(
        configuration: ServingConfiguration, tokens: AccessTokens, services: ArchiveServices,
        routes: [any ServerRoutes] = ArchiveServer.standardRoutes
    ) throws {
        self.configuration = configuration
        let router = Router(context: ServerContext.self)
        // Outermost first: CORS headers go on every answer, errors included.
        if !configuration.corsOrigins.isEmpty { router.add(middleware: CrossOrigin(origins: configuration.corsOrigins)) }
        router.add(middleware: ErrorShape(classify: Self.classify))
        router.add(middleware: BearerAuthentication(tokens: tokens))
        for group in routes { group.register(on: router, services: services) }
        let server: HTTPServerBuilder
        switch (configuration.tlsCertificateFile, configuration.tlsKeyFile) {
        case (nil, nil):
            server = .http1()
        case (let certificate?, let key?):
            let chain = try NIOSSLCertificate.fromPEMFile(certificate).map { NIOSSLCertificateSource.certificate($0) }
            let tls = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(try NIOSSLPrivateKey(file: key, format: .pem)))
            server = try .tls(.http1(), tlsConfiguration: tls)
        default:
            throw ServingSetupError(.tlsNeedsCertificateAndKey)
        }
        let bound = self.bound
        var logger = services.logger
        logger[metadataKey: "component"] = "serve"
        application = Application(
            router: router, server: server,
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "dicom-etl"),
            onServerRunning: { channel in bound.set(channel.localAddress?.port) },
            logger: logger)
    }

    /// The port the server listens on once it runs (nil once it stopped or if it never bound).
    public func boundPort() async -> Int? { await bound.value() }

    /// Serves until graceful shutdown.
    public func run() async throws {
        defer { bound.set(nil) }
        try await application.run()
    }

    /// Database outages and store outages are 503; a missing object the catalogue names is 500.
    static func classify(_ error: any Error) -> ServingError {
        if let error = error as? ObjectStoreError {
            return error.code == .unavailable ? .unavailable : .internal
        }
        if DatabaseFault.of(error) == .unavailable { return .unavailable }
        return .internal
    }
}

/// Why the server cannot start. Names settings, never their values.
public struct ServingSetupError: CodedError, Hashable {
    /// Machine-readable reason.
    public struct Code: ErrorCode {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        /// TLS was asked for with a certificate but no key, or a key but no certificate.
        public static let tlsNeedsCertificateAndKey = Code(rawValue: "tls_needs_certificate_and_key")
    }

    public let code: Code
    public init(_ code: Code) { self.code = code }
    public var description: String { "serving setup failed: \(code.rawValue)" }
}

/// The bound port, awaited by tests and by the daemon's log line.
final class BoundPort: @unchecked Sendable {
    private let lock = NSLock()
    private var port: Int?
    private var finished = false
    private var waiters: [CheckedContinuation<Int?, Never>] = []

    func set(_ port: Int?) {
        let waiting: [CheckedContinuation<Int?, Never>] = lock.withLock {
            self.port = port
            if port == nil { finished = true }
            defer { waiters.removeAll() }
            return waiters
        }
        for waiter in waiting { waiter.resume(returning: port) }
    }

    func value() async -> Int? {
        await withCheckedContinuation { continuation in
            let ready: Int?? = lock.withLock {
                if let port { return .some(port) }
                if finished { return .some(nil) }
                waiters.append(continuation)
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }
}
