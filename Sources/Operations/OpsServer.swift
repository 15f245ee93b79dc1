// The operations HTTP server: /metrics (Prometheus text), /healthz (the process answers) and /readyz
// (the readiness check passes, e.g. the database is reachable). One request per connection.
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
import ServiceLifecycle
import Synchronization

/// Serves `/metrics`, `/healthz` and `/readyz` on a local port.
public final class OpsServer: Service, Sendable {
    private let host: String
    private let port: Int
    private let registry: PrometheusCollectorRegistry
    private let readiness: @Sendable () async -> Bool
    private let group: any EventLoopGroup
    private let logger: Logger
    /// The bound port, whether the server has stopped, and the callers waiting for the port.
    private struct Binding {
        var port: Int?
        var finished = false
        var waiters: [CheckedContinuation<Int?, Never>] = []
    }

    private let binding = Mutex(Binding())

    /// - Parameters:
    ///   - host: address to bind (127.0.0.1 by default in the configuration).
    ///   - port: port to bind; 0 picks a free one (see `boundPort()`).
    ///   - registry: the Prometheus registry that backs swift-metrics.
    ///   - readiness: true when the daemon can do its work (database reachable, …).
    public init(
        host: String, port: Int, registry: PrometheusCollectorRegistry, readiness: @escaping @Sendable () async -> Bool,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, logger: Logger
    ) {
        self.host = host
        self.port = port
        self.registry = registry
        self.readiness = readiness
        self.group = group
        self.logger = logger
    }

    /// The port the server listens on, once bound; nil if it stopped or never bound.
    public func boundPort() async -> Int? {
        await withCheckedContinuation { continuation in
            let ready: Int?? = binding.withLock {
                if let port = $0.port { return .some(port) }
                if $0.finished { return .some(nil) }
                $0.waiters.append(continuation)
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }

    /// Serves until graceful shutdown.
    public func run() async throws {
        defer { setBound(nil, finished: true) }
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    return try NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>(wrappingChannelSynchronously: channel)
                }
            }
        setBound(server.channel.localAddress?.port, finished: false)
        logger.info("operations server listening", metadata: ["port": .stringConvertible(server.channel.localAddress?.port ?? 0)])
        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { connections in
                try await server.executeThenClose { inbound in
                    for try await connection in inbound {
                        connections.addTask { await self.serve(connection) }
                    }
                }
            }
        } onGracefulShutdown: {
            server.channel.close(promise: nil)
        }
    }

    private func setBound(_ port: Int?, finished: Bool) {
        let waiters: [CheckedContinuation<Int?, Never>] = binding.withLock { binding in
            binding.port = port
            binding.finished = finished
            defer { binding.waiters.removeAll() }
            return binding.waiters
        }
        for waiter in waiters { waiter.resume(returning: port) }
    }

    private func serve(_ connection: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>) async {
        do {
            try await connection.executeThenClose { inbound, outbound in
                var request: HTTPRequestHead?
                for try await part in inbound {
                    switch part {
                    case .head(let head): request = head
                    case .body: continue
                    case .end:
                        guard let head = request else { return }
                        let (status, contentType, body) = await respond(to: head)
                        var headers = HTTPHeaders()
                        headers.add(name: "Content-Type", value: contentType)
                        headers.add(name: "Content-Length", value: String(body.count))
                        headers.add(name: "Connection", value: "close")
                        try await outbound.write(.head(HTTPResponseHead(version: head.version, status: status, headers: headers)))
                        if head.method != .HEAD {
                            try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: body))))
                        }
                        try await outbound.write(.end(nil))
                        return
                    }
                }
            }
        } catch {
            // A connection's errors come from NIO (resets, malformed requests): the type is logged, no text.
            logger.debug("operations connection ended with an error", metadata: ["error_type": .string(String(reflecting: type(of: error)))])
        }
    }

    func respond(to head: HTTPRequestHead) async -> (HTTPResponseStatus, String, [UInt8]) {
        guard head.method == .GET || head.method == .HEAD else {
            return (.methodNotAllowed, "text/plain; charset=utf-8", Array("method not allowed\n".utf8))
        }
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        switch path {
        case "/metrics":
            return (.ok, "text/plain; version=0.0.4; charset=utf-8", registry.emitToBuffer())
        case "/healthz":
            return (.ok, "text/plain; charset=utf-8", Array("ok\n".utf8))
        case "/readyz":
            return await readiness()
                ? (.ok, "text/plain; charset=utf-8", Array("ready\n".utf8))
                : (.serviceUnavailable, "text/plain; charset=utf-8", Array("not ready\n".utf8))
        default:
            return (.notFound, "text/plain; charset=utf-8", Array("not found\n".utf8))
        }
    }
}
