// LedgerBatch: claims of many source files in one transaction — a handful of statements whatever the batch
// size, each row keeping the meaning `claimSourceFile` gives it (leases, attempts, interruptions, duplicates).
import Foundation
import Logging
import PostgresNIO

extension CatalogTransaction {
    /// Claims source files: inserts the ledger rows that are new and answers for each file, in the order given,
    /// as `claimSourceFile` would (claimed, already done, busy, duplicate of catalogued bytes, exhausted).
    ///
    /// Unlike `claimSourceFile`, an exhausted file is quarantined here, in the same transaction: its entry comes
    /// back `quarantined`, with `errorReason` the last failure (`process_crashed`, …) or `interrupted_repeatedly`
    /// (see `exhaustedFailure(of:maxAttempts:)` for its stage).
    ///
    /// The same path, size, mtime and SHA-256 twice in `files` is claimed once; the second gets `busy`.
    /// - Parameters:
    ///   - owner: the claimer's identity (this replica); checked by later transitions.
    ///   - lease: how long the claims hold before another replica may take the files over.
    ///   - maxAttempts: failed attempts after which a file is `exhausted`.
    ///   - maxInterruptions: interrupted claims after which a file is `exhausted`.
    public func claimSourceFiles(
        _ files: [SourceFile], owner: String, lease: Duration, maxAttempts: Int = 3, maxInterruptions: Int = 10
    ) async throws -> [BatchClaim] {
        guard !files.isEmpty else { return [] }
        let paths = files.map(\.path), sizes = files.map(\.size), mtimes = files.map(\.mtime), hashes = files.map(\.sha256)
        // Inserted in key order, so that two replicas claiming overlapping batches lock rows in the same order.
        try await connection.query("""
            INSERT INTO ingest.source_files (path, size, mtime, sha256)
            SELECT path, size, mtime, sha256
            FROM unnest(\(paths)::text[], \(sizes)::int8[], \(mtimes)::timestamptz[], \(hashes)::text[]) AS x(path, size, mtime, sha256)
            ORDER BY path, size, mtime, sha256
            ON CONFLICT (path, size, mtime, sha256) DO NOTHING
            """, logger: logger)
        let rows = try await connection.query("""
            SELECT \(unescaped: Self.ledgerColumns.split(separator: ",").map { "f." + $0.trimmingCharacters(in: .whitespacesAndNewlines) }.joined(separator: ", ")),
                   COALESCE(f.lease_until > now(), false), f.mtime
            FROM ingest.source_files f
            JOIN unnest(\(paths)::text[], \(sizes)::int8[], \(mtimes)::timestamptz[], \(hashes)::text[]) AS x(path, size, mtime, sha256)
              ON f.path = x.path AND f.size = x.size AND f.mtime = x.mtime AND f.sha256 = x.sha256
            ORDER BY f.id
            FOR UPDATE OF f
            """, logger: logger)
        var found = ClaimRows()
        for try await row in rows {
            let entry = try Self.ledgerEntry(row)
            let cells = row.makeRandomAccess()
            found.add(entry, leaseLive: try cells[Self.ledgerColumnCount].decode(Bool.self),
                      mtime: try cells[Self.ledgerColumnCount + 1].decode(Date.self))
        }

        // Classify, as `claimSourceFile` does for one file.
        enum Plan {
            case done(LedgerClaim), claim(LedgerEntry, interrupted: Bool, group: Int?), exhaustInterrupted(LedgerEntry)
            case duplicateCandidate(LedgerEntry, interrupted: Bool, group: Int?)
        }
        var plans: [Plan] = []
        var seen: Set<Int64> = []
        var candidateHashes: Set<String> = []
        for file in files {
            guard let row = found.row(for: file) else { throw CatalogError(.ledgerTransitionRejected) }
            let entry = row.entry
            if !seen.insert(entry.id).inserted {
                plans.append(.done(.busy(entry)))
                continue
            }
            if entry.state.isTerminal { plans.append(.done(.alreadyDone(entry))); continue }
            if entry.state == .processing && row.leaseLive && entry.leaseOwner != owner { plans.append(.done(.busy(entry))); continue }
            if entry.attempts >= maxAttempts { plans.append(.done(.exhausted(entry))); continue }
            var interrupted = false
            var group: Int?
            switch Interruption.of(entry) {
            case .none: break
            case .counted:
                interrupted = true
                group = 1
            case .isolate(let size): group = size
            }
            if interrupted && entry.interruptions + 1 >= maxInterruptions { plans.append(.exhaustInterrupted(entry)); continue }
            plans.append(.duplicateCandidate(entry, interrupted: interrupted, group: group))
            candidateHashes.insert(entry.sha256)
        }

        // Byte-identical files already catalogued from another path or mtime.
        var catalogued: [String: Int64] = [:]
        if !candidateHashes.isEmpty {
            let duplicates = try await connection.query("""
                SELECT sha256, min(id) FROM ingest.source_files
                WHERE sha256 = ANY(\(Array(candidateHashes))::text[]) AND state = 'catalogued'
                GROUP BY sha256
                """, logger: logger)
            for try await (sha256, id) in duplicates.decode((String, Int64).self) { catalogued[sha256] = id }
        }

        var claimIDs: [Int64] = [], claimInterrupted: [Int32] = [], claimGroups: [Int32] = []
        var duplicateIDs: [Int64] = [], duplicateOf: [Int64] = []
        var reclaimedIDs: [Int64] = [], reclaimedOf: [Int64] = []
        var exhaustedIDs: [Int64] = []
        var events: [LedgerEvent] = []
        for (index, plan) in plans.enumerated() {
            switch plan {
            case .done: break
            case .claim: break
            case .exhaustInterrupted(let entry):
                exhaustedIDs.append(entry.id)
            case .duplicateCandidate(let entry, let interrupted, let group):
                if let original = catalogued[entry.sha256], original != entry.id {
                    duplicateIDs.append(entry.id)
                    duplicateOf.append(original)
                    if entry.mayHaveStoredObjects {
                        reclaimedIDs.append(entry.id)
                        reclaimedOf.append(original)
                    }
                    events.append(LedgerEvent(id: entry.id, stage: "claim", from: entry.state, to: .duplicate))
                    var updated = entry
                    updated.state = .duplicate
                    updated.duplicateOf = original
                    updated.leaseOwner = nil
                    updated.leaseUntil = nil
                    plans[index] = .done(.duplicate(updated, of: original))
                } else {
                    claimIDs.append(entry.id)
                    claimInterrupted.append(interrupted ? 1 : 0)
                    claimGroups.append(group.map(Int32.init) ?? -1)
                    let detail = interrupted ? "interrupted" : group != nil ? "interrupted_in_batch" : nil
                    events.append(LedgerEvent(id: entry.id, stage: "claim", from: entry.state, to: .processing, detail: detail))
                    plans[index] = .claim(entry, interrupted: interrupted, group: group)
                }
            }
        }
        if !exhaustedIDs.isEmpty {
            try await connection.query("""
                UPDATE ingest.source_files SET interruptions = interruptions + 1, updated_at = now() WHERE id = ANY(\(exhaustedIDs)::int8[])
                """, logger: logger)
        }
        // Exhausted files are quarantined with their true reason.
        var quarantined: [Int64: (stage: String, reason: String)] = [:]
        for plan in plans {
            switch plan {
            case .done(.exhausted(let entry)): quarantined[entry.id] = Self.exhaustedFailure(of: entry, maxAttempts: maxAttempts)
            case .exhaustInterrupted(var entry):
                entry.interruptions += 1
                quarantined[entry.id] = Self.exhaustedFailure(of: entry, maxAttempts: maxAttempts)
            default: break
            }
        }
        if !quarantined.isEmpty {
            let ids = quarantined.keys.sorted()
            try await connection.query("""
                UPDATE ingest.source_files f SET state = 'quarantined', error_reason = x.reason, lease_owner = NULL, lease_until = NULL,
                       updated_at = now()
                FROM unnest(\(ids)::int8[], \(ids.map { quarantined[$0]!.reason })::text[]) AS x(id, reason)
                WHERE f.id = x.id
                """, logger: logger)
            try await connection.query("""
                INSERT INTO ingest.quarantine (source_file_id, reason, detail)
                SELECT * FROM unnest(\(ids)::int8[], \(ids.map { quarantined[$0]!.reason })::text[], \(ids.map { quarantined[$0]!.stage })::text[])
                """, logger: logger)
            for plan in plans {
                switch plan {
                case .done(.exhausted(let entry)), .exhaustInterrupted(let entry):
                    events.append(LedgerEvent(id: entry.id, stage: "quarantine", from: entry.state, to: .quarantined, detail: quarantined[entry.id]?.reason))
                default: break
                }
            }
        }
        if !duplicateIDs.isEmpty {
            try await connection.query("""
                UPDATE ingest.source_files f SET state = 'duplicate', duplicate_of = x.original, lease_owner = NULL, lease_until = NULL,
                       updated_at = now()
                FROM unnest(\(duplicateIDs)::int8[], \(duplicateOf)::int8[]) AS x(id, original)
                WHERE f.id = x.id
                """, logger: logger)
        }
        if !reclaimedIDs.isEmpty {
            // A file claimed before (its daemon killed, or its batch released, after its objects were stored) that is
            // now a duplicate may have left objects. Its content is the original's, so are its pseudonymous UIDs:
            // its keys are the original's with its own ledger row in place of the original's.
            try await connection.query("""
                INSERT INTO ingest.object_deletions (key)
                SELECT DISTINCT replace(k.key, o.sop_instance_uid || '.' || x.original || '.', o.sop_instance_uid || '.' || x.id || '.')
                FROM unnest(\(reclaimedIDs)::int8[], \(reclaimedOf)::int8[]) AS x(id, original)
                JOIN ingest.source_files o ON o.id = x.original
                CROSS JOIN LATERAL (
                    SELECT unnest(ARRAY[i.file_key, i.tensor_key, i.preview_key]) FROM imaging.instances i
                    WHERE i.sop_instance_uid = o.sop_instance_uid
                    UNION SELECT unnest(ARRAY[t.tensor_key, t.sidecar_key, t.preview_key]) FROM imaging.tensors t
                    WHERE t.sop_instance_uid = o.sop_instance_uid
                ) AS k(key)
                WHERE k.key IS NOT NULL AND strpos(k.key, o.sop_instance_uid || '.' || x.original || '.') > 0
                ON CONFLICT (key) DO NOTHING
                """, logger: logger)
        }
        // Files without a group of their own start at once, together: their group is all of them. Files to
        // isolate wait (0) until their group starts (`startSourceFileGroup`).
        let together = Int32(claimGroups.filter { $0 < 0 }.count)
        var claimed: [Int64: LedgerEntry] = [:]
        if !claimIDs.isEmpty {
            let updated = try await connection.query("""
                UPDATE ingest.source_files f
                SET state = 'processing', claims = f.claims + 1, interruptions = f.interruptions + x.interrupted,
                    claim_batch = CASE WHEN x.grp < 0 THEN \(together) ELSE 0 END,
                    lease_owner = \(owner), lease_until = now() + make_interval(secs => \(lease.seconds)), updated_at = now()
                FROM unnest(\(claimIDs)::int8[], \(claimInterrupted)::int4[], \(claimGroups)::int4[]) AS x(id, interrupted, grp)
                WHERE f.id = x.id
                RETURNING \(unescaped: Self.ledgerColumns.split(separator: ",").map { "f." + $0.trimmingCharacters(in: .whitespacesAndNewlines) }.joined(separator: ", "))
                """, logger: logger)
            for try await row in updated {
                let entry = try Self.ledgerEntry(row)
                claimed[entry.id] = entry
            }
        }
        try await insertEvents(events)

        func quarantinedEntry(_ entry: LedgerEntry) -> LedgerEntry {
            var done = entry
            done.state = .quarantined
            done.errorReason = quarantined[entry.id]?.reason
            done.leaseOwner = nil
            done.leaseUntil = nil
            return done
        }
        return zip(files, plans).map { file, plan in
            switch plan {
            case .done(.exhausted(let entry)): return BatchClaim(file: file, claim: .exhausted(quarantinedEntry(entry)))
            case .done(let claim): return BatchClaim(file: file, claim: claim)
            case .claim(let entry, _, let group):
                return BatchClaim(file: file, claim: claimed[entry.id].map { .claimed($0) } ?? .busy(entry), group: group)
            case .exhaustInterrupted(let entry):
                var exhausted = quarantinedEntry(entry)
                exhausted.interruptions += 1
                return BatchClaim(file: file, claim: .exhausted(exhausted))
            case .duplicateCandidate(let entry, _, _): return BatchClaim(file: file, claim: .busy(entry))
            }
        }
    }

