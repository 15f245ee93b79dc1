// CatalogTransaction: every write of the catalogue, the vault, the ledger and the job outbox, run on one
// connection inside one transaction. Obtained from `Catalog.withTransaction`; must not escape it.
import Foundation
import Logging
import PostgresNIO

/// The writes available inside one transaction.
public struct CatalogTransaction: Sendable {
    let connection: PostgresConnection
    let logger: Logger

    // MARK: Catalogue

    /// Upserts patients, studies, series and instances (parents first) and the vault rows, keyed by
    /// pseudonymous identifiers: a re-sent instance updates its row, never duplicates it.
    ///
    /// Each newly inserted instance counts into its series, sets the series' last arrival to `arrivedAt` and,
    /// if the series was complete, re-opens it with the next revision. Re-sent instances only refresh columns.
    /// (The daemon's batches go through `commitIngestBatch`, which tells re-sent content from conflicting UIDs.)
    /// - Parameter arrivedAt: the arrival time the daemon's clock gives (compared later by `completeQuietSeries`).
    @discardableResult
    public func upsert(_ batch: CatalogBatch, arrivedAt: Date = Date()) async throws -> UpsertSummary {
        try await upsertPatients(json: try json(unique(batch.patients, by: \.patientID)))
        try await upsertStudies(json: try json(unique(batch.studies, by: \.studyUID)))
        try await upsertSeries(json: try json(unique(batch.series, by: \.seriesUID)))
        var summary = UpsertSummary(insertedInstances: 0, updatedInstances: 0, reopenedSeries: [])
        let instances = unique(batch.instances, by: \.sopInstanceUID)
        if !instances.isEmpty {
            let rows = try await connection.query("""
                INSERT INTO imaging.instances AS i (\(unescaped: Self.instanceColumns))
                SELECT \(unescaped: Self.instanceColumns) FROM jsonb_to_recordset(\(CatalogRows.instances(instances))::jsonb)
                     AS x(\(unescaped: Self.instanceColumnTypes))
                ON CONFLICT (sop_instance_uid) DO UPDATE SET \(unescaped: Self.instanceUpdates), updated_at = now()
                RETURNING i.series_uid, (xmax = 0) AS inserted
                """, logger: logger)
            var arrivals: [String: SeriesArrival] = [:]
            for try await (series, inserted) in rows.decode((String, Bool).self) {
                if inserted {
                    summary.insertedInstances += 1
                    arrivals[series, default: SeriesArrival()].newInstances += 1
                } else {
                    summary.updatedInstances += 1
                }
            }
            summary.reopenedSeries = try await recordArrivals(arrivals, at: arrivedAt)
            try await upsertTensors(instances)
        }
        try await upsertVault(batch)
        return summary
    }

    /// The columns of `imaging.instances` the pipeline writes, in the order of `instanceColumnTypes`.
    static let instanceColumns = """
        sop_instance_uid, series_uid, study_uid, patient_id, sop_class_uid, instance_number, modality, body_part, study_date,
        series_description, manufacturer, rows, columns, pixel_spacing, slice_thickness, number_of_frames, transfer_syntax_uid,
        file_key, file_sha256, file_size, tensor_key, tensor_sha256, preview_key, preview_sha256, header, content_sha256
        """
    static let instanceColumnTypes = """
        sop_instance_uid text, series_uid text, study_uid text, patient_id text, sop_class_uid text, instance_number integer,
        modality text, body_part text, study_date date, series_description text, manufacturer text, rows integer, columns integer,
        pixel_spacing double precision[], slice_thickness double precision, number_of_frames integer, transfer_syntax_uid text,
        file_key text, file_sha256 text, file_size bigint, tensor_key text, tensor_sha256 text, preview_key text,
        preview_sha256 text, header jsonb, content_sha256 text
        """
    /// `SET` list replacing every column but the key with the `EXCLUDED` row's.
    static let instanceUpdates = instanceColumns.split(separator: ",").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        .dropFirst().map { "\($0) = EXCLUDED.\($0)" }.joined(separator: ", ")

