// The pipeline's work on one file: ledger claim (streamed SHA-256) → sandboxed process job (parse,
// de-identify, normalise, serialise) → objects stored under keys derived from pseudonymous UIDs →
// one catalogue transaction (instance upsert + vault + ledger catalogued + audit events + series
// last arrival). Source paths go only to the ledger; logs carry the path hash.
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
    /// The clock of arrival times (compared by the series completion service).
    public let now: @Sendable () -> Date
    public let logger: Logger

    public init(
        catalog: Catalog, store: any ObjectStore, sandbox: SandboxPool, inputs: Inputs, scratchRoot: String, owner: String,
        lease: Duration, now: @escaping @Sendable () -> Date = { Date() }, logger: Logger
    ) {
        self.catalog = catalog
        self.store = store
        self.sandbox = sandbox
        self.inputs = inputs
        self.scratchRoot = scratchRoot
        self.owner = owner
        self.lease = lease
        self.now = now
        self.logger = logger
    }

    /// A transient fault: the file stays in the drop folder and is taken again at the next rescan.
    public struct TransientFailure: Error, ReasonedError, CustomStringConvertible {
        public let reason: String
        public var description: String { "transient: \(reason)" }
    }

    public func process(_ file: DiscoveredFile) async throws -> ProcessingOutcome {
        var log = logger
        log[metadataKey: "path_hash"] = .string(file.pathHash)
        let digest: FileDigest
        do { digest = try FileDigest.compute(path: file.path) } catch let failure as FileDigest.Failure {
            throw TransientFailure(reason: failure.reason)
        }
        let source = SourceFile(path: file.path, size: digest.size, mtime: digest.modificationTime, sha256: digest.sha256)
        let owner = self.owner, lease = self.lease
        let claim = try await catalog.withTransaction { try await $0.claimSourceFile(source, owner: owner, lease: lease) }
        let entry: LedgerEntry
        switch claim {
        case .claimed(let claimed): entry = claimed
        case .alreadyDone(let done):
            switch done.state {
            case .quarantined: return .rejected(PipelineFailure(stage: .claim, reason: done.errorReason ?? "quarantined"))
            default: return .duplicate
            }
        case .duplicate: return .duplicate
        case .busy: throw TransientFailure(reason: "claimed_elsewhere")
        case .exhausted(let exhausted):
            let failure = PipelineFailure(stage: .claim, reason: "attempts_exhausted")
            try await catalog.withTransaction {
                try await $0.quarantineSourceFile(id: exhausted.id, reason: failure.reason, detail: exhausted.errorReason)
            }
            return .rejected(failure)
        }

        let scratch = (scratchRoot as NSString).appendingPathComponent("\(entry.id)-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        do {
            return try await ingest(entry: entry, path: file.path, sha256: digest.sha256, scratch: scratch, logger: log)
        } catch let failure as PipelineFailure {
            try await quarantine(entry, failure)
            return .rejected(failure)
        } catch {
            // Transient (database, store): record it when the database answers, and retry later.
            let reason = (error as? any ReasonedError)?.reason ?? "transient_error"
            log.warning("file deferred", metadata: ["reason": .string(reason)])
            _ = try? await catalog.withTransaction {
                try await $0.transitionSourceFile(id: entry.id, to: .failed, stage: "retry", detail: reason, owner: owner)
            }
            throw TransientFailure(reason: reason)
        }
    }

    private func quarantine(_ entry: LedgerEntry, _ failure: PipelineFailure) async throws {
        let owner = self.owner
        try await catalog.withTransaction {
            try await $0.recordStage(sourceFileID: entry.id, stage: failure.stage.rawValue, detail: failure.reason)
            try await $0.quarantineSourceFile(id: entry.id, reason: failure.reason, detail: failure.stage.rawValue, owner: owner)
        }
    }

    private func ingest(entry: LedgerEntry, path: String, sha256: String, scratch: String, logger: Logger) async throws -> ProcessingOutcome {
        let request = ProcessRequest(
            sourcePath: path, routesFile: inputs.routesFile, profileFile: inputs.profileFile, keyFile: inputs.keyFile,
            recipesDirectory: inputs.recipesDirectory, scratchDirectory: scratch)
        let result = try await ProcessJob.run(request, in: sandbox)
        if let failure = result.failure { throw failure }
        guard let instance = result.instance, let file = result.objects.first(where: { $0.role == "file" }) else {
            throw PipelineFailure(stage: .sandbox, reason: "bad_response")
        }

        // Keys from pseudonymous UIDs plus the source version: a retry rewrites the same objects, a new
        // version of the same instance (different bytes) gets its own.
        let version = String(sha256.prefix(16))
        let base = "\(instance.studyUID)/\(instance.seriesUID)/\(instance.sopInstanceUID)/\(version)"
        var stored: [String: StoredObject] = [:]
        for object in result.objects {
            let key: String
            switch object.role {
            case "file": key = "dicom/\(base).dcm"
            case "tensor": key = "tensors/\(object.recipe ?? "default")/\(base).npy"
            case "sidecar": key = "tensors/\(object.recipe ?? "default")/\(base).json"
            case "preview": key = "previews/\(object.recipe ?? "default")/\(base).png"
            default: continue
            }
            let data = try Data(contentsOf: URL(fileURLWithPath: object.path))
            try await store.put(key, data: data, contentType: object.contentType, sha256: object.sha256)
            let name = object.role + (object.recipe.map { "/" + $0 } ?? "")
            stored[name] = StoredObject(key: key, sha256: object.sha256, size: object.size)
        }
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
        try await catalog.withTransaction { transaction in
            try await transaction.recordStage(sourceFileID: entry.id, stage: PipelineStage.deidentify.rawValue)
            if !recipes.isEmpty {
                try await transaction.recordStage(sourceFileID: entry.id, stage: PipelineStage.normalize.rawValue, detail: recipes.joined(separator: ","))
            }
            try await transaction.recordStage(sourceFileID: entry.id, stage: PipelineStage.store.rawValue)
            try await transaction.upsert(batch, arrivedAt: arrivedAt)
            try await transaction.transitionSourceFile(
                id: entry.id, to: .catalogued, stage: PipelineStage.catalog.rawValue, sopInstanceUID: instance.sopInstanceUID, owner: owner)
        }
        logger.debug("file catalogued", metadata: ["routes": .string(result.routes.joined(separator: ","))])
        return .ingested
    }
}
