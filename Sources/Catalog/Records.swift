// Records: the typed rows the daemon and the worker write, with pseudonymous identifiers only
// (the vault records are the one place original identifiers appear).
import Foundation

/// A de-identified patient, keyed by pseudonymous PatientID.
public struct PatientRecord: Sendable, Hashable, Codable {
    public var patientID: String
    public var sex: String?
    public var ageYears: Int?

    public init(patientID: String, sex: String? = nil, ageYears: Int? = nil) {
        self.patientID = patientID
        self.sex = sex
        self.ageYears = ageYears
    }

    enum CodingKeys: String, CodingKey {
        case patientID = "patient_id", sex, ageYears = "age_years"
    }
}

/// A de-identified study, keyed by pseudonymous StudyInstanceUID.
public struct StudyRecord: Sendable, Hashable, Codable {
    public var studyUID: String
    public var patientID: String
    /// The shifted study date, as DICOM DA (`YYYYMMDD`) or ISO (`YYYY-MM-DD`).
    public var studyDate: String?
    public var studyDescription: String?
    public var accessionPseudonym: String?

    public init(
        studyUID: String, patientID: String, studyDate: String? = nil, studyDescription: String? = nil,
        accessionPseudonym: String? = nil
    ) {
        self.studyUID = studyUID
        self.patientID = patientID
        self.studyDate = studyDate
        self.studyDescription = studyDescription
        self.accessionPseudonym = accessionPseudonym
    }

    enum CodingKeys: String, CodingKey {
        case studyUID = "study_uid", patientID = "patient_id", studyDate = "study_date"
        case studyDescription = "study_description", accessionPseudonym = "accession_pseudonym"
    }
}

/// A de-identified series' descriptive columns, keyed by pseudonymous SeriesInstanceUID.
/// Its completion state (open/complete, revision, last arrival) is maintained by `CatalogTransaction`.
public struct SeriesRecord: Sendable, Hashable, Codable {
    public var seriesUID: String
    public var studyUID: String
    public var modality: String?
    public var bodyPart: String?
    public var seriesNumber: Int?
    public var seriesDescription: String?
    public var manufacturer: String?

    public init(
        seriesUID: String, studyUID: String, modality: String? = nil, bodyPart: String? = nil,
        seriesNumber: Int? = nil, seriesDescription: String? = nil, manufacturer: String? = nil
    ) {
        self.seriesUID = seriesUID
        self.studyUID = studyUID
        self.modality = modality
        self.bodyPart = bodyPart
        self.seriesNumber = seriesNumber
        self.seriesDescription = seriesDescription
        self.manufacturer = manufacturer
    }

    enum CodingKeys: String, CodingKey {
        case seriesUID = "series_uid", studyUID = "study_uid", modality, bodyPart = "body_part"
        case seriesNumber = "series_number", seriesDescription = "series_description", manufacturer
    }
}

/// An object written to the store: its key, hex SHA-256 and size.
public struct StoredObject: Sendable, Hashable, Codable {
    public var key: String
    public var sha256: String
    public var size: Int64?

    public init(key: String, sha256: String, size: Int64? = nil) {
        self.key = key
        self.sha256 = sha256
        self.size = size
    }
}

/// A de-identified instance with the typed columns analysts query and the whole header as DICOM JSON.
public struct InstanceRecord: Sendable, Hashable {
    public var sopInstanceUID: String
    public var seriesUID: String
    public var studyUID: String
    public var patientID: String
    public var sopClassUID: String?
    public var instanceNumber: Int?
    public var modality: String?
    public var bodyPart: String?
    /// The shifted study date, as DICOM DA (`YYYYMMDD`) or ISO (`YYYY-MM-DD`).
    public var studyDate: String?
    public var seriesDescription: String?
    public var manufacturer: String?
    public var rows: Int?
    public var columns: Int?
    /// Row and column spacing in millimetres.
    public var pixelSpacing: [Double]?
    public var sliceThickness: Double?
    public var numberOfFrames: Int?
    public var transferSyntaxUID: String?
    /// The de-identified DICOM file.
    public var file: StoredObject?
    /// The model-ready tensor (`.npy`).
    public var tensor: StoredObject?
    /// The preview image (`.png`).
    public var preview: StoredObject?
    /// Every recipe's tensor (`imaging.tensors`); `tensor` and `preview` hold the first recipe's (taken from
    /// here when not given). When not empty, it is the instance's whole set: tensors of recipes left out are
    /// removed.
    public var tensors: [TensorRecord]
    /// The de-identified header as DICOM JSON (PS3.18 F.2) text; must be a JSON object.
    public var headerJSON: String

