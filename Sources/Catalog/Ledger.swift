// Ledger: the exactly-once record of source files. A replica claims a file (insert-or-get by path, size,
// mtime and sha256) under a lease before working on it; transitions are written with an audit event.
import Foundation

/// A source file as the watcher saw it.
public struct SourceFile: Sendable, Hashable {
    public var path: String
    public var size: Int64
    public var mtime: Date
    /// Hex SHA-256 of the file's bytes.
    public var sha256: String

    public init(path: String, size: Int64, mtime: Date, sha256: String) {
        self.path = path
        self.size = size
        self.mtime = mtime
        self.sha256 = sha256
    }
}

/// The states of a ledger row.
public enum LedgerState: String, Sendable, CaseIterable {
    /// Seen, not yet claimed (or released after an outage, with nothing counted against it).
    case discovered
    /// Claimed by a replica under a lease.
    case processing
    /// Catalogued: done.
    case catalogued
    /// Rejected with a reason: done.
    case quarantined
    /// Same bytes as a file already catalogued: done.
    case duplicate
    /// The last attempt failed in a way that may be the file's fault (e.g. the sandbox crashed or timed
    /// out); claimable again until attempts run out. Each transition to `failed` counts one attempt.
    case failed

    /// Whether no further work is due.
    public var isTerminal: Bool { self == .catalogued || self == .quarantined || self == .duplicate }
}

/// One ledger row. `path` may contain patient names: never log it.
public struct LedgerEntry: Sendable, Hashable {
    public var id: Int64
    public var path: String
    public var size: Int64
    public var sha256: String
    public var state: LedgerState
    /// Failed attempts (transitions to `failed`); outages and interrupted claims are not counted here.
    public var attempts: Int
    /// Claims taken, whatever became of them.
    public var claims: Int
    /// Claims that ended with no outcome while the file was processed alone: the claimer died or lost the
    /// database mid-file.
    public var interruptions: Int
    /// The size of the group the file was last being processed in (0: claimed, not started yet).
    public var claimBatch: Int = 1
    public var errorReason: String?
    public var leaseOwner: String?
    public var leaseUntil: Date?
    public var sopInstanceUID: String?
    public var duplicateOf: Int64?

    /// Whether an earlier claim may have stored objects for the file: it was claimed before, whatever became of it.
    public var mayHaveStoredObjects: Bool { claims > 0 }
}

/// The answer to a claim.
public enum LedgerClaim: Sendable, Hashable {
    /// The caller owns the file until the lease ends; `claims` counts this one, `attempts` the failures so far.
    case claimed(LedgerEntry)
    /// Nothing to do: the file was already catalogued, quarantined or marked a duplicate.
    case alreadyDone(LedgerEntry)
    /// Another owner holds a live lease.
    case busy(LedgerEntry)
    /// The same bytes were already catalogued from another path or mtime; this row is now `duplicate`.
    case duplicate(LedgerEntry, of: Int64)
    /// The file failed `maxAttempts` times (its `errorReason` is the last failure), or its claims were
    /// interrupted `maxInterruptions` times; the caller should quarantine it.
    case exhausted(LedgerEntry)
}

/// What a claim finds of a file's last claim when that claim ended with no outcome.
public enum Interruption: Sendable, Hashable {
    /// Not interrupted (or claimed and never started: nothing was done with it).
    case none
    /// Interrupted while it was processed alone: counted (`interruptions`), as it may be the file's doing.
    case counted
    /// Interrupted in a group of files: not counted (no one file is to blame); it goes in a group of `group`.
    case isolate(group: Int)

    /// The interruption a claim of `entry` finds.
    public static func of(_ entry: LedgerEntry) -> Interruption {
        guard entry.state == .processing else { return .none }
        switch entry.claimBatch {
        case 0: return .none
        case 1: return .counted
        case let size: return .isolate(group: max(1, size / 2))
        }
    }
}
