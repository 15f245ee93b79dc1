// DIMSE command sets (PS3.7 §9.3 and annex E): always implicit VR little endian. Only the few elements
// the SCP needs are read, each with its length checked; the rest is skipped.
import NIOCore

/// The parts of a request's command set the SCP uses.
struct CommandSet: Sendable, Equatable {
    var commandField: UInt16
    var messageID: UInt16
    var affectedSOPClassUID: String
    var affectedSOPInstanceUID: String
    /// True when a data set follows (Command Data Set Type other than 0101H).
    var hasDataSet: Bool

    static let cStoreRequest: UInt16 = 0x0001
    static let cEchoRequest: UInt16 = 0x0030
    /// Longest command set accepted.
    static let maximumLength = 16 * 1024

    /// Parses a command set; fails on a truncated element, a missing command field or a malformed UID.
    init(parsing bytes: ByteBuffer) throws {
        var bytes = bytes
        var field: UInt16?
        var messageID: UInt16?
        var dataSetType: UInt16?
        affectedSOPClassUID = ""
        affectedSOPInstanceUID = ""
        while bytes.readableBytes > 0 {
            guard let group = bytes.readInteger(endianness: .little, as: UInt16.self),
                  let element = bytes.readInteger(endianness: .little, as: UInt16.self),
                  let length = bytes.readInteger(endianness: .little, as: UInt32.self),
                  group == 0x0000, Int(length) <= bytes.readableBytes, let value = bytes.readSlice(length: Int(length))
            else { throw NetworkError.malformedCommand }
            func unsigned16() throws -> UInt16 {
                guard length == 2, let number = value.getInteger(at: value.readerIndex, endianness: .little, as: UInt16.self)
                else { throw NetworkError.malformedCommand }
                return number
            }
            func uid() throws -> String {
                do { return try AssociateRequest.uid(value.readableBytesView) } catch { throw NetworkError.malformedCommand }
            }
            switch element {
            case 0x0002: affectedSOPClassUID = try uid()
            case 0x0100: field = try unsigned16()
            case 0x0110: messageID = try unsigned16()
            case 0x0800: dataSetType = try unsigned16()
            case 0x1000: affectedSOPInstanceUID = try uid()
            default: continue
            }
        }
        guard let field, let messageID, let dataSetType else { throw NetworkError.malformedCommand }
        commandField = field
        self.messageID = messageID
        hasDataSet = dataSetType != 0x0101
    }

    /// A response command set: C-ECHO-RSP or C-STORE-RSP with `status`.
    static func response(to request: CommandSet, status: UInt16) -> ByteBuffer {
        var elements = ByteBuffer()
        func element(_ tag: UInt16, _ value: ByteBuffer) {
            elements.writeInteger(UInt16(0), endianness: .little)
            elements.writeInteger(tag, endianness: .little)
            elements.writeInteger(UInt32(value.readableBytes), endianness: .little)
            elements.writeImmutableBuffer(value)
        }
        func unsigned(_ number: UInt16) -> ByteBuffer {
            var buffer = ByteBuffer()
            buffer.writeInteger(number, endianness: .little)
            return buffer
        }
        func uid(_ text: String) -> ByteBuffer {
            var buffer = ByteBuffer(string: text)
            if text.utf8.count % 2 == 1 { buffer.writeInteger(UInt8(0)) }
            return buffer
        }
        if !request.affectedSOPClassUID.isEmpty { element(0x0002, uid(request.affectedSOPClassUID)) }
        element(0x0100, unsigned(request.commandField | 0x8000))
        element(0x0120, unsigned(request.messageID))
        element(0x0800, unsigned(0x0101))
        element(0x0900, unsigned(status))
        if !request.affectedSOPInstanceUID.isEmpty { element(0x1000, uid(request.affectedSOPInstanceUID)) }
        var command = ByteBuffer()
        command.writeInteger(UInt16(0), endianness: .little)
        command.writeInteger(UInt16(0), endianness: .little)
        command.writeInteger(UInt32(4), endianness: .little)
        command.writeInteger(UInt32(elements.readableBytes), endianness: .little)
        command.writeImmutableBuffer(elements)
        return command
    }
}

/// DIMSE status codes the SCP answers with.
enum DIMSEStatus {
    static let success: UInt16 = 0x0000
    /// Refused: out of resources (the sender retries later).
    static let outOfResources: UInt16 = 0xA700
    /// Refused: SOP class not supported (the command's class differs from its presentation context's).
    static let sopClassNotSupported: UInt16 = 0x0122
    /// Error: cannot understand (the command set lacks the instance's UIDs).
    static let cannotUnderstand: UInt16 = 0xC000
}
