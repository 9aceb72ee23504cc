import Foundation

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
    private struct Envelope<Payload: Encodable>: Encodable {
        var eventType: String
        var event: Payload
        enum CodingKeys: String, CodingKey {
            case eventType = "event_type"
            case event
        }
    }

    private struct EmptyObject: Codable {}

    private struct TypeOnly: Decodable {
        var eventType: String
        enum CodingKeys: String, CodingKey { case eventType = "event_type" }
    }

    private struct StorageEnvelope: Decodable {
        var event: StorageStatus
    }

    /// The frame text, with sorted keys like the reference daemon.
    public func encodedText() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data: Data
        switch self {
        case .storage(let status):
            data = try! encoder.encode(Envelope(eventType: eventType, event: status))
        default:
            data = try! encoder.encode(Envelope(eventType: eventType, event: EmptyObject()))
        }
        return String(decoding: data, as: UTF8.self)
    }

    /// Decodes one frame's bytes.
    public init(decoding bytes: some Collection<UInt8>) throws(StorageEventDecodingError) {
        let data = Data(bytes)
        let decoder = JSONDecoder()
        let type: String
        do {
            type = try decoder.decode(TypeOnly.self, from: data).eventType
        } catch {
            throw StorageEventDecodingError(reason: "not a JSON object with a string \"event_type\"")
        }
        switch type {
        case "loop": self = .loop
        case "ping": self = .ping
        case "pong": self = .pong
        case "storage":
            do {
                self = .storage(try decoder.decode(StorageEnvelope.self, from: data).event)
            } catch {
                throw StorageEventDecodingError(reason: "a storage event without clients, data.path and data.write_allowed")
            }
        default: self = .unknown(type: type)
        }
    }
}