    /// Upserts `imaging.patients` from JSON rows (`patient_id`, `sex`, `age_years`), one per patient.
    func upsertPatients(json rows: String) async throws {
        guard rows != "[]" else { return }
        try await connection.query("""
            INSERT INTO imaging.patients AS p (patient_id, sex, age_years)
            SELECT patient_id, sex, age_years
            FROM jsonb_to_recordset(\(rows)::jsonb) AS x(patient_id text, sex text, age_years integer)
            ORDER BY patient_id
            ON CONFLICT (patient_id) DO UPDATE
            SET sex = COALESCE(EXCLUDED.sex, p.sex), age_years = COALESCE(EXCLUDED.age_years, p.age_years),
                updated_at = now()
            WHERE (p.sex, p.age_years) IS DISTINCT FROM
                  (COALESCE(EXCLUDED.sex, p.sex), COALESCE(EXCLUDED.age_years, p.age_years))
            """, logger: logger)
    }

    /// Upserts `imaging.studies` from JSON rows, one per study.
    func upsertStudies(json rows: String) async throws {
        guard rows != "[]" else { return }
        try await connection.query("""
            INSERT INTO imaging.studies AS s (study_uid, patient_id, study_date, study_description, accession_pseudonym)
            SELECT study_uid, patient_id, study_date, study_description, accession_pseudonym
            FROM jsonb_to_recordset(\(rows)::jsonb)
                 AS x(study_uid text, patient_id text, study_date date, study_description text, accession_pseudonym text)
            ORDER BY study_uid
            ON CONFLICT (study_uid) DO UPDATE
            SET patient_id = EXCLUDED.patient_id, study_date = EXCLUDED.study_date,
                study_description = EXCLUDED.study_description, accession_pseudonym = EXCLUDED.accession_pseudonym,
                updated_at = now()
            WHERE (s.patient_id, s.study_date, s.study_description, s.accession_pseudonym) IS DISTINCT FROM
                  (EXCLUDED.patient_id, EXCLUDED.study_date, EXCLUDED.study_description, EXCLUDED.accession_pseudonym)
            """, logger: logger)
    }

    /// Upserts the descriptive columns of `imaging.series` from JSON rows, one per series.
    func upsertSeries(json rows: String) async throws {
        guard rows != "[]" else { return }
        try await connection.query("""
            INSERT INTO imaging.series AS s
                (series_uid, study_uid, modality, body_part, series_number, series_description, manufacturer)
            SELECT series_uid, study_uid, modality, body_part, series_number, series_description, manufacturer
            FROM jsonb_to_recordset(\(rows)::jsonb)
                 AS x(series_uid text, study_uid text, modality text, body_part text, series_number integer,
                      series_description text, manufacturer text)
            ORDER BY series_uid
            ON CONFLICT (series_uid) DO UPDATE
            SET study_uid = EXCLUDED.study_uid, modality = EXCLUDED.modality, body_part = EXCLUDED.body_part,
                series_number = EXCLUDED.series_number, series_description = EXCLUDED.series_description,
                manufacturer = EXCLUDED.manufacturer, updated_at = now()
            WHERE (s.study_uid, s.modality, s.body_part, s.series_number, s.series_description, s.manufacturer)
                  IS DISTINCT FROM
                  (EXCLUDED.study_uid, EXCLUDED.modality, EXCLUDED.body_part, EXCLUDED.series_number,
                   EXCLUDED.series_description, EXCLUDED.manufacturer)
            """, logger: logger)
    }

    /// What arrived in one series in one transaction.
    struct SeriesArrival {
        /// Instances new to the catalogue: they count into the series and re-open it when complete.
        var newInstances = 0
        /// Instances whose content changed in place: they re-open a complete series without counting.
        var changedInstances = 0
    }

