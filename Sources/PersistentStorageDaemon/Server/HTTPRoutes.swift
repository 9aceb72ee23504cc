import NIOCore
import PersistentStorageProtocol

/// The daemon's answer to each well-formed request: a session for an
/// admissible WebSocket upgrade of `GET /ws`, `GET /state`, `GET /metrics`,
/// and the reference's error answers for everything else
/// (Documentation/Protocol.md lists them). Counts refused sessions by reason.
struct HTTPRoutes {
    /// What ``HTTPRequestReader`` does with the request.
    enum Answer {
        /// `101`, then the connection is a session.
        case session(key: String)
        case response(DaemonResponse)
        /// The controller's answer, once it is ready.
        case later(@Sendable () async -> DaemonResponse)
    }

    let controller: RemountController
    let peerIsAllowed: Bool
    let log: PeerLogger

    func answer(_ head: RequestHead) -> Answer {
        let path = head.path
        let metrics = controller.metrics
        guard peerIsAllowed else {
            log.warning("refused \(head.method) \(head.target): not root and not in the socket's group")
            if path == "/ws" { metrics.sessionRefused(.forbidden) }
            return .response(.forbidden)
        }
        let controller = controller
        switch path {
        case "/state":
            return answerGET(head) { .success(await controller.report) }
        case "/metrics":
            return answerGET(head) { .metrics(await controller.metricsExposition()) }
        case "/state/":
            return .response(.permanentRedirect(to: "/state"))
        case "/ws":
            return answerUpgrade(head)
        default:
            return .response(.notFound)
        }
    }

    /// A `GET` route whose answer the controller gives: `405` for another
    /// method, `413` for a request with a body (no route reads one).
    private func answerGET(_ head: RequestHead, _ answer: @escaping @Sendable () async -> DaemonResponse) -> Answer {
        guard head.method == "GET" else { return .response(.methodNotAllowed(head.method, allowed: "GET")) }
        guard head.body == .none else { return .response(.bodyNotTaken) }
        return .later(answer)
    }

    /// `/ws`: a session if the upgrade is valid and the daemon takes one now.
    /// Full or shutting down is `503` whatever the handshake's details;
    /// a request that is no upgrade at all, or a broken one, `400`.
    private func answerUpgrade(_ head: RequestHead) -> Answer {
        let metrics = controller.metrics
        guard head.method == "GET" else {
            metrics.sessionRefused(.badRequest)
            return .response(.methodNotAllowed(head.method, allowed: "GET"))
        }
        guard head.hasToken("websocket", inFieldsNamed: "upgrade") else {
            metrics.sessionRefused(.badRequest)
            return .response(.webSocketExpected)
        }
        guard controller.acceptsSessionsNow else {
            metrics.sessionRefused(.unavailable)
            return .response(.tooManySessions)
        }
        guard let key = WebSocketUpgradeRequest.key(of: head) else {
            log.info("refused a WebSocket upgrade that is not valid (RFC 6455 4.2.1)")
            metrics.sessionRefused(.badRequest)
            return .response(.webSocketExpected)
        }
        return .session(key: key)
    }
}
