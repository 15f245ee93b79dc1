// IngestCommit: one transaction records a whole batch of claimed files — catalogue rows (patients, studies,
// series, instances, tensors, vault), ledger transitions, audit events, quarantine rows and UID conflicts —
// in a dozen multi-row statements, whatever the batch size.
//
// A file whose SOP Instance UID is catalogued already is compared by content (pixel data and identifying
// attributes): the same content is a duplicate; other content is a conflict, handled by the policy. Conflicts
// are decided under a transaction-scoped advisory lock per UID, so two replicas committing the same UID at the
// same moment are serialised and the second sees the first's row.
import Foundation
import Logging
import PostgresNIO

extension CatalogTransaction {
    /// Records the outcomes of a batch of files this replica claimed and answers, in order, what became of each.
    ///
    /// Files whose lease this replica no longer holds are left as they are (`leaseLost`). Every other file ends
    /// catalogued, duplicate, quarantined, failed (one attempt counted) or released — or, for a conflict under
    /// `keepBoth`, still claimed, to be committed again under its new UID.
    /// - Parameters:
    ///   - owner: this replica's lease owner.
    ///   - policy: what to do with a SOP Instance UID catalogued with other content.
    ///   - arrivedAt: the arrival time stamped on the series (the clock of `completeQuietSeries`).
    public func commitIngestBatch(
        _ updates: [LedgerUpdate], owner: String, policy: UIDConflictPolicy, arrivedAt: Date = Date()
    ) async throws -> [CommitOutcome] {
        guard !updates.isEmpty else { return [] }
        var attempts: [Int64: Int] = [:]
        let held = try await connection.query("""
            SELECT id, attempts FROM ingest.source_files
            WHERE id = ANY(\(updates.map(\.ledgerID))::int8[]) AND state = 'processing' AND lease_owner = \(owner)
            ORDER BY id FOR UPDATE
            """, logger: logger)
        for try await (id, count) in held.decode((Int64, Int).self) { attempts[id] = count }

        var outcomes = [CommitOutcome?](repeating: nil, count: updates.count)
        for (index, update) in updates.enumerated() where attempts[update.ledgerID] == nil { outcomes[index] = .leaseLost }

        // The catalogue.
        let candidates = updates.indices.compactMap { index -> (Int, IngestedInstance)? in
            guard outcomes[index] == nil, case .catalogue(let instance) = updates[index].outcome else { return nil }
            return (index, instance)
        }
        var conflicts: [ConflictRow] = []
        var duplicateOfLedger: [Int: Int64] = [:]
        var duplicateSOPs: [Int: String] = [:]
        var replacedObjects: [String] = []
        if !candidates.isEmpty {
            let sops = Array(Set(candidates.map(\.1.metadata.sopInstanceUID))).sorted()
            try await connection.query("""
                SELECT pg_advisory_xact_lock(k) FROM (SELECT DISTINCT hashtextextended(s, 7021) AS k FROM unnest(\(sops)::text[]) AS s) x ORDER BY k
                """, logger: logger)
            var existing: [String: (content: String?, fileKey: String?)] = [:]
            let rows = try await connection.query("""
                SELECT sop_instance_uid, content_sha256, file_key FROM imaging.instances WHERE sop_instance_uid = ANY(\(sops)::text[]) FOR UPDATE
                """, logger: logger)
            for try await (sop, content, fileKey) in rows.decode((String, String?, String?).self) { existing[sop] = (content, fileKey) }

            var inserts: [IngestedInstance] = [], replaces: [IngestedInstance] = []
            var firstInBatch: [String: (index: Int, content: String, fileKey: String?)] = [:]
            for (index, instance) in candidates {
                let sop = instance.metadata.sopInstanceUID
                let other: String?
                let otherFileKey: String?
                if let found = existing[sop] {
                    otherFileKey = found.fileKey
                    guard let content = found.content else {
                        // Catalogued before content hashes were kept: a re-sent instance updates its row, as it did then.
                        replaces.append(instance)
                        outcomes[index] = .catalogued(sopInstanceUID: sop)
                        continue
                    }
                    other = content
                } else if let first = firstInBatch[sop] {
                    other = first.content
                    otherFileKey = first.fileKey
                    if first.content == instance.contentSHA256 { duplicateOfLedger[index] = updates[first.index].ledgerID }
                } else {
                    firstInBatch[sop] = (index, instance.contentSHA256, instance.object(.file)?.key)
                    inserts.append(instance)
                    outcomes[index] = .catalogued(sopInstanceUID: sop)
                    continue
                }
                if other == instance.contentSHA256 {
                    let shares = otherFileKey != nil && otherFileKey == instance.object(.file)?.key
                    outcomes[index] = .duplicate(of: duplicateOfLedger[index], sharesObjects: shares)
                    duplicateSOPs[index] = sop
                    continue
                }
                let resolution: UIDConflictPolicy = instance.conflictedSOPInstanceUID == nil ? policy : .quarantine
                switch resolution {
                case .quarantine:
                    outcomes[index] = .quarantined(stage: "catalog", reason: "uid_conflict")
                    conflicts.append(ConflictRow(ledgerID: updates[index].ledgerID, sop: sop, resolution: "quarantined", existing: other,
                                                 incoming: instance.contentSHA256, file: instance.object(.file)?.sha256, newSOP: nil))
                case .keepBoth:
                    outcomes[index] = .needsNewUID(existingContentSHA256: other)
                case .replace:
                    replaces.append(instance)
                    outcomes[index] = .replaced(sopInstanceUID: sop)
                    conflicts.append(ConflictRow(ledgerID: updates[index].ledgerID, sop: sop, resolution: "replaced", existing: other,
                                                 incoming: instance.contentSHA256, file: instance.object(.file)?.sha256, newSOP: nil))
                }
            }
            for (index, instance) in candidates {
                if let conflicted = instance.conflictedSOPInstanceUID, case .catalogued(let sop) = outcomes[index] {
                    conflicts.append(ConflictRow(ledgerID: updates[index].ledgerID, sop: conflicted, resolution: "kept_both", existing: nil,
                                                 incoming: instance.contentSHA256, file: instance.object(.file)?.sha256, newSOP: sop))
                }
            }
            // A replaced instance's objects (its DICOM file, tensors, sidecars, previews) that the new one does not
            // reuse: nothing refers to them once it is replaced.
            let replacedSOPs = Array(Set(replaces.map(\.metadata.sopInstanceUID))).sorted()
            if !replacedSOPs.isEmpty {
                let kept = Set(CatalogRows.lastByKey(replaces, \.metadata.sopInstanceUID).flatMap { $0.objects.map(\.stored.key) })
                let rows = try await connection.query("""
                    SELECT k FROM imaging.instances i, unnest(ARRAY[i.file_key, i.tensor_key, i.preview_key]) AS k
                    WHERE i.sop_instance_uid = ANY(\(replacedSOPs)::text[]) AND k IS NOT NULL
                    UNION
                    SELECT k FROM imaging.tensors t, unnest(ARRAY[t.tensor_key, t.sidecar_key, t.preview_key]) AS k
                    WHERE t.sop_instance_uid = ANY(\(replacedSOPs)::text[]) AND k IS NOT NULL
                    """, logger: logger)
                for try await key in rows.decode(String.self) where !kept.contains(key) { replacedObjects.append(key) }
                // Ones this batch inserted or replaced and a later file of it replaced again.
                let replacedSet = Set(replacedSOPs)
                for instance in inserts + replaces where replacedSet.contains(instance.metadata.sopInstanceUID) {
                    replacedObjects += instance.objects.map(\.stored.key).filter { !kept.contains($0) }
                }
            }
            try await catalogue(inserts: inserts, replaces: replaces, arrivedAt: arrivedAt)
        }

        // Duplicates of instances catalogued by earlier files: the ledger row that catalogued them.
        let lookups = duplicateSOPs.filter { duplicateOfLedger[$0.key] == nil }
        if !lookups.isEmpty {
            var firstRow: [String: Int64] = [:]
            let rows = try await connection.query("""
                SELECT sop_instance_uid, min(id) FROM ingest.source_files
                WHERE sop_instance_uid = ANY(\(Array(Set(lookups.values)))::text[]) AND state = 'catalogued' GROUP BY 1
                """, logger: logger)
            for try await (sop, id) in rows.decode((String, Int64).self) { firstRow[sop] = id }
            for (index, sop) in lookups {
                if case .duplicate(_, let shares) = outcomes[index] { outcomes[index] = .duplicate(of: firstRow[sop], sharesObjects: shares) }
            }
        }

        // The ledger.
        var transitions = JSONRows()
        var events: [LedgerEvent] = []
        var quarantine: [(Int64, String, String)] = []
        var forgotten: [Int64] = []
        for (index, update) in updates.enumerated() {
            let id = update.ledgerID
            if outcomes[index] == nil {
                switch update.outcome {
                case .catalogue: continue   // decided above
                case .quarantine(let stage, let reason): outcomes[index] = .quarantined(stage: stage, reason: reason)
                case .failedAttempt(let stage, let reason, let maxAttempts):
                    let count = (attempts[id] ?? 0) + 1
                    outcomes[index] = count >= maxAttempts ? .quarantined(stage: stage, reason: reason) : .failed(attempts: count)
                case .release: outcomes[index] = .released
                case .forget: outcomes[index] = .forgotten
                }
            }
            guard let outcome = outcomes[index] else { continue }
            for stage in update.stages { events.append(LedgerEvent(id: id, stage: stage)) }
            let countsAttempt: Bool
            if case .failedAttempt = update.outcome { countsAttempt = true } else { countsAttempt = false }
            func transition(_ state: LedgerState, reason: String? = nil, sop: String? = nil, duplicateOf: Int64? = nil, stage: String, detail: String?) {
                transitions.row { row in
                    row.int64("id", id)
                    row.string("state", state.rawValue)
                    row.string("error_reason", reason)
                    row.string("sop_instance_uid", sop)
                    row.int64("duplicate_of", duplicateOf)
                    row.int("attempt", countsAttempt ? 1 : 0)
                }
                events.append(LedgerEvent(id: id, stage: stage, from: .processing, to: state, detail: detail))
            }
            switch outcome {
            case .catalogued(let sop):
                transition(.catalogued, sop: sop, stage: "catalog", detail: nil)
            case .replaced(let sop):
                transition(.catalogued, sop: sop, stage: "catalog", detail: "uid_conflict_replaced")
            case .duplicate(let of, _):
                transition(.duplicate, duplicateOf: of, stage: "catalog", detail: "same_content")
            case .quarantined(let stage, let reason):
                transition(.quarantined, reason: reason, stage: "quarantine", detail: reason)
                quarantine.append((id, reason, stage))
            case .failed:
                if case .failedAttempt(let stage, let reason, _) = update.outcome {
                    transition(.failed, reason: reason, stage: stage, detail: reason)
                }
            case .released:
                if case .release(let reason) = update.outcome {
                    transition(.discovered, stage: "deferred", detail: reason)
                }
            case .forgotten:
                forgotten.append(id)
            case .needsNewUID, .leaseLost:
                break
            }
        }
        if !forgotten.isEmpty {
            try await connection.query("""
                DELETE FROM ingest.stage_events WHERE source_file_id = ANY(\(forgotten)::int8[])
                """, logger: logger)
            try await connection.query("""
                DELETE FROM ingest.source_files WHERE id = ANY(\(forgotten)::int8[]) AND state = 'processing'
                """, logger: logger)
        }
        if transitions.count > 0 {
            try await connection.query("""
                UPDATE ingest.source_files f
                SET state = x.state, attempts = f.attempts + x.attempt, error_reason = x.error_reason,
                    sop_instance_uid = COALESCE(x.sop_instance_uid, f.sop_instance_uid), duplicate_of = COALESCE(x.duplicate_of, f.duplicate_of),
                    lease_owner = NULL, lease_until = NULL, updated_at = now()
                FROM jsonb_to_recordset(\(transitions.finished())::jsonb)
                     AS x(id bigint, state text, error_reason text, sop_instance_uid text, duplicate_of bigint, attempt integer)
                WHERE f.id = x.id
                """, logger: logger)
        }
        try await insertEvents(events)
        if !quarantine.isEmpty {
            try await connection.query("""
                INSERT INTO ingest.quarantine (source_file_id, reason, detail)
                SELECT * FROM unnest(\(quarantine.map(\.0))::int8[], \(quarantine.map(\.1))::text[], \(quarantine.map(\.2))::text[])
                """, logger: logger)
        }
        // Objects nothing refers to: recorded with the decision, removed by the caller after the commit.
        var unreferenced: [String] = replacedObjects
        for (index, update) in updates.enumerated() {
            guard case .catalogue(let instance) = update.outcome else { continue }
            switch outcomes[index] {
            case .duplicate(_, sharesObjects: false), .needsNewUID, .quarantined(_, "uid_conflict"):
                unreferenced += instance.objects.map(\.stored.key)
            default: break
            }
        }
        if !unreferenced.isEmpty {
            try await connection.query("""
                INSERT INTO ingest.object_deletions (key) SELECT * FROM unnest(\(unreferenced)::text[]) ON CONFLICT (key) DO NOTHING
                """, logger: logger)
        }
        if !conflicts.isEmpty {
            var rows = JSONRows()
            for conflict in conflicts {
                rows.row { row in
                    row.int64("source_file_id", conflict.ledgerID)
                    row.string("sop_instance_uid", conflict.sop)
                    row.string("resolution", conflict.resolution)
                    row.string("existing_content_sha256", conflict.existing)
                    row.string("incoming_content_sha256", conflict.incoming)
                    row.string("incoming_file_sha256", conflict.file)
                    row.string("new_sop_instance_uid", conflict.newSOP)
                }
            }
            try await connection.query("""
                INSERT INTO ingest.uid_conflicts (source_file_id, sop_instance_uid, resolution, existing_content_sha256,
                                                  incoming_content_sha256, incoming_file_sha256, new_sop_instance_uid, existing_file_sha256)
                SELECT x.source_file_id, x.sop_instance_uid, x.resolution,
                       COALESCE(x.existing_content_sha256, i.content_sha256), x.incoming_content_sha256, x.incoming_file_sha256,
                       x.new_sop_instance_uid, i.file_sha256
                FROM jsonb_to_recordset(\(rows.finished())::jsonb)
                     AS x(source_file_id bigint, sop_instance_uid text, resolution text, existing_content_sha256 text,
                          incoming_content_sha256 text, incoming_file_sha256 text, new_sop_instance_uid text)
                LEFT JOIN imaging.instances i ON i.sop_instance_uid = x.sop_instance_uid AND x.resolution <> 'replaced'
                """, logger: logger)
        }
        return outcomes.map { $0 ?? .leaseLost }
    }

