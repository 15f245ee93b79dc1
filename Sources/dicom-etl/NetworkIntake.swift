// Network intake inside `dicom-etl run`: the durable intake shared by the Storage SCP (and STOW-RS), fed by
// the daemon's outage state and recording each received file's source in the ledger.
import Catalog
import DicomNetwork
import Ingest
import Logging

enum NetworkIntake {
    /// The drop folder's network intake: refuses while the pipeline reports an outage or the disk is short.
    static func intake(_ configuration: DaemonConfiguration, backoff: OutageBackoff, catalog: Catalog?) -> DurableIntake {
        var record: (@Sendable (ReceivedSource) async throws -> Void)?
        if let catalog {
            record = { source in
                try await catalog.recordReceivedFile(
                    fileName: source.fileName, transport: source.transport, sender: source.sender, peerAddress: source.peerAddress)
            }
        }
        return DurableIntake(
            dropFolder: configuration.dropFolder, minimumFreeBytes: configuration.intakeMinFreeBytes,
            isAvailable: { backoff.isAvailable }, recordSource: record)
    }

    /// The Storage SCP on `dicom_host:dicom_port`.
    static func storageSCP(_ configuration: DaemonConfiguration, intake: DurableIntake, metrics: NetworkMetrics, logger: Logger) -> StorageSCP {
        if configuration.dicomAllowedPeers.isEmpty {
            logger.warning("dicom_allowed_peers is empty: every association will be rejected")
        }
        var scpLogger = logger
        scpLogger[metadataKey: "component"] = "scp"
        return StorageSCP(
            configuration: StorageSCPConfiguration(
                host: configuration.dicomHost, port: configuration.dicomPort, aeTitle: configuration.aeTitle,
                allowedPeers: configuration.dicomAllowedPeers, maximumAssociations: configuration.dicomMaxAssociations),
            intake: intake, metrics: metrics, logger: scpLogger)
    }
}
