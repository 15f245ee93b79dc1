// The DICOM upper layer's protocol data units (PS3.8 §9.3): framing with strict length limits, and the
// parsing and encoding of the association PDUs. Everything read here comes from the network: every length
// is checked against what remains before it is used, and nothing is trusted beyond the limits below.
import CodedErrors
import NIOCore

/// Why a peer's bytes were refused. Descriptions name the fault, never a value the peer sent.
public struct NetworkError: CodedError, Hashable {
    public struct Code: ErrorCode {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public static let pduTooLong = Code(rawValue: "pdu_too_long")
        public static let unknownPDUType = Code(rawValue: "unknown_pdu_type")
        public static let malformedPDU = Code(rawValue: "malformed_pdu")
        public static let malformedCommand = Code(rawValue: "malformed_command")
        public static let unexpectedPDU = Code(rawValue: "unexpected_pdu")
        public static let unknownPresentationContext = Code(rawValue: "unknown_presentation_context")
        public static let unsupportedCommand = Code(rawValue: "unsupported_command")
        public static let commandTooLong = Code(rawValue: "command_too_long")
        public static let intakeFailed = Code(rawValue: "intake_failed")
    }
    /// The machine-readable code.
    public let code: Code
    private init(_ code: Code) { self.code = code }
    public var description: String { "dicom network: \(code.rawValue)" }

    static let pduTooLong = NetworkError(.pduTooLong)
    static let unknownPDUType = NetworkError(.unknownPDUType)
    static let malformedPDU = NetworkError(.malformedPDU)
    static let malformedCommand = NetworkError(.malformedCommand)
    static let unexpectedPDU = NetworkError(.unexpectedPDU)
    static let unknownPresentationContext = NetworkError(.unknownPresentationContext)
    static let unsupportedCommand = NetworkError(.unsupportedCommand)
    static let commandTooLong = NetworkError(.commandTooLong)
    static let intakeFailed = NetworkError(.intakeFailed)
}

/// One upper-layer PDU, its body not yet interpreted beyond the type.
enum PDU: Sendable, Equatable {
    case associateRequest(ByteBuffer)
    case dataTransfer(ByteBuffer)
    case releaseRequest
    case abort

    static let associateRequestType: UInt8 = 0x01
    static let associateAcceptType: UInt8 = 0x02
    static let associateRejectType: UInt8 = 0x03
    static let dataTransferType: UInt8 = 0x04
    static let releaseRequestType: UInt8 = 0x05
    static let releaseResponseType: UInt8 = 0x06
    static let abortType: UInt8 = 0x07
}

/// Splits the byte stream into PDUs: a 6-byte header (type, reserved, 32-bit big-endian length), then the body.
/// A body longer than the type allows is refused before any of it is buffered.
struct PDUDecoder: ByteToMessageDecoder {
    typealias InboundOut = PDU
    /// Longest P-DATA-TF body accepted (the maximum length announced, plus its PDV headers' slack).
    let maximumDataLength: Int
    /// Longest A-ASSOCIATE-RQ body accepted.
    static let maximumAssociateLength = 64 * 1024

    init(maximumDataLength: Int) { self.maximumDataLength = maximumDataLength }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard buffer.readableBytes >= 6,
              let type = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self),
              let length = buffer.getInteger(at: buffer.readerIndex + 2, as: UInt32.self)
        else { return .needMoreData }
        let limit: Int
        switch type {
        case PDU.associateRequestType: limit = Self.maximumAssociateLength
        case PDU.dataTransferType: limit = maximumDataLength
        case PDU.releaseRequestType, PDU.abortType: limit = 4
        default: throw NetworkError.unknownPDUType
        }
        guard Int(length) <= limit else { throw NetworkError.pduTooLong }
        guard buffer.readableBytes >= 6 + Int(length) else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: 6)
        let body = buffer.readSlice(length: Int(length))!
        switch type {
        case PDU.associateRequestType: context.fireChannelRead(wrapInboundOut(.associateRequest(body)))
        case PDU.dataTransferType: context.fireChannelRead(wrapInboundOut(.dataTransfer(body)))
        case PDU.releaseRequestType:
            guard length == 4 else { throw NetworkError.malformedPDU }
            context.fireChannelRead(wrapInboundOut(.releaseRequest))
        default:
            guard length == 4 else { throw NetworkError.malformedPDU }
            context.fireChannelRead(wrapInboundOut(.abort))
        }
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        return .needMoreData
    }
}

/// A presentation context the peer proposed.
struct ProposedContext: Sendable, Equatable {
    var id: UInt8
    var abstractSyntax: String
    var transferSyntaxes: [String]
}

/// The parts of an A-ASSOCIATE-RQ the SCP uses.
struct AssociateRequest: Sendable, Equatable {
    var calledAETitle: String
    var callingAETitle: String
    var applicationContext: String
    var contexts: [ProposedContext]
    /// The peer's maximum PDU length (0: unlimited).
    var maximumLength: UInt32

