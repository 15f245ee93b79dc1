// Geometry: crop/pad offsets and the area filter's exact fractional coverage.
import Testing
@testable import Normalization

@Suite struct GeometryTests {
    @Test func areaWeightsCoverExactly() {
        for (n, m) in [(3, 2), (7, 3), (512, 28), (28, 64), (5, 5), (1, 4)] {
            let w = AreaWeights(inputCount: n, outputCount: m)
            var covered = [Double](repeating: 0, count: n)
            for i in 0..<m {
                let group = w.weights[w.offsets[i]..<(w.offsets[i] + w.count[i])]
                #expect(abs(group.reduce(0, +) - 1) < 1e-5)
                for (k, wk) in group.enumerated() { covered[w.start[i] + k] += Double(wk) * Double(n) / Double(m) }
            }
            // Every input sample is used exactly once in total (area is conserved).
            #expect(covered.allSatisfy { abs($0 - 1) < 1e-4 })
        }
    }

    @Test func resizeAveragesBoxes() {
        // 3 → 2: out0 = (a + b/2) / 1.5, out1 = (b/2 + c) / 1.5.
        let img = ImageBuffer(rows: 1, columns: 3, values: [3, 6, 9])
        let out = GeometryStages.resizeArea(img, rows: 1, columns: 2)
        #expect(abs(out.values[0] - 4) < 1e-5 && abs(out.values[1] - 8) < 1e-5)
        // 4×4 → 2×2 averages 2×2 blocks, channel by channel.
        var v = [Float]()
        for r in 0..<4 { for c in 0..<4 { v += [Float(r * 4 + c), 100] } }
        let rgb = GeometryStages.resizeArea(ImageBuffer(rows: 4, columns: 4, channels: 2, values: v), rows: 2, columns: 2)
        #expect(rgb.values == [2.5, 100, 4.5, 100, 10.5, 100, 12.5, 100])
        // A constant image stays constant when shrinking and enlarging.
        let flat = ImageBuffer(rows: 37, columns: 53, values: [Float](repeating: 0.25, count: 37 * 53))
        for (r, c) in [(28, 28), (64, 80)] {
            #expect(GeometryStages.resizeArea(flat, rows: r, columns: c).values.allSatisfy { abs($0 - 0.25) < 1e-6 })
        }
    }

    @Test func cropAndPad() {
        let img = ImageBuffer(rows: 2, columns: 5, values: (0..<10).map(Float.init))
        let crop = GeometryStages.centreCrop(img)
        #expect(crop.rows == 2 && crop.columns == 2 && crop.values == [1, 2, 6, 7])   // left = (5 − 2) / 2 = 1
        let pad = GeometryStages.padSquare(img, value: -1)
        #expect(pad.rows == 5 && pad.columns == 5)
        #expect(Array(pad.values[0..<5]) == [-1, -1, -1, -1, -1])                    // top = (5 − 2) / 2 = 1
        #expect(Array(pad.values[5..<10]) == [0, 1, 2, 3, 4])
        #expect(Array(pad.values[15..<25]).allSatisfy { $0 == -1 })
    }

    @Test func spacingResampleAndVolumeDepth() throws {
        let recipe = try Recipe.parse(yaml: "name: t\nspacing: [1.0, 2.0]\nwindow: {source: full-range}")
        let img = ImageBuffer(rows: 4, columns: 8, values: [Float](repeating: 1, count: 32))
        let (out, spacing) = Normalizer(recipe: recipe).geometry(img, pixelSpacing: [0.5, 0.5])
        #expect(out.rows == 2 && out.columns == 2)
        #expect(spacing == [1.0, 2.0])
        // 4 slices at 1 mm → 2 mm: pairs averaged.
        let vol: [Float] = [0, 0, 2, 2, 4, 4, 6, 6]
        #expect(GeometryStages.resampleDepth(vol, depth: 4, sliceSize: 2, to: 2) == [1, 1, 5, 5])
    }

    @Test func intensityAndDtype() {
        var z: [Float] = [1, 2, 3]
        IntensityStages.apply(&z, intensity: .init(mode: .zscore), channels: 1)
        #expect(abs(z[0] + 1.2247449) < 1e-5 && abs(z[1]) < 1e-6)
        var f: [Float] = [0.5, 0.5, 0.5, 1, 1, 1]
        IntensityStages.apply(&f, intensity: .init(mode: .fixed, mean: [0.5, 0, 1], std: [1, 0.5, 2]), channels: 3)
        #expect(f == [0, 1, -0.25, 0.5, 2, 0])
        #expect(IntensityStages.toUInt8([-0.1, 0, 0.5, 1, 2]) == [0, 0, 128, 255, 255])
    }
}
