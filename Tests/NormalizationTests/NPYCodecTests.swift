// The NPY codec against NumPy: every element type NumPy writes in versions 1.0, 2.0 and 3.0 decodes to the
// values NumPy holds, every array the codec writes loads in NumPy unchanged, Fortran order and truncated or
// overlong files are refused, and stacking adds a first axis.
import Foundation
import NPY
import Testing

@Suite struct NPYCodecTests {
    static let types: [(NPYArray.DType, String)] = [
        (.float32, "float32"), (.float64, "float64"), (.uint8, "uint8"), (.int8, "int8"), (.int16, "int16"), (.uint16, "uint16"),
    ]

    @Test func decodesWhatNumPyWrites() throws {
        let dir = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Values every type holds exactly, in a 3 × 4 × 5 array; one file per type and format version.
        _ = try TestSupport.python("""
        import sys, numpy as np
        from numpy.lib import format
        values = (np.arange(60) % 100 - 20).reshape(3, 4, 5)
        for name in ['float32', 'float64', 'uint8', 'int8', 'int16', 'uint16']:
            a = (values if name[0] != 'u' else np.abs(values)).astype(name)
            for version in [(1, 0), (2, 0), (3, 0)]:
                with open(f'{sys.argv[1]}/{name}-{version[0]}.npy', 'wb') as f:
                    format.write_array(f, a, version=version)
        np.save(sys.argv[1] + '/fortran.npy', np.asfortranarray(values.astype('float32')))
        np.save(sys.argv[1] + '/vector.npy', np.array([1.5, -2.5], dtype='float32'))
        np.save(sys.argv[1] + '/scalar.npy', np.float32(7))
        """, [dir])
        let base = (0..<60).map { Float($0 % 100 - 20) }
        for (dtype, name) in Self.types {
            for version in 1...3 {
                let bytes = try #require(FileManager.default.contents(atPath: "\(dir)/\(name)-\(version).npy"))
                let array = try NPYArray(decoding: [UInt8](bytes))
                #expect(array.dtype == dtype && array.shape == [3, 4, 5], "\(name) v\(version)")
                #expect(array.floats == (name.hasPrefix("u") ? base.map { abs($0) } : base), "\(name) v\(version)")
                #expect(array.dtype.name == name)
            }
        }
        let fortran = try #require(FileManager.default.contents(atPath: dir + "/fortran.npy"))
        #expect(throws: NPYError(.fortranOrder)) { try NPYArray(decoding: [UInt8](fortran)) }
        let vector = try NPYArray(decoding: [UInt8](try #require(FileManager.default.contents(atPath: dir + "/vector.npy"))))
        #expect(vector.shape == [2] && vector.floats == [1.5, -2.5])
        let scalar = try NPYArray(decoding: [UInt8](try #require(FileManager.default.contents(atPath: dir + "/scalar.npy"))))
        #expect(scalar.shape == [] && scalar.floats == [7])
    }

    @Test func numPyLoadsWhatTheCodecWrites() throws {
        let dir = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let floats = (0..<24).map { Float($0) * 0.25 - 3 }
        let arrays: [(String, NPYArray)] = [
            ("f", NPYArray(float32: floats, shape: [2, 3, 4])),
            ("u", NPYArray(uint8: [0, 1, 127, 128, 254, 255], shape: [6])),
            ("s", try NPYArray(dtype: .int16, shape: [2, 1], data: [0x00, 0x80, 0xFF, 0x7F])),
            ("stack", try NPYArray.stacked([NPYArray(float32: [1, 2], shape: [2]), NPYArray(float32: [3, 4], shape: [2])])),
        ]
        for (name, array) in arrays {
            let bytes = array.encoded()
            #expect((10 + (Int(bytes[8]) | Int(bytes[9]) << 8)) % 64 == 0, "header of \(name) padded to 64")
            try Data(bytes).write(to: URL(fileURLWithPath: "\(dir)/\(name).npy"))
            #expect(try NPYArray(decoding: bytes) == array)
        }
        let out = try TestSupport.python("""
        import sys, numpy as np
        for name in ['f', 'u', 's', 'stack']:
            a = np.load(f'{sys.argv[1]}/{name}.npy')
            print(a.dtype.str, a.shape, a.ravel().tolist())
        """, [dir])
        #expect(out.split(separator: "\n").map(String.init) == [
            "<f4 (2, 3, 4) [" + floats.map { "\(Double($0))" }.joined(separator: ", ") + "]",
            "|u1 (6,) [0, 1, 127, 128, 254, 255]",
            "<i2 (2, 1) [-32768, 32767]",
            "<f4 (2, 2) [1.0, 2.0, 3.0, 4.0]",
        ])
    }

    @Test func refusesWhatIsNotAnArrayOfItsShape() throws {
        let good = NPYArray(float32: [1, 2, 3, 4, 5, 6], shape: [2, 3]).encoded()
        #expect(throws: NPYError(.sizeMismatch)) { try NPYArray(decoding: Array(good.dropLast())) }
        #expect(throws: NPYError(.sizeMismatch)) { try NPYArray(decoding: good + [0, 0, 0, 0]) }
        #expect(throws: NPYError(.notNPY)) { try NPYArray(decoding: Array(good.prefix(9))) }
        #expect(throws: NPYError(.notNPY)) { try NPYArray(decoding: Array("not an array at all".utf8)) }
        var unknownVersion = good
        unknownVersion[6] = 4
        #expect(throws: NPYError(.notNPY)) { try NPYArray(decoding: unknownVersion) }
        var bigEndian = good
        let descr = try #require(bigEndian.firstRange(of: Array("<f4".utf8)))
        bigEndian[descr.lowerBound] = UInt8(ascii: ">")
        #expect(throws: NPYError(.unsupportedDType)) { try NPYArray(decoding: bigEndian) }
        #expect(throws: NPYError(.shapesDiffer)) {
            try NPYArray.stacked([NPYArray(float32: [1, 2], shape: [2]), NPYArray(float32: [1, 2], shape: [1, 2])])
        }
        #expect(throws: NPYError(.shapesDiffer)) { try NPYArray.stacked([]) }
    }
}
