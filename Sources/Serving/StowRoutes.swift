// STOW-RS (PS3.18 §10.5): `POST /studies` and `POST /studies/{study}` with a multipart/related body of
// application/dicom parts, for tokens with the `uploader` role. Each part is a Part-10 file: it is written as
// received into the drop folder's network intake (the same durability rule as C-STORE: fsync'd and renamed
// before it is reported stored), and only its file meta header (group 0002) is read here, with bounds, to name
// the instance in the answer; the data set itself is parsed by the pipeline's sandbox children. The answer is
// DICOM JSON with ReferencedSOPSequence and FailedSOPSequence: 200 all stored, 202 some, 409 none; 503 while
// the pipeline reports an outage or the disk is short (nothing is stored then).
import DicomNetwork
import Foundation
import Hummingbird
import HummingbirdCore
import NIOCore

public struct StowRoutes: ServerRoutes {
    let intake: DurableIntake
    let metrics: NetworkMetrics

    public init(intake: DurableIntake, metrics: NetworkMetrics) {
        self.intake = intake
        self.metrics = metrics
    }

    public func register(on router: Router<ServerContext>, services: ArchiveServices) {
        let intake = self.intake, metrics = self.metrics
        router.post("/studies") { request, context in
            try await Self.store(request, context, study: nil, intake: intake, metrics: metrics)
        }
        router.post("/studies/:study") { request, context in
            try await Self.store(request, context, study: context.parameters.get("study"), intake: intake, metrics: metrics)
        }
    }

    /// Failure reasons of PS3.18 table 10.5.3-2 (Failure Reason, 0008,1197).
    enum FailureReason {
        static let processingFailure: UInt16 = 0x0110
        static let cannotUnderstand: UInt16 = 0xC000
        static let outOfResources: UInt16 = 0xA700
    }

    static func store(_ request: Request, _ context: ServerContext, study: String?, intake: DurableIntake, metrics: NetworkMetrics) async throws -> Response {
        let principal = try context.require([.uploader])
        guard let contentType = request.headers[.contentType], let boundary = multipartBoundary(contentType) else {
            throw ServingError.unsupportedMediaType
        }
        if let study, (try? StudyUID.validate(study)) == nil { throw ServingError.badRequest("study") }
        if let refusal = intake.refusal() {
            metrics.instance("stow", "out_of_resources")
            context.logger.notice("upload refused", metadata: ["reason": .string(refusal.reason)])
            throw ServingError.unavailable
        }
        let body = try await request.body.collect(upTo: context.maxUploadSize)
        let parts = try MultipartParser.parts(of: body, boundary: boundary)
        guard !parts.isEmpty else { throw ServingError.badRequest("body") }
        var referenced: [[String: Any]] = [], failed: [[String: Any]] = []
        let peer = context.peer ?? ""
        for part in parts {
            let meta = FileMeta.read(part.body)
            let classUID = meta?.sopClassUID ?? "", instanceUID = meta?.sopInstanceUID ?? ""
            func item(_ reason: UInt16?) -> [String: Any] {
                var entry: [String: Any] = [:]
                if !classUID.isEmpty { entry["00081150"] = ["vr": "UI", "Value": [classUID]] }
                if !instanceUID.isEmpty { entry["00081155"] = ["vr": "UI", "Value": [instanceUID]] }
                if let reason { entry["00081197"] = ["vr": "US", "Value": [Int(reason)]] }
                return entry
            }
            guard part.isDICOM, meta != nil, !instanceUID.isEmpty else {
                metrics.instance("stow", "refused")
                failed.append(item(FailureReason.cannotUnderstand))
                continue
            }
            metrics.bytes("stow", part.body.readableBytes)
            let start = ContinuousClock.now
            do {
                _ = try await intake.store(part10: part.body) { name in
                    ReceivedSource(fileName: name, transport: "stow", sender: principal.name, peerAddress: peer)
                }
                metrics.durable("stow", ContinuousClock.now - start)
                metrics.instance("stow", "success")
                referenced.append(item(nil))
            } catch {
                metrics.instance("stow", "failed")
                context.logger.warning("uploaded instance not stored", metadata: ["reason": .string((error as? IntakeError)?.reason ?? "write_failed")])
                failed.append(item(FailureReason.outOfResources))
            }
        }
        var answer: [String: Any] = [:]
        if !referenced.isEmpty { answer["00081199"] = ["vr": "SQ", "Value": referenced] }
        if !failed.isEmpty { answer["00081198"] = ["vr": "SQ", "Value": failed] }
        let status: HTTPResponse.Status = failed.isEmpty ? .ok : (referenced.isEmpty ? .conflict : .accepted)
        let json = try JSONSerialization.data(withJSONObject: answer, options: [.sortedKeys])
        return Response(status: status, headers: [.contentType: "application/dicom+json"], body: .init(byteBuffer: ByteBuffer(bytes: json)))
    }

