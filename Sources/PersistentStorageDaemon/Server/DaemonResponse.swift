#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import NIOCore
import PersistentStorageProtocol

/// A complete HTTP answer: the JSON envelope as the reference sends it, or
/// (`GET /metrics`) Prometheus' text. Every answer closes its connection.
struct DaemonResponse {
    /// A status code with its reason phrase.
    struct Status: Equatable {
        var code: Int
        var reason: String

        static let ok = Status(code: 200, reason: "OK")
        static let permanentRedirect = Status(code: 308, reason: "Permanent Redirect")
        static let badRequest = Status(code: 400, reason: "Bad Request")
        static let forbidden = Status(code: 403, reason: "Forbidden")
        static let notFound = Status(code: 404, reason: "Not Found")
        static let methodNotAllowed = Status(code: 405, reason: "Method Not Allowed")
        static let contentTooLarge = Status(code: 413, reason: "Content Too Large")
        static let requestHeaderFieldsTooLarge = Status(code: 431, reason: "Request Header Fields Too Large")
        static let serviceUnavailable = Status(code: 503, reason: "Service Unavailable")
        static let httpVersionNotSupported = Status(code: 505, reason: "HTTP Version Not Supported")
    }

    var status: Status
    var headers: [(name: String, value: String)] = []
    var body: Data
    var contentType = Self.jsonContentType

    /// `Content-Type` of the envelope, as the reference sends it.
    static let jsonContentType = "application/json; charset=utf-8"

    static func metrics(_ exposition: [UInt8]) -> DaemonResponse {
        DaemonResponse(status: .ok, body: Data(exposition), contentType: DaemonMetrics.contentType)
    }

    static func success<Result: Codable & Sendable>(_ result: Result) -> DaemonResponse {
        DaemonResponse(status: .ok, body: encode(ResponseEnvelope(ok: true, result: result)))
    }

    /// An error in the reference's envelope: `error` is the exception's name
    /// (aiohttp's for HTTP errors), `error_msg` the text.
    static func failure(
        _ status: Status, _ error: String, _ message: String, headers: [(name: String, value: String)] = []
    ) -> DaemonResponse {
        DaemonResponse(
            status: status, headers: headers,
            body: encode(ResponseEnvelope(ok: false, result: ErrorResult(error: error, errorMessage: message))))
    }

    static let notFound = failure(.notFound, "HTTPNotFound", "Not Found")
    static let forbidden = failure(.forbidden, "HTTPForbidden", "Forbidden: only root and members of the socket's group may use the persistent storage")
    static let badRequest = failure(.badRequest, "HTTPBadRequest", "Bad Request")
    static let headersTooLarge = failure(.requestHeaderFieldsTooLarge, "HTTPRequestHeaderFieldsTooLarge", "Request Header Fields Too Large")
    static let webSocketExpected = failure(.badRequest, "HTTPBadRequest", "Bad Request: /ws expects a WebSocket upgrade")
    static let tooManySessions = failure(.serviceUnavailable, "HTTPServiceUnavailable", "Service Unavailable: too many sessions, or the daemon is shutting down")
    static let bodyNotTaken = failure(.contentTooLarge, "HTTPRequestEntityTooLarge", "Content Too Large: requests to the daemon take no body")
    static let versionNotSupported = failure(.httpVersionNotSupported, "HTTPVersionNotSupported", "HTTP Version Not Supported: the daemon speaks HTTP/1.x")

    static func badRequest(_ why: String) -> DaemonResponse {
        failure(.badRequest, "HTTPBadRequest", "Bad Request: \(why)")
    }

    static func methodNotAllowed(_ method: String, allowed: String) -> DaemonResponse {
        failure(.methodNotAllowed, "HTTPMethodNotAllowed", "Method Not Allowed: \(method)", headers: [("Allow", allowed)])
    }

    static func permanentRedirect(to location: String) -> DaemonResponse {
        failure(.permanentRedirect, "HTTPPermanentRedirect", "Permanent Redirect", headers: [("Location", location)])
    }

    /// Sorted keys like the reference; slashes left alone so paths read as paths.
    private static func encode(_ value: some Encodable) -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Every value encoded here is plain data; failing would be a programming error.
        return try! encoder.encode(value)
    }

    /// The whole answer as bytes: status line, fields, `Connection: close`, body.
    func encoded(allocator: ByteBufferAllocator) -> ByteBuffer {
        var head = "HTTP/1.1 \(status.code) \(status.reason)\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        head += "Content-Type: \(contentType)\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n"
        var buffer = allocator.buffer(capacity: head.utf8.count + body.count)
        buffer.writeString(head)
        buffer.writeBytes(body)
        return buffer
    }
}
