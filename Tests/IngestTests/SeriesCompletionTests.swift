// Tests of SeriesCompletionService against a fresh database in the test PostgreSQL: a series is
// complete only after its quiet period (time injected), gets one job per routed model and revision,
// and a late instance re-opens it under a new revision; each series waits for its routes' own quiet
// period (the longest when several routes take it), an unrouted one for the default.
import Catalog
import Foundation
import Ingest
import Logging
import Prometheus
import Testing
import TestSupport

@Suite(.serialized) struct SeriesCompletionTests {
    static let t0 = Date(timeIntervalSince1970: 1_800_000_000)

    /// A fresh, migrated database and a completion service on it whose wall time is the settable `now` (at `t0`
    /// to begin with) and whose loop sleeps on `clock`.
    static func withService<C: Clock<Duration>>(
        routes: SeriesRoutes, clock: C, metrics: IngestMetrics? = nil,
        _ body: (SeriesCompletionService<C>, Catalog, DaemonEndToEndTests.World, LockedDate) async throws -> Void
    ) async throws {
        let world = try DaemonEndToEndTests.World()
        defer { world.cleanUp() }
        let now = LockedDate(t0)
        try await Catalog.withRunningClient(try DatabaseConfiguration.parse(world.databaseURL)) { client in
            let catalog = Catalog(client: client)
            try await catalog.migrate()
            let service = SeriesCompletionService(
                catalog: catalog, routes: routes, defaultQuietPeriod: .seconds(10), clock: clock, now: { now.value },
                metrics: metrics, logger: Logger(label: "test"))
            try await body(service, catalog, world, now)
        }
    }

    static func instance(_ sop: String, series: String, modality: String, bodyPart: String? = nil) -> CatalogBatch {
        CatalogBatch(
            patients: [PatientRecord(patientID: "P1")], studies: [StudyRecord(studyUID: "2.25.1", patientID: "P1")],
            series: [SeriesRecord(seriesUID: series, studyUID: "2.25.1", modality: modality, bodyPart: bodyPart)],
            instances: [InstanceRecord(sopInstanceUID: sop, seriesUID: series, studyUID: "2.25.1", patientID: "P1", modality: modality)])
    }