    public init(
        sopInstanceUID: String, seriesUID: String, studyUID: String, patientID: String,
        sopClassUID: String? = nil, instanceNumber: Int? = nil, modality: String? = nil, bodyPart: String? = nil,
        studyDate: String? = nil, seriesDescription: String? = nil, manufacturer: String? = nil,
        rows: Int? = nil, columns: Int? = nil, pixelSpacing: [Double]? = nil, sliceThickness: Double? = nil,
        numberOfFrames: Int? = nil, transferSyntaxUID: String? = nil,
        file: StoredObject? = nil, tensor: StoredObject? = nil, preview: StoredObject? = nil, tensors: [TensorRecord] = [],
        headerJSON: String = "{}"
    ) {
        self.sopInstanceUID = sopInstanceUID
        self.seriesUID = seriesUID
        self.studyUID = studyUID
        self.patientID = patientID
        self.sopClassUID = sopClassUID
        self.instanceNumber = instanceNumber
        self.modality = modality
        self.bodyPart = bodyPart
        self.studyDate = studyDate
        self.seriesDescription = seriesDescription
        self.manufacturer = manufacturer
        self.rows = rows
        self.columns = columns
        self.pixelSpacing = pixelSpacing
        self.sliceThickness = sliceThickness
        self.numberOfFrames = numberOfFrames
        self.transferSyntaxUID = transferSyntaxUID
        self.file = file
        self.tensor = tensor ?? tensors.first?.tensor
        self.preview = preview ?? tensors.first?.preview
        self.tensors = tensors
        self.headerJSON = headerJSON
    }
}

/// One recipe's normalised tensor of an instance, with its sidecar and preview.
public struct TensorRecord: Sendable, Hashable {
    /// The normalisation recipe (e.g. `cxr-28`).
    public var recipe: String
    /// The tensor (`.npy`).
    public var tensor: StoredObject
    /// Its JSON sidecar.
    public var sidecar: StoredObject?
    /// Its preview image (`.png`).
    public var preview: StoredObject?

    public init(recipe: String, tensor: StoredObject, sidecar: StoredObject? = nil, preview: StoredObject? = nil) {
        self.recipe = recipe
        self.tensor = tensor
        self.sidecar = sidecar
        self.preview = preview
    }
}

/// The flat row shape `jsonb_to_recordset` reads for `imaging.tensors`.
struct TensorRow: Encodable {
    let sop_instance_uid: String, recipe: String, tensor_key: String, tensor_sha256: String
    let sidecar_key: String?, preview_key: String?, preview_sha256: String?

    init(_ sopInstanceUID: String, _ t: TensorRecord) {
        sop_instance_uid = sopInstanceUID; recipe = t.recipe; tensor_key = t.tensor.key; tensor_sha256 = t.tensor.sha256
        sidecar_key = t.sidecar?.key; preview_key = t.preview?.key; preview_sha256 = t.preview?.sha256
    }
}

/// Original identifiers of a patient, kept in the vault.
public struct VaultPatient: Sendable, Hashable, Codable {
    /// The pseudonymous PatientID.
    public var patientID: String
    public var originalPatientID: String
    public var patientName: String?
    public var birthDate: String?

    public init(patientID: String, originalPatientID: String, patientName: String? = nil, birthDate: String? = nil) {
        self.patientID = patientID
        self.originalPatientID = originalPatientID
        self.patientName = patientName
        self.birthDate = birthDate
    }

    enum CodingKeys: String, CodingKey {
        case patientID = "patient_id", originalPatientID = "original_patient_id"
        case patientName = "patient_name", birthDate = "birth_date"
    }
}

/// Original identifiers of a study, kept in the vault.
public struct VaultStudy: Sendable, Hashable, Codable {
    /// The pseudonymous StudyInstanceUID.
    public var studyUID: String
    public var originalStudyUID: String
    public var accessionNumber: String?

    public init(studyUID: String, originalStudyUID: String, accessionNumber: String? = nil) {
        self.studyUID = studyUID
        self.originalStudyUID = originalStudyUID
        self.accessionNumber = accessionNumber
    }

    enum CodingKeys: String, CodingKey {
        case studyUID = "study_uid", originalStudyUID = "original_study_uid", accessionNumber = "accession_number"
    }
}

/// Original SeriesInstanceUID, kept in the vault.
public struct VaultSeries: Sendable, Hashable, Codable {
    public var seriesUID: String
    public var originalSeriesUID: String

    public init(seriesUID: String, originalSeriesUID: String) {
        self.seriesUID = seriesUID
        self.originalSeriesUID = originalSeriesUID
    }

    enum CodingKeys: String, CodingKey {
        case seriesUID = "series_uid", originalSeriesUID = "original_series_uid"
    }
}

/// Original SOPInstanceUID, kept in the vault.
public struct VaultInstance: Sendable, Hashable, Codable {
    public var sopInstanceUID: String
    public var originalSOPInstanceUID: String

    public init(sopInstanceUID: String, originalSOPInstanceUID: String) {
        self.sopInstanceUID = sopInstanceUID
        self.originalSOPInstanceUID = originalSOPInstanceUID
    }

