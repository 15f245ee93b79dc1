// The "is this file finished?" rule as a value-type state machine: a file is handed on once its size
// and modification time have stayed unchanged for the stable time. No I/O, no clock of its own.

/// What the caller should do after telling the tracker about a file.
public enum StabilityAction: Equatable, Sendable {
    /// The file is stable: hand it to the pipeline (the tracker forgets it).
    case handOn
    /// Not yet stable: look at the file again at (or after) this deadline.
    case recheck(after: Duration)
}

/// Tracks files that are still changing. Generic over the instant type so tests drive it with plain values.
public struct StabilityTracker<Instant: InstantProtocol>: Sendable where Instant.Duration == Swift.Duration, Instant: Sendable {
    struct Candidate: Sendable {
        var size: Int64
        var modification: Int64   // nanoseconds since the epoch, as read by stat
        var unchangedSince: Instant
    }

    /// How long size and modification time must stay unchanged.
    public let stableTime: Duration
    private var candidates: [String: Candidate] = [:]

    public init(stableTime: Duration) {
        self.stableTime = stableTime
    }

    /// Number of files waiting to become stable.
    public var count: Int { candidates.count }

    /// True when `path` is waiting to become stable.
    public func isTracking(_ path: String) -> Bool { candidates[path] != nil }

    /// Records one look at a file.
    /// - Parameters:
    ///   - path: the file.
    ///   - size: its size now.
    ///   - modification: its modification time now (any monotonic-per-file unit, e.g. ns since the epoch).
    ///   - modificationAge: wall-clock time since that modification; a file last modified longer than the
    ///     stable time ago is stable at first sight (the backlog present at start is handed on without waiting).
    ///   - now: the tracker's clock.
    public mutating func observe(path: String, size: Int64, modification: Int64, modificationAge: Duration, now: Instant) -> StabilityAction {
        if var candidate = candidates[path] {
            if candidate.size != size || candidate.modification != modification {
                candidate = Candidate(size: size, modification: modification, unchangedSince: now)
                candidates[path] = candidate
                return .recheck(after: stableTime)
            }
            let unchanged = candidate.unchangedSince.duration(to: now)
            if unchanged >= stableTime {
                candidates[path] = nil
                return .handOn
            }
            return .recheck(after: stableTime - unchanged)
        }
        if modificationAge >= stableTime {
            return .handOn
        }
        candidates[path] = Candidate(size: size, modification: modification, unchangedSince: now)
        return .recheck(after: stableTime)
    }

    /// The file disappeared (deleted, moved away) or can no longer be read: forget it.
    public mutating func forget(_ path: String) {
        candidates[path] = nil
    }

    /// Files whose stable time has run out by `now`: look at each again and call `observe`.
    public func due(at now: Instant) -> [String] {
        candidates.compactMap { path, candidate in
            candidate.unchangedSince.duration(to: now) >= stableTime ? path : nil
        }
    }

    /// The earliest instant at which some file may become stable, or nil when nothing is tracked.
    public var nextDeadline: Instant? {
        candidates.values.map { $0.unchangedSince.advanced(by: stableTime) }.min()
    }
}