    /// Counts arrivals into their series, moves each series' last arrival to `arrivedAt` and re-opens (with the
    /// next revision) the complete series that got a new or changed instance; returns those re-opened.
    func recordArrivals(_ arrivals: [String: SeriesArrival], at arrivedAt: Date) async throws -> [String] {
        let touched = arrivals.filter { $0.value.newInstances > 0 || $0.value.changedInstances > 0 }.sorted { $0.key < $1.key }
        guard !touched.isEmpty else { return [] }
        let rows = try await connection.query("""
            WITH input AS (
                SELECT * FROM unnest(\(touched.map(\.key))::text[], \(touched.map { Int32($0.value.newInstances) })::int4[])
                     AS x(series_uid, new_instances)
            ), before AS (
                SELECT s.series_uid, s.state FROM imaging.series s JOIN input USING (series_uid)
            ), touched AS (
                UPDATE imaging.series s SET
                    instance_count = s.instance_count + x.new_instances,
                    last_instance_at = GREATEST(s.last_instance_at, \(arrivedAt)),
                    revision = CASE WHEN s.state = 'complete' THEN s.revision + 1 ELSE s.revision END,
                    state = 'open', completed_at = NULL, updated_at = now()
                FROM input x WHERE s.series_uid = x.series_uid
                RETURNING s.series_uid
            )
            SELECT COALESCE((SELECT array_agg(b.series_uid ORDER BY b.series_uid) FROM before b WHERE b.state = 'complete'), '{}'::text[]),
                   (SELECT count(*) FROM touched)
            """, logger: logger)
        var reopened: [String] = []
        for try await (series, _) in rows.decode(([String], Int).self) { reopened = series }
        return reopened
    }

    /// Writes every recipe's tensor of the instances that list theirs; recipes an instance no longer has go.
    func upsertTensors(_ instances: [InstanceRecord]) async throws {
        let tensors = instances.flatMap { instance in unique(instance.tensors, by: \.recipe).map { TensorRow(instance.sopInstanceUID, $0) } }
        try await upsertTensors(json: try json(tensors))
    }

    /// Writes `imaging.tensors` from JSON rows; for each instance named, recipes not in the rows are removed.
    func upsertTensors(json rows: String) async throws {
        guard rows != "[]" else { return }
        try await connection.query("""
            WITH input AS (
                SELECT * FROM jsonb_to_recordset(\(rows)::jsonb) AS x(
                    sop_instance_uid text, recipe text, tensor_key text, tensor_sha256 text, sidecar_key text,
                    preview_key text, preview_sha256 text)
            ), gone AS (
                DELETE FROM imaging.tensors t
                WHERE t.sop_instance_uid IN (SELECT sop_instance_uid FROM input)
                  AND (t.sop_instance_uid, t.recipe) NOT IN (SELECT sop_instance_uid, recipe FROM input)
            )
            INSERT INTO imaging.tensors AS t
                (sop_instance_uid, recipe, tensor_key, tensor_sha256, sidecar_key, preview_key, preview_sha256)
            SELECT sop_instance_uid, recipe, tensor_key, tensor_sha256, sidecar_key, preview_key, preview_sha256 FROM input
            ORDER BY sop_instance_uid, recipe
            ON CONFLICT (sop_instance_uid, recipe) DO UPDATE
            SET tensor_key = EXCLUDED.tensor_key, tensor_sha256 = EXCLUDED.tensor_sha256, sidecar_key = EXCLUDED.sidecar_key,
                preview_key = EXCLUDED.preview_key, preview_sha256 = EXCLUDED.preview_sha256, updated_at = now()
            WHERE (t.tensor_key, t.tensor_sha256, t.sidecar_key, t.preview_key, t.preview_sha256) IS DISTINCT FROM
                  (EXCLUDED.tensor_key, EXCLUDED.tensor_sha256, EXCLUDED.sidecar_key, EXCLUDED.preview_key, EXCLUDED.preview_sha256)
            """, logger: logger)
    }

    func upsertVault(_ batch: CatalogBatch) async throws {
        try await upsertVault(
            patients: try json(unique(batch.vaultPatients, by: \.patientID)), studies: try json(unique(batch.vaultStudies, by: \.studyUID)),
            series: try json(unique(batch.vaultSeries, by: \.seriesUID)), instances: try json(unique(batch.vaultInstances, by: \.sopInstanceUID)))
    }

