import Foundation
import NIOCore
import NIOPosix

/// A Unix socket server that answers the first request head on each
/// connection with fixed bytes (and then leaves the connection open, or
/// closes it with `thenClose`), for handshake answers no real daemon gives.
enum CannedAnswerServer {
    static func withServer<T: Sendable>(
        answer: @escaping @Sendable (_ requestHead: String) -> [UInt8]?,
        thenClose: Bool = false,
        _ body: (_ socketPath: String) async throws -> T
    ) async throws -> T {
        let directory = FileManager.default.temporaryDirectory.appending(path: "canned-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let socketPath = directory.appending(path: "pst.sock").path(percentEncoded: false)
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(Answerer(answer: answer, thenClose: thenClose)) }
            }
            .bind(unixDomainSocketPath: socketPath)
            .get()
        do {
            let result = try await body(socketPath)
            try? await server.close()
            return result
        } catch {
            try? await server.close()
            throw error
        }
    }

    private final class Answerer: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        let answer: @Sendable (String) -> [UInt8]?
        let thenClose: Bool
        var received = ""
        var answered = false

        init(answer: @escaping @Sendable (String) -> [UInt8]?, thenClose: Bool) {
            self.answer = answer
            self.thenClose = thenClose
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var bytes = unwrapInboundIn(data)
            received += bytes.readString(length: bytes.readableBytes) ?? ""
            guard !answered, let end = received.range(of: "\r\n\r\n") else { return }
            answered = true
            if let bytes = answer(String(received[..<end.upperBound])) {
                context.writeAndFlush(NIOAny(ByteBuffer(bytes: bytes)), promise: nil)
            }
            if thenClose { context.close(promise: nil) }
        }
    }
}
