// The pipeline's work on one file: ledger claim (streamed SHA-256) → sandboxed process job (parse,
// de-identify, normalise, serialise) → objects stored under keys derived from pseudonymous UIDs →
// one catalogue transaction (instance upsert + vault + ledger catalogued + audit events + series
// last arrival). Source paths go only to the ledger; logs carry the path hash.
//
// Failures fall in three kinds. The file's own (not DICOM, truncated, …): quarantined at once. Maybe
// the file's (the sandbox crashed or timed out): one attempt counted, the file retried until
// `maxAttempts`, then quarantined with that reason. Outages (database or store unreachable, disk full):
// nothing counted, the claim released when the database answers, a `PipelineOutage` thrown so the
// runner backs off and the file stays in the drop folder.
import Catalog
import Foundation
import Logging
import ObjectStorage

/// The daemon's `FileProcessor`.
public struct IngestProcessor: FileProcessor {
    /// Paths of what the sandbox child loads.
    public struct Inputs: Sendable, Hashable {
        public var routesFile: String
        public var profileFile: String
        public var keyFile: String
        public var recipesDirectory: String?
        public init(routesFile: String, profileFile: String, keyFile: String, recipesDirectory: String? = nil) {
            self.routesFile = routesFile
            self.profileFile = profileFile
            self.keyFile = keyFile
            self.recipesDirectory = recipesDirectory
        }
    }

    public let catalog: Catalog
    public let store: any ObjectStore
    public let sandbox: SandboxPool
    public let inputs: Inputs
    /// Folder for the sandbox's output objects (inside the data dir).
    public let scratchRoot: String
    /// This daemon's ledger lease owner: stable across restarts of the same daemon, so a restart takes
    /// back its own unfinished files at once.
    public let owner: String
    /// How long a claim holds before another replica may take the file over.
    public let lease: Duration
    /// Failed attempts (sandbox crashes or timeouts) after which a file is quarantined.
    public let maxAttempts: Int
    /// Claims interrupted with no outcome (the daemon killed mid-file) after which a file is quarantined.
    public let maxInterruptions: Int
    /// The clock of arrival times (compared by the series completion service).
    public let now: @Sendable () -> Date
    /// Where stage latencies (claim, sandbox, store, catalog) are recorded; nil records none.
    public let metrics: IngestMetrics?
    /// How long one database transaction may take before it counts as an outage.
    public let databaseDeadline: Duration
    public let logger: Logger

    public init(
        catalog: Catalog, store: any ObjectStore, sandbox: SandboxPool, inputs: Inputs, scratchRoot: String, owner: String,
        lease: Duration, maxAttempts: Int = 3, maxInterruptions: Int = 10, now: @escaping @Sendable () -> Date = { Date() },
        metrics: IngestMetrics? = nil, databaseDeadline: Duration = .seconds(30), logger: Logger
    ) {
        self.metrics = metrics
        self.databaseDeadline = databaseDeadline
        self.catalog = catalog
        self.store = store
        self.sandbox = sandbox
        self.inputs = inputs
        self.scratchRoot = scratchRoot
        self.owner = owner
        self.lease = lease
        self.maxAttempts = maxAttempts
        self.maxInterruptions = maxInterruptions
        self.now = now
        self.logger = logger
    }

    /// A transient fault: the file stays in the drop folder and is taken again at the next rescan.
    public struct TransientFailure: Error, ReasonedError, CustomStringConvertible {
        public let reason: String
        public var description: String { "transient: \(reason)" }
    }

    /// Failures that may be the file's fault or chance (a crashed or timed-out sandbox child, a statement the
    /// database refused): counted as attempts and retried, where every other `PipelineFailure` is the file's
    /// own and quarantines it at once.
    static let retriedReasons: Set<String> = [
        SandboxError.Code.processCrashed.rawValue, SandboxError.Code.timedOut.rawValue, SandboxError.Code.protocolError.rawValue,
        "bad_response", "catalog_rejected",
    ]

