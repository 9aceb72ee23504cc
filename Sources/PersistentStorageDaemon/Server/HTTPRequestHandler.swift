import NIOCore
import NIOHTTP1
import PersistentStorageProtocol

/// Answers the plain HTTP routes: `GET /state`, `GET /metrics`, and the
/// reference's error answers for everything else. `/ws` upgrades never get here; a request for
/// `/ws` that does was not a (valid, admissible) upgrade.
final class HTTPRequestHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let controller: RemountController
    private let peer: PeerCredentials
    private let peerIsAllowed: Bool
    private let log: PeerLogger
    private var request: HTTPRequestHead?

    init(controller: RemountController, peer: PeerCredentials, peerIsAllowed: Bool, log: PeerLogger) {
        self.controller = controller
        self.peer = peer
        self.peerIsAllowed = peerIsAllowed
        self.log = log
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            request = head
        case .body:
            break  // No route takes a body; it is read and dropped.
        case .end:
            guard let head = request else { return }
            request = nil
            respond(to: head, context: context)
        }
    }

    private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
        let metrics = controller.metrics
        guard peerIsAllowed else {
            log.warning("refused \(head.method) \(head.uri): not root and not in the socket's group")
            if path == "/ws" { metrics.sessionRefused(.forbidden) }
            DaemonResponse.forbidden.write(to: context, keepAlive: false)
            return
        }
        // NIO's upgrade handler leaves the pipeline after the first request
        // that is not an upgrade, so a kept-alive connection could never
        // become a session; aiohttp's clients (the reference's) reuse pooled
        // connections for `ws_connect`. Closing after every plain answer makes
        // them dial afresh, which costs nothing on a local socket.
        let keepAlive = false
        switch path {
        case "/state":
            let controller = controller
            answerGET(head, context: context) { .success(await controller.report) }
        case "/metrics":
            let controller = controller
            answerGET(head, context: context) { .metrics(await controller.metricsExposition()) }
        case "/state/":
            DaemonResponse.permanentRedirect(to: "/state").write(to: context, keepAlive: keepAlive)
        case "/ws":
            guard head.method == .GET else {
                metrics.sessionRefused(.badRequest)
                DaemonResponse.methodNotAllowed(head.method, allowed: "GET").write(to: context, keepAlive: keepAlive)
                return
            }
            guard head.headers[canonicalForm: "upgrade"].contains(where: { $0.lowercased() == "websocket" }) else {
                metrics.sessionRefused(.badRequest)
                DaemonResponse.webSocketExpected.write(to: context, keepAlive: keepAlive)
                return
            }
            // An upgrade that was not done: either the daemon refused it (full,
            // shutting down) or the handshake headers were wrong.
            // The same answer the upgrader got (``RemountController/acceptsSessionsNow``).
            let admissible = controller.acceptsSessionsNow
            metrics.sessionRefused(admissible ? .badRequest : .unavailable)
            let response = admissible ? DaemonResponse.webSocketExpected : DaemonResponse.tooManySessions
            response.write(to: context, keepAlive: false)
        default:
            DaemonResponse.notFound.write(to: context, keepAlive: keepAlive)
        }
    }

    /// A `GET` route whose answer the controller gives: `405` for another
    /// method, else `answer`'s result once it is ready, then the connection closes.
    private func answerGET(
        _ head: HTTPRequestHead, context: ChannelHandlerContext, _ answer: @escaping @Sendable () async -> DaemonResponse
    ) {
        guard head.method == .GET else {
            DaemonResponse.methodNotAllowed(head.method, allowed: "GET").write(to: context, keepAlive: false)
            return
        }
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.eventLoop.makeFutureWithTask(answer).whenSuccess { response in
            response.write(to: loopBound.value, keepAlive: false)
        }
    }
}
