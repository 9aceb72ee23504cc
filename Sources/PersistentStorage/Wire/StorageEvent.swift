#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// One text frame on the `/ws` WebSocket: `{"event_type": TYPE, "event": OBJECT}`.
public enum StorageEvent: Sendable, Equatable {
    /// Sent by the daemon right after the upgrade.
    case loop
    /// The session set or the mount state changed (daemon to client).
    case storage(StorageStatus)
    /// Client to daemon; answered with ``pong``.
    case ping
    /// The daemon's answer to ``ping``.
    case pong
    /// An event type this side does not know; the protocol says to log and ignore it.
    case unknown(type: String)

    public var eventType: String {
        switch self {
        case .loop: "loop"
        case .storage: "storage"
        case .ping: "ping"
        case .pong: "pong"
        case .unknown(let type): type
        }
    }
}

/// A frame whose text is not a valid event.
public struct StorageEventDecodingError: Error, CustomStringConvertible, Equatable {
    public var reason: String
    public init(reason: String) { self.reason = reason }
    public var description: String { "invalid event: \(reason)" }
}

extension StorageEvent {
    /// The frame text, with sorted keys like the reference daemon.
    ///
    /// Written by hand rather than with `JSONEncoder`: the daemon sends one of
    /// these per session per change, and a `JSONEncoder` run (a new encoder,
    /// key sorting, a `Data`) was the costliest step of a send. The output
    /// is byte for byte what `JSONEncoder` with `.sortedKeys` and
    /// `.withoutEscapingSlashes` produces; a test holds the two together.
    public func encodedText() -> String {
        var text = "{\"event\":"
        switch self {
        case .storage(let status):
            text += "{\"clients\":"
            text += String(status.clients)
            text += ",\"data\":{\"path\":"
            Self.appendJSONString(status.data.path, to: &text)
            text += ",\"write_allowed\":"
            text += status.data.writeAllowed ? "true" : "false"
            text += "}}"
        default:
            text += "{}"
        }
        text += ",\"event_type\":"
        Self.appendJSONString(eventType, to: &text)
        text += "}"
        return text
    }

    /// A JSON string literal, escaped the way `JSONEncoder` escapes it.
    private static func appendJSONString(_ string: String, to text: inout String) {
        text += "\""
        for scalar in string.unicodeScalars {
            switch scalar {
            case "\"": text += "\\\""
            case "\\": text += "\\\\"
            case "\n": text += "\\n"
            case "\r": text += "\\r"
            case "\t": text += "\\t"
            case "\u{8}": text += "\\b"
            case "\u{C}": text += "\\f"
            case "\u{0}"..."\u{1F}":
                let hex = String(scalar.value, radix: 16)
                text += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: text.unicodeScalars.append(scalar)
            }
        }
        text += "\""
    }

    /// The whole frame in one pass: `event` is read only for `storage`, so
    /// other types may carry anything there (or nothing), as before.
    private struct Frame: Decodable {
        var eventType: String
        var status: Result<StorageStatus, StorageEventDecodingError>?

        enum CodingKeys: String, CodingKey {
            case eventType = "event_type"
            case event
        }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            eventType = try container.decode(String.self, forKey: .eventType)
            guard eventType == "storage" else { return }
            do {
                status = .success(try container.decode(StorageStatus.self, forKey: .event))
            } catch {
                status = .failure(StorageEventDecodingError(reason: "a storage event without clients, data.path and data.write_allowed"))
            }
        }
    }

    /// One for every frame, instead of two new ones per frame as before:
    /// decoding with a shared `JSONDecoder` is safe from any thread.
    private static let decoder = JSONDecoder()

    /// Decodes one frame's bytes.
    public init(decoding bytes: some Collection<UInt8>) throws(StorageEventDecodingError) {
        let frame: Frame
        do {
            frame = try Self.decoder.decode(Frame.self, from: Data(bytes))
        } catch {
            throw StorageEventDecodingError(reason: "not a JSON object with a string \"event_type\"")
        }
        switch frame.eventType {
        case "loop": self = .loop
        case "ping": self = .ping
        case "pong": self = .pong
        case "storage":
            switch frame.status {
            case .success(let status)?: self = .storage(status)
            case .failure(let error)?: throw error
            case nil: throw StorageEventDecodingError(reason: "a storage event without clients, data.path and data.write_allowed")
            }
        default: self = .unknown(type: frame.eventType)
        }
    }
}
