// SeriesTensor: the model-ready tensors of a series' instances stacked into one `.npy` (N, …), in instance order,
// for analysts who train on series. Every instance's tensor must have the same dtype and shape.
import Foundation

enum SeriesTensor {
    /// The header fields and data offset of an `.npy` file (versions 1–3).
    struct Header: Equatable {
        var descr: String
        var fortranOrder: Bool
        var shape: [Int]
        var dataOffset: Int
    }

    static func header(_ bytes: [UInt8]) throws(ServingError) -> Header {
        guard bytes.count >= 10, bytes[0] == 0x93, Array(bytes[1..<6]) == Array("NUMPY".utf8) else { throw .unprocessable("tensor_not_npy") }
        let major = bytes[6]
        let length: Int, start: Int
        if major == 1 {
            length = Int(bytes[8]) | Int(bytes[9]) << 8
            start = 10
        } else {
            guard bytes.count >= 12 else { throw .unprocessable("tensor_not_npy") }
            length = Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24
            start = 12
        }
        guard start + length <= bytes.count else { throw .unprocessable("tensor_not_npy") }
        let text = String(decoding: bytes[start..<start + length], as: UTF8.self)
        guard let descr = value(of: "descr", in: text)?.trimmingCharacters(in: CharacterSet(charactersIn: "'\" ")),
              let fortran = value(of: "fortran_order", in: text)?.trimmingCharacters(in: .whitespaces),
              let shapeText = value(of: "shape", in: text)
        else { throw .unprocessable("tensor_not_npy") }
        let shape = shapeText.trimmingCharacters(in: CharacterSet(charactersIn: "() ")).split(separator: ",")
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }.compactMap { Int($0) }
        return Header(descr: descr, fortranOrder: fortran == "True", shape: shape, dataOffset: start + length)
    }

    /// The text after `'key':` up to the next top-level comma (a tuple's commas are inside parentheses).
    private static func value(of key: String, in text: String) -> String? {
        guard let range = text.range(of: "'\(key)':") else { return nil }
        var depth = 0
        var out = ""
        for character in text[range.upperBound...] {
            if character == "(" { depth += 1 }
            if character == ")" { depth -= 1 }
            if (character == "," && depth == 0) || character == "}" { break }
            out.append(character)
        }
        return out.trimmingCharacters(in: .whitespaces)
    }

    /// One `.npy` holding every tensor along a new first axis.
    static func stack(_ tensors: [[UInt8]]) throws(ServingError) -> [UInt8] {
        guard let first = tensors.first else { throw .notFound }
        let reference = try header(first)
        guard !reference.fortranOrder else { throw .unprocessable("tensor_fortran_order") }
        var data: [UInt8] = []
        for tensor in tensors {
            let h = try header(tensor)
            guard h.descr == reference.descr, h.shape == reference.shape, !h.fortranOrder else { throw .unprocessable("tensor_shapes_differ") }
            data += tensor[h.dataOffset...]
        }
        let shape = [tensors.count] + reference.shape
        let dims = "(" + shape.map(String.init).joined(separator: ", ") + (shape.count == 1 ? ",)" : ")")
        var dictionary = "{'descr': '\(reference.descr)', 'fortran_order': False, 'shape': \(dims), }"
        // Version 1.0: magic, version, 2-byte length; the header padded with spaces to a multiple of 64, ending in \n.
        let unpadded = 10 + dictionary.utf8.count + 1
        dictionary += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
        let length = dictionary.utf8.count
        return [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(length & 0xFF), UInt8(length >> 8)] + Array(dictionary.utf8) + data
    }
}
