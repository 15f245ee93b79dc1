// Metrics of network intake. Labels carry outcomes only, never AE titles or addresses.
import CoreMetrics
import Foundation
import Metrics

/// Names (Prometheus): `dicom_etl_network_associations_total{outcome}` (accepted, rejected, aborted, released),
/// `dicom_etl_network_associations_active`, `dicom_etl_network_instances_total{transport,outcome}` (success,
/// out_of_resources, refused, failed, incomplete), `dicom_etl_network_bytes_total{transport}`,
/// `dicom_etl_network_durable_seconds{transport}` (histogram: last byte received → durable).
public final class NetworkMetrics: Sendable {
    private let factory: any MetricsFactory
    /// Associations open now.
    public let activeAssociations: Meter
    private let lock = NSLock()
    nonisolated(unsafe) private var counters: [String: Counter] = [:]
    nonisolated(unsafe) private var timers: [String: CoreMetrics.Timer] = [:]

    public init(factory: any MetricsFactory = MetricsSystem.factory) {
        self.factory = factory
        activeAssociations = Meter(label: "dicom_etl_network_associations_active", factory: factory)
    }

    private func counter(_ label: String, _ dimensions: [(String, String)]) -> Counter {
        let key = label + dimensions.map { "|\($0.0)=\($0.1)" }.joined()
        return lock.withLock {
            if let counter = counters[key] { return counter }
            let counter = Counter(label: label, dimensions: dimensions, factory: factory)
            counters[key] = counter
            return counter
        }
    }

    /// Counts an association by outcome.
    public func association(_ outcome: String) {
        counter("dicom_etl_network_associations_total", [("outcome", outcome)]).increment()
    }

    /// Counts an instance by transport (`dimse`, `stow`) and outcome.
    public func instance(_ transport: String, _ outcome: String) {
        counter("dicom_etl_network_instances_total", [("transport", transport), ("outcome", outcome)]).increment()
    }

    /// Counts received data set bytes.
    public func bytes(_ transport: String, _ count: Int) {
        counter("dicom_etl_network_bytes_total", [("transport", transport)]).increment(by: Int64(count))
    }

    /// Records the time from an instance's last byte to its durable rename.
    public func durable(_ transport: String, _ duration: Duration) {
        let timer = lock.withLock {
            if let timer = timers[transport] { return timer }
            let timer = CoreMetrics.Timer(label: "dicom_etl_network_durable_seconds", dimensions: [("transport", transport)], factory: factory)
            timers[transport] = timer
            return timer
        }
        let (seconds, attoseconds) = duration.components
        timer.recordNanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
