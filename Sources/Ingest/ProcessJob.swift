// The sandbox job "process": the crash-prone work on one untrusted file, run inside a SandboxPool
// child — parse, de-identify, normalise per route, serialise. The request and result travel as JSON;
// the output objects are written by the child into a scratch folder of the data dir and returned as
// paths with their SHA-256, so no blob crosses the pipe base64-encoded. Typed failures (not DICOM,
// truncated, burned-in annotation, …) come back inside the result with their stage; only a crash or
// a timeout surfaces as a SandboxError.
import Crypto
import DICOM
import Deidentification
import Foundation
import Normalization

/// What the daemon asks the child to do with one file.
public struct ProcessRequest: Sendable, Hashable, Codable {
    /// The source file in the drop folder.
    public var sourcePath: String
    /// The routes file.
    public var routesFile: String
    /// The de-identification profile; nil stops after parsing (routing attributes only).
    public var profileFile: String?
    /// The pseudonymisation key file (needed with `profileFile`).
    public var keyFile: String?
    /// Folder of the normalisation recipes.
    public var recipesDirectory: String?
    /// A folder (inside the data dir) the child writes the output objects into; created if missing.
    public var scratchDirectory: String

    public init(
        sourcePath: String, routesFile: String, profileFile: String? = nil, keyFile: String? = nil, recipesDirectory: String? = nil,
        scratchDirectory: String
    ) {
        self.sourcePath = sourcePath
        self.routesFile = routesFile
        self.profileFile = profileFile
        self.keyFile = keyFile
        self.recipesDirectory = recipesDirectory
        self.scratchDirectory = scratchDirectory
    }
}

/// One output object written into the scratch folder.
public struct ProducedObject: Sendable, Hashable, Codable {
    /// `file` (de-identified DICOM), `tensor` (.npy), `sidecar` (.json), `preview` (.png).
    public var role: String
    /// The recipe, for tensors, sidecars and previews.
    public var recipe: String?
    /// Path in the scratch folder.
    public var path: String
    public var sha256: String
    public var size: Int64
    public var contentType: String
}

/// The de-identified instance as the catalogue stores it, and the vault's original identifiers.
public struct ProcessedInstance: Sendable, Hashable, Codable {
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
    public var studyDate: String?
    public var studyDescription: String?
    public var seriesDescription: String?
    public var manufacturer: String?
    public var rows: Int?
    public var columns: Int?
    public var pixelSpacing: [Double]?
    public var sliceThickness: Double?
    public var numberOfFrames: Int?
    public var transferSyntaxUID: String?
    /// The de-identified header as DICOM JSON (bulk data left out).
    public var headerJSON: String
    // Vault: original identifiers (PHI; only ever written to the vault tables).
    public var originalPatientID: String
    public var originalPatientName: String?
    public var originalBirthDate: String?
    public var originalStudyUID: String
    public var originalAccessionNumber: String?
    public var originalSeriesUID: String
    public var originalSOPInstanceUID: String
}

/// What the child found: the processed instance and its objects, or a typed failure with its stage.
public struct ProcessResult: Sendable, Hashable, Codable {
    /// Set when the file cannot go through; every other field is then empty.
    public var failure: PipelineFailure?
    /// Modality (0008,0060) as read.
    public var modality: String?
    /// BodyPartExamined (0018,0015) as read.
    public var bodyPart: String?
    /// The file's transfer syntax.
    public var transferSyntaxUID: String?
    /// Names of the routes the instance's series takes.
    public var routes: [String]
    /// Whether the file holds pixel data.
    public var hasPixelData: Bool
    /// The de-identified instance (with a profile in the request).
    public var instance: ProcessedInstance?
    /// The objects written to the scratch folder.
    public var objects: [ProducedObject]

    public init(
        failure: PipelineFailure? = nil, modality: String? = nil, bodyPart: String? = nil, transferSyntaxUID: String? = nil,
        routes: [String] = [], hasPixelData: Bool = false, instance: ProcessedInstance? = nil, objects: [ProducedObject] = []
    ) {
        self.failure = failure
        self.modality = modality
        self.bodyPart = bodyPart
        self.transferSyntaxUID = transferSyntaxUID
        self.routes = routes
        self.hasPixelData = hasPixelData
        self.instance = instance
        self.objects = objects
    }
}

/// The "process" job: its name in `PipelineAssembly.sandboxJobs`, the handler run in the child and
/// the daemon-side call.
public enum ProcessJob {
    /// The job's kind on the sandbox wire.
    public static let kind = "process"

    /// The child's handler: decodes a `ProcessRequest`, returns an encoded `ProcessResult`.
    public static let handler: SandboxWorker.Handler = { payload in
        let request: ProcessRequest
        do { request = try JSONDecoder().decode(ProcessRequest.self, from: Data(payload)) } catch {
            throw PipelineFailure(stage: .sandbox, reason: "bad_request")
        }
        return Array(try JSONEncoder().encode(run(request)))
    }

    static func failed(_ stage: PipelineStage, _ reason: String) -> ProcessResult {
        ProcessResult(failure: PipelineFailure(stage: stage, reason: reason))
    }