    /// `PipelineFailure`s that are outages rather than the file's fault, by reason.
    static let outageReasons: [String: String] = [
        SandboxError.Code.spawnFailed.rawValue: "sandbox_unavailable", "scratch_unwritable": "disk_unavailable",
    ]

    /// Runs a database call in a transaction. An unreachable database becomes a `PipelineOutage`; a conflict
    /// or a lost lease a `TransientFailure` (retried, nothing counted); a statement the server refuses a
    /// `PipelineFailure` of `stage` (`catalog_rejected`: counted and retried like a sandbox crash).
    ///
    /// A call that has not returned after `databaseDeadline` is an outage too (`database_unresponsive`): a
    /// request caught by a server shutdown can otherwise wait in the client for good.
    private func database<T: Sendable>(
        _ stage: PipelineStage = .catalog, _ body: @escaping @Sendable (CatalogTransaction) async throws -> T
    ) async throws -> T {
        let catalog = self.catalog
        do {
            return try await withDeadline(databaseDeadline) { try await catalog.withTransaction(body) }
        } catch is DeadlineExceeded {
            throw PipelineOutage(reason: "database_unresponsive")
        } catch {
            switch DatabaseFault.of(error) {
            case .unavailable: throw PipelineOutage(reason: "database_unavailable")
            case .conflict: throw TransientFailure(reason: "database_conflict")
            case .rejected:
                if let error = error as? CatalogError, error.code == .ledgerTransitionRejected { throw TransientFailure(reason: "lease_lost") }
                throw PipelineFailure(stage: stage, reason: stage == .claim ? "claim_rejected" : "catalog_rejected")
            }
        }
    }

    /// Runs `body` and records its duration as `stage`'s latency (also when it throws).
    private func timed<T>(_ stage: PipelineStage, _ body: () async throws -> T) async throws -> T {
        guard let metrics else { return try await body() }
        return try await metrics.timeStage(stage, body)
    }

    public func process(_ file: DiscoveredFile) async throws -> ProcessingOutcome {
        var log = logger
        log[metadataKey: "path_hash"] = .string(file.pathHash)
        let digest: FileDigest
        do { digest = try FileDigest.compute(path: file.path) } catch let failure as FileDigest.Failure {
            throw TransientFailure(reason: failure.reason)
        }
        let source = SourceFile(path: file.path, size: digest.size, mtime: digest.modificationTime, sha256: digest.sha256)
        let owner = self.owner, lease = self.lease, maxAttempts = self.maxAttempts, maxInterruptions = self.maxInterruptions
        let claim = try await timed(.claim) { try await database(.claim) {
            try await $0.claimSourceFile(source, owner: owner, lease: lease, maxAttempts: maxAttempts, maxInterruptions: maxInterruptions)
        } }
        let entry: LedgerEntry
        switch claim {
        case .claimed(let claimed): entry = claimed
        case .alreadyDone(let done):
            switch done.state {
            case .quarantined: return .alreadyRecorded(PipelineFailure(stage: .claim, reason: done.errorReason ?? "quarantined"))
            default: return .alreadyRecorded(nil)
            }
        case .duplicate: return .duplicate
        case .busy: throw TransientFailure(reason: "claimed_elsewhere")
        case .exhausted(let exhausted):
            // Quarantined with the true reason: the last failure, or the interruptions.
            let failure = exhausted.attempts >= maxAttempts
                ? PipelineFailure(stage: .sandbox, reason: exhausted.errorReason ?? "attempts_exhausted")
                : PipelineFailure(stage: .claim, reason: "interrupted_repeatedly")
            try await quarantine(exhausted, failure, owner: nil)
            return .rejected(failure)
        }

        let scratch = (scratchRoot as NSString).appendingPathComponent("\(entry.id)-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        do {
            return try await ingest(entry: entry, path: file.path, sha256: digest.sha256, scratch: scratch, logger: log)
        } catch let failure as PipelineFailure {
            if let outage = Self.outageReasons[failure.reason] {
                try await release(entry, reason: outage, logger: log)
            }
            guard Self.retriedReasons.contains(failure.reason) else {
                try await quarantine(entry, failure, owner: owner)
                return .rejected(failure)
            }
            // Maybe the file's fault: one attempt counted (the move to `failed`); quarantined once they run out.
            if entry.attempts + 1 >= maxAttempts {
                try await database { transaction in
                    try await transaction.transitionSourceFile(id: entry.id, to: .failed, stage: failure.stage.rawValue, detail: failure.reason, owner: owner)
                    try await transaction.quarantineSourceFile(id: entry.id, reason: failure.reason, detail: failure.stage.rawValue)
                }
                return .rejected(failure)
            }
            try await database {
                try await $0.transitionSourceFile(id: entry.id, to: .failed, stage: failure.stage.rawValue, detail: failure.reason, owner: owner)
            }
            log.notice("file will be retried", metadata: ["reason": .string(failure.reason), "attempt": .stringConvertible(entry.attempts + 1)])
            throw TransientFailure(reason: failure.reason)
        } catch let outage as PipelineOutage {
            try await release(entry, reason: outage.reason, logger: log)
        } catch {
            // The sandbox pool shut down under the file (the daemon is stopping): taken again at the next start.
            let reason = (error as? any ReasonedError)?.reason ?? "transient_error"
            _ = try? await release(entry, reason: reason, logger: log)
            throw TransientFailure(reason: reason)
        }
    }

