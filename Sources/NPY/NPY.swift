// NPY: NumPy's `.npy` format, the one codec of the project. Recipes write their tensors with it, the worker reads
// its inputs, the export copies the element bytes into TFRecords and the archive server stacks a series' tensors.
// Versions 1.0–3.0 are read, 1.0 is written; C order and little endian only.
import CodedErrors

/// Why bytes are not an array this codec reads.
public struct NPYError: CodedError, Hashable {
    public struct Code: ErrorCode {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        /// No `.npy` magic, an unknown version or a header that cannot be read.
        public static let notNPY = Code(rawValue: "not_npy")
        /// Fortran order: every reader here expects C order.
        public static let fortranOrder = Code(rawValue: "fortran_order")
        /// An element type other than float32/64, (u)int8, int16 and uint16 in little endian.
        public static let unsupportedDType = Code(rawValue: "unsupported_dtype")
        /// The element bytes do not match the shape (a truncated or overlong file).
        public static let sizeMismatch = Code(rawValue: "size_mismatch")
        /// Arrays stacked together differ in element type or shape.
        public static let shapesDiffer = Code(rawValue: "shapes_differ")
    }

    public let code: Code
    public init(_ code: Code) { self.code = code }
    public var description: String { "npy error: \(code.rawValue)" }
}

/// An array as a `.npy` file holds it: element type, shape and the element bytes (little endian, C order).
public struct NPYArray: Sendable, Hashable {
    /// The element types this codec reads and writes, named by their NumPy type string.
    public enum DType: String, Sendable, CaseIterable {
        case float32 = "<f4"
        case float64 = "<f8"
        case uint8 = "|u1"
        case int8 = "|i1"
        case int16 = "<i2"
        case uint16 = "<u2"

        /// Bytes per element.
        public var size: Int {
            switch self {
            case .uint8, .int8: 1
            case .int16, .uint16: 2
            case .float32: 4
            case .float64: 8
            }
        }

        /// NumPy's name of the type (`float32`, `uint8`, …).
        public var name: String {
            switch self {
            case .float32: "float32"
            case .float64: "float64"
            case .uint8: "uint8"
            case .int8: "int8"
            case .int16: "int16"
            case .uint16: "uint16"
            }
        }

        /// The type of a header's `descr`: single-byte types may be written with `<`, `>` or `|`.
        init?(descr: String) {
            switch descr {
            case "|u1", "<u1", ">u1", "u1": self = .uint8
            case "|i1", "<i1", ">i1", "i1": self = .int8
            default: self.init(rawValue: descr)
            }
        }
    }

    public let dtype: DType
    public let shape: [Int]
    /// The element bytes, little endian, C order: `shape`'s product × `dtype.size` of them.
    public let data: [UInt8]

    /// The number of elements.
    public var count: Int { shape.reduce(1, *) }

    public init(dtype: DType, shape: [Int], data: [UInt8]) throws(NPYError) {
        guard shape.allSatisfy({ $0 >= 0 }) else { throw NPYError(.notNPY) }
        guard data.count == shape.reduce(1, *) * dtype.size else { throw NPYError(.sizeMismatch) }
        self.dtype = dtype
        self.shape = shape
        self.data = data
    }

    /// A float32 array of `values` in C order; `values.count` must be the product of `shape`.
    public init(float32 values: [Float], shape: [Int]) {
        precondition(values.count == shape.reduce(1, *), "values do not fill the shape")
        var data = [UInt8](repeating: 0, count: values.count * 4)
        #if _endian(little)
        data.withUnsafeMutableBytes { out in values.withUnsafeBytes { out.copyMemory(from: $0) } }
        #else
        for (index, value) in values.enumerated() {
            withUnsafeBytes(of: value.bitPattern.littleEndian) { data.replaceSubrange(index * 4..<index * 4 + 4, with: $0) }
        }
        #endif
        self.dtype = .float32
        self.shape = shape
        self.data = data
    }

    /// A uint8 array of `values` in C order; `values.count` must be the product of `shape`.
    public init(uint8 values: [UInt8], shape: [Int]) {
        precondition(values.count == shape.reduce(1, *), "values do not fill the shape")
        self.dtype = .uint8
        self.shape = shape
        self.data = values
    }

