// Reader of `weights.bin`, the folded-weights format written by models/pneumonia_cnn/weights_format.py.
//
// Layout (little-endian): 8-byte magic "DETLCNN\0", UInt32 version (1), UInt32 header length H,
// H bytes of JSON header, zero padding to a multiple of 16, then `payload_floats` float32 values.
import Foundation

/// One tensor of the payload: `count` floats from `offset` (in floats).
struct TensorRef: Decodable, Sendable {
    let offset: Int
    let count: Int
}

/// One layer as the JSON header describes it.
struct LayerSpec: Decodable, Sendable {
    let type: String
    let kernel: [Int]?
    let pool: [Int]?
    let stride: Int?
    let padding: String?
    let `in`: Int?
    let out: Int?
    let activation: String?
    let weights: TensorRef?
    let bias: TensorRef?
}

/// The JSON header of a weights file.
struct WeightsHeader: Decodable, Sendable {
    let format: String
    let inputShape: [Int]
    let layers: [LayerSpec]
    let payloadFloats: Int
    let payloadCrc32: UInt32

    enum CodingKeys: String, CodingKey {
        case format, layers
        case inputShape = "input_shape"
        case payloadFloats = "payload_floats"
        case payloadCrc32 = "payload_crc32"
    }
}

/// A decoded weights file: its header and payload.
struct WeightsFile: Sendable {
    static let magic: [UInt8] = Array("DETLCNN".utf8) + [0]
    static let version: UInt32 = 1

    let header: WeightsHeader
    let payload: [Float]

    /// Decodes and checks a weights file held in memory.
    init(bytes: [UInt8]) throws(InferenceError) {
        guard bytes.count >= 16 else { throw InferenceError(.truncated) }
        guard Array(bytes[0..<8]) == Self.magic else { throw InferenceError(.badMagic) }
        let version = Self.uint32(bytes, at: 8)
        guard version == Self.version else { throw InferenceError(.unsupportedVersion) }
        let headerLength = Int(Self.uint32(bytes, at: 12))
        guard headerLength <= bytes.count - 16 else { throw InferenceError(.truncated) }
        let header: WeightsHeader
        do {
            header = try JSONDecoder().decode(WeightsHeader.self, from: Data(bytes[16..<(16 + headerLength)]))
        } catch {
            throw InferenceError(.malformedHeader)
        }
        guard header.format == "dicom-etl-cnn", header.payloadFloats >= 0 else { throw InferenceError(.malformedHeader) }
        let start = 16 + headerLength + (16 - (16 + headerLength) % 16) % 16
        guard bytes.count - start == header.payloadFloats * 4 else { throw InferenceError(.truncated) }
        let crc = bytes.withUnsafeBytes { crc32(UnsafeRawBufferPointer(rebasing: $0[start...])) }
        guard crc == header.payloadCrc32 else { throw InferenceError(.checksumMismatch) }
        var payload = [Float](repeating: 0, count: header.payloadFloats)
        payload.withUnsafeMutableBytes { dst in
            bytes.withUnsafeBytes { src in dst.copyMemory(from: UnsafeRawBufferPointer(rebasing: src[start...])) }
        }
        #if _endian(big)
        payload = payload.map { Float(bitPattern: $0.bitPattern.byteSwapped) }
        #endif
        self.header = header
        self.payload = payload
    }

    /// Reads and decodes the weights file at `url`.
    init(contentsOf url: URL) throws(InferenceError) {
        let data: Data
        do { data = try Data(contentsOf: url) } catch { throw InferenceError(.unreadableFile) }
        try self.init(bytes: [UInt8](data))
    }

    private static func uint32(_ b: [UInt8], at i: Int) -> UInt32 {
        UInt32(b[i]) | UInt32(b[i + 1]) << 8 | UInt32(b[i + 2]) << 16 | UInt32(b[i + 3]) << 24
    }
}
