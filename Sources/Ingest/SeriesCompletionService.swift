// Series completeness: a series is complete once no instance has arrived for its quiet period (the
// longest of its routes' `quiet_seconds`, or the daemon's default for an unrouted series); then,
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
    /// The quiet period of a series no route takes.
    public let defaultQuietPeriod: Duration
    /// The shortest quiet period of any series (the default or a route's): candidates are looked for
    /// with it, then each is held to its own.
    public let shortestQuietPeriod: Duration
    /// How often quiet series are looked for.
    public let pollInterval: Duration
    public let clock: C
    /// Wall time by the same source the processor stamps arrivals with.
    public let now: @Sendable () -> Date
    /// Where the inference queue's depth by state is published (`dicom_etl_job_queue_depth`); nil: nowhere.
    public let metrics: IngestMetrics?
    public let logger: Logger

    public init(
        catalog: Catalog, routes: SeriesRoutes, defaultQuietPeriod: Duration, clock: C, now: @escaping @Sendable () -> Date = { Date() },
        metrics: IngestMetrics? = nil, logger: Logger
    ) {
        self.metrics = metrics
        self.catalog = catalog
        self.routes = routes
        self.defaultQuietPeriod = defaultQuietPeriod
        shortestQuietPeriod = ([defaultQuietPeriod] + routes.routes.compactMap(\.quietPeriod)).min() ?? defaultQuietPeriod
        let quarter = shortestQuietPeriod / 4
        pollInterval = min(max(quarter, .milliseconds(100)), .seconds(2))
        self.clock = clock
        self.now = now
        self.logger = logger
    }

    /// One pass: completes the quiet series and enqueues their jobs; returns the series completed.
    @discardableResult
    public func completeQuietSeries() async throws -> [CompletedSeries] {
        let now = now()
        let routes = self.routes, defaultQuietPeriod = self.defaultQuietPeriod
        let quietSince = now.addingTimeInterval(-Self.seconds(shortestQuietPeriod))
        return try await catalog.withTransaction { transaction in
            let completed = try await transaction.completeQuietSeries(quietSince: quietSince) { series in
                let own = SeriesRoutes.quietPeriod(of: routes.routes(modality: series.modality, bodyPart: series.bodyPart), default: defaultQuietPeriod)
                return series.lastInstanceAt <= now.addingTimeInterval(-Self.seconds(own))
            }
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

    /// How often the inference queue's depth is published while no series completes.
    static var publishInterval: Duration { .seconds(5) }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    /// Publishes the number of inference jobs in each state.
    public func publishJobQueueDepth() async throws {
        guard let metrics else { return }
        let counts = try await JobQueue(client: catalog.client, logger: logger).counts()
        for (state, count) in counts { metrics.setJobQueueDepth(state: state.rawValue, count: count) }
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            var lastPublished: C.Instant?
            while !Task.isCancelled {
                do {
                    let completed = try await completeQuietSeries()
                    if !completed.isEmpty { logger.info("series complete", metadata: ["count": .stringConvertible(completed.count)]) }
                    // The queue's depth on the first pass, then every few seconds (and after each completion), not on
                    // every poll.
                    if !completed.isEmpty || lastPublished.map({ $0.duration(to: clock.now) >= Self.publishInterval }) ?? true {
                        try await publishJobQueueDepth()
                        lastPublished = clock.now
                    }
                } catch {
                    logger.warning("series completion pass failed", metadata: LogRedaction.metadata(for: error))
                }
                do { try await clock.sleep(for: pollInterval) } catch { return }
            }
        }
    }
}