    /// Decodes the bytes of a `.npy` file.
    public init(decoding bytes: [UInt8]) throws(NPYError) {
        let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]  // \x93NUMPY
        guard bytes.count >= 10, Array(bytes[0..<6]) == magic else { throw NPYError(.notNPY) }
        let length: Int, start: Int
        switch bytes[6] {
        case 1:
            (length, start) = (Int(bytes[8]) | Int(bytes[9]) << 8, 10)
        case 2, 3:
            guard bytes.count >= 12 else { throw NPYError(.notNPY) }
            (length, start) = (Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24, 12)
        default:
            throw NPYError(.notNPY)
        }
        guard length <= bytes.count - start else { throw NPYError(.notNPY) }
        let header = try Self.parseHeader(String(decoding: bytes[start..<(start + length)], as: UTF8.self))
        guard !header.fortranOrder else { throw NPYError(.fortranOrder) }
        guard let dtype = DType(descr: header.descr) else { throw NPYError(.unsupportedDType) }
        try self.init(dtype: dtype, shape: header.shape, data: Array(bytes[(start + length)...]))
    }

    /// The whole `.npy` file: version 1.0, the header padded with spaces to a multiple of 64 bytes.
    public func encoded() -> [UInt8] {
        let dims = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
        var header = "{'descr': '\(dtype.rawValue)', 'fortran_order': False, 'shape': \(dims), }"
        // magic(6) + version(2) + length(2) + header + "\n", padded with spaces to a multiple of 64; a header of a
        // few dozen dimensions stays far below version 1.0's 65,535 bytes.
        header += String(repeating: " ", count: (64 - (10 + header.utf8.count + 1) % 64) % 64) + "\n"
        let length = header.utf8.count
        var out: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 1, 0, UInt8(length & 0xFF), UInt8(length >> 8)]
        out.reserveCapacity(out.count + length + data.count)
        out += Array(header.utf8)
        out += data
        return out
    }

    /// The elements as Float values, whatever the element type (float64 rounded to the nearest Float).
    public var floats: [Float] {
        var values = [Float](repeating: 0, count: count)
        data.withUnsafeBytes { raw in
            for index in values.indices {
                let offset = index * dtype.size
                func bits<T: FixedWidthInteger>(_: T.Type) -> T { T(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: T.self)) }
                values[index] = switch dtype {
                case .float32: Float(bitPattern: bits(UInt32.self))
                case .float64: Float(Double(bitPattern: bits(UInt64.self)))
                case .uint8: Float(raw[offset])
                case .int8: Float(Int8(bitPattern: raw[offset]))
                case .int16: Float(bits(Int16.self))
                case .uint16: Float(bits(UInt16.self))
                }
            }
        }
        return values
    }

    /// `arrays` stacked along a new first axis: (N, …) from N arrays of one type and shape.
    public static func stacked(_ arrays: [NPYArray]) throws(NPYError) -> NPYArray {
        guard let first = arrays.first else { throw NPYError(.shapesDiffer) }
        guard arrays.allSatisfy({ $0.dtype == first.dtype && $0.shape == first.shape }) else { throw NPYError(.shapesDiffer) }
        var data: [UInt8] = []
        data.reserveCapacity(first.data.count * arrays.count)
        for array in arrays { data += array.data }
        return try NPYArray(dtype: first.dtype, shape: [arrays.count] + first.shape, data: data)
    }

    // MARK: - The header dictionary

    struct Header: Equatable {
        var descr: String
        var fortranOrder: Bool
        var shape: [Int]
    }

    /// Reads the Python literal `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }` (keys in any order,
    /// either quote, any spacing).
    static func parseHeader(_ text: String) throws(NPYError) -> Header {
        guard let descr = value(of: "descr", in: text)?.trimmingCharacters(in: "'\" "),
              let fortran = value(of: "fortran_order", in: text),
              let shapeText = value(of: "shape", in: text),
              shapeText.hasPrefix("("), shapeText.hasSuffix(")"),
              fortran == "True" || fortran == "False"
        else { throw NPYError(.notNPY) }
        var shape: [Int] = []
        for part in shapeText.dropFirst().dropLast().split(separator: ",") {
            let trimmed = String(part).trimmingCharacters(in: " L")
            if trimmed.isEmpty { continue }
            guard let dimension = Int(trimmed), dimension >= 0 else { throw NPYError(.notNPY) }
            shape.append(dimension)
        }
        return Header(descr: descr, fortranOrder: fortran == "True", shape: shape)
    }

    /// The text after `'key':` (or `"key":`) up to the next top-level comma or the closing brace.
    private static func value(of key: String, in text: String) -> String? {
        let characters = Array(text)
        for quote in ["'", "\""] {
            let needle = Array(quote + key + quote)
            guard let start = firstIndex(of: needle, in: characters) else { continue }
            var index = start + needle.count
            while index < characters.count, characters[index] == " " { index += 1 }
            guard index < characters.count, characters[index] == ":" else { continue }
            index += 1
            var depth = 0
            var out = ""
            while index < characters.count {
                let character = characters[index]
                if character == "(" { depth += 1 }
                if character == ")" { depth -= 1 }
                if (character == "," && depth == 0) || character == "}" { break }
                out.append(character)
                index += 1
            }
            return out.trimmingCharacters(in: " ")
        }
        return nil
    }

    private static func firstIndex(of needle: [Character], in haystack: [Character]) -> Int? {
        guard needle.count <= haystack.count else { return nil }
        for start in 0...(haystack.count - needle.count) where Array(haystack[start..<(start + needle.count)]) == needle {
            return start
        }
        return nil
    }
}

extension String {
    /// The string without leading and trailing characters of `set` (Foundation-free).
    fileprivate func trimmingCharacters(in set: String) -> String {
        let drop = Set(set)
        guard let first = firstIndex(where: { !drop.contains($0) }), let last = lastIndex(where: { !drop.contains($0) }) else { return "" }
        return String(self[first...last])
    }
}
