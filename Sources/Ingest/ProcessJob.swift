// The sandbox job "process": the crash-prone work on one untrusted file, run inside a SandboxPool child —
// parse, de-identify, normalise per route, write the outputs. Requests and results travel in the flat binary
// encoding of WireCoding (the header's DICOM JSON as one string field). The child writes each output object
// once, into the staging folder the daemon names (on the object store's filesystem when it has one), with its
// SHA-256 computed as it is written; the store then takes the file by rename. Typed failures (not DICOM,
// truncated, burned-in annotation, …) come back inside the result with their stage; only a crash or a timeout
// surfaces as a SandboxError.
import CodedErrors
#if canImport(Glibc)
import Glibc
#endif
import CLinux
import Catalog
import Crypto
import DICOM
import Deidentification
import Foundation
import Normalization
import Sandbox
import Synchronization

/// What the daemon asks the child to do with one file.
public struct ProcessRequest: Sendable, Hashable {
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
    /// Where the outputs go: `<stagingPrefix>.dcm`, `<stagingPrefix>.<recipe>.npy`, …; its folder must exist.
    public var stagingPrefix: String
    /// Writes the instance under this SOP Instance UID instead of its pseudonym (a conflict kept apart).
    public var sopInstanceUIDOverride: String?
    /// Starts each staged file's writeback as soon as it is written (the store keeps the file; the daemon's
    /// fdatasync then waits only for what is still in flight).
    public var startWriteback: Bool

    public init(
        sourcePath: String, routesFile: String, profileFile: String? = nil, keyFile: String? = nil, recipesDirectory: String? = nil,
        stagingPrefix: String, sopInstanceUIDOverride: String? = nil, startWriteback: Bool = false
    ) {
        self.sourcePath = sourcePath
        self.routesFile = routesFile
        self.profileFile = profileFile
        self.keyFile = keyFile
        self.recipesDirectory = recipesDirectory
        self.stagingPrefix = stagingPrefix
        self.sopInstanceUIDOverride = sopInstanceUIDOverride
        self.startWriteback = startWriteback
    }
}

extension ProcessRequest {
    /// The request as it crosses the sandbox pipe.
    public var encoded: [UInt8] { ProcessJob.encode(self) }

    /// Reads a request as it crossed the sandbox pipe.
    public init(encoded: [UInt8]) throws {
        self = try ProcessJob.decode(request: encoded)
    }
}

/// One output object the child wrote into the staging folder.
public struct StagedObject: Sendable, Hashable {
    public var role: ObjectRole
    /// The recipe, for tensors, sidecars and previews.
    public var recipe: String?
    public var path: String
    public var sha256: String
    public var size: Int64
}

/// What the child found: the de-identified instance and its staged objects, or a typed failure with its stage.
public struct ProcessResult: Sendable, Hashable {
    /// Set when the file cannot go through; `instance` and `objects` are then empty.
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
    /// The de-identified instance (with a profile in the request); its `objects` are filled in by the store.
    public var instance: IngestedInstance?
    /// The objects written to the staging folder.
    public var objects: [StagedObject]
    /// The keyed UID this instance takes when its own is catalogued with other content (policy `keep_both`).
    public var alternateSOPInstanceUID: String?

    public init(
        failure: PipelineFailure? = nil, modality: String? = nil, bodyPart: String? = nil, transferSyntaxUID: String? = nil,
        routes: [String] = [], hasPixelData: Bool = false, instance: IngestedInstance? = nil, objects: [StagedObject] = [],
        alternateSOPInstanceUID: String? = nil
    ) {
        self.failure = failure
        self.modality = modality
        self.bodyPart = bodyPart
        self.transferSyntaxUID = transferSyntaxUID
        self.routes = routes
        self.hasPixelData = hasPixelData
        self.instance = instance
        self.objects = objects
        self.alternateSOPInstanceUID = alternateSOPInstanceUID
    }
}

/// The "process" job: its name in `PipelineAssembly.sandboxJobs`, the handler run in the child and the
/// daemon-side calls.
public enum ProcessJob {
    /// The job's kind on the sandbox wire.
    public static let kind = "process"

    /// The child's handler: decodes a `ProcessRequest`, returns an encoded `ProcessResult`.
    public static let handler: SandboxWorker.Handler = { payload in
        let request: ProcessRequest
        do { request = try decode(request: payload) } catch {
            throw PipelineFailure(stage: .sandbox, code: .badRequest)
        }
        return encode(run(request))
    }

