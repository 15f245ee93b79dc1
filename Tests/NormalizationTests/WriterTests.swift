// Writers: .npy read back by numpy.load, PNG checked chunk by chunk and decoded with Python's zlib.
import Foundation
import Testing
@testable import Normalization

@Suite struct WriterTests {
    static func tensor(shape: [Int], storage: Tensor.Storage) -> Tensor {
        Tensor(shape: shape, storage: storage,
               metadata: TensorMetadata(recipeName: "t", recipeHash: "h", shape: shape,
                                        dtype: storage == .uint8([]) ? "uint8" : "float32",
                                        axes: shape.count == 3 ? ["slice", "row", "column"] : ["row", "column"]))
    }

    @Test func npyLoadsWithNumPy() throws {
        let dir = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let floats = (0..<(3 * 4 * 5)).map { Float($0) * 0.25 - 3 }
        let f = Self.tensor(shape: [3, 4, 5], storage: .float32(floats))
        let u = Self.tensor(shape: [2, 3], storage: .uint8([0, 1, 127, 128, 254, 255]))
        try NPYWriter.write(f, to: dir + "/f.npy")
        try NPYWriter.write(u, to: dir + "/u.npy")
        let bytes = NPYWriter.encode(f)
        let headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
        #expect((10 + headerLength) % 64 == 0)
        let out = try TestSupport.python("""
        import sys, numpy as np
        f = np.load(sys.argv[1]); u = np.load(sys.argv[2])
        print(f.dtype.str, f.shape, u.dtype.str, u.shape)
        print(repr(f.ravel().tolist())); print(repr(u.ravel().tolist()))
        """, [dir + "/f.npy", dir + "/u.npy"])
        let lines = out.split(separator: "\n").map(String.init)
        #expect(lines[0] == "<f4 (3, 4, 5) |u1 (2, 3)")
        #expect(lines[1] == "[" + floats.map { "\(Double($0))" }.joined(separator: ", ") + "]")
        #expect(lines[2] == "[0, 1, 127, 128, 254, 255]")
    }

    @Test func pngDecodes() throws {
        let dir = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Large enough to need two stored deflate blocks (> 65535 bytes).
        let rows = 200, columns = 150
        var rgb = [UInt8]()
        for r in 0..<rows { for c in 0..<columns { rgb += [UInt8(r % 256), UInt8(c % 256), UInt8((r * c) % 256)] } }
        let png = try PNGWriter.encode(pixels: rgb, rows: rows, columns: columns, channels: 3)
        try Data(png).write(to: URL(fileURLWithPath: dir + "/p.png"))
        let grey = Self.tensor(shape: [2, 3], storage: .float32([0, 0.5, 1, 0.25, 0.75, 1]))
        try PNGWriter.write(grey, to: dir + "/g.png")
        let out = try TestSupport.python("""
        import sys, zlib, struct
        def read(path):
            b = open(path, 'rb').read()
            assert b[:8] == b'\\x89PNG\\r\\n\\x1a\\n'
            i, idat, ihdr = 8, b'', None
            while i < len(b):
                n, = struct.unpack('>I', b[i:i+4]); t = b[i+4:i+8]; d = b[i+8:i+8+n]
                crc, = struct.unpack('>I', b[i+8+n:i+12+n])
                assert zlib.crc32(t + d) == crc, t
                if t == b'IHDR': ihdr = struct.unpack('>IIBBBBB', d)
                if t == b'IDAT': idat += d
                i += 12 + n
            w, h, depth, ctype = ihdr[:4]
            raw = zlib.decompress(idat)
            ch = 3 if ctype == 2 else 1
            rows = [raw[r*(w*ch+1):(r+1)*(w*ch+1)] for r in range(h)]
            assert all(r[0] == 0 for r in rows)
            return w, h, ctype, b''.join(r[1:] for r in rows)
        w, h, ct, px = read(sys.argv[1])
        print(w, h, ct, zlib.crc32(px))
        w, h, ct, px = read(sys.argv[2])
        print(w, h, ct, list(px))
        """, [dir + "/p.png", dir + "/g.png"])
        var crc = CRC32()
        crc.update(rgb)
        let lines = out.split(separator: "\n").map(String.init)
        #expect(lines[0] == "150 200 2 \(crc.value)")
        #expect(lines[1] == "3 2 0 [0, 128, 255, 64, 191, 255]")
    }

    @Test func sidecarRecordsTheRecipeAndWindow() throws {
        var t = Self.tensor(shape: [28, 28], storage: .float32([Float](repeating: 0, count: 784)))
        t.metadata.window = AppliedWindow(source: "dicom-window", center: 40, width: 400, function: "LINEAR", inverted: true)
        t.metadata.identifiers = ["series_instance_uid": "2.25.1"]
        let json = try JSONSerialization.jsonObject(with: t.metadata.sidecarJSON()) as? [String: Any]
        #expect(json?["recipe_name"] as? String == "t")
        #expect(json?["shape"] as? [Int] == [28, 28])
        #expect((json?["window"] as? [String: Any])?["inverted"] as? Bool == true)
        #expect((json?["identifiers"] as? [String: String])?["series_instance_uid"] == "2.25.1")
    }
}
