import PersistentStorageProtocol

/// What a `GET /ws` must be to become a session (RFC 6455 4.2.1): HTTP/1.1
/// or later, `Upgrade: websocket`, `Connection: upgrade`, one
/// `Sec-WebSocket-Key` that is the base64 of 16 bytes, one
/// `Sec-WebSocket-Version: 13`, and no body, since the bytes after the head
/// are the first frames. Header names and tokens in any case.
enum WebSocketUpgradeRequest {
    /// The key of `head` if it is such an upgrade (method and path are the
    /// routes' to check), else nil.
    static func key(of head: RequestHead) -> String? {
        guard head.minorVersion >= 1, head.body == .none,
            head.hasToken("websocket", inFieldsNamed: "upgrade"), head.hasToken("upgrade", inFieldsNamed: "connection"),
            head.values(of: "sec-websocket-version") == ["13"]
        else { return nil }
        let keys = head.values(of: "sec-websocket-key")
        guard keys.count == 1, WebSocketAccept.isValidKey(keys[0].utf8) else { return nil }
        return keys[0]
    }
}
