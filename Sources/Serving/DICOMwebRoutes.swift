// DICOMwebRoutes: QIDO-RS and WADO-RS (PS3.18) over the de-identified archive, plus the stacked tensors of a
// series. Readers: `analyst` and `clinician` tokens; every read runs as the database role `analyst`, so nothing
// here can reach an original identifier.
//
// Transfer syntaxes: an instance comes as stored unless the Accept header asks for Explicit VR Little Endian
// (1.2.840.10008.1.2.1), which is transcoded; frames come decoded (application/octet-stream, native little
// endian) unless the Accept header names `transfer-syntax=*` or the stored bitstream's own media type.
import Catalog
import DICOM
import Foundation
import Hummingbird
import HummingbirdCore
import ObjectStorage

struct DICOMwebRoutes: ServerRoutes {
    static let readers: Set<Role> = [.analyst, .clinician]

    func register(on router: Router<ServerContext>, services: ArchiveServices) {
        let web = DICOMweb(services: services)
        let readers = Self.readers
        // QIDO-RS
        router.get("/studies") { request, context in
            _ = try context.require(readers)
            return try await web.searchStudies(request, study: nil)
        }
        router.get("/studies/:study/series") { request, context in
            _ = try context.require(readers)
            return try await web.searchSeries(request, study: try uid(context, "study"))
        }
        router.get("/series") { request, context in
            _ = try context.require(readers)
            return try await web.searchSeries(request, study: nil)
        }
        router.get("/studies/:study/series/:series/instances") { request, context in
            _ = try context.require(readers)
            return try await web.searchInstances(request, study: try uid(context, "study"), series: try uid(context, "series"))
        }
        router.get("/studies/:study/instances") { request, context in
            _ = try context.require(readers)
            return try await web.searchInstances(request, study: try uid(context, "study"), series: nil)
        }
        router.get("/instances") { request, context in
            _ = try context.require(readers)
            return try await web.searchInstances(request, study: nil, series: nil)
        }
        // WADO-RS
        router.get("/studies/:study") { request, context in
            _ = try context.require(readers)
            return try await web.retrieve(request, study: try uid(context, "study"), series: nil, instance: nil)
        }
        router.get("/studies/:study/metadata") { _, context in
            _ = try context.require(readers)
            return try await web.metadata(study: try uid(context, "study"), series: nil, instance: nil)
        }
        router.get("/studies/:study/series/:series") { request, context in
            _ = try context.require(readers)
            return try await web.retrieve(request, study: try uid(context, "study"), series: try uid(context, "series"), instance: nil)
        }
        router.get("/studies/:study/series/:series/metadata") { _, context in
            _ = try context.require(readers)
            return try await web.metadata(study: try uid(context, "study"), series: try uid(context, "series"), instance: nil)
        }
        router.get("/studies/:study/series/:series/instances/:instance") { request, context in
            _ = try context.require(readers)
            return try await web.retrieve(
                request, study: try uid(context, "study"), series: try uid(context, "series"), instance: try uid(context, "instance"))
        }
        router.get("/studies/:study/series/:series/instances/:instance/metadata") { _, context in
            _ = try context.require(readers)
            return try await web.metadata(study: try uid(context, "study"), series: try uid(context, "series"), instance: try uid(context, "instance"))
        }
        router.get("/studies/:study/series/:series/instances/:instance/frames/:frames") { request, context in
            _ = try context.require(readers)
            return try await web.frames(
                request, instance: try instancePath(context), frames: try frameList(context.parameters.get("frames")))
        }
        router.get("/studies/:study/series/:series/instances/:instance/rendered") { request, context in
            _ = try context.require(readers)
            return try await web.rendered(request, instance: try instancePath(context), frame: 1)
        }
        router.get("/studies/:study/series/:series/instances/:instance/frames/:frames/rendered") { request, context in
            _ = try context.require(readers)
            let frames = try frameList(context.parameters.get("frames"))
            guard frames.count == 1 else { throw ServingError.badRequest("frames") }
            return try await web.rendered(request, instance: try instancePath(context), frame: frames[0])
        }
        router.get("/studies/:study/series/:series/tensors") { request, context in
            _ = try context.require(readers)
            return try await web.tensors(
                study: try uid(context, "study"), series: try uid(context, "series"),
                recipe: request.uri.queryParameters.get("recipe"))
        }
    }
}