    static let maximumContexts = 128
    static let maximumTransferSyntaxes = 64
    static let maximumUIDLength = 64

    /// Parses the body of an A-ASSOCIATE-RQ (PS3.8 §9.3.2).
    init(parsing body: ByteBuffer) throws {
        var body = body
        guard let version = body.readInteger(as: UInt16.self), version & 1 == 1,
              body.readInteger(as: UInt16.self) != nil,
              let called = body.readBytes(length: 16), let calling = body.readBytes(length: 16),
              body.readBytes(length: 32) != nil
        else { throw NetworkError.malformedPDU }
        calledAETitle = try Self.aeTitle(called)
        callingAETitle = try Self.aeTitle(calling)
        applicationContext = ""
        contexts = []
        maximumLength = 0
        while body.readableBytes > 0 {
            guard let type = body.readInteger(as: UInt8.self), body.readInteger(as: UInt8.self) != nil,
                  let length = body.readInteger(as: UInt16.self), var item = body.readSlice(length: Int(length))
            else { throw NetworkError.malformedPDU }
            switch type {
            case 0x10: applicationContext = try Self.uid(item.readableBytesView)
            case 0x20:
                guard contexts.count < Self.maximumContexts else { throw NetworkError.malformedPDU }
                contexts.append(try Self.presentationContext(&item))
            case 0x50: maximumLength = try Self.maximumLength(userInformation: &item)
            default: continue
            }
        }
        guard !applicationContext.isEmpty else { throw NetworkError.malformedPDU }
    }

    private static func presentationContext(_ item: inout ByteBuffer) throws -> ProposedContext {
        guard let id = item.readInteger(as: UInt8.self), item.readBytes(length: 3) != nil else { throw NetworkError.malformedPDU }
        var abstract: String?
        var syntaxes: [String] = []
        while item.readableBytes > 0 {
            guard let type = item.readInteger(as: UInt8.self), item.readInteger(as: UInt8.self) != nil,
                  let length = item.readInteger(as: UInt16.self), let sub = item.readSlice(length: Int(length))
            else { throw NetworkError.malformedPDU }
            switch type {
            case 0x30:
                guard abstract == nil else { throw NetworkError.malformedPDU }
                abstract = try uid(sub.readableBytesView)
            case 0x40:
                guard syntaxes.count < maximumTransferSyntaxes else { throw NetworkError.malformedPDU }
                syntaxes.append(try uid(sub.readableBytesView))
            default: throw NetworkError.malformedPDU
            }
        }
        guard let abstract, !syntaxes.isEmpty, id & 1 == 1 else { throw NetworkError.malformedPDU }
        return ProposedContext(id: id, abstractSyntax: abstract, transferSyntaxes: syntaxes)
    }

    private static func maximumLength(userInformation item: inout ByteBuffer) throws -> UInt32 {
        var maximum: UInt32 = 0
        while item.readableBytes > 0 {
            guard let type = item.readInteger(as: UInt8.self), item.readInteger(as: UInt8.self) != nil,
                  let length = item.readInteger(as: UInt16.self), var sub = item.readSlice(length: Int(length))
            else { throw NetworkError.malformedPDU }
            if type == 0x51 {
                guard length == 4, let value = sub.readInteger(as: UInt32.self) else { throw NetworkError.malformedPDU }
                maximum = value
            }
        }
        return maximum
    }

    /// An AE title: 16 bytes, printable ASCII, leading and trailing spaces not significant; never empty.
    static func aeTitle<C: Collection>(_ bytes: C) throws -> String where C.Element == UInt8 {
        guard bytes.allSatisfy({ $0 >= 0x20 && $0 < 0x7F && $0 != 0x5C }) else { throw NetworkError.malformedPDU }
        let title = String(decoding: bytes, as: UTF8.self).trimmingSpaces()
        guard !title.isEmpty else { throw NetworkError.malformedPDU }
        return title
    }

    /// A UID: digits and dots, at most 64 characters, a trailing NUL or space tolerated.
    static func uid<C: Collection>(_ bytes: C) throws -> String where C.Element == UInt8 {
        var value = Array(bytes)
        while let last = value.last, last == 0 || last == 0x20 { value.removeLast() }
        guard !value.isEmpty, value.count <= maximumUIDLength,
              value.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2E })
        else { throw NetworkError.malformedPDU }
        return String(decoding: value, as: UTF8.self)
    }
}

extension String {
    func trimmingSpaces() -> String {
        var scalars = Substring(self)
        while scalars.first == " " { scalars.removeFirst() }
        while scalars.last == " " { scalars.removeLast() }
        return String(scalars)
    }
}

/// The answer to an A-ASSOCIATE-RQ, and the other PDUs the SCP sends.
enum OutgoingPDU: Sendable {
    /// Result of one presentation context: 0 acceptance, 3 abstract syntax not supported, 4 transfer syntaxes not supported.
    struct ContextResult: Sendable {
        var id: UInt8
        var result: UInt8
        var transferSyntax: String
    }

