#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// One text frame on the `/ws` WebSocket: `{"event_type": TYPE, "event": OBJECT}`.
package enum StorageEvent: Sendable, Equatable {
    /// Sent by the daemon right after the upgrade.
    case loop
    /// The session set or the mount state changed (daemon to client).
    ///
    /// Read from `storage` and from `storage_state`, the same event's name in
    /// kvmd 4.8 to 4.35 (kvmd 4.36 renamed it), so that a client works with
    /// either daemon; always written as `storage`.
    case storage(StorageStatus)
    /// Client to daemon; answered with ``pong``.
    case ping
    /// The daemon's answer to ``ping``.
    case pong
    /// An event type this side does not know; the protocol says to log and ignore it.
    case unknown(type: String)

    package var eventType: String {
        switch self {
        case .loop: "loop"
        case .storage: "storage"
        case .ping: "ping"
        case .pong: "pong"
        case .unknown(let type): type
        }
    }
}

extension StorageEvent {
    /// The names a daemon gives the ``storage(_:)`` event: `storage` since
    /// kvmd 4.36, `storage_state` in kvmd 4.8 to 4.35.
    package static let storageEventTypes: Set<String> = ["storage", "storage_state"]
}

/// A frame whose text is not a valid event.
package struct StorageEventDecodingError: Error, CustomStringConvertible, Equatable {
    package var reason: String
    package init(reason: String) { self.reason = reason }
    package var description: String { "invalid event: \(reason)" }
}

extension StorageEvent {
    /// The frame text, with sorted keys like the reference daemon.
    ///
    /// Written by hand rather than with `JSONEncoder`: the daemon sends one of
    /// these per session per change, and a `JSONEncoder` run (a new encoder,
    /// key sorting, a `Data`) was the costliest step of a send. The output
    /// is byte for byte what `JSONEncoder` with `.sortedKeys` and
    /// `.withoutEscapingSlashes` produces; a test holds the two together.
    package func encodedText() -> String {
        var text = "{\"event\":"
        if case .storage(let status) = self { text.reserveCapacity(96 + status.data.path.utf8.count) }
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
        // Paths and event types rarely need escaping: those go in whole
        // (the daemon encodes one event per new session).
        let needsEscaping = string.utf8.contains { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }
        guard needsEscaping else {
            text += string
            text += "\""
            return
        }
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
            guard StorageEvent.storageEventTypes.contains(eventType) else { return }
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
    package init(decoding bytes: some Collection<UInt8>) throws(StorageEventDecodingError) {
        let array = Array(bytes)
        if let event = array.withUnsafeBufferPointer(StorageEvent.init(plainJSON:)) {
            self = event
        } else {
            try self.init(decodingWithJSONDecoder: array)
        }
    }

    /// Decodes with `JSONDecoder`: any valid JSON, with its error messages.
    init(decodingWithJSONDecoder bytes: [UInt8]) throws(StorageEventDecodingError) {
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
        case "storage", "storage_state":
            switch frame.status {
            case .success(let status)?: self = .storage(status)
            case .failure(let error)?: throw error
            case nil: throw StorageEventDecodingError(reason: "a storage event without clients, data.path and data.write_allowed")
            }
        default: self = .unknown(type: frame.eventType)
        }
    }
}

extension StorageEvent {
    /// The events daemons actually send, read in one pass without
    /// `JSONDecoder`, which was a tenth of a client's CPU time per session
    /// (Documentation/Benchmarks.md). It takes only plain JSON: the keys
    /// `event_type` and `event` once each, `event` empty or a status with
    /// exactly `clients` (digits), `data.path` (a string without escapes)
    /// and `data.write_allowed`, in any order and with any whitespace. For
    /// anything else (escapes, other keys, other values) it returns nil and
    /// `JSONDecoder` decides, so both always agree; the fuzzer checks that.
    init?(plainJSON bytes: UnsafeBufferPointer<UInt8>) {
        var scanner = PlainJSONScanner(bytes: bytes)
        var eventType: String?
        var status: StorageStatus?
        var sawEvent = false
        let members = scanner.object { key, scanner in
            switch key {
            case "event_type" where eventType == nil:
                eventType = scanner.string()
                return eventType != nil
            case "event" where !sawEvent:
                sawEvent = true
                if scanner.emptyObject() { return true }
                status = scanner.status()
                return status != nil
            default:
                return false
            }
        }
        guard members, scanner.atEnd, let eventType else { return nil }
        switch eventType {
        case "loop": self = .loop
        case "ping": self = .ping
        case "pong": self = .pong
        case "storage", "storage_state":
            guard let status else { return nil }
            self = .storage(status)
        default: self = .unknown(type: eventType)
        }
    }
}

