// ServeCommand: `dicom-etl serve` runs the archive's HTTP server alone (DICOMweb over the de-identified
// archive, the results API and page, the audit) on a configured database and object store, until SIGTERM;
// `dicom-etl token` makes a bearer token and the line of the tokens file that admits it.
import ArgumentParser
import Catalog
import Foundation
import Ingest
import Logging
import ObjectStorage
import Serving
import ServiceLifecycle

/// `dicom-etl serve [--config FILE] [--serve-port N] …`
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the archive's HTTP server: DICOMweb, results (JSON, FHIR) and the results page.",
        discussion: """
            Reads the same configuration as `run` (file, DICOM_ETL_<KEY>, flags): database_url (required: the \
            embedded cluster belongs to `run`; use `run --serve` on a single host), storage_url (else the data \
            folder's filesystem store), serve_host, serve_port, serve_tokens_file, serve_cors_origins, \
            serve_tls_certificate and serve_tls_key. The database must be migrated (dicom-etl migrate); the server's \
            login role needs only membership of dicom_etl_server. SIGTERM stops it.
            """)

    @OptionGroup var options: DaemonOptions

    func validate() throws {
        let configuration = try options.loadConfiguration()
        if configuration.databaseURL.isEmpty {
            throw ValidationError("serve needs database_url (--database-url or DICOM_ETL_DATABASE_URL); on one host, use `run --serve`")
        }
    }

    func run() async throws {
        let configuration = try options.loadConfiguration()
        DaemonOptions.bootstrapLogging(configuration)
        let logger = Logger(label: "dicom-etl")
        var environment = ProcessInfo.processInfo.environment
        if let password = configuration.databasePassword { environment["DICOM_ETL_DATABASE_PASSWORD"] = password }
        let database = try DatabaseConfiguration.parse(configuration.databaseURL, environment: environment)
        let store = try Self.store(configuration)
        try await Catalog.withRunningClient(database, logger: logger) { client in
            let catalog = Catalog(client: client, logger: logger)
            let server = try Self.server(configuration, catalog: catalog, store: store, logger: logger)
            var group = ServiceGroupConfiguration(services: [server], logger: logger)
            group.gracefulShutdownSignals = [.sigterm, .sigint]
            try await ServiceGroup(configuration: group).run()
        }
    }

    /// The configured store, else the data folder's filesystem store (as `run` makes it).
    static func store(_ configuration: DaemonConfiguration) throws -> any ObjectStore {
        if configuration.storageURL.isEmpty {
            let root = URL(fileURLWithPath: configuration.dataDirectory).standardizedFileURL.appendingPathComponent("objects", isDirectory: true)
            return try FilesystemObjectStore(root: root)
        }
        let credentials = configuration.storageAccessKeyID.flatMap { id in
            configuration.storageSecretAccessKey.map { AWSCredentials(accessKeyID: id, secretAccessKey: $0) }
        }
        return try StorageLocation.parse(configuration.storageURL).makeStore(credentials: credentials)
    }

    /// The archive server of a configuration, with its tokens loaded (a missing or malformed file stops the start).
    static func server(
        _ configuration: DaemonConfiguration, catalog: Catalog, store: any ObjectStore, logger: Logger, extraRoutes: [any ServerRoutes] = []
    ) throws -> ArchiveServer {
        let tokens = try AccessTokens(contentsOfFile: configuration.effectiveServeTokensFile)
        let serving = ServingConfiguration(
            host: configuration.serveHost, port: configuration.servePort, corsOrigins: configuration.serveCORSOrigins,
            tlsCertificateFile: configuration.serveTLSCertificate.isEmpty ? nil : configuration.serveTLSCertificate,
            tlsKeyFile: configuration.serveTLSKey.isEmpty ? nil : configuration.serveTLSKey)
        logger.info("archive server configured", metadata: [
            "host": .string(serving.host), "port": .stringConvertible(serving.port), "tokens": .stringConvertible(tokens.count),
            "tls": .stringConvertible(serving.tlsCertificateFile != nil),
        ])
        return try ArchiveServer(
            configuration: serving, tokens: tokens, services: ArchiveServices(catalog: catalog, store: store, logger: logger),
            routes: ArchiveServer.standardRoutes + extraRoutes)
    }
}

/// `dicom-etl token --role clinician --name dr-bob [--tokens-file FILE]`
struct TokenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token",
        abstract: "Make a bearer token for the archive's HTTP server.",
        discussion: """
            Prints the new token once on standard output and appends its line (SHA-256 hash, role, name) to the \
            tokens file (created with mode 0600). The token itself is stored nowhere: hand it over now. To revoke a \
            token, delete its line and restart the server.
            """)

    @Option(name: .long, help: "analyst | clinician | uploader | operator") var role: String
    @Option(name: .long, help: "Who holds it (letters, digits, - _ . @), recorded in the audit.") var name: String
    @Option(name: .customLong("tokens-file"), help: "The tokens file (default: $DICOM_ETL_SERVE_TOKENS_FILE, else ./var/tokens).")
    var tokensFile: String?

    func validate() throws {
        guard Role(rawValue: role) != nil else { throw ValidationError("role must be analyst, clinician, uploader or operator") }
        guard !name.isEmpty, name.count <= 64, name.allSatisfy({ $0.isLetter || $0.isNumber || "-_.@".contains($0) }) else {
            throw ValidationError("name: 1–64 letters, digits, - _ . @")
        }
    }

    func run() throws {
        let environment = ProcessInfo.processInfo.environment
        let path = tokensFile ?? environment["DICOM_ETL_SERVE_TOKENS_FILE"].flatMap { $0.isEmpty ? nil : $0 } ?? "./var/tokens"
        let (token, line) = AccessTokens.generate(role: Role(rawValue: role)!, name: name)
        let manager = FileManager.default
        if !manager.fileExists(atPath: path) {
            try manager.createDirectory(at: URL(fileURLWithPath: path).deletingLastPathComponent(), withIntermediateDirectories: true)
            guard manager.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o600]) else {
                throw ValidationError("cannot create the tokens file")
            }
        }
        guard let handle = FileHandle(forWritingAtPath: path) else { throw ValidationError("cannot write the tokens file") }
        defer { try? handle.close() }
        try handle.seekToEnd()
        try handle.write(contentsOf: Data((line + "\n").utf8))
        print(token)
    }
}