    /// Writes new instances and replacements with their parents, tensors, vault rows and series arrivals.
    private func catalogue(inserts: [IngestedInstance], replaces: [IngestedInstance], arrivedAt: Date) async throws {
        let written = inserts + replaces
        guard !written.isEmpty else { return }
        let parents = CatalogRows.parents(written)
        try await upsertPatients(json: parents.patients)
        try await upsertStudies(json: parents.studies)
        try await upsertSeries(json: parents.series)
        var arrivals: [String: SeriesArrival] = [:]
        if !inserts.isEmpty {
            let rows = try await connection.query("""
                INSERT INTO imaging.instances (\(unescaped: Self.instanceColumns))
                SELECT \(unescaped: Self.instanceColumns) FROM jsonb_to_recordset(\(CatalogRows.instances(inserts))::jsonb)
                     AS x(\(unescaped: Self.instanceColumnTypes))
                ON CONFLICT (sop_instance_uid) DO NOTHING
                RETURNING series_uid
                """, logger: logger)
            for try await series in rows.decode(String.self) { arrivals[series, default: SeriesArrival()].newInstances += 1 }
        }
        // Series a replaced instance left for another one.
        var left: Set<String> = []
        if !replaces.isEmpty {
            var before: [String: String] = [:]
            let sops = Array(Set(replaces.map(\.metadata.sopInstanceUID)))
            let old = try await connection.query("""
                SELECT sop_instance_uid, series_uid FROM imaging.instances WHERE sop_instance_uid = ANY(\(sops)::text[])
                """, logger: logger)
            for try await (sop, series) in old.decode((String, String).self) { before[sop] = series }
            let rows = try await connection.query("""
                UPDATE imaging.instances i SET \(unescaped: Self.instanceUpdates.replacingOccurrences(of: "EXCLUDED.", with: "x.")), updated_at = now()
                FROM jsonb_to_recordset(\(CatalogRows.instances(CatalogRows.lastByKey(replaces, \.metadata.sopInstanceUID)))::jsonb)
                     AS x(\(unescaped: Self.instanceColumnTypes))
                WHERE i.sop_instance_uid = x.sop_instance_uid
                RETURNING i.sop_instance_uid, i.series_uid
                """, logger: logger)
            for try await (sop, series) in rows.decode((String, String).self) {
                if let previous = before[sop], previous != series {
                    arrivals[series, default: SeriesArrival()].newInstances += 1
                    left.insert(previous)
                } else {
                    arrivals[series, default: SeriesArrival()].changedInstances += 1
                }
            }
        }
        _ = try await recordArrivals(arrivals, at: arrivedAt)
        if !left.isEmpty {
            // Counted again; one that still holds instances re-opens (its next revision is inferred on what it
            // holds now), one left empty is closed, so that no job is queued for a series without instances.
            try await connection.query("""
                UPDATE imaging.series s SET
                    instance_count = c.n,
                    revision = CASE WHEN s.state = 'complete' AND c.n > 0 THEN s.revision + 1 ELSE s.revision END,
                    state = CASE WHEN c.n > 0 THEN 'open' ELSE 'complete' END,
                    completed_at = CASE WHEN c.n > 0 THEN NULL ELSE coalesce(s.completed_at, now()) END,
                    last_instance_at = CASE WHEN c.n > 0 THEN GREATEST(s.last_instance_at, \(arrivedAt)) ELSE s.last_instance_at END,
                    updated_at = now()
                FROM (SELECT u AS series_uid, (SELECT count(*) FROM imaging.instances i WHERE i.series_uid = u)::int AS n
                      FROM unnest(\(Array(left).sorted())::text[]) AS u) c
                WHERE s.series_uid = c.series_uid
                """, logger: logger)
        }
        let latest = CatalogRows.lastByKey(written, \.metadata.sopInstanceUID)
        try await upsertTensors(json: CatalogRows.tensors(latest))
        // The burned-in text audits, under the UID each instance is catalogued with; a replaced instance OCR did not
        // read loses its old row.
        let replaced = Set(replaces.map(\.metadata.sopInstanceUID))
        try await writePixelTextAudits(
            latest.compactMap { instance in
                instance.pixelText.map {
                    var audit = $0
                    audit.sopInstanceUID = instance.metadata.sopInstanceUID
                    return audit
                }
            },
            clearing: latest.filter { $0.pixelText == nil && replaced.contains($0.metadata.sopInstanceUID) }.map(\.metadata.sopInstanceUID))
        let vault = CatalogRows.vault(written)
        try await upsertVault(patients: vault.patients, studies: vault.studies, series: vault.series, instances: vault.instances)
    }
}

