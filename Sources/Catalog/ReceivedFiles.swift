// The source of instances received over the network (ingest.received_files): written by the intake before the
// sender is answered, read back by tests and operators through ingest.received_sources.
import PostgresNIO

extension Catalog {
    /// Records where a received file came from (idempotent on the file name).
    public func recordReceivedFile(fileName: String, transport: String, sender: String, peerAddress: String) async throws {
        try await client.query("""
            INSERT INTO ingest.received_files (file_name, transport, sender, peer_address)
            VALUES (\(fileName), \(transport), \(sender), \(peerAddress)) ON CONFLICT (file_name) DO NOTHING
            """, logger: logger)
    }
}