/// A UID from the path: digits and dots, at most 64 characters.
func uid(_ context: ServerContext, _ name: String) throws(ServingError) -> String {
    guard let value = context.parameters.get(name), !value.isEmpty, value.count <= 64, value.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") })
    else { throw .badRequest(name) }
    return value
}

private func instancePath(_ context: ServerContext) throws(ServingError) -> (study: String, series: String, instance: String) {
    (try uid(context, "study"), try uid(context, "series"), try uid(context, "instance"))
}

/// `1,3,5`: frame numbers, 1-based.
private func frameList(_ text: String?) throws(ServingError) -> [Int] {
    guard let text else { throw .badRequest("frames") }
    let numbers = text.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
    guard !numbers.isEmpty, numbers.count <= 4096, numbers.allSatisfy({ ($0 ?? 0) >= 1 }) else { throw .badRequest("frames") }
    return numbers.map { $0! }
}

/// The handlers, over the catalogue and the store.
struct DICOMweb: Sendable {
    let services: ArchiveServices
    var catalog: Catalog { services.catalog }
    static let dicomJSON = "application/dicom+json"
    static let explicitLittleEndian = TransferSyntax.explicitVRLittleEndian

    // MARK: QIDO-RS

    func searchStudies(_ request: Request, study: String?) async throws -> Response {
        let query = try QIDORequest(query: request.uri.queryParameters, level: .study, studyUID: study, seriesUID: nil)
        let studies = try await catalog.searchStudies(query.search)
        let objects = studies.map { found in
            DicomJSONText.merging(found.headerJSON, [
                DicomJSONText.strings(.modalitiesInStudy, vr: .CS, found.modalities),
                DicomJSONText.integer(.numberOfStudyRelatedSeries, found.seriesCount),
                DicomJSONText.integer(.numberOfStudyRelatedInstances, found.instanceCount),
            ])
        }
        return json(objects)
    }

    func searchSeries(_ request: Request, study: String?) async throws -> Response {
        let query = try QIDORequest(query: request.uri.queryParameters, level: .series, studyUID: study, seriesUID: nil)
        let series = try await catalog.searchSeries(query.search)
        return json(series.map { DicomJSONText.merging($0.headerJSON, [DicomJSONText.integer(.numberOfSeriesRelatedInstances, $0.instanceCount)]) })
    }

    func searchInstances(_ request: Request, study: String?, series: String?) async throws -> Response {
        let query = try QIDORequest(query: request.uri.queryParameters, level: .instance, studyUID: study, seriesUID: series)
        let instances = try await catalog.searchInstances(query.search)
        return json(instances.map(\.headerJSON))
    }

    private func json(_ objects: [String]) -> Response {
        Response(status: .ok, headers: [.contentType: Self.dicomJSON], body: .init(byteBuffer: DicomJSONText.array(objects)))
    }

    // MARK: WADO-RS

    /// The instances under a study, series or one instance (404 when none).
    private func instances(study: String, series: String?, instance: String?, header: Bool) async throws -> [ArchiveInstance] {
        let search = ArchiveSearch(studyUID: study, seriesUID: series, attributes: header ? nil : [], limit: 10_000)
        let found = try await catalog.searchInstances(search, sopInstanceUID: instance)
        guard !found.isEmpty else { throw ServingError.notFound }
        return found
    }

    func metadata(study: String, series: String?, instance: String?) async throws -> Response {
        let found = try await instances(study: study, series: series, instance: instance, header: true)
        return json(found.map { item in
            DicomJSONText.merging(item.headerJSON, item.transferSyntaxUID.map { [DicomJSONText.strings(.availableTransferSyntaxUID, vr: .UI, [$0])] } ?? [])
        })
    }

    /// Instances as `multipart/related; type="application/dicom"`, one part each, streamed.
    func retrieve(_ request: Request, study: String, series: String?, instance: String?) async throws -> Response {
        let wanted = try Self.instanceSyntax(MediaRange.parse(request.headers[.accept]))
        let found = try await instances(study: study, series: series, instance: instance, header: false)
        let store = services.store
        let multipart = MultipartWriter()
        let headers: HTTPFields = [.contentType: multipart.contentType(partType: "application/dicom")]
        if found.count == 1 {
            // One instance: prepared before the answer starts, so a failure is still a proper error.
            let part = try await Self.instancePart(found[0], wanted: wanted, store: store)
            return Response(status: .ok, headers: headers, body: multipart.body([part]))
        }
        let body = ResponseBody { writer in
            for (index, item) in found.enumerated() {
                let part = try await Self.instancePart(item, wanted: wanted, store: store)
                if index > 0 { try await writer.write(multipart.separator) }
                try await writer.write(multipart.partHeader(contentType: part.contentType))
                try await writer.write(ByteBuffer(bytes: part.bytes))
            }
            try await writer.write(multipart.closing)
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: headers, body: body)
    }

