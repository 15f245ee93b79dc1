// Job queue: exactly-once completion under concurrent claimers, expired leases, retries to dead, and
// LISTEN/NOTIFY wake-ups.
import Catalog
import Foundation
import PostgresNIO
import Testing

@Suite(.enabled(if: TestDatabase.available, "needs DICOM_ETL_TEST_DATABASE_URL (scripts/with-services.sh)"))
struct QueueTests {
    static let model = ModelRef(name: "pneumonia-cnn", version: "1.0.0")

    /// Catalogues `seriesCount` one-instance series and enqueues one job per series.
    func seed(_ catalog: Catalog, seriesCount: Int, maxAttempts: Int = 5) async throws -> [String] {
        var batch = CatalogBatch()
        let patient = Fixture()
        batch.patients = patient.batch(instances: []).patients
        batch.studies = patient.batch(instances: []).studies
        var seriesUIDs: [String] = []
        for index in 0..<seriesCount {
            var fixture = patient
            fixture.seriesUID = "\(patient.studyUID).\(index)"
            batch.series += fixture.batch(instances: []).series
            batch.instances.append(fixture.instance(1))
            seriesUIDs.append(fixture.seriesUID)
        }
        try await catalog.withTransaction { tx in
            try await tx.upsert(batch)
            let ids = try await tx.enqueue(seriesUIDs.map {
                JobRequest(seriesUID: $0, seriesRevision: 1, model: Self.model, maxAttempts: maxAttempts)
            })
            #expect(ids.count == seriesCount)
        }
        return seriesUIDs
    }

    @Test func fourConcurrentClaimersCompleteEachOfAThousandJobsExactlyOnce() async throws {
        try await TestDatabase.withCatalog { catalog, _ in
            _ = try await seed(catalog, seriesCount: 1000)
            let queue = JobQueue(client: catalog.client, logger: TestDatabase.logger)
            let completed = try await withThrowingTaskGroup(of: [Int64].self) { group in
                for worker in 0..<4 {
                    group.addTask {
                        var mine: [Int64] = []
                        while true {
                            let jobs = try await queue.claim(7, lease: .seconds(60))
                            if jobs.isEmpty { break }
                            for job in jobs {
                                try await queue.complete(job, diagnoses: [DiagnosisRecord(
                                    seriesUID: job.seriesUID, model: job.model, label: "worker-\(worker)",
                                    probabilities: ["normal": 0.5, "pneumonia": 0.5])])
                                mine.append(job.id)
                            }
                        }
                        return mine
                    }
                }
                var all: [[Int64]] = []
                for try await ids in group { all.append(ids) }
                return all
            }
            let ids = completed.flatMap { $0 }
            #expect(ids.count == 1000)
            #expect(Set(ids).count == 1000)
            #expect(completed.filter { !$0.isEmpty }.count >= 2, "claims should spread across claimers")
            let counts = try await queue.counts()
            #expect(counts[.done] == 1000)
            #expect(counts[.queued] == 0)
            #expect(counts[.running] == 0)
            #expect(try await scalar(catalog.client, "SELECT count(DISTINCT job_id)::int FROM inference.diagnoses") == 1000)
            #expect(try await scalar(catalog.client, "SELECT count(*)::int FROM inference.diagnoses") == 1000)
            #expect(try await scalar(catalog.client, "SELECT max(attempts)::int FROM inference.jobs") == 1)
        }
    }

