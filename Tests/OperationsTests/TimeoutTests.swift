// withTimeout and answers(within:) on a manual clock: no real sleep decides an outcome.
import Foundation
import Operations
import Testing
import TestSupport

/// A call that does not return until the test opens the gate, whatever its cancellation (a request stuck in a
/// client that ignores it); it records whether its task had been cancelled when it was let go.
final class Gate: @unchecked Sendable {
    private let lock = NSLock()
    private var waiter: CheckedContinuation<Void, Never>?
    private var opened = false
    private(set) var cancelledWhenOpened: Bool?

    func wait() async {
        await withCheckedContinuation { continuation in
            let now: Bool = lock.withLock {
                if opened { return true }
                waiter = continuation
                return false
            }
            if now { continuation.resume() }
        }
        let cancelled = Task.isCancelled
        lock.withLock { cancelledWhenOpened = cancelled }
    }

    func open() {
        let waiter: CheckedContinuation<Void, Never>? = lock.withLock {
            opened = true
            defer { self.waiter = nil }
            return self.waiter
        }
        waiter?.resume()
    }

    var isWaiting: Bool { lock.withLock { waiter != nil } }
}

@Suite struct TimeoutTests {
    @Test func aCallThatReturnsInTimeGivesItsValueAndStopsItsTimer() async throws {
        let clock = ManualClock()
        let value = try await withTimeout(.seconds(2), clock: clock) { 42 }
        #expect(value == 42)
        // The timer's sleep is cancelled, not left for the clock to reach.
        let end = ContinuousClock.now + .seconds(10)
        while clock.sleeperCount > 0 && ContinuousClock.now < end { try await Task.sleep(for: .milliseconds(1)) }
        #expect(clock.sleeperCount == 0)
    }

    @Test func aCallStuckPastTheLimitEndsTheWaitAtOnceAndIsCancelled() async throws {
        let clock = ManualClock(), gate = Gate()
        let caller = Task { try await withTimeout(.seconds(2), clock: clock) { await gate.wait(); return 1 } }
        try await clock.waitForSleepers(1)
        clock.advance(by: .milliseconds(1999))
        #expect(clock.sleeperCount == 1)   // not yet
        clock.advance(by: .milliseconds(1))
        // The caller resumes while the call is still stuck: it does not wait for it.
        await #expect(throws: TimeoutExceeded.self) { try await caller.value }
        #expect(gate.isWaiting)
        gate.open()
        let end = ContinuousClock.now + .seconds(10)
        while gate.cancelledWhenOpened == nil && ContinuousClock.now < end { try await Task.sleep(for: .milliseconds(1)) }
        #expect(gate.cancelledWhenOpened == true)
    }

    @Test func aCancelledCallerStillWaitsForTheCallOrTheLimit() async throws {
        // A commit once sent is not abandoned because its caller was cancelled: it ends, or times out.
        let clock = ManualClock(), gate = Gate()
        let caller = Task { try await withTimeout(.seconds(60), clock: clock) { await gate.wait(); return 7 } }
        try await clock.waitForSleepers(1)
        caller.cancel()
        #expect(clock.sleeperCount == 1)
        gate.open()
        #expect(try await caller.value == 7)
        #expect(gate.cancelledWhenOpened == false)
    }

    @Test func anErrorOfTheCallIsPassedOn() async throws {
        struct Refused: Error {}
        await #expect(throws: Refused.self) { try await withTimeout(.seconds(2), clock: ManualClock()) { () -> Int in throw Refused() } }
    }

    @Test func answersIsTrueOnlyForATrueAnswerInTime() async throws {
        struct Down: Error {}
        let clock = ManualClock()
        #expect(await answers(within: .seconds(2), clock: clock) { true })
        #expect(!(await answers(within: .seconds(2), clock: clock) { false }))
        #expect(!(await answers(within: .seconds(2), clock: clock) { throw Down() }))
        let gate = Gate()
        let probe = Task { await answers(within: .seconds(2), clock: clock) { await gate.wait(); return true } }
        try await clock.waitForSleepers(1)
        clock.advance(by: .seconds(2))
        #expect(!(await probe.value))
        gate.open()
    }
}