/// The scanner behind ``StorageEvent/init(plainJSON:)``: every method
/// returns nil or false for what it does not take, and the caller gives up.
private struct PlainJSONScanner {
    let bytes: UnsafeBufferPointer<UInt8>
    var index = 0

    init(bytes: UnsafeBufferPointer<UInt8>) {
        self.bytes = bytes
        skipWhitespace()
    }

    var atEnd: Bool { index == bytes.count }

    mutating func skipWhitespace() {
        while index < bytes.count, bytes[index] == 0x20 || bytes[index] == 0x0A || bytes[index] == 0x0D || bytes[index] == 0x09 {
            index += 1
        }
    }

    mutating func take(_ byte: UInt8) -> Bool {
        guard index < bytes.count, bytes[index] == byte else { return false }
        index += 1
        skipWhitespace()
        return true
    }

    /// `{ "key": value, ... }`, at least one member; `member` reads each value.
    mutating func object(_ member: (String, inout PlainJSONScanner) -> Bool) -> Bool {
        guard take(UInt8(ascii: "{")) else { return false }
        repeat {
            guard let key = string(), take(UInt8(ascii: ":")), member(key, &self) else { return false }
        } while take(UInt8(ascii: ","))
        return take(UInt8(ascii: "}"))
    }

    mutating func emptyObject() -> Bool {
        let start = index
        if take(UInt8(ascii: "{")) && take(UInt8(ascii: "}")) { return true }
        index = start
        return false
    }

    /// A string without escapes or control characters, in valid UTF-8.
    mutating func string() -> String? {
        guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { return nil }
        let start = index + 1
        var end = start
        while end < bytes.count, bytes[end] != UInt8(ascii: "\"") {
            guard bytes[end] >= 0x20, bytes[end] != UInt8(ascii: "\\") else { return nil }
            end += 1
        }
        guard end < bytes.count, let text = String(validating: bytes[start..<end], as: UTF8.self) else { return nil }
        index = end + 1
        skipWhitespace()
        return text
    }

    /// Digits only, without a leading zero, small enough for any `Int`.
    mutating func count() -> Int? {
        var end = index
        while end < bytes.count, bytes[end] >= UInt8(ascii: "0"), bytes[end] <= UInt8(ascii: "9") { end += 1 }
        let digits = end - index
        guard digits >= 1, digits <= 18, digits == 1 || bytes[index] != UInt8(ascii: "0") else { return nil }
        var value = 0
        for position in index..<end { value = value * 10 + Int(bytes[position] - UInt8(ascii: "0")) }
        index = end
        skipWhitespace()
        return value
    }

    mutating func boolean() -> Bool? {
        for (word, value) in [("true", true), ("false", false)] {
            let utf8 = Array(word.utf8)
            if bytes.count - index >= utf8.count && bytes[index..<index + utf8.count].elementsEqual(utf8) {
                index += utf8.count
                skipWhitespace()
                return value
            }
        }
        return nil
    }

    /// `{"clients": N, "data": {"path": "...", "write_allowed": BOOL}}`, each key once.
    mutating func status() -> StorageStatus? {
        var clients: Int?
        var path: String?
        var writeAllowed: Bool?
        var sawData = false
        let complete = object { key, scanner in
            switch key {
            case "clients" where clients == nil:
                clients = scanner.count()
                return clients != nil
            case "data" where !sawData:
                sawData = true
                return scanner.object { key, scanner in
                    switch key {
                    case "path" where path == nil:
                        path = scanner.string()
                        return path != nil
                    case "write_allowed" where writeAllowed == nil:
                        writeAllowed = scanner.boolean()
                        return writeAllowed != nil
                    default:
                        return false
                    }
                }
            default:
                return false
            }
        }
        guard complete, let clients, let path, let writeAllowed else { return nil }
        return StorageStatus(clients: clients, data: .init(path: path, writeAllowed: writeAllowed))
    }
}
