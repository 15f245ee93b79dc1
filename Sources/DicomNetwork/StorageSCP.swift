// The Storage SCP: a ServiceLifecycle service that accepts associations on a TCP port (TCP_NODELAY on),
// answers C-ECHO, and streams each C-STORE's data set into the durable intake, answering Success only once
// the file is durable. Associations are refused unless the calling AE title comes from a host the allow-list
// gives it. Every PDU and command set is bounded; a fault in a peer's bytes aborts that association only.
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ServiceLifecycle

/// A calling AE title and the host it may come from (nil: any host).
public struct AllowedPeer: Sendable, Hashable {
    public var aeTitle: String
    public var host: String?

    public init(aeTitle: String, host: String?) {
        self.aeTitle = aeTitle
        self.host = host
    }

    /// Parses `AE@host,AE2@host2,AE3@*` (an entry without `@` may come from any host).
    public static func parseList(_ text: String) -> [AllowedPeer]? {
        var peers: [AllowedPeer] = []
        for entry in text.split(separator: ",") {
            let item = entry.trimmingCharacters(in: .whitespaces)
            if item.isEmpty { continue }
            let title: String, host: String?
            if let at = item.lastIndex(of: "@") {
                title = String(item[..<at])
                let rest = String(item[item.index(after: at)...])
                host = rest == "*" ? nil : rest
                if rest.isEmpty { return nil }
            } else {
                title = item
                host = nil
            }
            guard !title.isEmpty, title.utf8.count <= 16, title.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F && $0 != 0x5C }) else { return nil }
            peers.append(AllowedPeer(aeTitle: title, host: host))
        }
        return peers
    }

    func admits(aeTitle: String, address: String) -> Bool {
        guard aeTitle == self.aeTitle else { return false }
        guard let host else { return true }
        return Self.normalised(host) == Self.normalised(address)
    }

    private static func normalised(_ address: String) -> String {
        address.lowercased().hasPrefix("::ffff:") ? String(address.dropFirst(7)) : address.lowercased()
    }
}

/// The SCP's settings.
public struct StorageSCPConfiguration: Sendable {
    public var host: String
    public var port: Int
    /// The SCP's own AE title (the called AE title peers must use).
    public var aeTitle: String
    public var allowedPeers: [AllowedPeer]
    /// Associations at once; more are rejected (transient, local limit exceeded).
    public var maximumAssociations: Int
    /// The P-DATA-TF length announced (and enforced).
    public var maximumPDULength: UInt32 = 256 * 1024
    /// An association that sends nothing for this long is closed.
    public var idleTimeout: Duration = .seconds(60)

    public init(host: String, port: Int, aeTitle: String, allowedPeers: [AllowedPeer], maximumAssociations: Int) {
        self.host = host
        self.port = port
        self.aeTitle = aeTitle
        self.allowedPeers = allowedPeers
        self.maximumAssociations = maximumAssociations
    }
}

/// Transfer syntaxes and SOP classes the SCP accepts.
enum AcceptedSyntaxes {
    static let verification = "1.2.840.10008.1.1"
    /// What the DICOM layer decodes (DCMTK 3.6.7 plus OpenJPEG); HTJ2K and deflated image frames are not.
    static let transferSyntaxes: Set<String> = [
        "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2",
        "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",
        "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",
        "1.2.840.10008.1.2.5",
    ]
    static let implicitLittleEndian = "1.2.840.10008.1.2"

    /// True for the storage SOP classes (PS3.4 annex B: `1.2.840.10008.5.1.4.1.1.*`).
    static func isStorage(_ sopClass: String) -> Bool {
        sopClass.hasPrefix("1.2.840.10008.5.1.4.1.1.")
    }

    /// The result of one proposed context: the first proposed syntax the SCP takes, as sent.
    static func result(for context: ProposedContext) -> OutgoingPDU.ContextResult {
        if context.abstractSyntax == verification {
            let accepted = context.transferSyntaxes.contains(implicitLittleEndian)
                ? implicitLittleEndian : context.transferSyntaxes.first { ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"].contains($0) }
            return .init(id: context.id, result: accepted == nil ? 4 : 0, transferSyntax: accepted ?? implicitLittleEndian)
        }
        guard isStorage(context.abstractSyntax) else { return .init(id: context.id, result: 3, transferSyntax: implicitLittleEndian) }
        guard let accepted = context.transferSyntaxes.first(where: transferSyntaxes.contains) else {
            return .init(id: context.id, result: 4, transferSyntax: implicitLittleEndian)
        }
        return .init(id: context.id, result: 0, transferSyntax: accepted)
    }
}

/// Closes a channel that has been idle past its read timeout.
final class IdleCloser: ChannelInboundHandler, Sendable {
    typealias InboundIn = NIOAny
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }
}

