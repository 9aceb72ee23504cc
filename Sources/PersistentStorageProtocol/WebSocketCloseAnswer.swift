import NIOCore
import NIOWebSocket

/// The close code to answer a peer's close frame with (RFC 6455 5.5.1, 7.4).
///
/// A valid close is echoed with its own code; a broken one fails the
/// connection as the RFC says. Why not echo whatever came: 1005, 1006 and
/// 1015 stand for "no code" in APIs and must never be sent, codes under
/// 1000 and in the unassigned ranges are not codes at all, and a one-byte
/// payload cannot hold one. aiohttp (the reference's server) answers all of
/// these with 1002, so a client sees the same from either daemon.
package enum WebSocketCloseAnswer {
    package static func code(answering payload: ByteBuffer) -> WebSocketErrorCode {
        var payload = payload
        switch payload.readableBytes {
        case 0:
            return .normalClosure  // No code given: a plain close.
        case 1:
            return .protocolError
        default:
            let code = payload.readInteger(as: UInt16.self)!
            guard isSendable(code) else { return .protocolError }
            // The reason, if any, must be UTF-8 (5.5.1); 1007 is for data that is not.
            guard payload.readableBytesView.isValidUTF8 else { return .dataInconsistentWithMessage }
            return WebSocketErrorCode(codeNumber: Int(code))
        }
    }

    /// Codes a peer may put in a close frame: the RFC's own that are not
    /// reserved for APIs (1000-1003, 1007-1011), those IANA registered since
    /// (1012-1014), and the ranges for libraries and applications (3000-4999).
    package static func isSendable(_ code: UInt16) -> Bool {
        switch code {
        case 1000...1003, 1007...1014, 3000...4999: true
        default: false
        }
    }
}

extension Collection<UInt8> {
    /// Whether the bytes are well-formed UTF-8.
    fileprivate var isValidUTF8: Bool {
        var iterator = makeIterator()
        var decoder = UTF8()
        while true {
            switch decoder.decode(&iterator) {
            case .scalarValue: continue
            case .emptyInput: return true
            case .error: return false
            }
        }
    }
}