    @Test func jobsOfADeadClaimerComeBackAfterTheLease() async throws {
        try await TestDatabase.withCatalog { catalog, _ in
            _ = try await seed(catalog, seriesCount: 5)
            let queue = JobQueue(client: catalog.client, logger: TestDatabase.logger)
            // A lease long enough that a loaded machine cannot outrun it between the two claims below.
            let abandoned = try await queue.claim(5, lease: .seconds(3))
            #expect(abandoned.count == 5)
            // While the lease holds, nobody else gets them.
            #expect(try await queue.claim(5, lease: .seconds(60)).isEmpty)
            try await Task.sleep(for: .milliseconds(3_500))
            let retaken = try await queue.claim(10, lease: .seconds(60))
            #expect(retaken.map(\.id) == abandoned.map(\.id))
            #expect(retaken.allSatisfy { $0.attempts == 2 })
            // The first claimer wakes up too late: its completion is refused and writes nothing.
            await #expect(throws: CatalogError(.leaseLost)) {
                try await queue.complete(abandoned[0], diagnoses: [DiagnosisRecord(
                    seriesUID: abandoned[0].seriesUID, model: Self.model, label: "late", probabilities: ["x": 1])])
            }
            await #expect(throws: CatalogError(.leaseLost)) { _ = try await queue.fail(abandoned[1], reason: "late") }
            #expect(try await scalar(catalog.client, "SELECT count(*)::int FROM inference.diagnoses") == 0)
            for job in retaken { try await queue.complete(job) }
            #expect(try await queue.counts()[.done] == 5)
        }
    }

    @Test func aJobFailingNTimesIsDeadAndBacksOffBetween() async throws {
        try await TestDatabase.withCatalog { catalog, _ in
            _ = try await seed(catalog, seriesCount: 1, maxAttempts: 3)
            let immediate = JobQueue(
                client: catalog.client, configuration: JobQueueConfiguration(retry: RetryPolicy(base: .zero)),
                logger: TestDatabase.logger)
            var outcomes: [JobFailureOutcome] = []
            for attempt in 1...3 {
                let jobs = try await immediate.claim(1, lease: .seconds(60))
                #expect(jobs.count == 1)
                #expect(jobs.first?.attempts == attempt)
                if let job = jobs.first { outcomes.append(try await immediate.fail(job, reason: "modelCrashed")) }
            }
            #expect(outcomes == [.retrying(after: .zero), .retrying(after: .zero), .dead])
            #expect(try await immediate.claim(1, lease: .seconds(60)).isEmpty)
            #expect(try await immediate.counts()[.dead] == 1)

            // With a real backoff the job is not claimable until it has passed.
            _ = try await seed(catalog, seriesCount: 1)
            let slow = JobQueue(client: catalog.client, configuration: JobQueueConfiguration(
                retry: RetryPolicy(base: .seconds(30))), logger: TestDatabase.logger)
            let job = try #require(try await slow.claim(1, lease: .seconds(60)).first)
            #expect(try await slow.fail(job, reason: "transient") == .retrying(after: .seconds(30)))
            #expect(try await slow.claim(1, lease: .seconds(60)).isEmpty)
            #expect(try await scalar(catalog.client, """
                SELECT count(*)::int FROM inference.jobs
                WHERE state = 'queued' AND run_at > now() + interval '25 seconds' AND last_error = 'transient'
                """) == 1)
            // A permanent failure is dead at once.
            _ = try await seed(catalog, seriesCount: 1)
            let other = try #require(try await slow.claim(1, lease: .seconds(60)).first)
            #expect(try await slow.fail(other, reason: "badInput", permanent: true) == .dead)
        }
    }

    @Test func aLeaseExpiringOnTheLastAttemptEndsDead() async throws {
        try await TestDatabase.withCatalog { catalog, _ in
            _ = try await seed(catalog, seriesCount: 1, maxAttempts: 1)
            let queue = JobQueue(client: catalog.client, logger: TestDatabase.logger)
            let job = try #require(try await queue.claim(1, lease: .milliseconds(100)).first)
            try await Task.sleep(for: .milliseconds(300))
            #expect(try await queue.claim(1, lease: .seconds(60)).isEmpty)
            #expect(try await queue.counts()[.dead] == 1)
            await #expect(throws: CatalogError(.leaseLost)) { _ = try await queue.extendLease(job, by: .seconds(10)) }
        }
    }

    @Test func anEnqueueWakesAListeningWorker() async throws {
        try await TestDatabase.withCatalog { catalog, _ in
            let queue = JobQueue(client: catalog.client, logger: TestDatabase.logger)
            let wakeups = queue.wakeups(pollInterval: .seconds(600))
            var iterator = wakeups.makeAsyncIterator()
            #expect(await iterator.next() == .listening)
            _ = try await seed(catalog, seriesCount: 3)
            #expect(await iterator.next() == .notified)
            #expect(try await queue.claim(10, lease: .seconds(60)).count == 3)
        }
    }

    @Test func claimsCanBeLimitedToModels() async throws {
        try await TestDatabase.withCatalog { catalog, _ in
            let series = try await seed(catalog, seriesCount: 2)
            let other = ModelRef(name: "other", version: "2")
            _ = try await catalog.withTransaction { try await $0.enqueue(JobRequest(seriesUID: series[0], seriesRevision: 1, model: other)) }
            let queue = JobQueue(client: catalog.client, logger: TestDatabase.logger)
            let jobs = try await queue.claim(10, lease: .seconds(60), models: [other])
            #expect(jobs.map(\.model) == [other])
            let rest = try await queue.claim(10, lease: .seconds(60), models: [Self.model])
            #expect(rest.count == 2)
        }
    }
}
