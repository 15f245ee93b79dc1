// ServingError: the one error type of the HTTP server and the one error shape of every route group:
//   {"error": {"status": 403, "code": "role_not_allowed", "message": "…"}}
// The code is machine-readable snake_case; the message is generic and never carries request values, patient
// data, UIDs or object keys.
import CodedErrors
import Foundation
import Hummingbird

/// An error answered to an HTTP client.
public struct ServingError: CodedError, Hashable {
    public struct Code: ErrorCode {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public static let missingToken = Code(rawValue: "missing_token")
        public static let unknownToken = Code(rawValue: "unknown_token")
        public static let roleNotAllowed = Code(rawValue: "role_not_allowed")
        public static let badRequest = Code(rawValue: "bad_request")
        public static let notFound = Code(rawValue: "not_found")
        public static let notAcceptable = Code(rawValue: "not_acceptable")
        public static let payloadTooLarge = Code(rawValue: "payload_too_large")
        public static let unsupportedMediaType = Code(rawValue: "unsupported_media_type")
        public static let unprocessable = Code(rawValue: "unprocessable")
        public static let unavailable = Code(rawValue: "unavailable")
        public static let `internal` = Code(rawValue: "internal")
    }

    /// The machine-readable code.
    public let code: Code
    /// What was wrong, for `bad_request` and `unprocessable`: a parameter name or a reason code, never a value.
    public let detail: String?

    private init(_ code: Code, detail: String? = nil) {
        self.code = code
        self.detail = detail
    }

    /// No `Authorization: Bearer` header (401).
    public static let missingToken = ServingError(.missingToken)
    /// A bearer token that matches no configured token (401).
    public static let unknownToken = ServingError(.unknownToken)
    /// The token's role may not use this endpoint (403).
    public static let roleNotAllowed = ServingError(.roleNotAllowed)
    /// Nothing at this address, or no such study, series, instance, frame or diagnosis (404).
    public static let notFound = ServingError(.notFound)
    /// None of the accepted media types can be produced (406).
    public static let notAcceptable = ServingError(.notAcceptable)
    /// The request body is larger than allowed (413).
    public static let payloadTooLarge = ServingError(.payloadTooLarge)
    /// The request body's media type is not taken here (415).
    public static let unsupportedMediaType = ServingError(.unsupportedMediaType)
    /// The database or the object store does not answer now (503).
    public static let unavailable = ServingError(.unavailable)
    /// Anything else (500); the log has the cause.
    public static let `internal` = ServingError(.internal)
    /// A malformed request (400); `parameter` names the offending query parameter or path segment.
    public static func badRequest(_ parameter: String) -> ServingError { ServingError(.badRequest, detail: parameter) }
    /// A well-formed request that cannot be carried out on this object (422), e.g. a frame that cannot be decoded;
    /// `reason` is a machine-readable code.
    public static func unprocessable(_ reason: String) -> ServingError { ServingError(.unprocessable, detail: reason) }

    /// The HTTP status.
    public var status: HTTPResponse.Status {
        switch code {
        case .missingToken, .unknownToken: .unauthorized
        case .roleNotAllowed: .forbidden
        case .badRequest: .badRequest
        case .notFound: .notFound
        case .notAcceptable: .notAcceptable
        case .payloadTooLarge: .contentTooLarge
        case .unsupportedMediaType: .unsupportedMediaType
        case .unprocessable: .unprocessableContent
        case .unavailable: .serviceUnavailable
        default: .internalServerError
        }
    }

    /// A generic sentence for people.
    public var message: String {
        switch code {
        case .missingToken: "a bearer token is required"
        case .unknownToken: "the bearer token is not recognised"
        case .roleNotAllowed: "this token's role may not use this endpoint"
        case .badRequest: "the request is malformed" + (detail.map { " (\($0))" } ?? "")
        case .notFound: "not found"
        case .notAcceptable: "none of the accepted media types can be produced"
        case .payloadTooLarge: "the request body is too large"
        case .unsupportedMediaType: "the request body's media type is not supported"
        case .unprocessable: "the object cannot be served in this form" + (detail.map { " (\($0))" } ?? "")
        case .unavailable: "the archive is unavailable; retry later"
        default: "internal error"
        }
    }

    public var description: String { "ServingError(\(code.rawValue)\(detail.map { ", \($0)" } ?? ""))" }
}

extension ServingError: HTTPResponseError {
    private struct Body: Encodable {
        struct Detail: Encodable {
            let status: Int
            let code: String
            let message: String
            let detail: String?
        }
        let error: Detail
    }

    /// The JSON error document, with `WWW-Authenticate: Bearer` on 401.
    public func response(from request: Request, context: some RequestContext) throws -> Response {
        let body = Body(error: .init(status: status.code, code: reason, message: message, detail: detail))
        let data = try JSONEncoder().encode(body)
        var headers: HTTPFields = [.contentType: "application/json", .cacheControl: "no-store"]
        if status == .unauthorized { headers[.wwwAuthenticate] = "Bearer realm=\"dicom-etl\"" }
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}
