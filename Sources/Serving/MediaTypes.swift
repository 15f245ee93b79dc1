// MediaTypes: the Accept header of DICOMweb requests, and multipart/related bodies.
import Foundation
import Hummingbird

/// One media range of an Accept header, e.g. `multipart/related; type="application/dicom"; transfer-syntax=*`.
struct MediaRange: Sendable, Hashable {
    var type: String
    var parameters: [String: String]

    /// The `type` parameter of a multipart range.
    var partType: String? { parameters["type"]?.lowercased() }
    /// The `transfer-syntax` parameter (`*` for any).
    var transferSyntax: String? { parameters["transfer-syntax"] }
    var quality: Double { parameters["q"].flatMap(Double.init) ?? 1 }

    /// Ranges of an Accept header, best first; no header means `*/*`.
    static func parse(_ header: String?) -> [MediaRange] {
        guard let header, !header.trimmingCharacters(in: .whitespaces).isEmpty else { return [MediaRange(type: "*/*", parameters: [:])] }
        var ranges: [MediaRange] = []
        for item in splitOutsideQuotes(header, separator: ",") {
            let pieces = splitOutsideQuotes(item, separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
            guard let first = pieces.first, !first.isEmpty else { continue }
            var parameters: [String: String] = [:]
            for piece in pieces.dropFirst() {
                let pair = piece.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
                guard pair.count == 2 else { continue }
                parameters[pair[0].lowercased()] = pair[1].trimmingCharacters(in: CharacterSet(charactersIn: "\""))
            }
            ranges.append(MediaRange(type: first.lowercased(), parameters: parameters))
        }
        return ranges.enumerated().sorted { ($0.element.quality, -$0.offset) > ($1.element.quality, -$1.offset) }.map(\.element)
            .filter { $0.quality > 0 }
    }

    private static func splitOutsideQuotes(_ text: String, separator: Character) -> [String] {
        var parts: [String] = []
        var current = ""
        var quoted = false
        for character in text {
            if character == "\"" { quoted.toggle() }
            if character == separator && !quoted {
                parts.append(current)
                current = ""
            } else {
                current.append(character)
            }
        }
        parts.append(current)
        return parts
    }
}

/// The media type DICOMweb gives a frame as stored in `transferSyntax`.
func frameMediaType(transferSyntax: String) -> String {
    switch transferSyntax {
    case "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70": "image/jpeg"
    case "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81": "image/jls"
    case "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91": "image/jp2"
    case "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203": "image/jphc"
    case "1.2.840.10008.1.2.5": "image/dicom-rle"
    default: "application/octet-stream"
    }
}

/// A multipart/related body written part by part.
struct MultipartWriter: Sendable {
    let boundary = "dicom-etl-" + UUID().uuidString.lowercased()

    /// The response's Content-Type for parts of `partType`.
    func contentType(partType: String) -> String {
        "multipart/related; type=\"\(partType)\"; boundary=\(boundary)"
    }

    /// The bytes before a part's content.
    func partHeader(contentType: String, location: String? = nil) -> ByteBuffer {
        var text = "--\(boundary)\r\nContent-Type: \(contentType)\r\n"
        if let location { text += "Content-Location: \(location)\r\n" }
        text += "\r\n"
        return ByteBuffer(string: text)
    }

    /// The bytes after the last part.
    var closing: ByteBuffer { ByteBuffer(string: "\r\n--\(boundary)--\r\n") }
    /// The bytes between two parts' contents.
    var separator: ByteBuffer { ByteBuffer(string: "\r\n") }

    /// A whole body of parts held in memory.
    func body(_ parts: [(contentType: String, bytes: [UInt8])]) -> ResponseBody {
        var buffers: [ByteBuffer] = []
        for (index, part) in parts.enumerated() {
            if index > 0 { buffers.append(separator) }
            buffers.append(partHeader(contentType: part.contentType))
            buffers.append(ByteBuffer(bytes: part.bytes))
        }
        buffers.append(closing)
        return ResponseBody(contentsOf: buffers)
    }
}