    /// Writes the vault's rows from JSON rows (one per pseudonym each).
    func upsertVault(patients: String, studies: String, series: String, instances: String) async throws {
        if patients != "[]" {
            try await connection.query("""
                INSERT INTO vault.patients AS v (patient_id, original_patient_id, patient_name, birth_date)
                SELECT patient_id, original_patient_id, patient_name, birth_date
                FROM jsonb_to_recordset(\(patients)::jsonb)
                     AS x(patient_id text, original_patient_id text, patient_name text, birth_date text)
                ORDER BY patient_id
                ON CONFLICT (patient_id) DO UPDATE
                SET original_patient_id = EXCLUDED.original_patient_id,
                    patient_name = COALESCE(EXCLUDED.patient_name, v.patient_name),
                    birth_date = COALESCE(EXCLUDED.birth_date, v.birth_date), updated_at = now()
                WHERE (v.original_patient_id, v.patient_name, v.birth_date) IS DISTINCT FROM
                      (EXCLUDED.original_patient_id, COALESCE(EXCLUDED.patient_name, v.patient_name),
                       COALESCE(EXCLUDED.birth_date, v.birth_date))
                """, logger: logger)
        }
        if studies != "[]" {
            try await connection.query("""
                INSERT INTO vault.studies AS v (study_uid, original_study_uid, accession_number)
                SELECT study_uid, original_study_uid, accession_number
                FROM jsonb_to_recordset(\(studies)::jsonb)
                     AS x(study_uid text, original_study_uid text, accession_number text)
                ORDER BY study_uid
                ON CONFLICT (study_uid) DO UPDATE
                SET accession_number = COALESCE(EXCLUDED.accession_number, v.accession_number)
                WHERE v.accession_number IS DISTINCT FROM COALESCE(EXCLUDED.accession_number, v.accession_number)
                """, logger: logger)
        }
        if series != "[]" {
            try await connection.query("""
                INSERT INTO vault.series (series_uid, original_series_uid)
                SELECT series_uid, original_series_uid
                FROM jsonb_to_recordset(\(series)::jsonb) AS x(series_uid text, original_series_uid text)
                ORDER BY series_uid
                ON CONFLICT (series_uid) DO NOTHING
                """, logger: logger)
        }
        if instances != "[]" {
            try await connection.query("""
                INSERT INTO vault.instances (sop_instance_uid, original_sop_instance_uid)
                SELECT sop_instance_uid, original_sop_instance_uid
                FROM jsonb_to_recordset(\(instances)::jsonb)
                     AS x(sop_instance_uid text, original_sop_instance_uid text)
                ORDER BY sop_instance_uid
                ON CONFLICT (sop_instance_uid) DO NOTHING
                """, logger: logger)
        }
    }

    // MARK: Series completion

    /// Marks complete the open series (with at least one instance) whose last instance arrived at or before
    /// `quietSince`, and returns them; rows locked by another transaction are skipped. Enqueue their jobs
    /// in the same transaction, naming each series' `revision`.
    /// - Parameters:
    ///   - quietSince: now minus the quiet period, by the same clock that gave `arrivedAt` to `upsert`.
    ///   - limit: the most series handled in one call.
    public func completeQuietSeries(quietSince: Date, limit: Int = 100) async throws -> [CompletedSeries] {
        let rows = try await connection.query("""
            UPDATE imaging.series s SET state = 'complete', completed_at = now(), updated_at = now()
            WHERE s.series_uid IN (
                SELECT series_uid FROM imaging.series
                WHERE state = 'open' AND last_instance_at <= \(quietSince)
                ORDER BY last_instance_at LIMIT \(limit)
                FOR UPDATE SKIP LOCKED)
            RETURNING s.series_uid, s.study_uid, s.revision, s.modality, s.body_part, s.series_description,
                      s.instance_count
            """, logger: logger)
        return try await completedSeries(rows)
    }

    /// Like `completeQuietSeries(quietSince:limit:)`, but completes only the candidates for which `isQuiet`
    /// holds: e.g. a series whose own quiet period (by its routes) is longer than the one `quietSince` used.
    /// Candidates left open stay open, unlocked at the end of the transaction.
    /// - Parameters:
    ///   - quietSince: now minus the shortest quiet period in use.
    ///   - limit: the most candidates looked at in one call (oldest arrival first).
    ///   - isQuiet: whether a candidate is quiet by its own period.
    public func completeQuietSeries(
        quietSince: Date, limit: Int = 500, where isQuiet: (OpenSeries) -> Bool
    ) async throws -> [CompletedSeries] {
        let candidates = try await connection.query("""
            SELECT series_uid, modality, body_part, last_instance_at FROM imaging.series
            WHERE state = 'open' AND last_instance_at <= \(quietSince)
            ORDER BY last_instance_at LIMIT \(limit)
            FOR UPDATE SKIP LOCKED
            """, logger: logger)
        var quiet: [String] = []
        for try await (uid, modality, bodyPart, last) in candidates.decode((String, String?, String?, Date).self) {
            if isQuiet(OpenSeries(seriesUID: uid, modality: modality, bodyPart: bodyPart, lastInstanceAt: last)) { quiet.append(uid) }
        }
        guard !quiet.isEmpty else { return [] }
        let rows = try await connection.query("""
            UPDATE imaging.series s SET state = 'complete', completed_at = now(), updated_at = now()
            WHERE s.series_uid = ANY(\(quiet)) AND s.state = 'open'
            RETURNING s.series_uid, s.study_uid, s.revision, s.modality, s.body_part, s.series_description,
                      s.instance_count
            """, logger: logger)
        return try await completedSeries(rows)
    }

