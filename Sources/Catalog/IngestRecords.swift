// IngestRecords: the one typed contract between the ingest pipeline's sandbox child and the catalogue —
// the instance's columns (pseudonymous), its original identifiers (vault only), its stored objects by role —
// and what a batch commit is asked to record for each claimed file and answers.
import Foundation

/// What an object stored for an instance is.
public enum ObjectRole: UInt8, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// The de-identified DICOM file.
    case file = 0
    /// A recipe's model-ready tensor (`.npy`).
    case tensor = 1
    /// The tensor's JSON sidecar.
    case sidecar = 2
    /// The tensor's preview image (`.png`).
    case preview = 3

    public var description: String {
        switch self {
        case .file: "file"
        case .tensor: "tensor"
        case .sidecar: "sidecar"
        case .preview: "preview"
        }
    }

    /// The MIME type objects of this role are stored with.
    public var contentType: String {
        switch self {
        case .file: "application/dicom"
        case .tensor: "application/x-npy"
        case .sidecar: "application/json"
        case .preview: "image/png"
        }
    }

    /// The key extension of this role.
    public var fileExtension: String {
        switch self {
        case .file: "dcm"
        case .tensor: "npy"
        case .sidecar: "json"
        case .preview: "png"
        }
    }
}

/// One object of an instance, as stored.
public struct InstanceObject: Sendable, Hashable {
    public var role: ObjectRole
    /// The normalisation recipe, for tensors, sidecars and previews.
    public var recipe: String?
    public var stored: StoredObject

    public init(role: ObjectRole, recipe: String?, stored: StoredObject) {
        self.role = role
        self.recipe = recipe
        self.stored = stored
    }
}

/// A de-identified instance: every column the catalogue keeps for it, pseudonymous identifiers only.
public struct InstanceMetadata: Sendable, Hashable {
    public var patientID: String
    public var studyUID: String
    public var seriesUID: String
    public var sopInstanceUID: String
    public var sopClassUID: String?
    public var instanceNumber: Int?
    public var seriesNumber: Int?
    public var modality: String?
    public var bodyPart: String?
    public var sex: String?
    public var ageYears: Int?
    /// The shifted study date, `YYYYMMDD`.
    public var studyDate: String?
    public var studyDescription: String?
    public var seriesDescription: String?
    public var manufacturer: String?
    public var rows: Int?
    public var columns: Int?
    /// Row and column spacing in millimetres.
    public var pixelSpacing: [Double]?
    public var sliceThickness: Double?
    public var numberOfFrames: Int?
    public var transferSyntaxUID: String?

    public init(
        patientID: String, studyUID: String, seriesUID: String, sopInstanceUID: String, sopClassUID: String? = nil,
        instanceNumber: Int? = nil, seriesNumber: Int? = nil, modality: String? = nil, bodyPart: String? = nil, sex: String? = nil,
        ageYears: Int? = nil, studyDate: String? = nil, studyDescription: String? = nil, seriesDescription: String? = nil,
        manufacturer: String? = nil, rows: Int? = nil, columns: Int? = nil, pixelSpacing: [Double]? = nil, sliceThickness: Double? = nil,
        numberOfFrames: Int? = nil, transferSyntaxUID: String? = nil
    ) {
        self.patientID = patientID
        self.studyUID = studyUID
        self.seriesUID = seriesUID
        self.sopInstanceUID = sopInstanceUID
        self.sopClassUID = sopClassUID
        self.instanceNumber = instanceNumber
        self.seriesNumber = seriesNumber
        self.modality = modality
        self.bodyPart = bodyPart
        self.sex = sex
        self.ageYears = ageYears
        self.studyDate = studyDate
        self.studyDescription = studyDescription
        self.seriesDescription = seriesDescription
        self.manufacturer = manufacturer
        self.rows = rows
        self.columns = columns
        self.pixelSpacing = pixelSpacing
        self.sliceThickness = sliceThickness
        self.numberOfFrames = numberOfFrames
        self.transferSyntaxUID = transferSyntaxUID
    }
}

/// The original identifiers behind an instance's pseudonyms: patient data, written to the vault only.
public struct OriginalIdentifiers: Sendable, Hashable {
    public var patientID: String
    public var patientName: String?
    public var birthDate: String?
    public var studyUID: String
    public var accessionNumber: String?
    public var seriesUID: String
    public var sopInstanceUID: String

    public init(
        patientID: String, patientName: String? = nil, birthDate: String? = nil, studyUID: String, accessionNumber: String? = nil,
        seriesUID: String, sopInstanceUID: String
    ) {
        self.patientID = patientID
        self.patientName = patientName
        self.birthDate = birthDate
        self.studyUID = studyUID
        self.accessionNumber = accessionNumber
        self.seriesUID = seriesUID
        self.sopInstanceUID = sopInstanceUID
    }
}