    static func failed(_ stage: PipelineStage, _ error: some CodedError) -> ProcessResult {
        ProcessResult(failure: PipelineFailure(stage: stage, error: error))
    }

    static func failed(_ stage: PipelineStage, _ code: PipelineFailure.Code) -> ProcessResult {
        ProcessResult(failure: PipelineFailure(stage: stage, code: code))
    }

    /// Runs the job in this process (the child calls it; tests may too). A failed job leaves no staged file behind.
    public static func run(_ request: ProcessRequest) -> ProcessResult {
        let result = produce(request)
        if result.failure != nil {
            for role in ObjectRole.allCases {
                for recipe in [nil] + (((try? ChildCache.shared.routes(path: request.routesFile))?.routes.map(\.recipe)) ?? []) {
                    unlink(stagingPath(request.stagingPrefix, role, recipe))
                }
            }
        }
        return result
    }

    private static func produce(_ request: ProcessRequest) -> ProcessResult {
        let routes: SeriesRoutes
        do { routes = try ChildCache.shared.routes(path: request.routesFile) } catch let error as RoutesError {
            return failed(.sandbox, error)
        } catch {
            return failed(.sandbox, RoutesError(.unreadable))
        }
        let file: DicomFile
        do { file = try DicomFile.open(path: request.sourcePath) } catch let error as DicomError {
            return failed(.parse, error)
        } catch {
            return failed(.parse, DicomError(.parseError))
        }
        let dataset = file.dataset
        guard let sop = nonEmpty(dataset.string(.sopInstanceUID)), let series = nonEmpty(dataset.string(.seriesInstanceUID)),
            let study = nonEmpty(dataset.string(.studyInstanceUID))
        else { return failed(.parse, .missingInstanceUIDs) }
        let modality = nonEmpty(dataset.string(.modality))
        let bodyPart = nonEmpty(dataset.string(.bodyPartExamined))
        let taken = routes.routes(modality: modality, bodyPart: bodyPart)
        var result = ProcessResult(
            modality: modality, bodyPart: bodyPart, transferSyntaxUID: file.transferSyntaxUID, routes: taken.map(\.name),
            hasPixelData: dataset.contains(.pixelData))
        guard let profileFile = request.profileFile else { return result }
        guard result.hasPixelData else { return failed(.parse, DicomError(.noPixelData)) }

        // De-identify in place.
        let deidentifier: Deidentifier
        do { deidentifier = try ChildCache.shared.deidentifier(profile: profileFile, keyFile: request.keyFile) } catch let error as DeidentificationError {
            return failed(.deidentify, error)
        } catch {
            return failed(.deidentify, DeidentificationError(.invalidProfile))
        }
        let originals = OriginalIdentifiers(
            patientID: dataset.string(.patientID) ?? "", patientName: nonEmpty(dataset.string(.patientName)),
            birthDate: nonEmpty(dataset.string(.patientBirthDate)), studyUID: study, accessionNumber: nonEmpty(dataset.string(.accessionNumber)),
            seriesUID: series, sopInstanceUID: sop)
        let deidentified: DeidentificationResult
        do { deidentified = try deidentifier.deidentify(file) } catch let error as DeidentificationError {
            return failed(.deidentify, error)
        } catch let error as DicomError {
            return failed(.deidentify, error)
        } catch {
            return failed(.deidentify, .deidentifyError)
        }
        guard var pseudoSOP = nonEmpty(dataset.string(.sopInstanceUID)), let pseudoSeries = nonEmpty(dataset.string(.seriesInstanceUID)),
            let pseudoStudy = nonEmpty(dataset.string(.studyInstanceUID)), let pseudoPatient = nonEmpty(dataset.string(.patientID))
        else { return failed(.deidentify, .missingPseudonyms) }

        let sopClass = nonEmpty(dataset.string(.sopClassUID))
        var conflicted: String?
        let ownSOP = pseudoSOP
        if let override = request.sopInstanceUIDOverride {
            do { try dataset.set(.sopInstanceUID, string: override) } catch { return failed(.deidentify, .uidOverrideFailed) }
            conflicted = pseudoSOP
            pseudoSOP = override
        }

        // Output objects, written once into the staging folder.
        func stage(_ role: ObjectRole, _ recipe: String?, _ bytes: [UInt8]) throws {
            let path = stagingPath(request.stagingPrefix, role, recipe)
            guard writeFile(path, bytes, startWriteback: request.startWriteback) else { throw PipelineFailure(stage: .store, code: .scratchUnwritable) }
            result.objects.append(StagedObject(role: role, recipe: recipe, path: path, sha256: hex(SHA256.hash(data: bytes)), size: Int64(bytes.count)))
        }
        do {
            let path = stagingPath(request.stagingPrefix, .file, nil)
            try file.write(to: path, transferSyntax: deidentified.requiredTransferSyntax)
            guard let digest = digestOfFile(path, startWriteback: request.startWriteback) else { return failed(.store, .scratchUnwritable) }
            result.objects.append(StagedObject(role: .file, recipe: nil, path: path, sha256: digest.sha256, size: digest.size))
        } catch let error as DicomError {
            return failed(.deidentify, error)
        } catch {
            return failed(.deidentify, DicomError(.encodeFailed))
        }

        // The content: the decoded pixel values and the identifying attributes, pseudonymous (the SOP Instance UID
        // itself left out: it is what two conflicting files share). Native pixel data is hashed as held (it is the
        // decoded values); encapsulated data is decoded once, here, and the decode serves normalisation too.
        var content = SHA256()
        for part in [pseudoPatient, pseudoStudy, pseudoSeries, sopClass ?? ""] {
            content.update(data: Array(part.utf8))
            content.update(data: [0])
        }
        var decoded: PixelData?
        if dataset.element(.pixelData)?.isEncapsulated == true { decoded = try? file.decodePixels() }
        if let decoded {
            decoded.bytes.withUnsafeBytes { content.update(bufferPointer: $0) }
        } else {
            dataset.forEachStoredPixelChunk { content.update(bufferPointer: $0) }
        }
        let contentHash = hex(content.finalize())
        result.alternateSOPInstanceUID = deidentifier.keyedUID(kind: "uid-conflict", ownSOP + "/" + contentHash)

        // Normalise once per distinct recipe of the routes taken.
        for recipeName in routes.recipes(modality: modality, bodyPart: bodyPart) {
            do {
                let normalizer = try ChildCache.shared.normalizer(recipe: recipeName, directory: request.recipesDirectory)
                let tensors = try normalizer.normalize(
                    file, pixels: decoded, identifiers: ["sop_instance_uid": pseudoSOP, "series_uid": pseudoSeries])
                guard let tensor = tensors.first else { return failed(.normalize, .noFrames) }
                try stage(.tensor, recipeName, NPYWriter.encode(tensor))
                try stage(.sidecar, recipeName, Array(try tensor.metadata.sidecarJSON()))
                try stage(.preview, recipeName, try PNGWriter.preview(tensor))
            } catch let failure as PipelineFailure {
                return ProcessResult(failure: failure)
            } catch let error as NormalizationError {
                return failed(.normalize, error)
            } catch let error as DicomError {
                return failed(.normalize, error)
            } catch {
                return failed(.normalize, .normalizeError)
            }
        }

        let spacing = dataset.doubles(.pixelSpacing)
        let age = nonEmpty(dataset.string(.patientAge)).flatMap { text -> Int? in
            guard text.hasSuffix("Y") else { return text.isEmpty ? nil : 0 }
            return Int(text.dropLast())
        }
        let metadata = InstanceMetadata(
            patientID: pseudoPatient, studyUID: pseudoStudy, seriesUID: pseudoSeries, sopInstanceUID: pseudoSOP,
            sopClassUID: sopClass, instanceNumber: dataset.integer(.instanceNumber), seriesNumber: dataset.integer(.seriesNumber),
            modality: modality, bodyPart: bodyPart, sex: nonEmpty(dataset.string(.patientSex)), ageYears: age,
            studyDate: validDate(dataset.string(.studyDate)), studyDescription: nonEmpty(dataset.string(.studyDescription)),
            seriesDescription: nonEmpty(dataset.string(.seriesDescription)), manufacturer: nonEmpty(dataset.string(.manufacturer)),
            rows: dataset.integer(.rows), columns: dataset.integer(.columns), pixelSpacing: spacing.count == 2 ? spacing : nil,
            sliceThickness: dataset.double(.sliceThickness), numberOfFrames: dataset.integer(.numberOfFrames) ?? 1,
            transferSyntaxUID: deidentified.requiredTransferSyntax ?? file.transferSyntaxUID)
        result.instance = IngestedInstance(
            metadata: metadata, originals: originals,
            headerJSON: DicomJSON.encode(dataset, bulkDataLimit: 1024, skip: { $0 == .pixelData }), contentSHA256: contentHash,
            objects: [], conflictedSOPInstanceUID: conflicted, pixelText: deidentified.pixelText.map { PixelTextAuditRecord($0, sopInstanceUID: pseudoSOP) })
        return result
    }