/// One row of `ingest.uid_conflicts`.
private struct ConflictRow {
    var ledgerID: Int64
    /// The pseudonymous SOP Instance UID that was taken.
    var sop: String
    /// `quarantined`, `kept_both` or `replaced`.
    var resolution: String
    var existing: String?
    var incoming: String
    var file: String?
    var newSOP: String?
}

extension LedgerEvent {
    /// A stage passed, with no state change.
    init(id: Int64, stage: String) {
        self.init(id: id, stage: stage, from: nil, to: nil, detail: nil)
    }
}

extension CatalogTransaction {
    /// Object keys recorded for removal (`commitIngestBatch`) and not yet removed, oldest first.
    public func pendingObjectDeletions(limit: Int = 10_000) async throws -> [String] {
        let rows = try await connection.query(
            "SELECT key FROM ingest.object_deletions ORDER BY created_at, key LIMIT \(limit)", logger: logger)
        var keys: [String] = []
        for try await key in rows.decode(String.self) { keys.append(key) }
        return keys
    }

    /// Forgets keys whose objects were removed from the store.
    public func objectDeletionsDone(_ keys: [String]) async throws {
        guard !keys.isEmpty else { return }
        try await connection.query("DELETE FROM ingest.object_deletions WHERE key = ANY(\(keys)::text[])", logger: logger)
    }
}
