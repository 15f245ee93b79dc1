// Catalog: typed, transactional writes of the de-identified catalogue, the vault and the ledger over
// PostgresNIO. One `withTransaction` lets the daemon catalogue an instance, record its vault entries, move its
// ledger row to `catalogued` and enqueue jobs atomically.
import Foundation
import Logging
import PostgresNIO

/// The catalogue's entry point. Holds a `PostgresClient` that the caller runs (or use `withRunningClient`).
public struct Catalog: Sendable {
    public let client: PostgresClient
    let logger: Logger

    /// - Parameter client: a `PostgresClient` whose `run()` is going (or will be before the first call).
    public init(client: PostgresClient, logger: Logger = Logger(label: "dicom-etl.catalog")) {
        self.client = client
        self.logger = logger
    }

    /// A catalogue over a new client for `configuration` that the caller runs: `client` is a ServiceLifecycle
    /// `Service`, so it goes into the caller's service group, started before the services that query.
    public init(_ configuration: DatabaseConfiguration, logger: Logger = Logger(label: "dicom-etl.catalog")) throws {
        self.init(client: PostgresClient(configuration: try configuration.clientConfiguration(), backgroundLogger: logger), logger: logger)
    }

    /// Creates a client for `configuration`, runs it for the duration of `body` and shuts it down afterwards.
    public static func withRunningClient<Result: Sendable>(
        _ configuration: DatabaseConfiguration,
        logger: Logger = Logger(label: "dicom-etl.catalog"),
        _ body: (PostgresClient) async throws -> Result
    ) async throws -> Result {
        let client = PostgresClient(configuration: try configuration.clientConfiguration(), backgroundLogger: logger)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            // Started immediately: `run()` has begun before `body` leases its first connection.
            group.addImmediateTask { await client.run() }
            do {
                let result = try await body(client)
                group.cancelAll()
                return result
            } catch {
                group.cancelAll()
                throw error
            }
        }
    }

    /// Applies the bundled migrations (see `Migrator`).
    @discardableResult
    public func migrate() async throws -> MigrationReport {
        try await Migrator(client: client, logger: logger).migrate()
    }

    /// Runs `body` in one transaction: committed when it returns, rolled back when it throws.
    public func withTransaction<Result: Sendable>(
        _ body: (CatalogTransaction) async throws -> Result
    ) async throws -> Result {
        let logger = self.logger
        return try await inTransaction(client, logger: logger) { connection in
            try await body(CatalogTransaction(connection: connection, logger: logger))
        }
    }

    /// Upserts a batch in its own transaction (see `CatalogTransaction.upsert`).
    @discardableResult
    public func upsert(_ batch: CatalogBatch, arrivedAt: Date = Date()) async throws -> UpsertSummary {
        try await withTransaction { try await $0.upsert(batch, arrivedAt: arrivedAt) }
    }

    /// Claims a source file for processing (see `CatalogTransaction.claimSourceFile`).
    public func claimSourceFile(
        _ file: SourceFile, owner: String, lease: Duration, maxAttempts: Int = 3, maxInterruptions: Int = 10
    ) async throws -> LedgerClaim {
        try await withTransaction {
            try await $0.claimSourceFile(file, owner: owner, lease: lease, maxAttempts: maxAttempts, maxInterruptions: maxInterruptions)
        }
    }

    /// The ledger row with this id, or nil.
    public func ledgerEntry(id: Int64) async throws -> LedgerEntry? {
        try await withTransaction { try await $0.ledgerEntry(id: id) }
    }

    /// The completion state of a series, or nil when it is unknown.
    public func seriesState(_ seriesUID: String) async throws -> SeriesState? {
        try await withTransaction { try await $0.seriesState(seriesUID) }
    }
}