    enum CodingKeys: String, CodingKey {
        case sopInstanceUID = "sop_instance_uid", originalSOPInstanceUID = "original_sop_instance_uid"
    }
}

/// Everything one catalog write holds: rows are upserted parents first, so one batch may carry a whole
/// new patient → study → series → instance chain (and any number of them, for bulk loads).
public struct CatalogBatch: Sendable, Hashable {
    public var patients: [PatientRecord]
    public var studies: [StudyRecord]
    public var series: [SeriesRecord]
    public var instances: [InstanceRecord]
    public var vaultPatients: [VaultPatient]
    public var vaultStudies: [VaultStudy]
    public var vaultSeries: [VaultSeries]
    public var vaultInstances: [VaultInstance]

    public init(
        patients: [PatientRecord] = [], studies: [StudyRecord] = [], series: [SeriesRecord] = [],
        instances: [InstanceRecord] = [], vaultPatients: [VaultPatient] = [], vaultStudies: [VaultStudy] = [],
        vaultSeries: [VaultSeries] = [], vaultInstances: [VaultInstance] = []
    ) {
        self.patients = patients
        self.studies = studies
        self.series = series
        self.instances = instances
        self.vaultPatients = vaultPatients
        self.vaultStudies = vaultStudies
        self.vaultSeries = vaultSeries
        self.vaultInstances = vaultInstances
    }
}

/// What an upsert changed.
public struct UpsertSummary: Sendable, Equatable {
    /// Instances that were new.
    public var insertedInstances: Int
    /// Instances that existed and were updated in place.
    public var updatedInstances: Int
    /// Series that were complete and re-opened (with a new revision) by a newly arrived instance.
    public var reopenedSeries: [String]
}

/// A series whose quiet period has passed, just marked complete.
public struct CompletedSeries: Sendable, Hashable {
    public var seriesUID: String
    public var studyUID: String
    /// The revision the jobs must name: it grows each time a late instance re-opens the series.
    public var revision: Int
    public var modality: String?
    public var bodyPart: String?
    public var seriesDescription: String?
    public var instanceCount: Int
}

/// An open series that has been quiet for some time: a candidate for completion.
public struct OpenSeries: Sendable, Hashable {
    public var seriesUID: String
    public var modality: String?
    public var bodyPart: String?
    /// When its last instance arrived (by the clock that stamped the arrivals).
    public var lastInstanceAt: Date

    public init(seriesUID: String, modality: String?, bodyPart: String?, lastInstanceAt: Date) {
        self.seriesUID = seriesUID
        self.modality = modality
        self.bodyPart = bodyPart
        self.lastInstanceAt = lastInstanceAt
    }
}

/// The completion state of one series.
public struct SeriesState: Sendable, Hashable {
    public enum State: String, Sendable { case open, complete }
    public var seriesUID: String
    public var state: State
    public var revision: Int
    public var instanceCount: Int
    public var lastInstanceAt: Date?
}

/// One blanked rectangle of an instance's pixels and what it held (never the text).
public struct PixelTextBoxRecord: Sendable, Hashable, Codable {
    public var frame: Int
    public var x: Int
    public var y: Int
    public var width: Int
    public var height: Int
    /// name, id, date, accession, institution, other, pattern or text.
    public var category: String

    public init(frame: Int, x: Int, y: Int, width: Int, height: Int, category: String) {
        self.frame = frame
        self.x = x
        self.y = y
        self.width = width
        self.height = height
        self.category = category
    }
}

/// What OCR found and blanked in one instance's pixels (`imaging.pixel_text_audit`), keyed by pseudonymous
/// SOP Instance UID. The fields mirror the de-identification's `PixelTextAudit`.
public struct PixelTextAuditRecord: Sendable, Hashable, Codable {
    public var sopInstanceUID: String
    /// reject, redact_sensitive, redact_all_text or pass.
    public var action: String
    /// clean, redacted or unreadable.
    public var outcome: String
    public var unreadableReason: String?
    public var framesChecked: Int
    public var wordsRead: Int
    public var boxes: [PixelTextBoxRecord]
    public var engine: String

    public init(
        sopInstanceUID: String, action: String, outcome: String, unreadableReason: String? = nil, framesChecked: Int, wordsRead: Int,
        boxes: [PixelTextBoxRecord], engine: String
    ) {
        self.sopInstanceUID = sopInstanceUID
        self.action = action
        self.outcome = outcome
        self.unreadableReason = unreadableReason
        self.framesChecked = framesChecked
        self.wordsRead = wordsRead
        self.boxes = boxes
        self.engine = engine
    }

    /// Boxes per category.
    public var categories: [String: Int] {
        var out: [String: Int] = [:]
        for b in boxes { out[b.category, default: 0] += 1 }
        return out
    }
}
