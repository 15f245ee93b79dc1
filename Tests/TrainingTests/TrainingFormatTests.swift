// The export's formats without a database: CRC-32C against its published check values, TFRecord framing,
// tf.train.Example bytes against protobuf's encoding worked out by hand, .npy parsing, the patient split.
import Foundation
import NPY
import Testing
@testable import Training

@Suite struct TrainingFormatTests {
    @Test func crc32cMatchesPublishedCheckValues() {
        // RFC 3720 B.4 and the common "123456789" check value of CRC-32C.
        #expect(crc32c(Array("123456789".utf8)) == 0xE306_9283)
        #expect(crc32c([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(crc32c([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)
        #expect(crc32c((0..<32).map { UInt8($0) }) == 0x46DD_794E)
        let c = crc32c(Array("123456789".utf8))
        #expect(maskedCRC32C(Array("123456789".utf8)) == ((c >> 15) | (c << 17)) &+ 0xA282_EAD8)
    }

    @Test func tfrecordFramesAndChecksRecords() throws {
        let records: [[UInt8]] = [[], Array("hello".utf8), [UInt8](repeating: 7, count: 300)]
        let file = records.flatMap(TFRecord.frame)
        #expect(file.count == records.reduce(0) { $0 + $1.count + 16 })
        #expect(Array(file[0..<8]) == [0, 0, 0, 0, 0, 0, 0, 0])   // little-endian UInt64 length of the empty record
        #expect(TFRecord.records(file) == records)
        var corrupt = file
        corrupt[20] ^= 1
        #expect(TFRecord.records(corrupt) == nil)
        #expect(TFRecord.records(Array(file.dropLast())) == nil)
    }

    @Test func exampleIsProtobufsEncoding() {
        // tf.train.Example(features={"a": Feature(int64_list=[1])}).SerializeToString()
        let a = Example(features: ["a": .int64s([1])]).serialized()
        #expect(a == [0x0A, 0x0C, 0x0A, 0x0A, 0x0A, 0x01, 0x61, 0x12, 0x05, 0x1A, 0x03, 0x0A, 0x01, 0x01])
        // bytes_list ["xy"], float_list [1.0]: keys sorted, floats packed little endian, a 300 varint in two bytes.
        let b = Example(features: ["f": .floats([1]), "b": .string("xy"), "n": .int64s([300])]).serialized()
        let entryB: [UInt8] = [0x0A, 0x01, 0x62, 0x12, 0x06, 0x0A, 0x04, 0x0A, 0x02, 0x78, 0x79]
        let entryF: [UInt8] = [0x0A, 0x01, 0x66, 0x12, 0x08, 0x12, 0x06, 0x0A, 0x04, 0x00, 0x00, 0x80, 0x3F]
        let entryN: [UInt8] = [0x0A, 0x01, 0x6E, 0x12, 0x06, 0x1A, 0x04, 0x0A, 0x02, 0xAC, 0x02]
        let map = [0x0A, UInt8(entryB.count)] + entryB + [0x0A, UInt8(entryF.count)] + entryF + [0x0A, UInt8(entryN.count)] + entryN
        #expect(b == [0x0A, UInt8(map.count)] + map)
        // Equal features, equal bytes, whatever the dictionary's order.
        #expect(Example(features: ["n": .int64s([300]), "b": .string("xy"), "f": .floats([1])]).serialized() == b)
    }

    @Test func npyArrayKeepsTheStoredBytes() throws {
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"
        while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
        header += "\n"
        let values: [Float] = [0, 0.5, 1, 2, 3, 4]
        let body = values.flatMap { v in withUnsafeBytes(of: v.bitPattern.littleEndian) { Array($0) } }
        let file: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(header.utf8.count & 0xFF), UInt8(header.utf8.count >> 8)]
            + Array(header.utf8) + body
        let npy = try NPYArray(decoding: file)
        #expect(npy.shape == [2, 3] && npy.dtype.name == "float32" && npy.data == body)
        #expect(throws: NPYError(.sizeMismatch)) { try NPYArray(decoding: Array(file.dropLast())) }
        #expect(throws: NPYError(.notNPY)) { try NPYArray(decoding: Array("not an array".utf8)) }
    }

    @Test func patientSplitIsKeyedStableAndProportional() throws {
        let split = try PatientSplit(key: Array("key one".utf8), fractions: (0.8, 0.1, 0.1))
        let other = try PatientSplit(key: Array("key two".utf8), fractions: (0.8, 0.1, 0.1))
        let patients = (0..<20_000).map { "PSEUDO-\($0)" }
        var counts: [SplitName: Int] = [:]
        var moved = 0
        for p in patients {
            let s = split.split(p)
            counts[s, default: 0] += 1
            #expect(split.split(p) == s)
            if other.split(p) != s { moved += 1 }
        }
        #expect(abs(Double(counts[.train] ?? 0) / 20_000 - 0.8) < 0.015)
        #expect(abs(Double(counts[.validation] ?? 0) / 20_000 - 0.1) < 0.01)
        #expect(abs(Double(counts[.test] ?? 0) / 20_000 - 0.1) < 0.01)
        #expect(moved > 4_000, "another key assigns patients differently (\(moved) of 20000 moved)")
        #expect(split.keyID.count == 16 && split.keyID != other.keyID)
        #expect(throws: ExportError.self) { try PatientSplit(key: [], fractions: (1, 0, 0)) }
    }
}
