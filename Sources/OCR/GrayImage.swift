// An 8-bit grey image, row after row, and the rectangles recognised in it.

/// An 8-bit grey image: `width × height` bytes, row after row, 0 black.
public struct GrayImage: Sendable, Hashable {
    public let width: Int
    public let height: Int
    public var pixels: [UInt8]

    /// - Precondition: `pixels.count == width * height`.
    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(width >= 0 && height >= 0 && pixels.count == width * height, "pixel count must be width × height")
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    public subscript(x: Int, y: Int) -> UInt8 { pixels[y * width + x] }
}

/// A rectangle in pixels: x to the right, y down, from the top-left corner.
public struct PixelBox: Sendable, Hashable, Codable, CustomStringConvertible {
    public var x: Int
    public var y: Int
    public var width: Int
    public var height: Int

    public init(x: Int, y: Int, width: Int, height: Int) {
        self.x = x
        self.y = y
        self.width = width
        self.height = height
    }

    public var maxX: Int { x + width }
    public var maxY: Int { y + height }
    public var area: Int { width * height }

    /// Grown by `margin` on every side, then clipped to a `width × height` image.
    public func expanded(by margin: Int, within width: Int, _ height: Int) -> PixelBox {
        let x0 = max(0, x - margin), y0 = max(0, y - margin)
        let x1 = min(width, maxX + margin), y1 = min(height, maxY + margin)
        return PixelBox(x: x0, y: y0, width: max(0, x1 - x0), height: max(0, y1 - y0))
    }

    public func intersects(_ other: PixelBox) -> Bool {
        x < other.maxX && other.x < maxX && y < other.maxY && other.y < maxY
    }

    public func contains(x px: Int, y py: Int) -> Bool { px >= x && px < maxX && py >= y && py < maxY }

    public var description: String { "\(width)×\(height)+\(x)+\(y)" }
}