    /// The boundary of `multipart/related; type="application/dicom"; boundary=…`, or nil for another type.
    static func multipartBoundary(_ contentType: String) -> String? {
        let fields = contentType.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
        guard let first = fields.first, first.lowercased() == "multipart/related" else { return nil }
        var boundary: String?, type: String?
        for field in fields.dropFirst() {
            guard let equals = field.firstIndex(of: "=") else { continue }
            let name = field[..<equals].trimmingCharacters(in: .whitespaces).lowercased()
            var value = field[field.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            if value.hasPrefix("\""), value.hasSuffix("\""), value.count >= 2 { value = String(value.dropFirst().dropLast()) }
            if name == "boundary" { boundary = value }
            if name == "type" { type = value.lowercased() }
        }
        guard let boundary, !boundary.isEmpty, boundary.utf8.count <= 200, type == nil || type == "application/dicom" else { return nil }
        return boundary
    }
}

enum StudyUID {
    static func validate(_ uid: String) throws {
        guard !uid.isEmpty, uid.utf8.count <= 64, uid.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2E }) else {
            throw ServingError.badRequest("study")
        }
    }
}

/// A multipart/related body split at its boundary.
enum MultipartParser {
    struct Part {
        var contentType: String?
        var body: ByteBuffer
        var isDICOM: Bool { contentType.map { $0.lowercased().hasPrefix("application/dicom") } ?? true }
    }

    static let maximumParts = 10_000

    static func parts(of body: ByteBuffer, boundary: String) throws -> [Part] {
        let bytes = body.readableBytesView
        let delimiter = Array("--\(boundary)".utf8)
        var positions: [Int] = []
        var index = bytes.startIndex
        while let found = find(delimiter, in: bytes, from: index) {
            positions.append(found)
            guard positions.count <= maximumParts + 1 else { throw ServingError.badRequest("body") }
            index = found + delimiter.count
        }
        guard positions.count >= 2 else { throw ServingError.badRequest("body") }
        var parts: [Part] = []
        for (start, end) in zip(positions, positions.dropFirst()) {
            var cursor = start + delimiter.count
            // The delimiter line ends with CRLF; the part's headers end with an empty line.
            guard let headerEnd = find(Array("\r\n\r\n".utf8), in: bytes, from: cursor), headerEnd < end else {
                throw ServingError.badRequest("body")
            }
            let headerText = String(decoding: bytes[cursor..<headerEnd], as: UTF8.self)
            var contentType: String?
            for line in headerText.split(separator: "\r\n") {
                let pieces = line.split(separator: ":", maxSplits: 1)
                if pieces.count == 2, pieces[0].trimmingCharacters(in: .whitespaces).lowercased() == "content-type" {
                    contentType = pieces[1].trimmingCharacters(in: .whitespaces)
                }
            }
            cursor = headerEnd + 4
            // The part's body ends before the CRLF that precedes the next delimiter.
            var bodyEnd = end
            if bodyEnd - cursor >= 2, bytes[bodyEnd - 2] == 0x0D, bytes[bodyEnd - 1] == 0x0A { bodyEnd -= 2 }
            guard bodyEnd >= cursor else { throw ServingError.badRequest("body") }
            let offset = cursor - bytes.startIndex
            parts.append(Part(contentType: contentType, body: body.getSlice(at: body.readerIndex + offset, length: bodyEnd - cursor)!))
        }
        return parts
    }

    private static func find(_ needle: [UInt8], in haystack: ByteBufferView, from start: Int) -> Int? {
        guard let first = needle.first, haystack.endIndex - start >= needle.count else { return nil }
        var index = start
        let last = haystack.endIndex - needle.count
        while index <= last {
            guard let hit = haystack[index...last].firstIndex(of: first) else { return nil }
            if haystack[hit..<(hit + needle.count)].elementsEqual(needle) { return hit }
            index = hit + 1
        }
        return nil
    }
}

/// The SOP class and instance UIDs of a Part-10 file's meta header (group 0002, explicit VR little endian),
/// read with bounds; nil when the bytes are not a Part-10 file.
struct FileMeta {
    var sopClassUID: String
    var sopInstanceUID: String

    static func read(_ buffer: ByteBuffer) -> FileMeta? {
        var buffer = buffer
        guard buffer.readableBytes > 132, buffer.getString(at: buffer.readerIndex + 128, length: 4) == "DICM" else { return nil }
        buffer.moveReaderIndex(forwardBy: 132)
        var classUID = "", instanceUID = ""
        while buffer.readableBytes >= 8, buffer.getInteger(at: buffer.readerIndex, endianness: .little, as: UInt16.self) == 0x0002 {
            guard let _ = buffer.readInteger(endianness: .little, as: UInt16.self),
                  let element = buffer.readInteger(endianness: .little, as: UInt16.self),
                  let vr = buffer.readString(length: 2) else { return nil }
            let length: Int
            if ["OB", "OW", "OF", "SQ", "UT", "UN"].contains(vr) {
                guard buffer.readInteger(as: UInt16.self) != nil, let long = buffer.readInteger(endianness: .little, as: UInt32.self) else { return nil }
                length = Int(long)
            } else {
                guard let short = buffer.readInteger(endianness: .little, as: UInt16.self) else { return nil }
                length = Int(short)
            }
            guard length <= buffer.readableBytes, let value = buffer.readSlice(length: length) else { return nil }
            let text = String(decoding: value.readableBytesView.prefix { $0 != 0 }, as: UTF8.self).trimmingCharacters(in: .whitespaces)
            if element == 0x0002 { classUID = text }
            if element == 0x0003 { instanceUID = text }
        }
        guard !classUID.isEmpty, !instanceUID.isEmpty, classUID.utf8.count <= 64, instanceUID.utf8.count <= 64,
              (classUID + instanceUID).utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2E })
        else { return nil }
        return FileMeta(sopClassUID: classUID, sopInstanceUID: instanceUID)
    }
}