/// Open associations, for the limit and for closing them at shutdown.
final class OpenChannels: Sendable {
    private let lock = NIOLockedValueBox<(count: Int, channels: [ObjectIdentifier: any Channel], closing: Bool)>((0, [:], false))

    /// Registers a channel; false when shutting down.
    func add(_ channel: any Channel) -> Int? {
        lock.withLockedValue { state -> Int? in
            if state.closing { return nil }
            state.channels[ObjectIdentifier(channel)] = channel
            state.count += 1
            return state.count
        }
    }

    func remove(_ channel: any Channel) {
        lock.withLockedValue {
            if $0.channels.removeValue(forKey: ObjectIdentifier(channel)) != nil { $0.count -= 1 }
        }
    }

    func closeAll() {
        let channels = lock.withLockedValue { state -> [any Channel] in
            state.closing = true
            return Array(state.channels.values)
        }
        for channel in channels { channel.close(promise: nil) }
    }
}

/// The Storage SCP service.
public final class StorageSCP: Service, Sendable {
    public let configuration: StorageSCPConfiguration
    let intake: DurableIntake
    let metrics: NetworkMetrics
    let logger: Logger
    private let onListening: @Sendable (Int) -> Void
    private let channels = OpenChannels()

    /// - Parameter onListening: called with the bound port once listening (port 0 picks a free one).
    public init(
        configuration: StorageSCPConfiguration, intake: DurableIntake, metrics: NetworkMetrics, logger: Logger,
        onListening: @escaping @Sendable (Int) -> Void = { _ in }
    ) {
        self.configuration = configuration
        self.intake = intake
        self.metrics = metrics
        self.logger = logger
        self.onListening = onListening
    }

    public func run() async throws {
        let maximumDataLength = Int(configuration.maximumPDULength)
        let idle = TimeAmount.nanoseconds(Int64(configuration.idleTimeout.components.seconds) * 1_000_000_000
            + configuration.idleTimeout.components.attoseconds / 1_000_000_000)
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 4)
            .bind(host: configuration.host, port: configuration.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(IdleStateHandler(readTimeout: idle))
                    try sync.addHandler(IdleCloser())
                    try sync.addHandler(ByteToMessageHandler(PDUDecoder(maximumDataLength: maximumDataLength)))
                    try sync.addHandler(MessageToByteHandler(PDUEncoder()))
                    return try NIOAsyncChannel<PDU, OutgoingPDU>(
                        wrappingChannelSynchronously: channel,
                        configuration: .init(backPressureStrategy: .init(lowWatermark: 2, highWatermark: 4)))
                }
            }
        onListening(server.channel.localAddress?.port ?? configuration.port)
        logger.info("storage SCP listening", metadata: ["port": .stringConvertible(server.channel.localAddress?.port ?? 0)])
        let channels = self.channels
        try await withGracefulShutdownHandler {
            try await server.executeThenClose { inbound in
                try await withThrowingDiscardingTaskGroup { group in
                    for try await connection in inbound {
                        // Far past the limit: not even read (the limit itself is answered with A-ASSOCIATE-RJ).
                        guard let open = channels.add(connection.channel), open <= 2 * configuration.maximumAssociations + 8 else {
                            channels.remove(connection.channel)
                            connection.channel.close(promise: nil)
                            continue
                        }
                        group.addTask {
                            defer { channels.remove(connection.channel) }
                            await self.serve(connection, openAssociations: open)
                        }
                    }
                }
            }
        } onGracefulShutdown: {
            server.channel.close(promise: nil)
            channels.closeAll()
        }
        logger.info("storage SCP stopped")
    }

    private func serve(_ connection: NIOAsyncChannel<PDU, OutgoingPDU>, openAssociations: Int) async {
        let peer = connection.channel.remoteAddress?.ipAddress ?? ""
        var association = Association(scp: self, peerAddress: peer, openAssociations: openAssociations)
        do {
            try await connection.executeThenClose { inbound, outbound in
                do {
                    for try await pdu in inbound {
                        if try await association.handle(pdu, outbound) == .close { break }
                    }
                } catch let error as NetworkError {
                    logger.debug("association aborted", metadata: ["reason": .string(error.reason)])
                    try? await outbound.write(.abort(source: 2, reason: 0))
                } catch let error as ByteToMessageDecoderError {
                    // The peer sent bytes that are no PDU: aborted; the abort itself is best effort (the peer may be gone).
                    logger.debug("association aborted", metadata: ["reason": .string("undecodable_pdu"), "error": .string(String(describing: type(of: error)))])
                    try? await outbound.write(.abort(source: 2, reason: 0))
                }
            }
        } catch {
            logger.debug("association ended", metadata: ["reason": .string(String(describing: type(of: error)))])
        }
        await association.finish()
    }
}

