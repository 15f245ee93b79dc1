// VolumeGeometry: orders the slices of a series along the slice normal (ImageOrientationPatient
// row × column cosines · ImagePositionPatient), checks one orientation, one size and even spacing, and
// reports gaps and duplicate positions as typed issues instead of hiding them.

/// The geometry of one slice (one instance, or one frame of a multi-frame image).
public struct SliceGeometry: Sendable, Equatable {
    public var rows: Int
    public var columns: Int
    /// ImageOrientationPatient: row direction cosines then column direction cosines.
    public var orientation: [Double]?
    /// ImagePositionPatient: the centre of the first voxel, in mm.
    public var position: [Double]?
    /// PixelSpacing (or ImagerPixelSpacing): between rows, between columns, in mm.
    public var pixelSpacing: [Double]?
    public var instanceNumber: Int?
    public var sliceThickness: Double?
    public var spacingBetweenSlices: Double?

    public init(rows: Int, columns: Int, orientation: [Double]? = nil, position: [Double]? = nil,
                pixelSpacing: [Double]? = nil, instanceNumber: Int? = nil, sliceThickness: Double? = nil,
                spacingBetweenSlices: Double? = nil) {
        self.rows = rows
        self.columns = columns
        self.orientation = orientation
        self.position = position
        self.pixelSpacing = pixelSpacing
        self.instanceNumber = instanceNumber
        self.sliceThickness = sliceThickness
        self.spacingBetweenSlices = spacingBetweenSlices
    }
}

/// A problem found while assembling a volume.
public struct VolumeIssue: Sendable, Equatable, Codable, CustomStringConvertible {
    public struct Code: RawRepresentable, Hashable, Sendable, Codable {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }

        /// A slice has no usable ImageOrientationPatient/ImagePositionPatient; order falls back to InstanceNumber.
        public static let missingGeometry = Code(rawValue: "missing_geometry")
        public static let mixedOrientation = Code(rawValue: "mixed_orientation")
        public static let mixedSize = Code(rawValue: "mixed_size")
        public static let mixedPixelSpacing = Code(rawValue: "mixed_pixel_spacing")
        /// Two slices at the same position along the normal.
        public static let duplicatePosition = Code(rawValue: "duplicate_position")
        /// A step between neighbours larger than 1.5 × the expected spacing (a missing slice).
        public static let gap = Code(rawValue: "gap")
        /// Steps differ by more than 1 % (and 0.01 mm) without being a gap.
        public static let unevenSpacing = Code(rawValue: "uneven_spacing")
        /// Instance numbers run in order along the normal but skip a number (a slice is missing).
        public static let instanceNumberGap = Code(rawValue: "instance_number_gap")
    }

    public let code: Code
    /// Input indices of the slices concerned.
    public let slices: [Int]

    public init(_ code: Code, slices: [Int]) {
        self.code = code
        self.slices = slices
    }

    public var description: String { "\(code.rawValue) at input slices \(slices)" }

    /// Whether the volume cannot be built at all (slices of different sizes or orientations).
    public var isBlocking: Bool { code == .mixedSize || code == .mixedOrientation }
}

/// The order and geometry of an assembled volume.
public struct VolumeLayout: Sendable, Equatable {
    /// Input indices in slice order (ascending along the normal).
    public var order: [Int]
    /// Position of each ordered slice along the normal, in mm (nil when geometry is missing).
    public var normalPositions: [Double]?
    /// Slice normal (row cosines × column cosines).
    public var normal: [Double]?
    public var orientation: [Double]?
    /// ImagePositionPatient of the first ordered slice.
    public var origin: [Double]?
    /// The nominal distance between slices in mm.
    public var sliceSpacing: Double?
    /// Between rows, between columns, in mm.
    public var pixelSpacing: [Double]?
    public var rows: Int
    public var columns: Int
    public var issues: [VolumeIssue]

    /// True when no issue prevents building the D×H×W tensor.
    public var isBuildable: Bool { !issues.contains(where: \.isBlocking) }
}

/// Orders and checks the slices of one series.
public enum VolumeAssembler {
    /// Tolerance in mm below which two positions along the normal are the same.
    public static let duplicateTolerance = 0.01

