// Tests of the stability rule (pure state machine, instants given by the test: nothing sleeps).
@testable import Ingest
import Testing

@Suite struct StabilityTrackerTests {
    let start = ContinuousClock.now

    @Test func fileWrittenSlowlyIsNotTakenUntilStable() {
        var tracker = StabilityTracker<ContinuousClock.Instant>(stableTime: .seconds(2))
        // Growing every second: never stable.
        for second in 0..<5 {
            let action = tracker.observe(
                path: "/d/a", size: Int64(100 * (second + 1)), modification: Int64(second), modificationAge: .zero,
                now: start + .seconds(second))
            #expect(action == .recheck(after: .seconds(2)))
        }
        // Unchanged, but only for 1.5 s: not yet.
        #expect(tracker.observe(path: "/d/a", size: 500, modification: 4, modificationAge: .zero, now: start + .seconds(5.5))
            == .recheck(after: .milliseconds(500)))
        #expect(tracker.due(at: start + .seconds(5.5)).isEmpty)
        #expect(tracker.due(at: start + .seconds(6)) == ["/d/a"])
        #expect(tracker.nextDeadline == start + .seconds(6))
        // Unchanged for 2 s: taken, and forgotten.
        #expect(tracker.observe(path: "/d/a", size: 500, modification: 4, modificationAge: .zero, now: start + .seconds(6)) == .handOn)
        #expect(tracker.count == 0)
        #expect(tracker.nextDeadline == nil)
    }

    @Test func modificationTimeChangeWithSameSizeRestartsTheWait() {
        var tracker = StabilityTracker<ContinuousClock.Instant>(stableTime: .seconds(1))
        _ = tracker.observe(path: "/d/a", size: 10, modification: 1, modificationAge: .zero, now: start)
        #expect(tracker.observe(path: "/d/a", size: 10, modification: 2, modificationAge: .zero, now: start + .seconds(1))
            == .recheck(after: .seconds(1)))
        #expect(tracker.observe(path: "/d/a", size: 10, modification: 2, modificationAge: .zero, now: start + .seconds(2)) == .handOn)
    }

    @Test func fileUnmodifiedForLongerThanTheStableTimeIsTakenAtFirstSight() {
        var tracker = StabilityTracker<ContinuousClock.Instant>(stableTime: .seconds(2))
        #expect(tracker.observe(path: "/d/old", size: 10, modification: 1, modificationAge: .seconds(3), now: start) == .handOn)
        #expect(tracker.count == 0)
        #expect(tracker.observe(path: "/d/new", size: 10, modification: 1, modificationAge: .seconds(1), now: start)
            == .recheck(after: .seconds(2)))
        #expect(tracker.isTracking("/d/new"))
    }

    @Test func forgottenFilesStartOver() {
        var tracker = StabilityTracker<ContinuousClock.Instant>(stableTime: .seconds(1))
        _ = tracker.observe(path: "/d/a", size: 10, modification: 1, modificationAge: .zero, now: start)
        tracker.forget("/d/a")
        #expect(!tracker.isTracking("/d/a"))
        #expect(tracker.observe(path: "/d/a", size: 10, modification: 1, modificationAge: .zero, now: start + .seconds(5))
            == .recheck(after: .seconds(1)))
    }
}

@Suite struct DropFolderLayoutTests {
    let layout = DropFolderLayout(root: "/drop/")

    @Test func temporaryAndHiddenNamesAreIgnored() {
        #expect(layout.root == "/drop")
        #expect(layout.isCandidate(path: "/drop/a/IM0001.dcm"))
        #expect(layout.isCandidate(path: "/drop/IM0001"))
        #expect(!layout.isCandidate(path: "/drop/a/IM0001.dcm.part"))
        #expect(!layout.isCandidate(path: "/drop/a/IM0001.TMP"))
        #expect(!layout.isCandidate(path: "/drop/a/.IM0001.dcm.x2Fa"))
        #expect(!layout.isCandidate(path: "/drop/.hidden/IM0001.dcm"))
        #expect(!layout.isCandidate(path: "/elsewhere/IM0001.dcm"))
        #expect(!layout.isCandidate(path: "/drop"))
    }

    @Test func ownFoldersAreExcludedOnlyAtTheTop() {
        #expect(!layout.isCandidate(path: "/drop/processed/a/IM0001.dcm"))
        #expect(!layout.isCandidate(path: "/drop/quarantine/IM0001.dcm"))
        #expect(!layout.isCandidate(path: "/drop/quarantine/IM0001.dcm.reason.json"))
        #expect(layout.isCandidate(path: "/drop/study/processed/IM0001.dcm"))
        #expect(layout.isExcludedDirectory(relativePath: "processed"))
        #expect(layout.isExcludedDirectory(relativePath: "quarantine/x"))
        #expect(!layout.isExcludedDirectory(relativePath: "patients/processed"))
        #expect(layout.relativePath(of: "/drop/a/b.dcm") == "a/b.dcm")
        #expect(layout.relativePath(of: "/dropx/b.dcm") == nil)
    }
}
