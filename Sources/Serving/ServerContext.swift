// ServerContext: the request context of every route: who is asking (from the bearer token) and from where.
// Authentication sets `principal`; each route names the roles it admits with `require(_:)`, so one path can
// serve different roles by method (GET /studies for readers, POST /studies for uploaders).
import Hummingbird
import Logging
import NIOCore

/// The request context of the archive server.
public struct ServerContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The token's holder, once `BearerAuthentication` has run; nil without a (known) token.
    public var principal: Principal?
    /// Why no principal: nil, `missingToken` or `unknownToken`.
    var authenticationFailure: ServingError?
    /// The peer's address, for the audit.
    public let peer: String?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        peer = source.channel.remoteAddress?.ipAddress
    }

    /// Uploads (STOW-RS) may be larger than Hummingbird's 2 MiB default.
    public var maxUploadSize: Int { 512 * 1024 * 1024 }

    /// The principal when its role is one of `roles`; else throws 401 (no or unknown token) or 403.
    public func require(_ roles: Set<Role>) throws(ServingError) -> Principal {
        guard let principal else { throw authenticationFailure ?? .missingToken }
        guard roles.contains(principal.role) else { throw .roleNotAllowed }
        return principal
    }
}

/// Resolves `Authorization: Bearer <token>` to a principal. Never refuses by itself: routes decide (the results
/// page and CORS preflights need no token).
struct BearerAuthentication: RouterMiddleware {
    let tokens: AccessTokens

    func handle(_ request: Request, context: ServerContext, next: (Request, ServerContext) async throws -> Response) async throws -> Response {
        var context = context
        if let header = request.headers[.authorization] {
            let parts = header.split(separator: " ", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == "bearer", let principal = tokens.principal(for: String(parts[1]).trimmingCharacters(in: .whitespaces)) {
                context.principal = principal
                context.logger[metadataKey: "principal"] = .string(principal.name)
            } else {
                context.authenticationFailure = .unknownToken
            }
        } else {
            context.authenticationFailure = .missingToken
        }
        return try await next(request, context)
    }
}

/// Turns every error into the one error shape: `ServingError`s as they are, the store's and the database's
/// outages as 503, anything else as 500 (logged by type only: errors may quote values).
struct ErrorShape: RouterMiddleware {
    typealias Context = ServerContext
    let classify: @Sendable (any Error) -> ServingError

    func handle(_ request: Request, context: ServerContext, next: (Request, ServerContext) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as ServingError {
            return try error.response(from: request, context: context)
        } catch let error as HTTPError {
            // The router's own 404 and 405, and Hummingbird's body-size limit.
            let shaped: ServingError = switch error.status {
            case .notFound: .notFound
            case .contentTooLarge: .payloadTooLarge
            case .methodNotAllowed: .notFound
            default: .badRequest("request")
            }
            return try shaped.response(from: request, context: context)
        } catch {
            let shaped = classify(error)
            context.logger.error("request failed", metadata: ["error_type": .string(String(describing: type(of: error))), "reason": .string(shaped.reason)])
            return try shaped.response(from: request, context: context)
        }
    }
}

/// CORS for a viewer on another origin: preflights answered without a token, the allowed origin echoed on
/// every answer (errors included). `origins == ["*"]` admits any origin.
struct CrossOrigin: RouterMiddleware {
    typealias Context = ServerContext
    let origins: [String]

    func allowed(_ origin: String) -> String? {
        if origins == ["*"] { return "*" }
        return origins.contains(origin) ? origin : nil
    }

    func handle(_ request: Request, context: ServerContext, next: (Request, ServerContext) async throws -> Response) async throws -> Response {
        guard let origin = request.headers[.origin], let allowed = allowed(origin) else { return try await next(request, context) }
        if request.method == .options, request.headers[.accessControlRequestMethod] != nil {
            return Response(status: .noContent, headers: [
                .accessControlAllowOrigin: allowed, .accessControlAllowMethods: "GET, HEAD, POST, OPTIONS",
                .accessControlAllowHeaders: "Accept, Authorization, Content-Type", .accessControlMaxAge: "600", .vary: "Origin",
            ])
        }
        var response = try await next(request, context)
        response.headers[.accessControlAllowOrigin] = allowed
        response.headers[.accessControlExposeHeaders] = "Content-Type, Content-Length, Warning"
        response.headers[values: .vary].append("Origin")
        return response
    }
}