    /// The daemon's side for one file: runs the job in the pool. Typed failures come back in the result; a
    /// crashed or timed-out child becomes a `sandbox` failure with the pool's reason.
    public static func run(_ request: ProcessRequest, in pool: SandboxPool) async throws -> ProcessResult {
        for await (_, result) in run([request], in: pool) {
            if case .failure(let error) = result {
                if error.code == .shutDown { throw error }   // transient: the file is taken again after restart
                return ProcessResult(failure: PipelineFailure(stage: .sandbox, error: error))
            }
            return try result.get()
        }
        throw SandboxError(.shutDown)
    }

    /// The daemon's side for a batch: results stream back as each file ends, with their index in `requests`.
    /// A file whose child was lost (crash, timeout) or that the pool could not run answers a `SandboxError`;
    /// a result the daemon cannot read answers `protocol_error`.
    public static func run(_ requests: [ProcessRequest], in pool: SandboxPool) -> AsyncStream<(Int, Result<ProcessResult, SandboxError>)> {
        let answers = pool.run(kind: kind, payloads: requests.map(encode))
        return AsyncStream { continuation in
            let task = Task {
                for await answer in answers {
                    switch answer.result {
                    case .success(let bytes):
                        if let result = try? decode(result: bytes) {
                            continuation.yield((answer.index, .success(result)))
                        } else {
                            continuation.yield((answer.index, .failure(SandboxError(.protocolError))))
                        }
                    case .failure(let error):
                        continuation.yield((answer.index, .failure(error)))
                    }
                }
                continuation.finish()
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    static func stagingPath(_ prefix: String, _ role: ObjectRole, _ recipe: String?) -> String {
        prefix + (recipe.map { "." + $0 } ?? "") + "." + role.fileExtension
    }
}

// MARK: Wire encoding of requests and results

extension ProcessJob {
    static func encode(_ request: ProcessRequest) -> [UInt8] {
        var w = WireWriter()
        w.string(request.sourcePath)
        w.string(request.routesFile)
        w.string(request.profileFile)
        w.string(request.keyFile)
        w.string(request.recipesDirectory)
        w.string(request.stagingPrefix)
        w.string(request.sopInstanceUIDOverride)
        w.bool(request.startWriteback)
        return w.bytes
    }

    static func decode(request bytes: [UInt8]) throws -> ProcessRequest {
        var r = WireReader(bytes)
        let request = ProcessRequest(
            sourcePath: try r.string(), routesFile: try r.string(), profileFile: try r.optionalString(), keyFile: try r.optionalString(),
            recipesDirectory: try r.optionalString(), stagingPrefix: try r.string(), sopInstanceUIDOverride: try r.optionalString(),
            startWriteback: try r.bool())
        guard r.isAtEnd else { throw WireReader.Malformed() }
        return request
    }

    static func encode(_ result: ProcessResult) -> [UInt8] {
        var w = WireWriter(capacity: 4096 + (result.instance?.headerJSON.utf8.count ?? 0))
        w.optional(result.failure) { w, failure in
            w.string(failure.stage.rawValue)
            w.string(failure.reason)
        }
        w.string(result.modality)
        w.string(result.bodyPart)
        w.string(result.transferSyntaxUID)
        w.array(result.routes) { $0.string($1) }
        w.bool(result.hasPixelData)
        w.optional(result.instance) { w, instance in
            let m = instance.metadata
            for text in [m.patientID, m.studyUID, m.seriesUID, m.sopInstanceUID] { w.string(text) }
            for text in [m.sopClassUID, m.modality, m.bodyPart, m.sex, m.studyDate, m.studyDescription, m.seriesDescription, m.manufacturer,
                         m.transferSyntaxUID] { w.string(text) }
            for number in [m.instanceNumber, m.seriesNumber, m.ageYears, m.rows, m.columns, m.numberOfFrames] { w.int(number) }
            w.optional(m.pixelSpacing) { w, spacing in w.array(spacing) { $0.double($1) } }
            w.double(m.sliceThickness)
            let o = instance.originals
            w.string(o.patientID)
            w.string(o.patientName)
            w.string(o.birthDate)
            w.string(o.studyUID)
            w.string(o.accessionNumber)
            w.string(o.seriesUID)
            w.string(o.sopInstanceUID)
            w.string(instance.headerJSON)
            w.string(instance.contentSHA256)
            w.string(instance.conflictedSOPInstanceUID)
            w.optional(instance.pixelText) { w, audit in
                for text in [audit.action, audit.outcome, audit.engine] { w.string(text) }
                w.string(audit.unreadableReason)
                w.int(audit.framesChecked)
                w.int(audit.wordsRead)
                w.array(audit.boxes) { w, box in
                    for number in [box.frame, box.x, box.y, box.width, box.height] { w.int(number) }
                    w.string(box.category)
                }
            }
        }
        w.array(result.objects) { w, object in
            w.int(Int(object.role.rawValue))
            w.string(object.recipe)
            w.string(object.path)
            w.string(object.sha256)
            w.int(Int(object.size))
        }
        w.string(result.alternateSOPInstanceUID)
        return w.bytes
    }

    static func decode(result bytes: [UInt8]) throws -> ProcessResult {
        var r = WireReader(bytes)
        var result = ProcessResult()
        result.failure = try r.optional { r in PipelineFailure(stage: PipelineStage(try r.string()), reason: try r.string()) }
        result.modality = try r.optionalString()
        result.bodyPart = try r.optionalString()
        result.transferSyntaxUID = try r.optionalString()
        result.routes = try r.array { try $0.string() }
        result.hasPixelData = try r.bool()
        result.instance = try r.optional { r in
            var m = InstanceMetadata(patientID: try r.string(), studyUID: try r.string(), seriesUID: try r.string(), sopInstanceUID: try r.string())
            m.sopClassUID = try r.optionalString()
            m.modality = try r.optionalString()
            m.bodyPart = try r.optionalString()
            m.sex = try r.optionalString()
            m.studyDate = try r.optionalString()
            m.studyDescription = try r.optionalString()
            m.seriesDescription = try r.optionalString()
            m.manufacturer = try r.optionalString()
            m.transferSyntaxUID = try r.optionalString()
            m.instanceNumber = try r.optionalInt()
            m.seriesNumber = try r.optionalInt()
            m.ageYears = try r.optionalInt()
            m.rows = try r.optionalInt()
            m.columns = try r.optionalInt()
            m.numberOfFrames = try r.optionalInt()
            m.pixelSpacing = try r.optional { r in try r.array { try $0.double() } }
            m.sliceThickness = try r.optionalDouble()
            let originals = OriginalIdentifiers(
                patientID: try r.string(), patientName: try r.optionalString(), birthDate: try r.optionalString(), studyUID: try r.string(),
                accessionNumber: try r.optionalString(), seriesUID: try r.string(), sopInstanceUID: try r.string())
            let headerJSON = try r.string(), contentSHA256 = try r.string(), conflicted = try r.optionalString()
            let pixelText = try r.optional { r in
                let action = try r.string(), outcome = try r.string(), engine = try r.string(), reason = try r.optionalString()
                return PixelTextAuditRecord(
                    sopInstanceUID: m.sopInstanceUID, action: action, outcome: outcome, unreadableReason: reason, framesChecked: try r.int(),
                    wordsRead: try r.int(),
                    boxes: try r.array { r in
                        PixelTextBoxRecord(frame: try r.int(), x: try r.int(), y: try r.int(), width: try r.int(), height: try r.int(), category: try r.string())
                    }, engine: engine)
            }
            return IngestedInstance(
                metadata: m, originals: originals, headerJSON: headerJSON, contentSHA256: contentSHA256, objects: [],
                conflictedSOPInstanceUID: conflicted, pixelText: pixelText)
        }
        result.objects = try r.array { r in
            guard let role = ObjectRole(rawValue: UInt8(clamping: try r.int())) else { throw WireReader.Malformed() }
            return StagedObject(role: role, recipe: try r.optionalString(), path: try r.string(), sha256: try r.string(), size: Int64(try r.int()))
        }
        result.alternateSOPInstanceUID = try r.optionalString()
        guard r.isAtEnd else { throw WireReader.Malformed() }
        return result
    }
}

// MARK: Helpers of the child

extension PixelTextAuditRecord {
    /// The catalogue's record of what OCR found and blanked (categories and boxes, never the text).
    init(_ audit: PixelTextAudit, sopInstanceUID: String) {
        self.init(
            sopInstanceUID: sopInstanceUID, action: audit.action.rawValue, outcome: audit.outcome.rawValue, unreadableReason: audit.unreadableReason,
            framesChecked: audit.framesChecked, wordsRead: audit.wordsRead,
            boxes: audit.boxes.map { PixelTextBoxRecord(frame: $0.frame, x: $0.x, y: $0.y, width: $0.width, height: $0.height, category: $0.category.rawValue) },
            engine: audit.engine)
    }
}

private func nonEmpty(_ text: String?) -> String? {
    guard let text, !text.isEmpty else { return nil }
    return text
}

/// Lower-case hex of a digest.
func hex(_ digest: some Sequence<UInt8>) -> String {
    let table = Array("0123456789abcdef".utf8)
    var out = [UInt8]()
    out.reserveCapacity(64)
    for byte in digest {
        out.append(table[Int(byte >> 4)])
        out.append(table[Int(byte & 0x0f)])
    }
    return String(decoding: out, as: UTF8.self)
}

/// Writes `bytes` to a new (or truncated) file; no rename, no fsync (the daemon syncs the batch), its writeback
/// started when asked.
private func writeFile(_ path: String, _ bytes: [UInt8], startWriteback: Bool) -> Bool {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { return false }
    defer {
        if startWriteback { _ = sync_file_range(fd, 0, 0, UInt32(DICOM_ETL_SYNC_FILE_RANGE_WRITE)) }
        close(fd)
    }
    return writeAll(fd, bytes)
}

/// SHA-256 and size of a file just written (read back from the page cache), its writeback started first when
/// asked (the disk writes while the digest is computed).
private func digestOfFile(_ path: String, startWriteback: Bool) -> (sha256: String, size: Int64)? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    if startWriteback { _ = sync_file_range(fd, 0, 0, UInt32(DICOM_ETL_SYNC_FILE_RANGE_WRITE)) }
    var hasher = SHA256()
    var total: Int64 = 0
    var buffer = [UInt8](repeating: 0, count: 256 * 1024)
    while true {
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if count < 0 {
            if errno == EINTR { continue }
            return nil
        }
        if count == 0 { break }
        buffer.withUnsafeBytes { hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
        total += Int64(count)
    }
    return (hex(hasher.finalize()), total)
}

/// A DA value as `YYYYMMDD` when it is a plausible date, else nil (the catalogue's column is a date).
func validDate(_ text: String?) -> String? {
    guard let text else { return nil }
    let bytes = Array(text.utf8)
    guard bytes.count == 8, bytes.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
    func number(_ range: Range<Int>) -> Int { bytes[range].reduce(0) { $0 * 10 + Int($1 - 0x30) } }
    let year = number(0..<4), month = number(4..<6), day = number(6..<8)
    guard year >= 1, (1...12).contains(month), day >= 1 else { return nil }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
    let days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]
    return day <= days ? text : nil
}

/// What a child loads once and reuses across jobs: routes, de-identifiers, normalisers, by path.
final class ChildCache: Sendable {
    static let shared = ChildCache()
    private struct Loaded {
        var routes: [String: SeriesRoutes] = [:]
        var deidentifiers: [String: Deidentifier] = [:]
        var normalizers: [String: Normalizer] = [:]
    }
    private let loaded = Mutex(Loaded())

    func routes(path: String) throws -> SeriesRoutes {
        try loaded.withLock { loaded in
            if let cached = loaded.routes[path] { return cached }
            let routes = try SeriesRoutes.load(path: path)
            loaded.routes[path] = routes
            return routes
        }
    }

    func deidentifier(profile: String, keyFile: String?) throws -> Deidentifier {
        let cacheKey = profile + "\u{0}" + (keyFile ?? "")
        return try loaded.withLock { loaded in
            if let cached = loaded.deidentifiers[cacheKey] { return cached }
            let key = try keyFile.map { try PseudonymKey(contentsOfFile: $0) } ?? PseudonymKey.fromEnvironment(ProcessInfo.processInfo.environment)
            let made = Deidentifier(profile: try DeidentificationProfile.load(path: profile), key: key)
            loaded.deidentifiers[cacheKey] = made
            return made
        }
    }

    func normalizer(recipe: String, directory: String?) throws -> Normalizer {
        let cacheKey = recipe + "\u{0}" + (directory ?? "")
        return try loaded.withLock { loaded in
            if let cached = loaded.normalizers[cacheKey] { return cached }
            let made = Normalizer(recipe: try Recipe.load(name: recipe, directory: directory ?? Recipe.defaultDirectory))
            loaded.normalizers[cacheKey] = made
            return made
        }
    }
}