    /// The series an `UPDATE … RETURNING` of the columns above completed, in UID order.
    private func completedSeries(_ rows: PostgresRowSequence) async throws -> [CompletedSeries] {
        var result: [CompletedSeries] = []
        for try await (uid, study, revision, modality, bodyPart, description, count) in rows.decode(
            (String, String, Int, String?, String?, String?, Int).self)
        {
            result.append(CompletedSeries(
                seriesUID: uid, studyUID: study, revision: revision, modality: modality, bodyPart: bodyPart,
                seriesDescription: description, instanceCount: count))
        }
        return result.sorted { $0.seriesUID < $1.seriesUID }
    }

    /// The completion state of a series, or nil when it is unknown.
    public func seriesState(_ seriesUID: String) async throws -> SeriesState? {
        let rows = try await connection.query("""
            SELECT series_uid, state, revision, instance_count, last_instance_at
            FROM imaging.series WHERE series_uid = \(seriesUID)
            """, logger: logger)
        for try await (uid, state, revision, count, last) in rows.decode((String, String, Int, Int, Date?).self) {
            return SeriesState(
                seriesUID: uid, state: SeriesState.State(rawValue: state) ?? .open, revision: revision,
                instanceCount: count, lastInstanceAt: last)
        }
        return nil
    }

    // MARK: Outbox

    /// Enqueues jobs; a request whose (series, model, revision) is already queued is skipped.
    /// Workers listening on the jobs channel are notified when the transaction commits.
    /// - Returns: the ids of the jobs created (fewer than requested when some existed).
    @discardableResult
    public func enqueue(_ requests: [JobRequest]) async throws -> [Int64] {
        guard !requests.isEmpty else { return [] }
        guard requests.allSatisfy({ $0.maxAttempts > 0 }) else { throw CatalogError(.invalidArgument) }
        let rows = try await connection.query("""
            INSERT INTO inference.jobs (series_uid, series_revision, model_name, model_version, max_attempts)
            SELECT * FROM unnest(\(requests.map(\.seriesUID))::text[], \(requests.map { Int32($0.seriesRevision) })::int4[],
                                 \(requests.map(\.model.name))::text[], \(requests.map(\.model.version))::text[],
                                 \(requests.map { Int32($0.maxAttempts) })::int4[])
            ON CONFLICT (series_uid, model_name, model_version, series_revision) DO NOTHING
            RETURNING id
            """, logger: logger)
        var ids: [Int64] = []
        for try await id in rows.decode(Int64.self) { ids.append(id) }
        return ids.sorted()
    }

    /// Enqueues one job; returns its id, or nil when it was already queued.
    @discardableResult
    public func enqueue(_ request: JobRequest) async throws -> Int64? {
        try await enqueue([request]).first
    }

    /// Registers (or updates) a model.
    public func registerModel(_ model: ModelRecord) async throws {
        let classes = String(decoding: try JSONEncoder().encode(model.classes), as: UTF8.self)
        try await connection.query("""
            INSERT INTO inference.models (name, version, input_recipe, classes, threshold)
            VALUES (\(model.model.name), \(model.model.version), \(model.inputRecipe), \(classes)::jsonb, \(model.threshold))
            ON CONFLICT (name, version) DO UPDATE
            SET input_recipe = EXCLUDED.input_recipe, classes = EXCLUDED.classes, threshold = EXCLUDED.threshold
            """, logger: logger)
    }

