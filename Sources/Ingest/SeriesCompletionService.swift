// Series completeness: a series is complete once no instance has arrived for its quiet period; then,
// in the same transaction that marks it complete, one job per routed model is enqueued, unique by
// (series, model, revision). A late instance re-opens the series (the catalogue bumps its revision).
// The state lives in PostgreSQL and rows are taken FOR UPDATE SKIP LOCKED, so replicas and restarts
// agree.
import Catalog
import Foundation
import Logging
import ServiceLifecycle

/// Marks quiet series complete and enqueues their inference jobs.
public struct SeriesCompletionService<C: Clock>: Service where C.Duration == Duration {
    public let catalog: Catalog
    public let routes: SeriesRoutes
    /// The quiet period applied to every series: the longest of the configured default and the
    /// routes' own quiet periods, so no routed model receives a series its route considers open.
    public let quietPeriod: Duration
    /// How often quiet series are looked for.
    public let pollInterval: Duration
    public let clock: C
    /// Wall time by the same source the processor stamps arrivals with.
    public let now: @Sendable () -> Date
    public let logger: Logger

    public init(
        catalog: Catalog, routes: SeriesRoutes, defaultQuietPeriod: Duration, clock: C, now: @escaping @Sendable () -> Date = { Date() },
        logger: Logger
    ) {
        self.catalog = catalog
        self.routes = routes
        quietPeriod = SeriesRoutes.quietPeriod(of: routes.routes, default: defaultQuietPeriod)
        let quarter = quietPeriod / 4
        pollInterval = min(max(quarter, .milliseconds(100)), .seconds(2))
        self.clock = clock
        self.now = now
        self.logger = logger
    }

    /// One pass: completes the quiet series and enqueues their jobs; returns the series completed.
    @discardableResult
    public func completeQuietSeries() async throws -> [CompletedSeries] {
        let quietSince = now().addingTimeInterval(-Double(quietPeriod.components.seconds) - Double(quietPeriod.components.attoseconds) / 1e18)
        let routes = self.routes
        return try await catalog.withTransaction { transaction in
            let completed = try await transaction.completeQuietSeries(quietSince: quietSince)
            var requests: [JobRequest] = []
            for series in completed {
                for route in routes.routes(modality: series.modality, bodyPart: series.bodyPart) {
                    requests.append(JobRequest(seriesUID: series.seriesUID, seriesRevision: series.revision,
                                               model: ModelRef(name: route.model, version: route.modelVersion)))
                }
            }
            try await transaction.enqueue(requests)
            return completed
        }
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    let completed = try await completeQuietSeries()
                    if !completed.isEmpty { logger.info("series complete", metadata: ["count": .stringConvertible(completed.count)]) }
                } catch {
                    logger.warning("series completion pass failed", metadata: LogRedaction.metadata(for: error))
                }
                do { try await clock.sleep(for: pollInterval) } catch { return }
            }
        }
    }
}