    /// The transfer syntax asked for instances: nil for as stored.
    static func instanceSyntax(_ ranges: [MediaRange]) throws(ServingError) -> String? {
        for range in ranges {
            let acceptable = range.type == "*/*" || range.type == "application/dicom"
                || (range.type == "multipart/related" && (range.partType == nil || range.partType == "application/dicom"))
            guard acceptable else { continue }
            switch range.transferSyntax {
            case nil, "*": return nil
            case let syntax?: return syntax
            }
        }
        throw .notAcceptable
    }

    static func instancePart(_ item: ArchiveInstance, wanted: String?, store: any ObjectStore) async throws -> (contentType: String, bytes: [UInt8]) {
        guard let key = item.fileKey else { throw ServingError.notFound }
        let bytes = [UInt8](try await store.get(key))
        let stored = item.transferSyntaxUID ?? explicitLittleEndian
        guard let wanted, wanted != stored else { return ("application/dicom; transfer-syntax=\(stored)", bytes) }
        guard wanted == explicitLittleEndian else { throw ServingError.notAcceptable }
        do {
            let file = try DicomFile.open(bytes: bytes)
            if file.hasEncapsulatedPixelData { _ = try file.decodePixels() }
            return ("application/dicom; transfer-syntax=\(wanted)", try file.serialized(transferSyntax: wanted))
        } catch {
            throw ServingError.unprocessable("cannot_transcode")
        }
    }

    /// One instance's object, opened.
    private func open(_ path: (study: String, series: String, instance: String)) async throws -> (ArchiveInstance, DicomFile) {
        let found = try await instances(study: path.study, series: path.series, instance: path.instance, header: false)
        guard let key = found[0].fileKey else { throw ServingError.notFound }
        let bytes = [UInt8](try await services.store.get(key))
        do { return (found[0], try DicomFile.open(bytes: bytes)) } catch { throw ServingError.unprocessable("object_unreadable") }
    }

    /// Frames as `multipart/related`: decoded (`application/octet-stream`, native little endian) or as stored.
    func frames(_ request: Request, instance path: (study: String, series: String, instance: String), frames: [Int]) async throws -> Response {
        let ranges = MediaRange.parse(request.headers[.accept])
        let (item, file) = try await open(path)
        let stored = item.transferSyntaxUID ?? file.transferSyntaxUID
        let storedType = frameMediaType(transferSyntax: stored)
        // As stored when asked for any syntax, for the stored syntax, or for the stored bitstream's media type.
        var asStored: Bool?
        for range in ranges {
            let part = range.type == "multipart/related" ? (range.partType ?? "application/octet-stream") : range.type
            if range.type == "*/*" || part == "*/*" { asStored = range.transferSyntax == "*"; break }
            if part == "application/octet-stream" {
                if range.transferSyntax == "*" || (range.transferSyntax == stored && storedType == "application/octet-stream") { asStored = true; break }
                if range.transferSyntax == nil || range.transferSyntax == Self.explicitLittleEndian { asStored = false; break }
                continue
            }
            if part == storedType && (range.transferSyntax == nil || range.transferSyntax == "*" || range.transferSyntax == stored) {
                asStored = true
                break
            }
        }
        guard let asStored else { throw ServingError.notAcceptable }
        let count = max(item.numberOfFrames ?? 1, 1)
        guard frames.allSatisfy({ $0 <= count }) else { throw ServingError.notFound }
        var parts: [(contentType: String, bytes: [UInt8])] = []
        if asStored, file.hasEncapsulatedPixelData {
            for number in frames {
                let bytes: [UInt8]?
                do { bytes = try file.encapsulatedFrame(number - 1) } catch { throw ServingError.unprocessable("frame_unreadable") }
                guard let bytes else { break }
                parts.append(("\(storedType); transfer-syntax=\(stored)", bytes))
            }
        }
        if parts.isEmpty {
            let pixels: PixelData
            do { pixels = try file.decodePixels() } catch let error as DicomError { throw ServingError.unprocessable(error.reason) }
            guard frames.allSatisfy({ $0 <= pixels.frameCount }) else { throw ServingError.notFound }
            let planar = !file.hasEncapsulatedPixelData && pixels.samplesPerPixel > 1 && file.dataset.integer(.planarConfiguration) == 1
            for number in frames {
                parts.append(("application/octet-stream; transfer-syntax=\(Self.explicitLittleEndian)",
                              NativeFrame.bytes(pixels.frame(number - 1), planar: planar)))
            }
        }
        let multipart = MultipartWriter()
        let partType = parts.first.map { String($0.contentType.prefix { $0 != ";" }) } ?? "application/octet-stream"
        return Response(status: .ok, headers: [.contentType: multipart.contentType(partType: partType)], body: multipart.body(parts))
    }

