// Time limits for calls that may never return: a database request caught by a server shutdown can wait in its
// client forever (seen when PostgreSQL stopped while a transaction was being opened), and a readiness probe must
// answer while the database it probes does not. The call runs in its own task; past the limit the caller resumes
// at once with `TimeoutExceeded`, and the task is cancelled and left to end on its own, so one stuck request
// cannot hold a file, a pipeline slot or a probe for good. (A task group would wait for the stuck child.)
import Synchronization

/// A call did not return within its time limit.
public struct TimeoutExceeded: Error, Sendable, Hashable, CustomStringConvertible {
    public init() {}
    public var description: String { "timeout exceeded" }
}

/// Runs `operation`; throws `TimeoutExceeded` when it has not returned after `limit` on `clock`.
public func withTimeout<C: Clock, T: Sendable>(
    _ limit: C.Duration, clock: C, _ operation: @escaping @Sendable () async throws -> T
) async throws -> T {
    let once = ResumeOnce<T>()
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { continuation in
            once.install(continuation)
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
    } onCancel: {
        once.resume(.failure(CancellationError()))
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

/// Resumes a continuation once: the first of the operation, the timer and the caller's cancellation wins; a
/// timeout or a cancellation then cancels the operation's task.
private final class ResumeOnce<T: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<T, any Error>?
        var pending: Result<T, any Error>?
        var done = false
        var onEnd: (@Sendable () -> Void)?
    }

    private let state = Mutex(State())

    /// What ends the operation's and the timer's tasks; run at once if the result came first.
    func setOnEnd(_ onEnd: @escaping @Sendable () -> Void) {
        let runNow: Bool = state.withLock {
            $0.onEnd = onEnd
            return $0.done
        }
        if runNow { onEnd() }
    }

    func install(_ continuation: CheckedContinuation<T, any Error>) {
        let early: Result<T, any Error>? = state.withLock {
            if let pending = $0.pending {
                $0.pending = nil
                return pending
            }
            $0.continuation = continuation
            return nil
        }
        if let early { continuation.resume(with: early) }
    }

    func resume(_ result: Result<T, any Error>) {
        let (target, end): (CheckedContinuation<T, any Error>?, (@Sendable () -> Void)?) = state.withLock {
            guard !$0.done else { return (nil, nil) }
            $0.done = true
            guard let target = $0.continuation else {
                $0.pending = result   // cancelled before the continuation was installed
                return (nil, $0.onEnd)
            }
            $0.continuation = nil
            return (target, $0.onEnd)
        }
        end?()
        target?.resume(with: result)
    }
}
