// Start order within one ServiceGroup: the group starts every service at once, each in its own child task,
// so a service listed first has not necessarily begun when the next one runs its first line. Where that
// matters (a database client whose `run()` must have begun before the first query leases a connection),
// the first service opens a `StartGate` once its `run()` has begun and the services after it wait for the
// gate. Shutdown keeps the group's order (reverse of the list); the wrappers change nothing there.
import ServiceLifecycle
import Synchronization

/// Opens once; whoever waits before that resumes when it opens (or when its task is cancelled).
public final class StartGate: Sendable {
    private struct State {
        var isOpen = false
        var nextID: UInt64 = 0
        var waiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
    }

    private let state = Mutex(State())

    public init() {}

    /// True once `open()` was called.
    public var isOpen: Bool { state.withLock { $0.isOpen } }

    /// Opens the gate and resumes every waiter.
    public func open() {
        let waiters: [CheckedContinuation<Void, Never>] = state.withLock { state in
            state.isOpen = true
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Returns once the gate is open; throws `CancellationError` when the task is cancelled first.
    public func wait() async throws {
        let id: UInt64 = state.withLock {
            $0.nextID += 1
            return $0.nextID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow: Bool = state.withLock { state in
                    if state.isOpen || Task.isCancelled { return true }
                    state.waiters[id] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.waiters.removeValue(forKey: id) }?.resume()
        }
        if !isOpen { throw CancellationError() }
    }
}

/// Runs `service` and opens `gate` once its `run()` has begun: the service's run starts as an immediate child
/// task, which runs synchronously up to its first suspension (a `PostgresClient` marks itself running there).
/// Graceful shutdown and cancellation reach the service as if it were in the group itself.
public struct StartingFirst: Service, CustomStringConvertible {
    public let service: any Service
    public let gate: StartGate

    public init(_ service: any Service, opens gate: StartGate) {
        self.service = service
        self.gate = gate
    }

    public func run() async throws {
        let service = self.service
        try await withThrowingDiscardingTaskGroup { group in
            group.addImmediateTask { try await service.run() }
            gate.open()
        }
    }

    public var description: String { String(describing: service) }
}

/// Runs `service` once `gate` is open (see `StartingFirst`).
public struct StartingAfter: Service, CustomStringConvertible {
    public let service: any Service
    public let gate: StartGate

    public init(_ service: any Service, after gate: StartGate) {
        self.service = service
        self.gate = gate
    }

    public func run() async throws {
        // Cancelled before the gate opened: the group is going away; the service never started, so nothing to stop.
        do { try await gate.wait() } catch { return }
        try await service.run()
    }

    public var description: String { String(describing: service) }
}