    /// Writes diagnosis rows. A job writes one row per instance (migration 006's key): a row its job already
    /// wrote, when the job runs again, is kept as it is and the new one dropped.
    public func insertDiagnoses(_ diagnoses: [DiagnosisRecord]) async throws {
        try await insert(diagnoses, into: "inference.diagnoses", onConflict: "(job_id, sop_instance_uid) WHERE job_id IS NOT NULL")
    }

    /// Inserts diagnosis rows into `table` (`inference.diagnoses` or `inference.shadow_diagnoses`, which have the
    /// same columns), dropping those that meet a row already there on the `onConflict` key.
    func insert(_ diagnoses: [DiagnosisRecord], into table: String, onConflict key: String) async throws {
        guard !diagnoses.isEmpty else { return }
        try await connection.query("""
            INSERT INTO \(unescaped: table) (job_id, series_uid, sop_instance_uid, model_name, model_version, label,
                                             probabilities, threshold, latency_ms, created_at)
            SELECT job_id, series_uid, sop_instance_uid, model_name, model_version, label, probabilities, threshold,
                   latency_ms, COALESCE(created_at, now())
            FROM jsonb_to_recordset(\(try json(diagnoses.map(DiagnosisRow.init)))::jsonb)
                 AS x(job_id bigint, series_uid text, sop_instance_uid text, model_name text, model_version text,
                      label text, probabilities jsonb, threshold double precision, latency_ms double precision,
                      created_at timestamptz)
            ON CONFLICT \(unescaped: key) DO NOTHING
            """, logger: logger)
    }

    // MARK: Ledger

    /// Claims a source file: inserts its ledger row if new (keyed by path, size, mtime and sha256) and takes a
    /// lease on it unless it is done, leased by someone else, a duplicate of catalogued bytes, or out of attempts.
    ///
    /// A claim counts no attempt: only a transition to `failed` does. Taking back a row still `processing`
    /// (its claimer was killed, or lost the database before it could release it) counts an interruption.
    /// - Parameters:
    ///   - owner: the claimer's identity (e.g. replica name); checked by later transitions.
    ///   - lease: how long the claim holds before another replica may take the file over.
    ///   - maxAttempts: failed attempts after which the file is reported `exhausted`.
    ///   - maxInterruptions: interrupted claims after which the file is reported `exhausted` (a file that
    ///     keeps taking its claimer down with it).
    public func claimSourceFile(
        _ file: SourceFile, owner: String, lease: Duration, maxAttempts: Int = 3, maxInterruptions: Int = 10
    ) async throws -> LedgerClaim {
        try await connection.query("""
            INSERT INTO ingest.source_files (path, size, mtime, sha256)
            VALUES (\(file.path), \(file.size), \(file.mtime), \(file.sha256))
            ON CONFLICT (path, size, mtime, sha256) DO NOTHING
            """, logger: logger)
        let rows = try await connection.query("""
            SELECT \(unescaped: Self.ledgerColumns), COALESCE(lease_until > now(), false)
            FROM ingest.source_files
            WHERE path = \(file.path) AND size = \(file.size) AND mtime = \(file.mtime) AND sha256 = \(file.sha256)
            FOR UPDATE
            """, logger: logger)
        var found: (LedgerEntry, Bool)?
        for try await row in rows {
            found = (try Self.ledgerEntry(row), try row.makeRandomAccess()[Self.ledgerColumnCount].decode(Bool.self))
        }
        guard let (entry, leaseLive) = found else { throw CatalogError(.ledgerTransitionRejected) }
        if entry.state.isTerminal { return .alreadyDone(entry) }
        if entry.state == .processing && leaseLive && entry.leaseOwner != owner { return .busy(entry) }
        if entry.attempts >= maxAttempts { return .exhausted(entry) }
        let interrupted = Interruption.of(entry) == .counted
        if interrupted && entry.interruptions + 1 >= maxInterruptions {
            try await connection.query("""
                UPDATE ingest.source_files SET interruptions = interruptions + 1, updated_at = now() WHERE id = \(entry.id)
                """, logger: logger)
            var exhausted = entry
            exhausted.interruptions += 1
            return .exhausted(exhausted)
        }

        let duplicates = try await connection.query("""
            SELECT id FROM ingest.source_files
            WHERE sha256 = \(file.sha256) AND id <> \(entry.id) AND state = 'catalogued' ORDER BY id LIMIT 1
            """, logger: logger)
        var original: Int64?
        for try await id in duplicates.decode(Int64.self) { original = id }
        if let original {
            try await connection.query("""
                UPDATE ingest.source_files SET state = 'duplicate', duplicate_of = \(original), lease_owner = NULL,
                       lease_until = NULL, updated_at = now()
                WHERE id = \(entry.id)
                """, logger: logger)
            try await event(entry.id, stage: "claim", from: entry.state, to: .duplicate, detail: nil)
            var updated = entry
            updated.state = .duplicate
            updated.duplicateOf = original
            updated.leaseOwner = nil
            updated.leaseUntil = nil
            return .duplicate(updated, of: original)
        }

        let claimed = try await connection.query("""
            UPDATE ingest.source_files
            SET state = 'processing', claims = claims + 1, interruptions = interruptions + \(interrupted ? 1 : 0), claim_batch = 1,
                lease_owner = \(owner),
                lease_until = now() + make_interval(secs => \(lease.seconds)), updated_at = now()
            WHERE id = \(entry.id)
            RETURNING \(unescaped: Self.ledgerColumns)
            """, logger: logger)
        var result: LedgerEntry?
        for try await row in claimed { result = try Self.ledgerEntry(row) }
        guard let result else { throw CatalogError(.ledgerTransitionRejected) }
        try await event(entry.id, stage: "claim", from: entry.state, to: .processing, detail: interrupted ? "interrupted" : nil)
        return .claimed(result)
    }