/// One association's state machine.
struct Association {
    enum Step { case proceed, close }

    private struct Receiving {
        var command: CommandSet
        var contextID: UInt8
        var file: IncomingInstance?
        var status: UInt16
        var bytes = 0
    }

    private let scp: StorageSCP
    private let peerAddress: String
    private let openAssociations: Int
    private var established = false
    private var callingAETitle = ""
    /// Accepted contexts: id → (abstract syntax, transfer syntax).
    private var contexts: [UInt8: (abstract: String, transferSyntax: String)] = [:]
    private var command = ByteBuffer()
    private var commandContext: UInt8?
    private var receiving: Receiving?
    private var outcome = "aborted"

    init(scp: StorageSCP, peerAddress: String, openAssociations: Int) {
        self.scp = scp
        self.peerAddress = peerAddress
        self.openAssociations = openAssociations
    }

    mutating func handle(_ pdu: PDU, _ outbound: NIOAsyncChannelOutboundWriter<OutgoingPDU>) async throws -> Step {
        switch pdu {
        case let .associateRequest(body):
            guard !established else { throw NetworkError.unexpectedPDU }
            return try await associate(body, outbound)
        case let .dataTransfer(body):
            guard established else { throw NetworkError.unexpectedPDU }
            for value in try PresentationDataValue.parse(body) {
                try await data(value, outbound)
            }
            return .proceed
        case .releaseRequest:
            guard established, receiving == nil else { throw NetworkError.unexpectedPDU }
            try await outbound.write(.releaseResponse)
            outcome = "released"
            return .close
        case .abort:
            return .close
        }
    }

    private mutating func associate(_ body: ByteBuffer, _ outbound: NIOAsyncChannelOutboundWriter<OutgoingPDU>) async throws -> Step {
        let configuration = scp.configuration
        func reject(_ result: UInt8, _ source: UInt8, _ reason: UInt8, _ why: String) async throws -> Step {
            try await outbound.write(.associateReject(result: result, source: source, reason: reason))
            scp.metrics.association("rejected")
            scp.logger.notice("association rejected", metadata: ["reason": .string(why)])
            outcome = "rejected_closed"
            return .close
        }
        let request: AssociateRequest
        do { request = try AssociateRequest(parsing: body) } catch {
            return try await reject(1, 1, 1, "malformed_request")
        }
        guard request.applicationContext == OutgoingPDU.applicationContext else {
            return try await reject(1, 1, 2, "application_context_not_supported")
        }
        guard request.calledAETitle == configuration.aeTitle else { return try await reject(1, 1, 7, "called_ae_not_recognized") }
        guard configuration.allowedPeers.contains(where: { $0.admits(aeTitle: request.callingAETitle, address: peerAddress) }) else {
            return try await reject(1, 1, 3, "calling_ae_not_allowed")
        }
        guard openAssociations <= configuration.maximumAssociations else { return try await reject(2, 3, 2, "association_limit") }
        let results = request.contexts.map(AcceptedSyntaxes.result(for:))
        for (context, result) in zip(request.contexts, results) where result.result == 0 {
            contexts[context.id] = (context.abstractSyntax, result.transferSyntax)
        }
        try await outbound.write(.associateAccept(request: request, results: results, maximumLength: configuration.maximumPDULength))
        established = true
        callingAETitle = request.callingAETitle
        scp.metrics.association("accepted")
        scp.metrics.activeAssociations.increment(by: 1)
        return .proceed
    }

