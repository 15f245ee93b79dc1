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
    /// Seen, not yet claimed.
    case discovered
    /// Claimed by a replica under a lease.
    case processing
    /// Catalogued: done.
    case catalogued
    /// Rejected with a reason: done.
    case quarantined
    /// Same bytes as a file already catalogued: done.
    case duplicate
    /// The last attempt failed; claimable again until attempts run out.
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
    public var attempts: Int
    public var errorReason: String?
    public var leaseOwner: String?
    public var leaseUntil: Date?
    public var sopInstanceUID: String?
    public var duplicateOf: Int64?
}

/// The answer to a claim.
public enum LedgerClaim: Sendable, Hashable {
    /// The caller owns the file until the lease ends; `attempts` counts this one.
    case claimed(LedgerEntry)
    /// Nothing to do: the file was already catalogued, quarantined or marked a duplicate.
    case alreadyDone(LedgerEntry)
    /// Another owner holds a live lease.
    case busy(LedgerEntry)
    /// The same bytes were already catalogued from another path or mtime; this row is now `duplicate`.
    case duplicate(LedgerEntry, of: Int64)
    /// The file failed `maxAttempts` times; the caller should quarantine it.
    case exhausted(LedgerEntry)
}