    /// Runs the job in this process (the child calls it; tests may too).
    public static func run(_ request: ProcessRequest) -> ProcessResult {
        let routes: SeriesRoutes
        do { routes = try ChildCache.shared.routes(path: request.routesFile) } catch let error as RoutesError {
            return failed(.sandbox, error.reason)
        } catch {
            return failed(.sandbox, "routes_unreadable")
        }
        let file: DicomFile
        do { file = try DicomFile.open(path: request.sourcePath) } catch let error as DicomError {
            return failed(.parse, error.reason)
        } catch {
            return failed(.parse, "parse_error")
        }
        let dataset = file.dataset
        guard let sop = nonEmpty(dataset.string(.sopInstanceUID)), let series = nonEmpty(dataset.string(.seriesInstanceUID)),
            let study = nonEmpty(dataset.string(.studyInstanceUID))
        else { return failed(.parse, "missing_instance_uids") }
        let modality = nonEmpty(dataset.string(.modality))
        let bodyPart = nonEmpty(dataset.string(.bodyPartExamined))
        let taken = routes.routes(modality: modality, bodyPart: bodyPart)
        var result = ProcessResult(
            modality: modality, bodyPart: bodyPart, transferSyntaxUID: file.transferSyntaxUID, routes: taken.map(\.name),
            hasPixelData: dataset.contains(.pixelData))
        guard let profileFile = request.profileFile else { return result }
        guard result.hasPixelData else { return failed(.parse, "no_pixel_data") }

        // De-identify in place.
        let deidentifier: Deidentifier
        do { deidentifier = try ChildCache.shared.deidentifier(profile: profileFile, keyFile: request.keyFile) } catch let error as DeidentificationError {
            return failed(.deidentify, error.reason)
        } catch {
            return failed(.deidentify, "invalid_profile")
        }
        let originalPatientID = dataset.string(.patientID) ?? ""
        let originalName = nonEmpty(dataset.string(.patientName))
        let originalBirthDate = nonEmpty(dataset.string(.patientBirthDate))
        let originalAccession = nonEmpty(dataset.string(.accessionNumber))
        let deidentified: DeidentificationResult
        do { deidentified = try deidentifier.deidentify(file) } catch let error as DeidentificationError {
            return failed(.deidentify, error.reason)
        } catch let error as DicomError {
            return failed(.deidentify, error.reason)
        } catch {
            return failed(.deidentify, "deidentify_error")
        }
        guard let pseudoSOP = nonEmpty(dataset.string(.sopInstanceUID)), let pseudoSeries = nonEmpty(dataset.string(.seriesInstanceUID)),
            let pseudoStudy = nonEmpty(dataset.string(.studyInstanceUID)), let pseudoPatient = nonEmpty(dataset.string(.patientID))
        else { return failed(.deidentify, "missing_pseudonyms") }

        // Output objects, in a folder of their own.
        let folder = request.scratchDirectory
        do { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) } catch {
            return failed(.store, "scratch_unwritable")
        }
        func emit(_ role: String, _ recipe: String?, _ name: String, _ bytes: [UInt8], _ contentType: String) throws {
            let path = (folder as NSString).appendingPathComponent(name)
            guard FileManager.default.createFile(atPath: path, contents: Data(bytes)) else { throw PipelineFailure(stage: .store, reason: "scratch_unwritable") }
            let digest = SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
            result.objects.append(ProducedObject(role: role, recipe: recipe, path: path, sha256: digest, size: Int64(bytes.count), contentType: contentType))
        }
        do {
            let bytes = try file.serialized(transferSyntax: deidentified.requiredTransferSyntax)
            try emit("file", nil, "instance.dcm", bytes, "application/dicom")
        } catch let failure as PipelineFailure {
            return ProcessResult(failure: failure)
        } catch let error as DicomError {
            return failed(.deidentify, error.reason)
        } catch {
            return failed(.deidentify, "encode_failed")
        }

        // Normalise once per distinct recipe of the routes taken.
        for recipeName in routes.recipes(modality: modality, bodyPart: bodyPart) {
            do {
                let normalizer = try ChildCache.shared.normalizer(recipe: recipeName, directory: request.recipesDirectory)
                let tensors = try normalizer.normalize(file, identifiers: ["sop_instance_uid": pseudoSOP, "series_uid": pseudoSeries])
                guard let tensor = tensors.first else { return failed(.normalize, "no_frames") }
                try emit("tensor", recipeName, "\(recipeName).npy", NPYWriter.encode(tensor), "application/x-npy")
                try emit("sidecar", recipeName, "\(recipeName).json", Array(try tensor.metadata.sidecarJSON()), "application/json")
                try emit("preview", recipeName, "\(recipeName).png", try PNGWriter.preview(tensor), "image/png")
            } catch let failure as PipelineFailure {
                return ProcessResult(failure: failure)
            } catch let error as NormalizationError {
                return failed(.normalize, error.code.rawValue)
            } catch let error as DicomError {
                return failed(.normalize, error.reason)
            } catch {
                return failed(.normalize, "normalize_error")
            }
        }