    /// Gives a claimed file back with nothing counted against it (when the database answers; otherwise the
    /// next claim finds it interrupted), then throws the outage.
    private func release(_ entry: LedgerEntry, reason: String, logger: Logger) async throws -> Never {
        let owner = self.owner
        logger.debug("file deferred", metadata: ["reason": .string(reason)])
        let catalog = self.catalog
        _ = try? await withDeadline(databaseDeadline) { try await catalog.withTransaction {
            try await $0.transitionSourceFile(id: entry.id, to: .discovered, stage: "deferred", detail: reason, owner: owner)
        } }
        throw PipelineOutage(reason: reason)
    }

    private func quarantine(_ entry: LedgerEntry, _ failure: PipelineFailure, owner: String?) async throws {
        try await database {
            try await $0.recordStage(sourceFileID: entry.id, stage: failure.stage.rawValue, detail: failure.reason)
            try await $0.quarantineSourceFile(id: entry.id, reason: failure.reason, detail: failure.stage.rawValue, owner: owner)
        }
    }

    private func ingest(entry: LedgerEntry, path: String, sha256: String, scratch: String, logger: Logger) async throws -> ProcessingOutcome {
        let request = ProcessRequest(
            sourcePath: path, routesFile: inputs.routesFile, profileFile: inputs.profileFile, keyFile: inputs.keyFile,
            recipesDirectory: inputs.recipesDirectory, scratchDirectory: scratch)
        let result = try await timed(.sandbox) { try await ProcessJob.run(request, in: sandbox) }
        if let failure = result.failure { throw failure }
        guard let instance = result.instance, let file = result.objects.first(where: { $0.role == "file" }) else {
            throw PipelineFailure(stage: .sandbox, reason: "bad_response")
        }

        // Keys from pseudonymous UIDs plus the source version: a retry rewrites the same objects, a new
        // version of the same instance (different bytes) gets its own.
        let version = String(sha256.prefix(16))
        let base = "\(instance.studyUID)/\(instance.seriesUID)/\(instance.sopInstanceUID)/\(version)"
        var stored: [String: StoredObject] = [:]
        let storeStart = ContinuousClock.now
        for object in result.objects {
            let key: String
            switch object.role {
            case "file": key = "dicom/\(base).dcm"
            case "tensor": key = "tensors/\(object.recipe ?? "default")/\(base).npy"
            case "sidecar": key = "tensors/\(object.recipe ?? "default")/\(base).json"
            case "preview": key = "previews/\(object.recipe ?? "default")/\(base).png"
            default: continue
            }
            let data: Data
            do { data = try Data(contentsOf: URL(fileURLWithPath: object.path)) } catch { throw PipelineOutage(reason: "disk_unavailable") }
            do { try await store.put(key, data: data, contentType: object.contentType, sha256: object.sha256) } catch {
                throw PipelineOutage(reason: "store_unavailable")
            }
            let name = object.role + (object.recipe.map { "/" + $0 } ?? "")
            stored[name] = StoredObject(key: key, sha256: object.sha256, size: object.size)
        }
        metrics?.recordStage(.store, duration: ContinuousClock.now - storeStart)
        let firstRecipe = result.objects.first(where: { $0.role == "tensor" })?.recipe
        let record = InstanceRecord(
            sopInstanceUID: instance.sopInstanceUID, seriesUID: instance.seriesUID, studyUID: instance.studyUID,
            patientID: instance.patientID, sopClassUID: instance.sopClassUID, instanceNumber: instance.instanceNumber,
            modality: instance.modality, bodyPart: instance.bodyPart, studyDate: instance.studyDate,
            seriesDescription: instance.seriesDescription, manufacturer: instance.manufacturer, rows: instance.rows,
            columns: instance.columns, pixelSpacing: instance.pixelSpacing, sliceThickness: instance.sliceThickness,
            numberOfFrames: instance.numberOfFrames, transferSyntaxUID: instance.transferSyntaxUID,
            file: stored["file"] ?? StoredObject(key: "dicom/\(base).dcm", sha256: file.sha256, size: file.size),
            tensor: firstRecipe.flatMap { stored["tensor/\($0)"] }, preview: firstRecipe.flatMap { stored["preview/\($0)"] },
            tensors: Set(result.objects.compactMap(\.recipe)).sorted().compactMap { recipe in
                stored["tensor/\(recipe)"].map {
                    TensorRecord(recipe: recipe, tensor: $0, sidecar: stored["sidecar/\(recipe)"], preview: stored["preview/\(recipe)"])
                }
            },
            headerJSON: instance.headerJSON)
        let batch = CatalogBatch(
            patients: [PatientRecord(patientID: instance.patientID, sex: instance.sex, ageYears: instance.ageYears)],
            studies: [StudyRecord(studyUID: instance.studyUID, patientID: instance.patientID, studyDate: instance.studyDate,
                                  studyDescription: instance.studyDescription)],
            series: [SeriesRecord(seriesUID: instance.seriesUID, studyUID: instance.studyUID, modality: instance.modality,
                                  bodyPart: instance.bodyPart, seriesNumber: instance.seriesNumber,
                                  seriesDescription: instance.seriesDescription, manufacturer: instance.manufacturer)],
            instances: [record],
            vaultPatients: [VaultPatient(patientID: instance.patientID, originalPatientID: instance.originalPatientID,
                                         patientName: instance.originalPatientName, birthDate: instance.originalBirthDate)],
            vaultStudies: [VaultStudy(studyUID: instance.studyUID, originalStudyUID: instance.originalStudyUID,
                                      accessionNumber: instance.originalAccessionNumber)],
            vaultSeries: [VaultSeries(seriesUID: instance.seriesUID, originalSeriesUID: instance.originalSeriesUID)],
            vaultInstances: [VaultInstance(sopInstanceUID: instance.sopInstanceUID, originalSOPInstanceUID: instance.originalSOPInstanceUID)])
        let owner = self.owner, arrivedAt = now(), recipes = Set(result.objects.compactMap(\.recipe)).sorted()
        try await timed(.catalog) { try await database { transaction in
            try await transaction.recordStage(sourceFileID: entry.id, stage: PipelineStage.deidentify.rawValue)
            if !recipes.isEmpty {
                try await transaction.recordStage(sourceFileID: entry.id, stage: PipelineStage.normalize.rawValue, detail: recipes.joined(separator: ","))
            }
            try await transaction.recordStage(sourceFileID: entry.id, stage: PipelineStage.store.rawValue)
            try await transaction.upsert(batch, arrivedAt: arrivedAt)
            try await transaction.transitionSourceFile(
                id: entry.id, to: .catalogued, stage: PipelineStage.catalog.rawValue, sopInstanceUID: instance.sopInstanceUID, owner: owner)
        } }
        logger.debug("file catalogued", metadata: ["routes": .string(result.routes.joined(separator: ","))])
        return .ingested
    }
}