    private mutating func data(_ value: PresentationDataValue, _ outbound: NIOAsyncChannelOutboundWriter<OutgoingPDU>) async throws {
        guard let context = contexts[value.contextID] else { throw NetworkError.unknownPresentationContext }
        if value.isCommand {
            guard receiving == nil, commandContext == nil || commandContext == value.contextID else { throw NetworkError.unexpectedPDU }
            guard command.readableBytes + value.fragment.readableBytes <= CommandSet.maximumLength else { throw NetworkError.commandTooLong }
            commandContext = value.contextID
            command.writeImmutableBuffer(value.fragment)
            guard value.isLast else { return }
            let request = try CommandSet(parsing: command)
            command.clear()
            commandContext = nil
            try await dispatch(request, contextID: value.contextID, context: context, outbound)
            return
        }
        guard var current = receiving, current.contextID == value.contextID else { throw NetworkError.unexpectedPDU }
        current.bytes += value.fragment.readableBytes
        if let file = current.file {
            do { try await file.append(value.fragment) } catch {
                await file.discard()
                current.file = nil
                current.status = DIMSEStatus.outOfResources
            }
        }
        receiving = current
        guard value.isLast else { return }
        receiving = nil
        var status = current.status
        scp.metrics.bytes("dimse", current.bytes)
        if let file = current.file {
            let start = ContinuousClock.now
            do {
                try await file.commit(source: ReceivedSource(
                    fileName: file.fileName, transport: "dimse", sender: callingAETitle, peerAddress: peerAddress))
                scp.metrics.durable("dimse", ContinuousClock.now - start)
                status = DIMSEStatus.success
            } catch {
                scp.logger.warning("received instance not stored", metadata: ["reason": .string((error as? IntakeError)?.reason ?? "write_failed")])
                status = DIMSEStatus.outOfResources
            }
        }
        scp.metrics.instance("dimse", Self.outcome(of: status))
        try await respond(current.command, status: status, contextID: current.contextID, outbound)
    }

    private static func outcome(of status: UInt16) -> String {
        switch status {
        case DIMSEStatus.success: return "success"
        case DIMSEStatus.outOfResources: return "out_of_resources"
        default: return "refused"
        }
    }

    private mutating func dispatch(
        _ request: CommandSet, contextID: UInt8, context: (abstract: String, transferSyntax: String),
        _ outbound: NIOAsyncChannelOutboundWriter<OutgoingPDU>
    ) async throws {
        switch request.commandField {
        case CommandSet.cEchoRequest:
            guard !request.hasDataSet else { throw NetworkError.malformedCommand }
            try await respond(request, status: DIMSEStatus.success, contextID: contextID, outbound)
        case CommandSet.cStoreRequest:
            guard request.hasDataSet else { throw NetworkError.malformedCommand }
            var state = Receiving(command: request, contextID: contextID, file: nil, status: DIMSEStatus.success)
            if request.affectedSOPClassUID != context.abstract {
                state.status = DIMSEStatus.sopClassNotSupported
            } else if request.affectedSOPInstanceUID.isEmpty {
                state.status = DIMSEStatus.cannotUnderstand
            } else if let refusal = scp.intake.refusal() {
                scp.logger.notice("instance refused", metadata: ["reason": .string(refusal.reason)])
                state.status = DIMSEStatus.outOfResources
            } else {
                do {
                    state.file = try await scp.intake.begin(
                        sopClassUID: request.affectedSOPClassUID, sopInstanceUID: request.affectedSOPInstanceUID,
                        transferSyntaxUID: context.transferSyntax, sourceAETitle: callingAETitle)
                } catch {
                    state.status = DIMSEStatus.outOfResources
                }
            }
            receiving = state
        default:
            throw NetworkError.unsupportedCommand
        }
    }

    private func respond(_ request: CommandSet, status: UInt16, contextID: UInt8, _ outbound: NIOAsyncChannelOutboundWriter<OutgoingPDU>) async throws {
        try await outbound.write(.dataTransfer(
            contextID: contextID, isCommand: true, isLast: true, fragment: CommandSet.response(to: request, status: status)))
    }

    /// Removes an unfinished instance's temporary and counts the association's end.
    mutating func finish() async {
        if let current = receiving {
            await current.file?.discard()
            receiving = nil
            scp.metrics.instance("dimse", "incomplete")
        }
        if established {
            scp.metrics.activeAssociations.decrement(by: 1)
            scp.metrics.association(outcome)
        }
    }
}