    /// The layout of `slices`: sorted along the normal, with every issue found.
    public static func layout(_ slices: [SliceGeometry]) throws -> VolumeLayout {
        guard let first = slices.first else { throw NormalizationError(.emptySeries) }
        var issues: [VolumeIssue] = []

        let badSize = slices.indices.filter { slices[$0].rows != first.rows || slices[$0].columns != first.columns }
        if !badSize.isEmpty { issues.append(VolumeIssue(.mixedSize, slices: badSize)) }

        let spacings = slices.compactMap(\.pixelSpacing)
        if let s0 = spacings.first, spacings.contains(where: { zip($0, s0).contains { abs($0 - $1) > 1e-4 } }) {
            issues.append(VolumeIssue(.mixedPixelSpacing, slices: Array(slices.indices)))
        }

        let hasGeometry = slices.allSatisfy { ($0.orientation?.count ?? 0) >= 6 && ($0.position?.count ?? 0) >= 3 }
        guard hasGeometry, let iop = first.orientation else {
            issues.append(VolumeIssue(.missingGeometry, slices: slices.indices.filter {
                (slices[$0].orientation?.count ?? 0) < 6 || (slices[$0].position?.count ?? 0) < 3
            }))
            let order = slices.indices.sorted {
                (slices[$0].instanceNumber ?? $0, $0) < (slices[$1].instanceNumber ?? $1, $1)
            }
            return VolumeLayout(order: order, normalPositions: nil, normal: nil, orientation: first.orientation,
                                origin: nil, sliceSpacing: first.spacingBetweenSlices ?? first.sliceThickness,
                                pixelSpacing: first.pixelSpacing, rows: first.rows, columns: first.columns,
                                issues: issues)
        }

        let mixed = slices.indices.filter { i in zip(slices[i].orientation!, iop).contains { abs($0 - $1) > 1e-4 } }
        if !mixed.isEmpty { issues.append(VolumeIssue(.mixedOrientation, slices: mixed)) }

        let normal = cross(Array(iop[0..<3]), Array(iop[3..<6]))
        let along = slices.map { dot(normal, $0.position!) }
        let order = slices.indices.sorted { (along[$0], $0) < (along[$1], $1) }
        let positions = order.map { along[$0] }

        var steps: [Double] = []
        for k in 1..<max(1, positions.count) { steps.append(positions[k] - positions[k - 1]) }
        for (k, step) in steps.enumerated() where step < duplicateTolerance {
            issues.append(VolumeIssue(.duplicatePosition, slices: [order[k], order[k + 1]]))
        }
        let realSteps = steps.filter { $0 >= duplicateTolerance }
        // The nominal spacing (used to resample) and the spacing the steps are checked against.
        var nominal: Double?, expected: Double?
        if let sbs = first.spacingBetweenSlices, sbs > 0,
           slices.allSatisfy({ abs(($0.spacingBetweenSlices ?? sbs) - sbs) < 1e-4 }) {
            nominal = sbs
            expected = sbs
        } else if realSteps.count >= 2 {
            nominal = median(realSteps)
            expected = nominal
        } else {
            nominal = realSteps.first ?? first.sliceThickness
            // Two slices only: the slice thickness is the best available expectation.
            expected = first.sliceThickness.flatMap { $0 > 0 ? $0 : nil } ?? realSteps.first
        }
        if let e = expected {
            for (k, step) in steps.enumerated() where step >= duplicateTolerance {
                if step > 1.5 * e {
                    issues.append(VolumeIssue(.gap, slices: [order[k], order[k + 1]]))
                } else if abs(step - e) > max(0.01, 0.01 * e) {
                    issues.append(VolumeIssue(.unevenSpacing, slices: [order[k], order[k + 1]]))
                }
            }
        }

        // Instance numbers that run monotonically along the normal but skip one reveal a missing slice
        // even when positions cannot (e.g. three slices with the middle one removed).
        let numbers = order.compactMap { slices[$0].instanceNumber }
        if numbers.count == order.count, numbers.count >= 2 {
            let deltas = zip(numbers.dropFirst(), numbers).map { $0 - $1 }
            let increasing = deltas.allSatisfy { $0 > 0 }, decreasing = deltas.allSatisfy { $0 < 0 }
            if increasing || decreasing {
                for (k, d) in deltas.enumerated() where abs(d) > 1 {
                    let pair = [order[k], order[k + 1]]
                    if !issues.contains(where: { $0.code == .gap && $0.slices == pair }) {
                        issues.append(VolumeIssue(.instanceNumberGap, slices: pair))
                    }
                }
            }
        }

        return VolumeLayout(order: order, normalPositions: positions, normal: normal, orientation: iop,
                            origin: slices[order[0]].position, sliceSpacing: nominal,
                            pixelSpacing: first.pixelSpacing, rows: first.rows, columns: first.columns,
                            issues: issues)
    }

    static func cross(_ a: [Double], _ b: [Double]) -> [Double] {
        [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
    }

    static func dot(_ a: [Double], _ b: [Double]) -> Double { a[0] * b[0] + a[1] * b[1] + a[2] * b[2] }

    static func median(_ values: [Double]) -> Double {
        let s = values.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }
}