    case associateAccept(request: AssociateRequest, results: [ContextResult], maximumLength: UInt32)
    /// result 1 permanent / 2 transient; source 1 service user, 2 ACSE provider, 3 presentation provider.
    case associateReject(result: UInt8, source: UInt8, reason: UInt8)
    case dataTransfer(contextID: UInt8, isCommand: Bool, isLast: Bool, fragment: ByteBuffer)
    case releaseResponse
    /// source 0 service user, 2 service provider.
    case abort(source: UInt8, reason: UInt8)

    static let applicationContext = "1.2.840.10008.3.1.1.1"
    static let implementationClassUID = "1.2.826.0.1.3680043.10.1458.1"
    static let implementationVersion = "DICOM_ETL_1"

    func encode(into buffer: inout ByteBuffer) {
        func header(_ type: UInt8, _ body: ByteBuffer) {
            buffer.writeInteger(type)
            buffer.writeInteger(UInt8(0))
            buffer.writeInteger(UInt32(body.readableBytes))
            buffer.writeImmutableBuffer(body)
        }
        func item(_ type: UInt8, _ body: ByteBuffer, into target: inout ByteBuffer) {
            target.writeInteger(type)
            target.writeInteger(UInt8(0))
            target.writeInteger(UInt16(body.readableBytes))
            target.writeImmutableBuffer(body)
        }
        func text(_ string: String) -> ByteBuffer { ByteBuffer(string: string) }
        func ae(_ title: String) -> [UInt8] {
            let bytes = Array(title.utf8.prefix(16))
            return bytes + Array(repeating: 0x20, count: 16 - bytes.count)
        }
        switch self {
        case let .associateAccept(request, results, maximumLength):
            var body = ByteBuffer()
            body.writeInteger(UInt16(1))
            body.writeInteger(UInt16(0))
            body.writeBytes(ae(request.calledAETitle))
            body.writeBytes(ae(request.callingAETitle))
            body.writeRepeatingByte(0, count: 32)
            item(0x10, text(Self.applicationContext), into: &body)
            for result in results {
                var context = ByteBuffer()
                context.writeBytes([result.id, 0, result.result, 0])
                item(0x40, text(result.transferSyntax), into: &context)
                item(0x21, context, into: &body)
            }
            var user = ByteBuffer()
            var length = ByteBuffer()
            length.writeInteger(maximumLength)
            item(0x51, length, into: &user)
            item(0x52, text(Self.implementationClassUID), into: &user)
            item(0x55, text(Self.implementationVersion), into: &user)
            item(0x50, user, into: &body)
            header(PDU.associateAcceptType, body)
        case let .associateReject(result, source, reason):
            header(PDU.associateRejectType, ByteBuffer(bytes: [0, result, source, reason]))
        case let .dataTransfer(contextID, isCommand, isLast, fragment):
            var body = ByteBuffer()
            body.writeInteger(UInt32(fragment.readableBytes + 2))
            body.writeInteger(contextID)
            body.writeInteger(UInt8((isCommand ? 1 : 0) | (isLast ? 2 : 0)))
            body.writeImmutableBuffer(fragment)
            header(PDU.dataTransferType, body)
        case .releaseResponse:
            header(PDU.releaseResponseType, ByteBuffer(bytes: [0, 0, 0, 0]))
        case let .abort(source, reason):
            header(PDU.abortType, ByteBuffer(bytes: [0, 0, source, reason]))
        }
    }
}

/// Encodes outgoing PDUs on the channel.
struct PDUEncoder: MessageToByteEncoder {
    typealias OutboundIn = OutgoingPDU
    func encode(data: OutgoingPDU, out: inout ByteBuffer) throws {
        data.encode(into: &out)
    }
}

/// One presentation data value of a P-DATA-TF.
struct PresentationDataValue: Sendable {
    var contextID: UInt8
    var isCommand: Bool
    var isLast: Bool
    var fragment: ByteBuffer

    /// Splits a P-DATA-TF body into its PDVs (at least one).
    static func parse(_ body: ByteBuffer) throws -> [PresentationDataValue] {
        var body = body
        var values: [PresentationDataValue] = []
        while body.readableBytes > 0 {
            guard let length = body.readInteger(as: UInt32.self), length >= 2, Int(length) <= body.readableBytes,
                  let id = body.readInteger(as: UInt8.self), let header = body.readInteger(as: UInt8.self),
                  header & 0xFC == 0, let fragment = body.readSlice(length: Int(length) - 2)
            else { throw NetworkError.malformedPDU }
            values.append(PresentationDataValue(contextID: id, isCommand: header & 1 == 1, isLast: header & 2 == 2, fragment: fragment))
        }
        guard !values.isEmpty else { throw NetworkError.malformedPDU }
        return values
    }
}