    /// The stage and reason an exhausted file is quarantined with: its last failure once its attempts ran out
    /// (`sandbox`, e.g. `process_crashed`), else `interrupted_repeatedly` (`claim`).
    public static func exhaustedFailure(of entry: LedgerEntry, maxAttempts: Int) -> (stage: String, reason: String) {
        entry.attempts >= maxAttempts ? ("sandbox", entry.errorReason ?? "attempts_exhausted") : ("claim", "interrupted_repeatedly")
    }

    /// Marks claimed files as started in a group of `ids.count` (see `Interruption`).
    public func startSourceFileGroup(ids: [Int64], owner: String) async throws {
        guard !ids.isEmpty else { return }
        try await connection.query("""
            UPDATE ingest.source_files SET claim_batch = \(ids.count)
            WHERE id = ANY(\(ids)::int8[]) AND state = 'processing' AND lease_owner = \(owner)
            """, logger: logger)
    }

    /// Extends the leases this owner holds on `ids` (a batch that runs long); returns the ids still held.
    @discardableResult
    public func renewSourceFileLeases(ids: [Int64], owner: String, lease: Duration) async throws -> Set<Int64> {
        guard !ids.isEmpty else { return [] }
        let rows = try await connection.query("""
            UPDATE ingest.source_files SET lease_until = now() + make_interval(secs => \(lease.seconds)), updated_at = now()
            WHERE id = ANY(\(ids)::int8[]) AND state = 'processing' AND lease_owner = \(owner)
            RETURNING id
            """, logger: logger)
        var held: Set<Int64> = []
        for try await id in rows.decode(Int64.self) { held.insert(id) }
        return held
    }

