import PersistentStorageProtocol
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket

/// A stand-in for the daemon that plays a script per WebSocket session, so
/// tests can send what a real daemon rarely does (fragments, pings, refusals,
/// garbage) and look at exactly what the client sent.
enum ScriptedDaemon {
    /// What `GET /state` answers.
    struct StateAnswer: Sendable {
        var status: HTTPResponseStatus = .ok
        var body = #"{"ok": true, "result": {"clients": 0, "data": {"path": "/tmp", "write_allowed": false}}}"#
    }

    /// Serves on a fresh socket while `body` runs, then shuts down and removes it.
    ///
    /// `greeting` is sent on the event loop as soon as a session is upgraded,
    /// like `GET /state`'s answer: neither waits for a free thread of the
    /// cooperative pool, so a test whose client has a short deadline does not
    /// depend on how busy the other tests keep that pool.
    static func withDaemon<T: Sendable>(
        state: StateAnswer = StateAnswer(),
        greeting: StorageEventText? = nil,
        session script: @escaping @Sendable (ScriptedSession) async throws -> Void,
        _ body: (_ socketPath: String) async throws -> T
    ) async throws -> T {
        let directory = FileManager.default.temporaryDirectory.appending(path: "scripted-daemon-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let socketPath = directory.appending(path: "pst.sock").path(percentEncoded: false)

        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(unixDomainSocketPath: socketPath) { channel in
                channel.eventLoop.makeCompletedFuture { try configure(channel, state: state, greeting: greeting) }
            }
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await withThrowingDiscardingTaskGroup { connections in
                    try await server.executeThenClose { inbound in
                        for try await upgrade in inbound {
                            connections.addTask {
                                guard case .webSocket(let channel, let head)? = try? await upgrade.get() else { return }
                                try? await channel.executeThenClose { inbound, outbound in
                                    try await script(ScriptedSession(requestHead: head, inbound: inbound, outbound: outbound))
                                }
                            }
                        }
                    }
                }
            }
            defer { group.cancelAll() }
            let result = try await body(socketPath)
            try await server.channel.close()
            return result
        }
    }

    private enum Connection: Sendable {
        case webSocket(NIOAsyncChannel<WebSocketFrame, WebSocketFrame>, HTTPRequestHead)
        /// A plain HTTP request, answered by ``StateAnswerHandler``.
        case http
    }

    private static func configure(
        _ channel: any Channel, state: StateAnswer, greeting: StorageEventText?
    ) throws -> EventLoopFuture<Connection> {
        let upgrader = NIOTypedWebSocketServerUpgrader<Connection>(
            // No frame aggregator: the script sees each frame the client sent.
            shouldUpgrade: { channel, _ in channel.eventLoop.makeSucceededFuture(HTTPHeaders()) },
            upgradePipelineHandler: { channel, head in
                channel.eventLoop.makeCompletedFuture {
                    if let greeting {
                        channel.writeAndFlush(WebSocketFrame(fin: true, opcode: .text, data: ByteBuffer(string: greeting.text)), promise: nil)
                    }
                    return .webSocket(try NIOAsyncChannel(wrappingChannelSynchronously: channel), head)
                }
            }
        )
        let configuration = NIOTypedHTTPServerUpgradeConfiguration(
            upgraders: [upgrader],
            notUpgradingCompletionHandler: { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(StateAnswerHandler(answer: state))
                    return .http
                }
            }
        )
        return try channel.pipeline.syncOperations.configureUpgradableHTTPServerPipeline(
            configuration: .init(upgradeConfiguration: configuration)
        )
    }
}

/// Answers one HTTP request with the scripted `GET /state` answer, then closes.
private final class StateAnswerHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let answer: ScriptedDaemon.StateAnswer

    init(answer: ScriptedDaemon.StateAnswer) { self.answer = answer }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .end = unwrapInboundIn(data) else { return }
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Content-Length", value: "\(answer.body.utf8.count)")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: answer.status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: answer.body)))), promise: nil)
        let context = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.value.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in context.value.close(promise: nil) }
    }
}

/// One WebSocket session as the scripted daemon sees it.
struct ScriptedSession: Sendable {
    let requestHead: HTTPRequestHead
    let inbound: NIOAsyncChannelInboundStream<WebSocketFrame>
    let outbound: NIOAsyncChannelOutboundWriter<WebSocketFrame>

    func send(_ event: StorageEventText) async throws {
        try await outbound.write(WebSocketFrame(fin: true, opcode: .text, data: ByteBuffer(string: event.text)))
    }

    /// Sends `event` split into frames of `size` bytes (RFC 6455 5.4).
    func sendFragmented(_ event: StorageEventText, size: Int) async throws {
        let bytes = Array(event.text.utf8)
        let chunks = stride(from: 0, to: bytes.count, by: size).map { Array(bytes[$0..<min($0 + size, bytes.count)]) }
        for (index, chunk) in chunks.enumerated() {
            let frame = WebSocketFrame(
                fin: index == chunks.count - 1,
                opcode: index == 0 ? .text : .continuation,
                data: ByteBuffer(bytes: chunk)
            )
            try await outbound.write(frame)
        }
    }

    func send(_ frame: WebSocketFrame) async throws {
        try await outbound.write(frame)
    }

    /// Waits until the client ends the session, answering its close frame.
    /// Returns every frame the client sent meanwhile.
    @discardableResult
    func untilClientCloses() async throws -> [WebSocketFrame] {
        var received: [WebSocketFrame] = []
        for try await frame in inbound {
            received.append(frame)
            if frame.opcode == .connectionClose {
                try await outbound.write(WebSocketFrame(fin: true, opcode: .connectionClose, data: ByteBuffer()))
                break
            }
        }
        return received
    }
}

/// Event texts as the daemon sends them.
struct StorageEventText: Sendable {
    var text: String

    static let loop = StorageEventText(text: #"{"event_type": "loop", "event": {}}"#)

    /// - Parameter eventType: `storage`, or `storage_state` as kvmd 4.8 to 4.35 named it.
    static func storage(writeAllowed: Bool, path: String, clients: Int = 1, eventType: String = "storage") -> StorageEventText {
        StorageEventText(
            text: #"{"event_type": "\#(eventType)", "event": {"clients": \#(clients), "data": {"path": "\#(path)", "write_allowed": \#(writeAllowed)}}}"#
        )
    }
}