    /// Moves a ledger row to `state` and records the transition in the audit table. A move to `failed` counts
    /// one attempt; a move back to `discovered` releases a claim with nothing counted (e.g. after an outage).
    /// - Parameters:
    ///   - stage: the pipeline stage reporting it (e.g. "catalog", "parse").
    ///   - detail: a machine-readable reason (kept as `error_reason` for `failed` and `quarantined`); no patient data.
    ///   - sopInstanceUID: the pseudonymous instance the file became, when catalogued.
    ///   - owner: when given, the transition is rejected unless this owner holds the row's lease.
    public func transitionSourceFile(
        id: Int64, to state: LedgerState, stage: String, detail: String? = nil, sopInstanceUID: String? = nil,
        owner: String? = nil
    ) async throws {
        let keepsLease = state == .processing
        let rows = try await connection.query("""
            WITH old AS (SELECT id, state FROM ingest.source_files WHERE id = \(id) FOR UPDATE)
            UPDATE ingest.source_files f
            SET state = \(state.rawValue),
                attempts = f.attempts + CASE WHEN \(state.rawValue) = 'failed' THEN 1 ELSE 0 END,
                error_reason = CASE WHEN \(state.rawValue) IN ('failed', 'quarantined') THEN \(detail) ELSE NULL END,
                sop_instance_uid = COALESCE(\(sopInstanceUID), f.sop_instance_uid),
                lease_owner = CASE WHEN \(keepsLease) THEN f.lease_owner ELSE NULL END,
                lease_until = CASE WHEN \(keepsLease) THEN f.lease_until ELSE NULL END,
                updated_at = now()
            FROM old
            WHERE f.id = old.id AND (\(owner)::text IS NULL OR f.lease_owner = \(owner))
            RETURNING old.state
            """, logger: logger)
        var previous: String?
        for try await value in rows.decode(String.self) { previous = value }
        guard let previous else { throw CatalogError(.ledgerTransitionRejected) }
        try await event(id, stage: stage, from: LedgerState(rawValue: previous), to: state, detail: detail)
    }

    /// Quarantines a source file: state `quarantined`, a quarantine row and an audit event.
    /// - Parameters:
    ///   - reason: a machine-readable code (e.g. "notDicom", "corruptPixelData").
    ///   - objectKey: where a copy of the file was stored for inspection, if anywhere.
    public func quarantineSourceFile(
        id: Int64, reason: String, detail: String? = nil, objectKey: String? = nil, owner: String? = nil
    ) async throws {
        try await transitionSourceFile(id: id, to: .quarantined, stage: "quarantine", detail: reason, owner: owner)
        try await connection.query("""
            INSERT INTO ingest.quarantine (source_file_id, reason, detail, object_key)
            VALUES (\(id), \(reason), \(detail), \(objectKey))
            """, logger: logger)
    }