        let spacing = dataset.doubles(.pixelSpacing)
        let age = nonEmpty(dataset.string(.patientAge)).flatMap { text -> Int? in
            guard text.hasSuffix("Y") else { return text.isEmpty ? nil : 0 }
            return Int(text.dropLast())
        }
        result.instance = ProcessedInstance(
            patientID: pseudoPatient, studyUID: pseudoStudy, seriesUID: pseudoSeries, sopInstanceUID: pseudoSOP,
            sopClassUID: nonEmpty(dataset.string(.sopClassUID)), instanceNumber: dataset.integer(.instanceNumber),
            seriesNumber: dataset.integer(.seriesNumber), modality: modality, bodyPart: bodyPart,
            sex: nonEmpty(dataset.string(.patientSex)), ageYears: age, studyDate: validDate(dataset.string(.studyDate)),
            studyDescription: nonEmpty(dataset.string(.studyDescription)), seriesDescription: nonEmpty(dataset.string(.seriesDescription)),
            manufacturer: nonEmpty(dataset.string(.manufacturer)), rows: dataset.integer(.rows), columns: dataset.integer(.columns),
            pixelSpacing: spacing.count == 2 ? spacing : nil, sliceThickness: dataset.double(.sliceThickness),
            numberOfFrames: dataset.integer(.numberOfFrames) ?? 1, transferSyntaxUID: deidentified.requiredTransferSyntax ?? file.transferSyntaxUID,
            headerJSON: DicomJSON.encode(dataset, bulkDataLimit: 1024, skip: { $0 == .pixelData }),
            originalPatientID: originalPatientID, originalPatientName: originalName, originalBirthDate: originalBirthDate,
            originalStudyUID: study, originalAccessionNumber: originalAccession, originalSeriesUID: series, originalSOPInstanceUID: sop)
        return result
    }

    /// The daemon's side: runs the job in the pool. Typed failures come back in the result; a
    /// crashed or timed-out child becomes a `sandbox` failure with the pool's reason.
    public static func run(_ request: ProcessRequest, in pool: SandboxPool) async throws -> ProcessResult {
        let payload = Array(try JSONEncoder().encode(request))
        let output: [UInt8]
        do { output = try await pool.run(kind: kind, payload: payload) } catch {
            if error.code == .shutDown { throw error }   // transient: the file is taken again after restart
            return ProcessResult(failure: PipelineFailure(stage: .sandbox, reason: error.reason))
        }
        do { return try JSONDecoder().decode(ProcessResult.self, from: Data(output)) } catch {
            return ProcessResult(failure: PipelineFailure(stage: .sandbox, reason: "bad_response"))
        }
    }
}

private func nonEmpty(_ text: String?) -> String? {
    guard let text, !text.isEmpty else { return nil }
    return text
}

/// A DA value as `YYYYMMDD` when it is a plausible date, else nil (the catalogue's column is a date).
private func validDate(_ text: String?) -> String? {
    guard let text, text.count == 8, text.allSatisfy(\.isNumber), let year = Int(text.prefix(4)), let month = Int(text.dropFirst(4).prefix(2)),
        let day = Int(text.suffix(2)), (1...9999).contains(year), (1...12).contains(month), (1...28).contains(day) || day <= 31
    else { return nil }
    var components = DateComponents(year: year, month: month, day: day)
    components.calendar = Calendar(identifier: .gregorian)
    guard components.isValidDate else { return nil }
    return text
}

/// What a child loads once and reuses across jobs: routes, de-identifiers, normalisers, by path.
final class ChildCache: @unchecked Sendable {
    static let shared = ChildCache()
    private let lock = NSLock()
    private var routes: [String: SeriesRoutes] = [:]
    private var deidentifiers: [String: Deidentifier] = [:]
    private var normalizers: [String: Normalizer] = [:]

    func routes(path: String) throws -> SeriesRoutes {
        lock.lock()
        defer { lock.unlock() }
        if let cached = routes[path] { return cached }
        let loaded = try SeriesRoutes.load(path: path)
        routes[path] = loaded
        return loaded
    }

    func deidentifier(profile: String, keyFile: String?) throws -> Deidentifier {
        lock.lock()
        defer { lock.unlock() }
        let cacheKey = profile + "\u{0}" + (keyFile ?? "")
        if let cached = deidentifiers[cacheKey] { return cached }
        let key = try keyFile.map { try PseudonymKey(contentsOfFile: $0) } ?? PseudonymKey.fromEnvironment(ProcessInfo.processInfo.environment)
        let made = Deidentifier(profile: try DeidentificationProfile.load(path: profile), key: key)
        deidentifiers[cacheKey] = made
        return made
    }

    func normalizer(recipe: String, directory: String?) throws -> Normalizer {
        lock.lock()
        defer { lock.unlock() }
        let cacheKey = recipe + "\u{0}" + (directory ?? "")
        if let cached = normalizers[cacheKey] { return cached }
        let made = Normalizer(recipe: try Recipe.load(name: recipe, directory: directory ?? Recipe.defaultDirectory))
        normalizers[cacheKey] = made
        return made
    }
}
