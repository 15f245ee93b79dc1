// A deadline for calls that may never return: a database request caught by a server shutdown can wait in
// the client forever (seen when PostgreSQL stopped while a transaction was being opened). The call runs in
// its own task; past the deadline the caller gets `DeadlineExceeded` at once and the task is cancelled and
// left to end on its own, so one stuck request cannot hold a file (and a pipeline slot) for good.
import Foundation

/// A call did not return within its deadline.
public struct DeadlineExceeded: Error, Sendable, Hashable, CustomStringConvertible {
    public var description: String { "deadline exceeded" }
}

/// Runs `operation`; throws `DeadlineExceeded` when it has not returned after `limit`.
func withDeadline<T: Sendable>(_ limit: Duration, _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
    let once = ResumeOnce<T>()
    return try await withCheckedThrowingContinuation { continuation in
        once.install(continuation)
        let timer = Task {
            try? await Task.sleep(for: limit)
            if !Task.isCancelled { once.resume(.failure(DeadlineExceeded())) }
        }
        let work = Task {
            do { once.resume(.success(try await operation())) } catch { once.resume(.failure(error)) }
            timer.cancel()
        }
        once.onTimeout = { work.cancel() }
    }
}

/// Resumes a continuation once: the first of the operation and the timer wins.
private final class ResumeOnce<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var continuation: CheckedContinuation<T, any Error>?
    private var pending: Result<T, any Error>?
    private var done = false
    private var _onTimeout: (@Sendable () -> Void)?

    var onTimeout: (@Sendable () -> Void)? {
        get { lock.withLock { _onTimeout } }
        set { lock.withLock { _onTimeout = newValue } }
    }

    func install(_ continuation: CheckedContinuation<T, any Error>) {
        lock.withLock { self.continuation = continuation }
    }

    func resume(_ result: Result<T, any Error>) {
        let (target, cancel): (CheckedContinuation<T, any Error>?, (@Sendable () -> Void)?) = lock.withLock {
            guard !done else { return (nil, nil) }
            done = true
            let target = continuation
            continuation = nil
            if case .failure(let error) = result, error is DeadlineExceeded { return (target, _onTimeout) }
            return (target, nil)
        }
        cancel?()
        target?.resume(with: result)
    }
}