    /// Records a pipeline stage passed by a file (audit only, no state change).
    public func recordStage(sourceFileID: Int64, stage: String, detail: String? = nil) async throws {
        try await event(sourceFileID, stage: stage, from: nil, to: nil, detail: detail)
    }

    /// Extends the lease on a claimed file; throws `ledgerTransitionRejected` unless `owner` still holds it.
    public func renewSourceFileLease(id: Int64, owner: String, lease: Duration) async throws {
        let rows = try await connection.query("""
            UPDATE ingest.source_files SET lease_until = now() + make_interval(secs => \(lease.seconds)), updated_at = now()
            WHERE id = \(id) AND state = 'processing' AND lease_owner = \(owner)
            RETURNING id
            """, logger: logger)
        var found = false
        for try await _ in rows.decode(Int64.self) { found = true }
        guard found else { throw CatalogError(.ledgerTransitionRejected) }
    }

    /// The ledger row with this id, or nil.
    public func ledgerEntry(id: Int64) async throws -> LedgerEntry? {
        let rows = try await connection.query(
            "SELECT \(unescaped: Self.ledgerColumns) FROM ingest.source_files WHERE id = \(id)", logger: logger)
        for try await row in rows { return try Self.ledgerEntry(row) }
        return nil
    }

    func event(_ id: Int64, stage: String, from: LedgerState?, to: LedgerState?, detail: String?) async throws {
        try await connection.query("""
            INSERT INTO ingest.stage_events (source_file_id, stage, from_state, to_state, detail)
            VALUES (\(id), \(stage), \(from?.rawValue), \(to?.rawValue), \(detail))
            """, logger: logger)
    }

    static let ledgerColumns = """
        id, path, size, sha256, state, attempts, error_reason, lease_owner, lease_until, sop_instance_uid, duplicate_of, claims,
        interruptions, claim_batch
        """
    static let ledgerColumnCount = 14

    /// Reads the first `ledgerColumnCount` columns (`ledgerColumns`) of a row.
    static func ledgerEntry(_ row: PostgresRow) throws -> LedgerEntry {
        let cells = row.makeRandomAccess()
        return LedgerEntry(
            id: try cells[0].decode(Int64.self), path: try cells[1].decode(String.self),
            size: try cells[2].decode(Int64.self), sha256: try cells[3].decode(String.self),
            state: LedgerState(rawValue: try cells[4].decode(String.self)) ?? .failed,
            attempts: try cells[5].decode(Int.self), claims: try cells[11].decode(Int.self),
            interruptions: try cells[12].decode(Int.self), claimBatch: try cells[13].decode(Int.self), errorReason: try cells[6].decode(String?.self),
            leaseOwner: try cells[7].decode(String?.self), leaseUntil: try cells[8].decode(Date?.self),
            sopInstanceUID: try cells[9].decode(String?.self), duplicateOf: try cells[10].decode(Int64?.self))
    }
}

/// The flat row shape `jsonb_to_recordset` reads for `inference.diagnoses`.
struct DiagnosisRow: Encodable {
    let job_id: Int64?, series_uid: String, sop_instance_uid: String?, model_name: String, model_version: String
    let label: String, probabilities: [String: Double], threshold: Double?, latency_ms: Double?, created_at: String?

    init(_ d: DiagnosisRecord) {
        job_id = d.jobID; series_uid = d.seriesUID; sop_instance_uid = d.sopInstanceUID
        model_name = d.model.name; model_version = d.model.version; label = d.label
        probabilities = d.probabilities; threshold = d.threshold; latency_ms = d.latencyMilliseconds
        created_at = d.createdAt.map { date in
            let formatter = ISO8601DateFormatter()
            formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            return formatter.string(from: date)
        }
    }
}

/// Keeps the last element for each key, sorted by key (a stable lock order across concurrent writers).
func unique<Element, Key: Comparable & Hashable>(_ elements: [Element], by key: KeyPath<Element, Key>) -> [Element] {
    var byKey: [Key: Element] = [:]
    for element in elements { byKey[element[keyPath: key]] = element }
    return byKey.keys.sorted().map { byKey[$0]! }
}

/// Encodes rows as the JSON text bound to `jsonb_to_recordset`.
func json<Value: Encodable>(_ value: Value) throws -> String {
    let encoder = JSONEncoder()
    encoder.nonConformingFloatEncodingStrategy = .throw
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}
