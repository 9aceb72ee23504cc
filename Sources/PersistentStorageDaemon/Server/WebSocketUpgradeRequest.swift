import NIOHTTP1
import PersistentStorageProtocol

/// What a request must be for NIO's upgrader to make it a session: the
/// same rules ``UpgradeFastPath`` applies to the bytes of the common one,
/// so that the two ways in accept exactly the same upgrades.
///
/// NIO's upgrader checks the `Upgrade`, `Connection` and version headers
/// and that there is one key; the rest (RFC 6455 4.2.1) is ours: `GET`,
/// HTTP/1.1 or later, the path `/ws`, a key that is the base64 of 16 bytes,
/// and no body, since the bytes after the head are the first frames.
enum WebSocketUpgradeRequest {
    static func isAcceptable(_ head: HTTPRequestHead) -> Bool {
        guard head.method == .GET, head.version.major > 1 || (head.version.major == 1 && head.version.minor >= 1),
            head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first == "/ws"
        else { return false }
        let keys = head.headers[canonicalForm: "sec-websocket-key"]
        guard keys.count == 1, let key = keys.first, WebSocketAccept.isValidKey(key.utf8) else { return false }
        let lengths = head.headers[canonicalForm: "content-length"]
        guard lengths.allSatisfy({ $0 == "0" }), !head.headers.contains(name: "transfer-encoding") else { return false }
        return true
    }
}
