// WireCoding: the flat binary encoding of what crosses the sandbox pipe (requests and results of the "process"
// job): little-endian integers, length-prefixed UTF-8 strings, a presence byte before optionals. Fields are
// written and read in a fixed order by the two sides of the same binary; a short or malformed buffer reads
// as an error, never a crash.
import CodedErrors
import Foundation

/// Appends values to a byte buffer.
struct WireWriter {
    private(set) var bytes: [UInt8] = []

    init(capacity: Int = 256) {
        bytes.reserveCapacity(capacity)
    }

    mutating func int(_ value: Int) {
        withUnsafeBytes(of: Int64(value).littleEndian) { bytes.append(contentsOf: $0) }
    }

    mutating func bool(_ value: Bool) { bytes.append(value ? 1 : 0) }

    mutating func double(_ value: Double) {
        withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
    }

    mutating func string(_ value: String) {
        var value = value
        value.withUTF8 { utf8 in
            int(utf8.count)
            bytes.append(contentsOf: utf8)
        }
    }

    mutating func optional<T>(_ value: T?, _ write: (inout WireWriter, T) -> Void) {
        if let value {
            bytes.append(1)
            write(&self, value)
        } else {
            bytes.append(0)
        }
    }

    mutating func string(_ value: String?) { optional(value) { $0.string($1) } }
    mutating func int(_ value: Int?) { optional(value) { $0.int($1) } }
    mutating func double(_ value: Double?) { optional(value) { $0.double($1) } }

    mutating func array<T>(_ values: [T], _ write: (inout WireWriter, T) -> Void) {
        int(values.count)
        for value in values { write(&self, value) }
    }
}

/// Reads values written by `WireWriter`, in the same order.
struct WireReader {
    /// The bytes end early or hold a value out of range.
    struct Malformed: CodedError {
        struct Code: ErrorCode {
            let rawValue: String
            init(rawValue: String) { self.rawValue = rawValue }
            /// Not what `WireWriter` wrote.
            static let malformedWire = Code(rawValue: "malformed_wire")
        }

        let code = Code.malformedWire
        var description: String { "malformed wire bytes" }
    }

    private let bytes: [UInt8]
    private var offset = 0

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    var isAtEnd: Bool { offset == bytes.count }

    mutating func int() throws -> Int {
        guard offset + 8 <= bytes.count else { throw Malformed() }
        var value: UInt64 = 0
        for i in 0..<8 { value |= UInt64(bytes[offset + i]) << (8 * i) }
        offset += 8
        return Int(Int64(bitPattern: value))
    }

    mutating func bool() throws -> Bool {
        guard offset < bytes.count else { throw Malformed() }
        defer { offset += 1 }
        return bytes[offset] != 0
    }

    mutating func double() throws -> Double {
        Double(bitPattern: UInt64(bitPattern: Int64(try int())))
    }

    mutating func string() throws -> String {
        let count = try int()
        guard count >= 0, offset + count <= bytes.count else { throw Malformed() }
        defer { offset += count }
        return String(decoding: bytes[offset..<(offset + count)], as: UTF8.self)
    }

    mutating func optional<T>(_ read: (inout WireReader) throws -> T) throws -> T? {
        try bool() ? try read(&self) : nil
    }

    mutating func optionalString() throws -> String? { try optional { try $0.string() } }
    mutating func optionalInt() throws -> Int? { try optional { try $0.int() } }
    mutating func optionalDouble() throws -> Double? { try optional { try $0.double() } }

    mutating func array<T>(_ read: (inout WireReader) throws -> T) throws -> [T] {
        let count = try int()
        guard count >= 0, count <= bytes.count - offset else { throw Malformed() }
        var values: [T] = []
        values.reserveCapacity(count)
        for _ in 0..<count { values.append(try read(&self)) }
        return values
    }
}
