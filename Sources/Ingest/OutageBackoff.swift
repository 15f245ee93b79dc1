// Outages: while the database or the object store is unreachable (or the disk is full) the pipeline
// must not spin through the drop folder. The processor throws a `PipelineOutage`; the runner then
// pauses every worker for a delay that doubles with each consecutive outage (1 s … 30 s by default),
// and the first file that goes through again ends the outage. `/readyz` reports not-ready meanwhile.
// Nothing is counted against the files: they stay in the drop folder for the next rescan.
import CodedErrors
import Foundation
import Sandbox

/// A fault of the surroundings, not of the file (database or store unreachable, disk full): the file
/// stays in the drop folder, no attempt is counted, and the pipeline backs off.
public struct PipelineOutage: CodedError, Hashable {
    /// Machine-readable reason.
    public struct Code: ErrorCode {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        /// The database cannot be reached or cannot work now.
        public static let databaseUnavailable = Code(rawValue: "database_unavailable")
        /// Deadlocks or serialization failures kept coming.
        public static let databaseConflict = Code(rawValue: "database_conflict")
        /// A database call did not return within its deadline.
        public static let databaseUnresponsive = Code(rawValue: "database_unresponsive")
        /// The object store cannot be reached.
        public static let storeUnavailable = Code(rawValue: "store_unavailable")
        /// The scratch disk cannot be written.
        public static let diskUnavailable = Code(rawValue: "disk_unavailable")
        /// No sandbox child could be started.
        public static let sandboxUnavailable = Code(rawValue: "sandbox_unavailable")
    }

    public let code: Code
    public init(_ code: Code) { self.code = code }
    public var description: String { "outage: \(code.rawValue)" }
}

/// The backoff as a value-type state machine over durations since an origin (testable without a clock).
public struct OutageBackoffState: Sendable, Hashable {
    /// The pause after the first outage report.
    public var initialDelay: Duration
    /// The longest pause.
    public var maximumDelay: Duration
    /// Outage reports since the last success.
    public private(set) var consecutiveOutages = 0
    /// When workers may take a file again (time since the origin), while in an outage.
    public private(set) var retryAt: Duration?
    /// The reason of the last outage report.
    public private(set) var lastReason: String?

    public init(initialDelay: Duration = .seconds(1), maximumDelay: Duration = .seconds(30)) {
        precondition(initialDelay > .zero && maximumDelay >= initialDelay)
        self.initialDelay = initialDelay
        self.maximumDelay = maximumDelay
    }

    /// Records an outage seen at `now`.
    /// - Returns: the pause before the next file, and whether this report began a new outage.
    public mutating func reportOutage(_ reason: String, at now: Duration) -> (delay: Duration, began: Bool) {
        let began = consecutiveOutages == 0
        consecutiveOutages += 1
        var delay = initialDelay
        for _ in 1..<consecutiveOutages where delay < maximumDelay { delay = delay * 2 }
        delay = min(delay, maximumDelay)
        retryAt = now + delay
        lastReason = reason
        return (delay, began)
    }

    /// Records a file that went through (the database answered).
    /// - Returns: whether this ended an outage.
    public mutating func reportSuccess() -> Bool {
        defer {
            consecutiveOutages = 0
            retryAt = nil
            lastReason = nil
        }
        return consecutiveOutages > 0
    }

    /// How long workers should still wait at `now`.
    public func remainingDelay(at now: Duration) -> Duration {
        guard let retryAt, retryAt > now else { return .zero }
        return retryAt - now
    }

    /// Whether the pipeline is in an outage at `now`. An outage nobody retried for `maximumDelay` past its
    /// retry time (no file left to try) is over as far as readiness goes.
    public func isOutage(at now: Duration) -> Bool {
        guard consecutiveOutages > 0, let retryAt else { return false }
        return now < retryAt + maximumDelay
    }
}

/// The pipeline's shared outage state: reported to by the runner, waited on by its workers, read by `/readyz`.
public final class OutageBackoff: @unchecked Sendable {
    private let lock = NSLock()
    private var state: OutageBackoffState
    private let elapsed: @Sendable () -> Duration
    private let sleep: @Sendable (Duration) async -> Void

    /// - Parameters:
    ///   - state: the delays (initial and maximum).
    ///   - clock: the clock workers sleep on.
    public init<C: Clock>(_ state: OutageBackoffState = OutageBackoffState(), clock: C) where C.Duration == Duration {
        self.state = state
        let origin = clock.now
        elapsed = { origin.duration(to: clock.now) }
        sleep = { try? await clock.sleep(for: $0) }
    }

    /// Records an outage; returns whether it began one (log it once, not per file).
    @discardableResult
    public func reportOutage(_ reason: String) -> Bool {
        let now = elapsed()
        return lock.withLock { state.reportOutage(reason, at: now).began }
    }

    /// Records a file that went through; returns whether it ended an outage.
    @discardableResult
    public func reportSuccess() -> Bool {
        lock.withLock { state.reportSuccess() }
    }

    /// True unless the pipeline is in an outage.
    public var isAvailable: Bool {
        let now = elapsed()
        return lock.withLock { !state.isOutage(at: now) }
    }

    /// A snapshot of the state.
    public var current: OutageBackoffState { lock.withLock { state } }

    /// Waits while an outage's pause lasts, in slices of at most `slice`, returning early once `stop()` is true.
    /// - Returns: false when it returned because of `stop()` during a pause.
    @discardableResult
    public func waitWhileOutage(slice: Duration = .milliseconds(250), stop: () -> Bool = { false }) async -> Bool {
        while true {
            let now = elapsed()
            let remaining = lock.withLock { state.remainingDelay(at: now) }
            if remaining <= .zero { return true }
            if stop() { return false }
            await sleep(min(remaining, slice))
        }
    }
}
