// Time limits for calls that may never return: a database request caught by a server shutdown can wait in its
// client forever (seen when PostgreSQL stopped while a transaction was being opened), and a readiness probe must
// answer while the database it probes does not. The call runs in its own task; past the limit the caller resumes
// at once with `TimeoutExceeded`, and the task is cancelled and left to end on its own, so one stuck request
// cannot hold a file, a pipeline slot or a probe for good. (A task group would wait for the stuck child.)
// The call does not follow its caller's cancellation: a commit once sent ends, or times out, on its own terms.
import CodedErrors
import Synchronization

/// A call did not return within its time limit.
public struct TimeoutExceeded: CodedError, Hashable {
    /// Machine-readable reason.
    public struct Code: ErrorCode {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        /// The call did not return within its limit.
        public static let timeoutExceeded = Code(rawValue: "timeout_exceeded")
    }

    public let code = Code.timeoutExceeded
    public init() {}
    public var description: String { "timeout exceeded" }
}

/// Runs `operation`; throws `TimeoutExceeded` when it has not returned after `limit` on `clock`.
public func withTimeout<C: Clock, T: Sendable>(
    _ limit: C.Duration, clock: C, _ operation: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let once = ResumeOnce(continuation)
        let timer = Task {
            do { try await clock.sleep(for: limit) } catch { return }
            once.resume(.failure(TimeoutExceeded()))
        }
        let work = Task {
            do { once.resume(.success(try await operation())) } catch { once.resume(.failure(error)) }
            timer.cancel()
        }
        once.setOnEnd { work.cancel(); timer.cancel() }
    }
}

/// `withTimeout` on the continuous clock.
public func withTimeout<T: Sendable>(_ limit: Duration, _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withTimeout(limit, clock: ContinuousClock(), operation)
}

/// True when `check` returns true within `limit`; false when it returns false, throws or is late (readiness probes).
public func answers<C: Clock>(within limit: C.Duration, clock: C, _ check: @escaping @Sendable () async throws -> Bool) async -> Bool {
    (try? await withTimeout(limit, clock: clock, check)) ?? false
}

/// `answers(within:clock:_:)` on the continuous clock.
public func answers(within limit: Duration, _ check: @escaping @Sendable () async throws -> Bool) async -> Bool {
    await answers(within: limit, clock: ContinuousClock(), check)
}

/// Resumes a continuation once: the first of the operation and the timer wins; a timeout then cancels the
/// operation's task.
private final class ResumeOnce<T: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<T, any Error>?
        var onEnd: (@Sendable () -> Void)?
    }

    private let state: Mutex<State>

    init(_ continuation: CheckedContinuation<T, any Error>) {
        state = Mutex(State(continuation: continuation))
    }

    /// What ends the operation's and the timer's tasks; run at once if the result came first.
    func setOnEnd(_ onEnd: @escaping @Sendable () -> Void) {
        let runNow: Bool = state.withLock {
            $0.onEnd = onEnd
            return $0.continuation == nil
        }
        if runNow { onEnd() }
    }

    func resume(_ result: Result<T, any Error>) {
        let (target, end): (CheckedContinuation<T, any Error>?, (@Sendable () -> Void)?) = state.withLock { state in
            guard let target = state.continuation else { return (nil, nil) }   // the other one won
            state.continuation = nil
            return (target, state.onEnd)
        }
        end?()
        target?.resume(with: result)
    }
}
