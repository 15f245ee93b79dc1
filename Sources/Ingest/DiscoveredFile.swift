// A file the watcher found stable and handed to the pipeline, and the outcome the pipeline reports.
import CodedErrors
import Foundation

/// A stable file of the drop folder, handed to the pipeline.
///
/// `path` and `relativePath` may contain patient names (PACS exports often name folders after the
/// patient): never log them or store them where analysts can read them; use `pathHash`.
public struct DiscoveredFile: Sendable, Hashable {
    /// The file's path (the drop folder's path joined with `relativePath`).
    public let path: String
    /// The path relative to the drop folder.
    public let relativePath: String
    /// Size in bytes when it was found stable.
    public let size: Int64
    /// Modification time when it was found stable.
    public let modificationTime: Date
    /// Keyed hash of `relativePath`: safe for logs and reason files.
    public let pathHash: String
    /// When the watcher handed the file on (for end-to-end latency).
    public let discoveredAt: Date

    public init(path: String, relativePath: String, size: Int64, modificationTime: Date, pathHash: String, discoveredAt: Date) {
        self.path = path
        self.relativePath = relativePath
        self.size = size
        self.modificationTime = modificationTime
        self.pathHash = pathHash
        self.discoveredAt = discoveredAt
    }
}

/// A step of the pipeline, as recorded in reason files, logs and metrics.
public struct PipelineStage: RawRepresentable, Hashable, Sendable, Codable, CustomStringConvertible {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(_ rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }

    public static let watch = PipelineStage("watch")
    public static let claim = PipelineStage("claim")
    public static let sandbox = PipelineStage("sandbox")
    public static let parse = PipelineStage("parse")
    public static let deidentify = PipelineStage("deidentify")
    public static let normalize = PipelineStage("normalize")
    public static let store = PipelineStage("store")
    public static let catalog = PipelineStage("catalog")
    public static let dispose = PipelineStage("dispose")
}

/// Why a file cannot go through: the stage and a machine-readable reason (`not_dicom`,
/// `process_crashed`, …). Never carries patient data. Returned as `ProcessingOutcome.rejected`, it sends
/// the file to quarantine.
///
/// The reason is a code: another error's (`DicomError`'s `not_dicom`, `SandboxError`'s `process_crashed`, …) or
/// one of the pipeline's own below. Its Codable form (`{"stage": …, "reason": …}`) is what the sandbox wire,
/// the ledger and the quarantine reason files hold.
public struct PipelineFailure: CodedError, Hashable, Codable {
    /// The pipeline's own reasons, for failures that are not another error's.
    public struct Code: ErrorCode {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        /// The sandbox child could not decode the job's request.
        public static let badRequest = Code(rawValue: "bad_request")
        /// The daemon could not decode the child's answer.
        public static let badResponse = Code(rawValue: "bad_response")
        /// The file has no SOP, series or study instance UID.
        public static let missingInstanceUIDs = Code(rawValue: "missing_instance_uids")
        /// De-identification failed with an error of another library.
        public static let deidentifyError = Code(rawValue: "deidentify_error")
        /// The de-identified file lacks a pseudonymous UID or patient ID.
        public static let missingPseudonyms = Code(rawValue: "missing_pseudonyms")
        /// The keyed UID of a conflicting instance could not be set.
        public static let uidOverrideFailed = Code(rawValue: "uid_override_failed")
        /// The staging folder could not be written.
        public static let scratchUnwritable = Code(rawValue: "scratch_unwritable")
        /// A recipe produced no tensor.
        public static let noFrames = Code(rawValue: "no_frames")
        /// Normalisation failed with an error of another library.
        public static let normalizeError = Code(rawValue: "normalize_error")
        /// The database refused the claim's statement.
        public static let claimRejected = Code(rawValue: "claim_rejected")
        /// The database refused the catalogue's statement.
        public static let catalogRejected = Code(rawValue: "catalog_rejected")
        /// A ledger row quarantined without a recorded reason.
        public static let quarantined = Code(rawValue: "quarantined")
    }

    public let stage: PipelineStage
    /// The code's raw value, as recorded.
    public let reason: String

    /// The code; for a failure forwarded from another error, that error's code under this type.
    public var code: Code { Code(rawValue: reason) }

    /// A failure with one of the pipeline's own reasons.
    public init(stage: PipelineStage, code: Code) {
        self.init(stage: stage, reason: code.rawValue)
    }

    /// A failure of `stage` caused by `error`: its reason becomes this failure's.
    public init(stage: PipelineStage, error: some CodedError) {
        self.init(stage: stage, reason: error.reason)
    }

    /// A failure as recorded before (read back from the sandbox wire, a ledger row or a reason file). New
    /// failures take a code or an error.
    public init(stage: PipelineStage, reason: String) {
        self.stage = stage
        self.reason = reason
    }

    public var description: String { "\(stage.rawValue) failed: \(reason)" }
}

/// What became of a file the processor handled.
public enum ProcessingOutcome: Sendable, Hashable {
    /// Catalogued: the source file goes to `processed/` or is deleted, by configuration.
    case ingested
    /// Already recorded (the same bytes, or the same instance with the same content): disposed of like an
    /// ingested file.
    case duplicate
    /// Cannot go through: the file goes to `quarantine/` beside a reason file.
    case rejected(PipelineFailure)
    /// The ledger already holds this very file's outcome (a run killed before it moved the file, or
    /// another replica that took it first): the file, if still there, is disposed of by that outcome
    /// (`nil`: catalogued; else quarantined with the recorded failure) and counted nowhere again.
    case alreadyRecorded(PipelineFailure?)
    /// Left in the drop folder with nothing decided (claimed by another replica, a crash counted as one
    /// attempt, …): taken again later — `soon`, by the pipeline itself, or at the next rescan.
    case retry(reason: String, soon: Bool)
}

/// The pipeline's work on a batch of files: claim, parse, de-identify, normalise, store, catalogue.
///
/// Answer one outcome per file, in order. Throw a `PipelineOutage` when the surroundings fail (database or
/// store unreachable, disk full): every file of the batch stays in the drop folder and the runner pauses
/// for a while. The runner moves, deletes or quarantines the source files after `process` returns;
/// `process` must not.
public protocol BatchProcessor: Sendable {
    func process(_ files: [DiscoveredFile]) async throws -> [ProcessingOutcome]
}
