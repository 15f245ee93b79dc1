// What `dicom-etl status` reads: ledger, quarantine and job counters, the last failures, one file's history.
import Catalog
import Foundation
import Testing

@Suite(.enabled(if: TestDatabase.available, "needs DICOM_ETL_TEST_DATABASE_URL (scripts/with-services.sh)"))
struct StatusQueryTests {
    @Test func countsAndOneFilesHistory() async throws {
        try await TestDatabase.withCatalog { catalog, _ in
            let empty = try await catalog.ingestCounts(lastErrorCount: 10)
            #expect(empty.ledger.isEmpty && empty.inFlight == 0 && empty.jobs.isEmpty && empty.lastErrors.isEmpty)
            #expect(try await catalog.ledgerHistory(fileName: "a.dcm").isEmpty)

            let file = SourceFile(path: "/drop/sub/a.dcm", size: 2048, mtime: Date(timeIntervalSince1970: 1_700_000_000),
                                  sha256: String(repeating: "1", count: 64))
            guard case .claimed(let entry) = try await catalog.claimSourceFile(file, owner: "a", lease: .seconds(60)) else {
                Issue.record("the claim must succeed")
                return
            }
            let claimed = try await catalog.ingestCounts(lastErrorCount: 10)
            #expect(claimed.ledger == ["processing": 1])
            #expect(claimed.inFlight == 1)
            try await catalog.withTransaction {
                try await $0.recordStage(sourceFileID: entry.id, stage: "parse")
                try await $0.transitionSourceFile(id: entry.id, to: .catalogued, stage: "catalog", owner: "a")
            }
            let history = try await catalog.ledgerHistory(fileName: "a.dcm")
            #expect(history.map(\.id) == [entry.id])
            #expect(history.first?.state == "catalogued")
            #expect(history.first?.size == 2048)
            #expect(history.first?.events.map(\.stage) == ["claim", "parse", "catalog"])
            #expect(history.first?.events.last?.toState == "catalogued")
            #expect(try await catalog.ledgerHistory(fileName: "b.dcm").isEmpty)
            let done = try await catalog.ingestCounts(lastErrorCount: 10)
            #expect(done.ledger == ["catalogued": 1] && done.inFlight == 0 && done.lastErrors.isEmpty)
        }
    }
}