    /// Writes audit events of the ledger in one statement.
    func insertEvents(_ events: [LedgerEvent]) async throws {
        guard !events.isEmpty else { return }
        try await connection.query("""
            INSERT INTO ingest.stage_events (source_file_id, stage, from_state, to_state, detail)
            SELECT id, stage, NULLIF(from_state, ''), NULLIF(to_state, ''), NULLIF(detail, '')
            FROM unnest(\(events.map(\.id))::int8[], \(events.map(\.stage))::text[], \(events.map { $0.from?.rawValue ?? "" })::text[],
                        \(events.map { $0.to?.rawValue ?? "" })::text[], \(events.map { $0.detail ?? "" })::text[])
                 AS x(id, stage, from_state, to_state, detail)
            """, logger: logger)
    }
}

/// One audit event of the ledger (`ingest.stage_events`).
struct LedgerEvent: Sendable {
    var id: Int64
    var stage: String
    var from: LedgerState?
    var to: LedgerState?
    var detail: String?
}

/// The ledger rows a batch claim found, looked up by path, size and SHA-256, then the mtime at the database's
/// microsecond precision (a `Date` read back is not bit-equal to the one written).
private struct ClaimRows {
    struct Row { var entry: LedgerEntry; var leaseLive: Bool; var microseconds: Double }
    struct Key: Hashable { var path: String; var size: Int64; var sha256: String }
    private var rows: [Key: [Row]] = [:]

    mutating func add(_ entry: LedgerEntry, leaseLive: Bool, mtime: Date) {
        rows[Key(path: entry.path, size: entry.size, sha256: entry.sha256), default: []]
            .append(Row(entry: entry, leaseLive: leaseLive, microseconds: mtime.timeIntervalSince1970 * 1_000_000))
    }

    func row(for file: SourceFile) -> Row? {
        let micros = file.mtime.timeIntervalSince1970 * 1_000_000
        return rows[Key(path: file.path, size: file.size, sha256: file.sha256)]?.min { abs($0.microseconds - micros) < abs($1.microseconds - micros) }
            .flatMap { abs($0.microseconds - micros) <= 1.5 ? $0 : nil }
    }
}
