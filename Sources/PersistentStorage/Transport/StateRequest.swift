#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import PersistentStorageProtocol
import NIOCore
import NIOHTTP1

/// `GET /state` over the daemon's socket, one request per connection.
enum StateRequest {
    /// The daemon's answer: the status, or the error it reported in the envelope.
    enum Answer: Sendable, Equatable {
        case state(DaemonState)
        /// The daemon's error envelope, and the HTTP status it came with.
        case failure(ErrorResult, statusCode: Int)
    }

    /// Bounds what a broken or hostile peer can make a client buffer. swift-pst's
    /// daemon lists every session (about 150 bytes each, up to 100,000 with
    /// `--max-sessions`) and up to 16 busy holders with paths of up to 4 KiB.
    static let maximumBodySize = 32 * 1024 * 1024

    static func fetch(from endpoint: DaemonEndpoint) async throws -> Answer {
        let channel = try await endpoint.connect { channel, _ in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHTTPClientHandlers()
                return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(
                    wrappingChannelSynchronously: channel
                )
            }
        }
        let (head, body) = try await withTimeout(endpoint.timeout, waitingFor: "GET /state") {
            try await channel.executeThenClose { inbound, outbound in
                // One write for the head and the end: a GET is complete with
                // its head, and a server may answer and close at once, before
                // a separate write of the (empty) end would reach the channel.
                try await outbound.write(contentsOf: [.head(.daemonRequest(path: "/state")), .end(nil)])
                return try await readResponse(from: inbound)
            }
        }
        return try decode(status: head.status, body: body)
    }

    private static func readResponse(
        from inbound: NIOAsyncChannelInboundStream<HTTPClientResponsePart>
    ) async throws -> (HTTPResponseHead, ByteBuffer) {
        var head: HTTPResponseHead?
        var body = ByteBuffer()
        for try await part in inbound {
            switch part {
            case .head(let responseHead):
                head = responseHead
            case .body(var chunk):
                guard body.readableBytes + chunk.readableBytes <= maximumBodySize else {
                    throw PersistentStorageError.protocolViolation("the /state answer is larger than \(maximumBodySize) bytes")
                }
                body.writeBuffer(&chunk)
            case .end:
                guard let head else { break }
                return (head, body)
            }
        }
        throw PersistentStorageError.protocolViolation("the connection closed before the /state answer was complete")
    }

    /// Decodes the envelope; the HTTP status only matters when the body is not one.
    static func decode(status: HTTPResponseStatus, body: ByteBuffer) throws(PersistentStorageError) -> Answer {
        let data = Data(body.readableBytesView)
        let decoder = JSONDecoder()
        struct OkOnly: Decodable { var ok: Bool }
        guard let ok = try? decoder.decode(OkOnly.self, from: data).ok else {
            throw .protocolViolation("GET /state answered \(status.code) without a JSON envelope")
        }
        if ok, let envelope = try? decoder.decode(ResponseEnvelope<DaemonState>.self, from: data) {
            return .state(envelope.result)
        }
        if !ok, let envelope = try? decoder.decode(ResponseEnvelope<ErrorResult>.self, from: data) {
            return .failure(envelope.result, statusCode: Int(status.code))
        }
        throw .protocolViolation("GET /state answered \(status.code) with an envelope whose result has unexpected fields")
    }
}