    /// A frame rendered for display: `image/jpeg` (default) or `image/png`; `quality` 1–100 for JPEG.
    func rendered(_ request: Request, instance path: (study: String, series: String, instance: String), frame: Int) async throws -> Response {
        var format: RenderedFrame.Format?
        let quality = request.uri.queryParameters.get("quality").flatMap(Int.init) ?? 90
        guard (1...100).contains(quality) else { throw ServingError.badRequest("quality") }
        for range in MediaRange.parse(request.headers[.accept]) {
            switch range.type {
            case "image/png": format = .png
            case "image/jpeg", "image/*", "*/*": format = .jpeg(quality: quality)
            default: continue
            }
            break
        }
        guard let format else { throw ServingError.notAcceptable }
        let (_, file) = try await open(path)
        let pixels: PixelData
        do { pixels = try file.decodePixels() } catch let error as DicomError { throw ServingError.unprocessable(error.reason) }
        let image = try FrameRenderer.render(pixels, frame: frame - 1, dataset: file.dataset)
        let bytes: [UInt8]
        do { bytes = try image.encoded(format) } catch { throw ServingError.unprocessable("cannot_encode") }
        let type = if case .png = format { "image/png" } else { "image/jpeg" }
        return Response(status: .ok, headers: [.contentType: type], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    /// The series' tensors of one recipe stacked along a new first axis, in instance order (`.npy`).
    func tensors(study: String, series: String, recipe: String?) async throws -> Response {
        if let recipe, recipe.isEmpty || recipe.count > 64 || !recipe.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." }) {
            throw ServingError.badRequest("recipe")
        }
        let found = try await catalog.seriesTensors(studyUID: study, seriesUID: series, recipe: recipe)
        guard let chosen = found.first?.recipe else { throw ServingError.notFound }
        guard found.allSatisfy({ $0.recipe == chosen }) else { throw ServingError.badRequest("recipe") }
        var tensors: [[UInt8]] = []
        for tensor in found { tensors.append([UInt8](try await services.store.get(tensor.tensorKey))) }
        let stacked = try SeriesTensor.stack(tensors)
        return Response(status: .ok, headers: [
            .contentType: "application/x-npy", .contentDisposition: "attachment; filename=\"\(series).\(chosen).npy\"",
        ], body: .init(byteBuffer: ByteBuffer(bytes: stacked)))
    }
}

/// A decoded frame in the native (uncompressed) encoding: little endian, 1-bit samples packed, planar when the
/// stored object was.
enum NativeFrame {
    static func bytes(_ frame: Frame, planar: Bool) -> [UInt8] {
        if frame.bitsAllocated == 1 {
            var packed = [UInt8](repeating: 0, count: (frame.sampleCount + 7) / 8)
            for (i, value) in frame.bytes.enumerated() where value != 0 { packed[i / 8] |= 1 << (i % 8) }
            return packed
        }
        guard planar, frame.samplesPerPixel > 1 else { return Array(frame.bytes) }
        let pixels = frame.rows * frame.columns, size = frame.bytesPerSample, samples = frame.samplesPerPixel
        var out = [UInt8](repeating: 0, count: frame.bytes.count)
        let base = frame.bytes.startIndex
        for p in 0..<pixels {
            for s in 0..<samples {
                for b in 0..<size { out[(s * pixels + p) * size + b] = frame.bytes[base + (p * samples + s) * size + b] }
            }
        }
        return out
    }
}
