// Volume geometry on synthetic slice geometries: order along the normal, duplicates, gaps, mixes.
import Foundation
import Testing
@testable import Normalization

@Suite struct VolumeGeometryTests {
    /// Slices of an oblique stack: positions along the normal at `zs`, instance numbers by input order.
    static func stack(_ zs: [Double], numbers: [Int]? = nil, size: (Int, Int) = (4, 4)) -> [SliceGeometry] {
        let a = 0.3
        let row = [cos(a), sin(a), 0.0], col = [0.0, 0.0, -1.0]
        let normal = VolumeAssembler.cross(row, col)
        return zs.enumerated().map { i, z in
            let p = [10 + z * normal[0] + 3, -20 + z * normal[1] - 1, 5 + z * normal[2]]
            return SliceGeometry(rows: size.0, columns: size.1, orientation: row + col,
                                 position: [p[0] + 0.5 * row[0], p[1] + 0.5 * row[1], p[2]],
                                 pixelSpacing: [0.7, 0.7], instanceNumber: numbers?[i] ?? (i + 1), sliceThickness: 2)
        }
    }

    @Test func sortsAlongTheNormalNotByInstanceNumber() throws {
        // Instance numbers deliberately unrelated to position.
        let slices = Self.stack([4, 0, 8, 2, 6], numbers: [9, 2, 5, 7, 1])
        let layout = try VolumeAssembler.layout(slices)
        #expect(layout.order == [1, 3, 0, 4, 2])
        #expect(layout.issues.isEmpty)
        #expect(abs((layout.sliceSpacing ?? 0) - 2) < 1e-9)
        let steps = zip(layout.normalPositions!.dropFirst(), layout.normalPositions!).map { $0 - $1 }
        #expect(steps.allSatisfy { abs($0 - 2) < 1e-9 })
    }

    @Test func gapAndDuplicateAreReported() throws {
        let gap = try VolumeAssembler.layout(Self.stack([0, 2, 4, 8, 10]))
        #expect(gap.issues == [VolumeIssue(.gap, slices: [2, 3])])
        let dup = try VolumeAssembler.layout(Self.stack([0, 2, 2, 4]))
        #expect(dup.issues.map(\.code) == [.duplicatePosition])
        #expect(dup.issues[0].slices.sorted() == [1, 2])
        let uneven = try VolumeAssembler.layout(Self.stack([0, 2, 4, 6.5, 8.5]))
        #expect(uneven.issues.map(\.code) == [.unevenSpacing])
        // Three slices with the middle one removed: positions alone cannot tell with two slices left,
        // the slice thickness and the instance numbers can.
        let two = try VolumeAssembler.layout(Self.stack([0, 4], numbers: [1, 3]))
        #expect(two.issues.map(\.code) == [.gap])
        var noThickness = Self.stack([0, 4], numbers: [1, 3])
        for i in noThickness.indices { noThickness[i].sliceThickness = nil }
        #expect(try VolumeAssembler.layout(noThickness).issues.map(\.code) == [.instanceNumberGap])
    }

    @Test func mixedSeriesAreBlocking() throws {
        var slices = Self.stack([0, 2, 4])
        slices[1].rows = 5
        let sized = try VolumeAssembler.layout(slices)
        #expect(sized.issues.contains(VolumeIssue(.mixedSize, slices: [1])) && !sized.isBuildable)
        var turned = Self.stack([0, 2, 4])
        turned[2].orientation = [1, 0, 0, 0, 1, 0]
        let t = try VolumeAssembler.layout(turned)
        #expect(t.issues.contains { $0.code == .mixedOrientation } && !t.isBuildable)
        var bare = Self.stack([0, 2, 4], numbers: [3, 1, 2])
        bare[0].position = nil
        let b = try VolumeAssembler.layout(bare)
        #expect(b.order == [1, 2, 0] && b.issues.map(\.code) == [.missingGeometry])
        #expect(throws: NormalizationError(.emptySeries)) { try VolumeAssembler.layout([SliceGeometry]()) }
    }
}