/// A de-identified instance ready for the catalogue: its columns, header, objects and originals.
public struct IngestedInstance: Sendable, Hashable {
    public var metadata: InstanceMetadata
    public var originals: OriginalIdentifiers
    /// The de-identified header as DICOM JSON (PS3.18 F.2): a JSON object, stored as `jsonb` as it is.
    public var headerJSON: String
    /// SHA-256 over the pixel data and the identifying attributes (pseudonymous): two files with the same
    /// SOP Instance UID and this hash are the same instance, whatever else differs.
    public var contentSHA256: String
    /// The objects stored, by role (one `file`; per recipe a `tensor`, `sidecar` and `preview`).
    public var objects: [InstanceObject]
    /// Set when this instance was given a new UID because its original one was taken by other content:
    /// the UID it would have had.
    public var conflictedSOPInstanceUID: String?
    /// What OCR found and blanked in the pixels (nil: the profile's burned-in text policy did not read them);
    /// `commitIngestBatch` writes it to `imaging.pixel_text_audit` under the instance's SOP Instance UID.
    public var pixelText: PixelTextAuditRecord?

    public init(
        metadata: InstanceMetadata, originals: OriginalIdentifiers, headerJSON: String, contentSHA256: String, objects: [InstanceObject],
        conflictedSOPInstanceUID: String? = nil, pixelText: PixelTextAuditRecord? = nil
    ) {
        self.metadata = metadata
        self.originals = originals
        self.headerJSON = headerJSON
        self.contentSHA256 = contentSHA256
        self.objects = objects
        self.conflictedSOPInstanceUID = conflictedSOPInstanceUID
        self.pixelText = pixelText
    }

    /// The stored object of `role` (and `recipe`), if any.
    public func object(_ role: ObjectRole, recipe: String? = nil) -> StoredObject? {
        objects.first { $0.role == role && $0.recipe == recipe }?.stored
    }

    /// The recipes with a tensor, sorted.
    public var recipes: [String] {
        Set(objects.compactMap { $0.role == .tensor ? $0.recipe : nil }).sorted()
    }
}

/// What to do when a new file's SOP Instance UID is already catalogued with other content.
public enum UIDConflictPolicy: String, Sendable, Hashable, CaseIterable {
    /// Quarantine the later file (`uid_conflict`); the catalogued instance stays as it is.
    case quarantine
    /// Keep both: the later file gets a new keyed UID derived from the old one and its content hash.
    case keepBoth = "keep_both"
    /// Replace the catalogued instance by the later file, audited with both content hashes.
    case replace
}

/// What a batch commit records for one claimed file.
public enum LedgerOutcome: Sendable, Hashable {
    /// Catalogue the instance (or find it a duplicate or a conflict, by its SOP Instance UID and content).
    case catalogue(IngestedInstance)
    /// The file's own fault: quarantined with `reason`, found at `stage`.
    case quarantine(stage: String, reason: String)
    /// Maybe the file's fault (its sandbox child crashed or timed out): one attempt counted; quarantined with
    /// `reason` once the attempts reach `maxAttempts`.
    case failedAttempt(stage: String, reason: String, maxAttempts: Int)
    /// Nothing the file did: the claim is given back (`discovered`), nothing counted.
    case release(reason: String)
    /// The row described a file still being written (it changed after its claim): removed with its audit
    /// events, so the complete file gets the ledger's only row for it.
    case forget
}

/// One claimed file's line in a batch commit.
public struct LedgerUpdate: Sendable, Hashable {
    public var ledgerID: Int64
    public var outcome: LedgerOutcome
    /// Stages the file passed on its way (audit events), e.g. `deidentify`, `normalize:cxr-28`, `store`.
    public var stages: [String]

    public init(ledgerID: Int64, outcome: LedgerOutcome, stages: [String] = []) {
        self.ledgerID = ledgerID
        self.outcome = outcome
        self.stages = stages
    }
}

/// What a batch commit did with one file.
public enum CommitOutcome: Sendable, Hashable {
    /// A new instance was catalogued (`sopInstanceUID`: the one it got).
    case catalogued(sopInstanceUID: String)
    /// The instance was catalogued already with the same content: the file is a duplicate of ledger row `of`.
    /// `sharesObjects`: its objects have the catalogued instance's keys (the same source bytes), so they
    /// must stay; otherwise nothing refers to them.
    case duplicate(of: Int64?, sharesObjects: Bool)
    /// The SOP Instance UID was catalogued with other content, and the policy kept both: catalogue this file
    /// again under `newUID`, in a later commit (its claim stays).
    case needsNewUID(existingContentSHA256: String?)
    /// The instance replaced the one catalogued under its SOP Instance UID (policy `replace`).
    case replaced(sopInstanceUID: String)
    /// Quarantined with this reason (the file's own, its exhausted attempts, or `uid_conflict`).
    case quarantined(stage: String, reason: String)
    /// One more failed attempt was counted; the file stays for another claim.
    case failed(attempts: Int)
    /// The claim was given back with nothing counted.
    case released
    /// The row was removed (`LedgerOutcome.forget`).
    case forgotten
    /// This replica no longer held the file's lease: nothing was recorded (another replica has it).
    case leaseLost
}

/// The answer to a batch claim for one file, in the order asked.
public struct BatchClaim: Sendable, Hashable {
    public var file: SourceFile
    public var claim: LedgerClaim
    /// For a file whose last claim was interrupted in a group: the size of the group to process it in now
    /// (start that group with `startSourceFileGroup`); nil: it goes with the rest of the batch.
    public var group: Int?

    public init(file: SourceFile, claim: LedgerClaim, group: Int? = nil) {
        self.file = file
        self.claim = claim
        self.group = group
    }
}
