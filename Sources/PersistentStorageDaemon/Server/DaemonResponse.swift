#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Dispatch
import Glibc
import NIOCore
import NIOHTTP1
import PersistentStorageProtocol

/// A complete HTTP answer: the JSON envelope as the reference sends it, or
/// (`GET /metrics`) Prometheus' text.
struct DaemonResponse {
    var status: HTTPResponseStatus
    var headers: HTTPHeaders = [:]
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
    static func failure(_ status: HTTPResponseStatus, _ error: String, _ message: String, headers: HTTPHeaders = [:]) -> DaemonResponse {
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

    static func methodNotAllowed(_ method: HTTPMethod, allowed: String) -> DaemonResponse {
        failure(.methodNotAllowed, "HTTPMethodNotAllowed", "Method Not Allowed: \(method.rawValue)", headers: ["Allow": allowed])
    }

    static func permanentRedirect(to location: String) -> DaemonResponse {
        failure(.permanentRedirect, "HTTPPermanentRedirect", "Permanent Redirect", headers: ["Location": location])
    }

    /// Sorted keys like the reference; slashes left alone so paths read as paths.
    private static func encode(_ value: some Encodable) -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Every value encoded here is plain data; failing would be a programming error.
        return try! encoder.encode(value)
    }

    /// Writes head, body and end; closes the connection afterwards unless `keepAlive`.
    func write(to context: ChannelHandlerContext, keepAlive: Bool) {
        var head = HTTPResponseHead(version: .http1_1, status: status, headers: headers)
        head.headers.replaceOrAdd(name: "Content-Type", value: contentType)
        head.headers.replaceOrAdd(name: "Content-Length", value: String(body.count))
        head.headers.replaceOrAdd(name: "Connection", value: keepAlive ? "keep-alive" : "close")
        context.write(NIOAny(HTTPServerResponsePart.head(head)), promise: nil)
        context.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
        let written = context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil)))
        if !keepAlive {
            let channel = context.channel
            written.whenComplete { _ in channel.close(promise: nil) }
        }
    }
}