    @Test(.enabled(if: DaemonEndToEndTests.adminURL != nil, "needs DICOM_ETL_TEST_DATABASE_URL"))
    func eachSeriesWaitsForItsRoutesQuietPeriod() async throws {
        let routes = try SeriesRoutes.parse(yaml: """
            routes:
              - {name: cr, modalities: [CR], recipe: cxr-28, model: m-cr, model_version: "1", quiet_seconds: 30}
              - {name: mr-fast, modalities: [MR], recipe: cxr-28, model: m-mr, model_version: "1", quiet_seconds: 3}
              - {name: mr-head, modalities: [MR], body_parts: [HEAD], recipe: cxr-28, model: m-head, model_version: "1", quiet_seconds: 20}
            """)
        let t0 = Self.t0
        try await Self.withService(routes: routes, clock: ContinuousClock()) { service, catalog, world, clock in
            #expect(service.shortestQuietPeriod == .seconds(3))
            try await catalog.upsert(Self.instance("2.25.1.1", series: "2.25.1", modality: "CR"), arrivedAt: t0)                     // 30 s
            try await catalog.upsert(Self.instance("2.25.2.1", series: "2.25.2", modality: "MR", bodyPart: "KNEE"), arrivedAt: t0)   // 3 s
            try await catalog.upsert(Self.instance("2.25.3.1", series: "2.25.3", modality: "CT"), arrivedAt: t0)                     // default 10 s
            try await catalog.upsert(Self.instance("2.25.4.1", series: "2.25.4", modality: "MR", bodyPart: "HEAD"), arrivedAt: t0)   // 3 and 20: 20 s
            var completed: [(Int, [String])] = []
            for seconds in [2, 4, 9, 11, 19, 21, 29, 31] {
                clock.value = t0.addingTimeInterval(Double(seconds))
                let done = try await service.completeQuietSeries().map(\.seriesUID)
                if !done.isEmpty { completed.append((seconds, done)) }
            }
            #expect(completed.map(\.0) == [4, 11, 21, 31])
            #expect(completed.map(\.1) == [["2.25.2"], ["2.25.3"], ["2.25.4"], ["2.25.1"]])
            // Jobs: the knee MR to m-mr, the head MR to both MR models, the CR to m-cr; the CT none.
            #expect(try psql(world.databaseURL, "SELECT string_agg(series_uid || ':' || model_name, ' ' ORDER BY series_uid, model_name) FROM inference.jobs")
                == "2.25.1:m-cr 2.25.2:m-mr 2.25.4:m-head 2.25.4:m-mr")
        }
    }

    @Test(.enabled(if: DaemonEndToEndTests.adminURL != nil, "needs DICOM_ETL_TEST_DATABASE_URL"))
    func quietSeriesGetOneJobPerRoutedModelAndRevision() async throws {
        let routes = try SeriesRoutes.load(path: DaemonEndToEndTests.packageRoot.path + "/etl/routes.yaml")
        let t0 = Self.t0
        try await Self.withService(routes: routes, clock: ContinuousClock()) { service, catalog, world, clock in
            try await catalog.upsert(Self.instance("2.25.10", series: "2.25.100", modality: "CR"), arrivedAt: t0)
            try await catalog.upsert(Self.instance("2.25.20", series: "2.25.200", modality: "CT"), arrivedAt: t0)

            clock.value = t0.addingTimeInterval(9)
            #expect(try await service.completeQuietSeries().isEmpty)
            #expect(try world.count("SELECT count(*) FROM inference.jobs") == 0)

            clock.value = t0.addingTimeInterval(11)
            let completed = try await service.completeQuietSeries()
            #expect(completed.map(\.seriesUID) == ["2.25.100", "2.25.200"])
            // Only the CR series is routed: one job, for the routed model at the series' revision.
            #expect(try world.count("SELECT count(*) FROM inference.jobs") == 1)
            #expect(try psql(world.databaseURL, "SELECT series_uid || ' ' || model_name || ' ' || model_version FROM inference.jobs")
                == "2.25.100 \(routes.routes[0].model) \(routes.routes[0].modelVersion)")
            #expect(try await service.completeQuietSeries().isEmpty)

            // A late instance re-opens the series; once quiet again it is queued under the next revision.
            try await catalog.upsert(Self.instance("2.25.11", series: "2.25.100", modality: "CR"), arrivedAt: t0.addingTimeInterval(12))
            clock.value = t0.addingTimeInterval(20)
            #expect(try await service.completeQuietSeries().isEmpty)
            clock.value = t0.addingTimeInterval(23)
            let reopened = try await service.completeQuietSeries()
            #expect(reopened.map(\.seriesUID) == ["2.25.100"])
            #expect(reopened.first?.revision == (completed.first?.revision ?? 0) + 1)
            #expect(try world.count("SELECT count(DISTINCT series_revision) FROM inference.jobs WHERE series_uid = '2.25.100'") == 2)
            #expect(try world.count("SELECT count(*) FROM inference.jobs") == 2)
        }
    }

    /// The service's loop on its clock: a pass every poll interval (none in between), the inference queue's depth
    /// published on the first pass, after a completion, and otherwise only every 5 s of the clock.
    @Test(.enabled(if: DaemonEndToEndTests.adminURL != nil, "needs DICOM_ETL_TEST_DATABASE_URL"), .timeLimit(.minutes(1)))
    func theServicePollsAndPublishesOnItsClock() async throws {
        let routes = try SeriesRoutes.parse(yaml: """
            routes:
              - {name: cr, modalities: [CR], recipe: cxr-28, model: m-cr, model_version: "1", quiet_seconds: 10}
            """)
        let t0 = Self.t0
        let clock = ManualClock()
        let (metrics, registry) = makeMetrics()
        func depth(_ state: String) -> Double? {
            let prefix = "dicom_etl_job_queue_depth{state=\"\(state)\"} "
            return registry.emitToString().split(separator: "\n").first { $0.hasPrefix(prefix) }.flatMap { Double($0.dropFirst(prefix.count)) }
        }
        try await Self.withService(routes: routes, clock: clock, metrics: metrics) { service, catalog, world, now in
            #expect(service.pollInterval == .seconds(2))
            let running = Task { try await service.run() }
            defer { running.cancel() }
            try await clock.waitForSleepers()
            #expect(depth("queued") == 0)                       // published on the first pass

            // Quiet by the service's wall time, yet not complete until the next pass, one poll interval later.
            try await catalog.upsert(Self.instance("2.25.30", series: "2.25.300", modality: "CR"), arrivedAt: t0)
            now.value = t0.addingTimeInterval(11)
            clock.advance(by: .milliseconds(1999))
            try await clock.waitForSleepers()
            #expect(try world.count("SELECT count(*) FROM inference.jobs") == 0)
            clock.advance(by: .milliseconds(1))
            try await clock.waitForSleepers()
            #expect(try world.count("SELECT count(*) FROM inference.jobs WHERE state = 'queued'") == 1)
            #expect(depth("queued") == 1)                       // published after the completion

            // No completion: the depth is published again only once 5 s passed on the clock since the last time.
            _ = try psql(world.databaseURL, "UPDATE inference.jobs SET state = 'dead'")
            for _ in 0..<2 {
                clock.advance(by: .seconds(2))
                try await clock.waitForSleepers()
                #expect(depth("queued") == 1)                   // 2 s, then 4 s since
            }
            clock.advance(by: .seconds(2))
            try await clock.waitForSleepers()
            #expect(depth("queued") == 0)                       // 6 s since
            #expect(depth("dead") == 1)
        }
    }
}

/// A settable time shared with the service's `now` closure.
final class LockedDate: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Date
    init(_ date: Date) { stored = date }
    var value: Date {
        get { lock.lock(); defer { lock.unlock() }; return stored }
        set { lock.lock(); stored = newValue; lock.unlock() }
    }
}
