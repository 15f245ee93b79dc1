// tf.train.Example in protobuf wire format, written by hand (no TensorFlow, no protobuf library): a Features map
// of name → BytesList / FloatList / Int64List, entries in sorted key order so equal examples are equal bytes.
//
//   Example  { Features features = 1; }          Features { map<string, Feature> feature = 1; }
//   Feature  { oneof { BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3; } }
//   BytesList { repeated bytes value = 1; }  FloatList { repeated float value = 1 [packed]; }
//   Int64List { repeated int64 value = 1 [packed]; }

/// One feature's values.
public enum Feature: Sendable, Hashable {
    case bytes([[UInt8]])
    case floats([Float])
    case int64s([Int64])

    /// One UTF-8 string.
    public static func string(_ s: String) -> Feature { .bytes([Array(s.utf8)]) }
}

/// A tf.train.Example.
public struct Example: Sendable, Hashable {
    public var features: [String: Feature]

    public init(features: [String: Feature]) {
        self.features = features
    }

    /// The serialized protobuf bytes.
    public func serialized() -> [UInt8] {
        var map: [UInt8] = []
        for key in features.keys.sorted() {
            var entry: [UInt8] = []
            Wire.lengthDelimited(1, Array(key.utf8), into: &entry)
            Wire.lengthDelimited(2, Self.encode(features[key]!), into: &entry)
            Wire.lengthDelimited(1, entry, into: &map)
        }
        var out: [UInt8] = []
        Wire.lengthDelimited(1, map, into: &out)
        return out
    }

    static func encode(_ feature: Feature) -> [UInt8] {
        var list: [UInt8] = []
        var out: [UInt8] = []
        switch feature {
        case let .bytes(values):
            for v in values { Wire.lengthDelimited(1, v, into: &list) }
            Wire.lengthDelimited(1, list, into: &out)
        case let .floats(values):
            var packed: [UInt8] = []
            packed.reserveCapacity(values.count * 4)
            for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { packed += $0 } }
            if !values.isEmpty { Wire.lengthDelimited(1, packed, into: &list) }
            Wire.lengthDelimited(2, list, into: &out)
        case let .int64s(values):
            var packed: [UInt8] = []
            for v in values { Wire.varint(UInt64(bitPattern: v), into: &packed) }
            if !values.isEmpty { Wire.lengthDelimited(1, packed, into: &list) }
            Wire.lengthDelimited(3, list, into: &out)
        }
        return out
    }
}

/// Protobuf wire-format primitives.
enum Wire {
    static func varint(_ value: UInt64, into out: inout [UInt8]) {
        var v = value
        while v >= 0x80 {
            out.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        out.append(UInt8(v))
    }

    /// Field `number` with wire type 2 (length-delimited).
    static func lengthDelimited(_ number: Int, _ payload: [UInt8], into out: inout [UInt8]) {
        varint(UInt64(number << 3 | 2), into: &out)
        varint(UInt64(payload.count), into: &out)
        out += payload
    }
}
