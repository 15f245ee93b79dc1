// Ledger: claims, leases between replicas, duplicates, attempts, interruptions, outages, quarantine and
// the audit trail.
import Catalog
import Foundation
import PostgresNIO
import Testing

@Suite(.enabled(if: TestDatabase.available, "needs DICOM_ETL_TEST_DATABASE_URL (scripts/with-services.sh)"))
struct LedgerTests {
    func file(_ name: String, sha: Character = "1") -> SourceFile {
        SourceFile(path: "/drop/\(name)", size: 2048, mtime: Date(timeIntervalSince1970: 1_700_000_123.456789),
                   sha256: String(repeating: sha, count: 64))
    }

    @Test func claimsAreExclusiveUntilTheLeaseEnds() async throws {
        try await TestDatabase.withCatalog { catalog, _ in
            let f = file("a.dcm")
            guard case .claimed(let entry) = try await catalog.claimSourceFile(f, owner: "a", lease: .seconds(60)) else {
                Issue.record("first claim must succeed")
                return
            }
            #expect(entry.attempts == 0 && entry.claims == 1 && entry.interruptions == 0)
            #expect(entry.leaseOwner == "a")
            guard case .busy = try await catalog.claimSourceFile(f, owner: "b", lease: .seconds(60)) else {
                Issue.record("a live lease keeps others out")
                return
            }
            // Another replica may not move a row it does not own.
            await #expect(throws: CatalogError(.ledgerTransitionRejected)) {
                try await catalog.withTransaction {
                    try await $0.transitionSourceFile(id: entry.id, to: .catalogued, stage: "catalog", owner: "b")
                }
            }
            // An expired lease lets another replica take over.
            try await catalog.withTransaction { try await $0.renewSourceFileLease(id: entry.id, owner: "a", lease: .milliseconds(1)) }
            try await Task.sleep(for: .milliseconds(50))
            guard case .claimed(let taken) = try await catalog.claimSourceFile(f, owner: "b", lease: .seconds(60)) else {
                Issue.record("an expired lease must be claimable")
                return
            }
            #expect(taken.id == entry.id)
            // The first claim ended with no outcome: an interruption, not a failed attempt.
            #expect(taken.attempts == 0 && taken.claims == 2 && taken.interruptions == 1)
            try await catalog.withTransaction {
                try await $0.recordStage(sourceFileID: taken.id, stage: "parse")
                try await $0.transitionSourceFile(id: taken.id, to: .catalogued, stage: "catalog", owner: "b")
            }
            guard case .alreadyDone(let done) = try await catalog.claimSourceFile(f, owner: "c", lease: .seconds(60)) else {
                Issue.record("a catalogued file is done")
                return
            }
            #expect(done.state == .catalogued)
            let events = try await scalar(catalog.client, "SELECT count(*)::int FROM ingest.stage_events WHERE source_file_id = \(entry.id)")
            #expect(events == 4)  // claim, claim, parse, catalog
            #expect(try await scalar(catalog.client, "SELECT count(*)::int FROM ingest.source_files") == 1)
        }
    }

    @Test func sameBytesElsewhereAreADuplicateAndFailuresExhaust() async throws {
        try await TestDatabase.withCatalog { catalog, _ in
            guard case .claimed(let original) = try await catalog.claimSourceFile(file("x.dcm", sha: "7"), owner: "a", lease: .seconds(60)) else {
                Issue.record("claim")
                return
            }
            try await catalog.withTransaction { try await $0.transitionSourceFile(id: original.id, to: .catalogued, stage: "catalog") }
            guard case .duplicate(let duplicate, let of) = try await catalog.claimSourceFile(file("copy/x.dcm", sha: "7"), owner: "a", lease: .seconds(60)) else {
                Issue.record("same sha256 at another path is a duplicate")
                return
            }
            #expect(of == original.id)
            #expect(duplicate.state == .duplicate)

            let broken = file("broken.dcm", sha: "9")
            for attempt in 1...2 {
                guard case .claimed(let entry) = try await catalog.claimSourceFile(broken, owner: "a", lease: .seconds(60), maxAttempts: 2) else {
                    Issue.record("attempt \(attempt) must be claimable")
                    return
                }
                try await catalog.withTransaction {
                    try await $0.transitionSourceFile(id: entry.id, to: .failed, stage: "parse", detail: "decodeFailed", owner: "a")
                }
            }
            guard case .exhausted(let exhausted) = try await catalog.claimSourceFile(broken, owner: "a", lease: .seconds(60), maxAttempts: 2) else {
                Issue.record("out of attempts")
                return
            }
            #expect(exhausted.errorReason == "decodeFailed")
            try await catalog.withTransaction {
                try await $0.quarantineSourceFile(id: exhausted.id, reason: "decodeFailed", objectKey: "quarantine/1.dcm")
            }
            #expect(try await catalog.ledgerEntry(id: exhausted.id)?.state == .quarantined)
            #expect(try await scalar(catalog.client, "SELECT count(*)::int FROM ingest.quarantine WHERE reason = 'decodeFailed'") == 1)
        }
    }

    @Test func outagesCountNothingAndInterruptionsExhaustApartFromAttempts() async throws {
        try await TestDatabase.withCatalog { catalog, _ in
            // An outage mid-file: the claim is released back to `discovered`; nothing counts against the file.
            let f = file("outage.dcm", sha: "3")
            for _ in 1...5 {
                guard case .claimed(let entry) = try await catalog.claimSourceFile(f, owner: "a", lease: .seconds(60), maxAttempts: 1) else {
                    Issue.record("a released file is claimable again")
                    return
                }
                try await catalog.withTransaction {
                    try await $0.transitionSourceFile(id: entry.id, to: .discovered, stage: "deferred", detail: "database_unavailable", owner: "a")
                }
            }
            guard case .claimed(let after) = try await catalog.claimSourceFile(f, owner: "a", lease: .seconds(60), maxAttempts: 1) else {
                Issue.record("outages must not exhaust a file")
                return
            }
            #expect(after.attempts == 0 && after.interruptions == 0 && after.claims == 6)
            #expect(after.errorReason == nil)

            // A claimer killed mid-file, again and again: the same owner takes the row back; each time is an
            // interruption, and `maxInterruptions` of them exhaust the file while `attempts` stays 0.
            let g = file("interrupted.dcm", sha: "4")
            for round in 1...4 {
                guard case .claimed(let entry) = try await catalog.claimSourceFile(g, owner: "a", lease: .seconds(60), maxInterruptions: 4) else {
                    Issue.record("claim \(round)")
                    return
                }
                #expect(entry.interruptions == round - 1)
                #expect(entry.attempts == 0)
            }
            guard case .exhausted(let exhausted) = try await catalog.claimSourceFile(g, owner: "a", lease: .seconds(60), maxInterruptions: 4) else {
                Issue.record("interruptions exhaust")
                return
            }
            #expect(exhausted.interruptions == 4 && exhausted.attempts == 0)
            let interrupted = try await scalar(
                catalog.client, "SELECT count(*)::int FROM ingest.stage_events WHERE source_file_id = \(exhausted.id) AND detail = 'interrupted'")
            #expect(interrupted == 3)  // claims 2, 3 and 4; the fifth exhausted
        }
    }
}
