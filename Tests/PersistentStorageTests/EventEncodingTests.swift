@testable import PersistentStorageProtocol
import Foundation
import Testing

@testable import PersistentStorage

/// `StorageEvent.encodedText()` is written by hand for speed; these hold it to
/// what `JSONEncoder` (sorted keys, unescaped slashes) writes, byte for byte.
@Suite("Event encoding")
struct EventEncodingTests {
    private struct Envelope<Payload: Encodable>: Encodable {
        var eventType: String
        var event: Payload
        enum CodingKeys: String, CodingKey {
            case eventType = "event_type"
            case event
        }
    }

    private struct EmptyObject: Encodable {}

    private func reference<Payload: Encodable>(_ type: String, _ event: Payload) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(Envelope(eventType: type, event: event)), as: UTF8.self)
    }

    static let paths: [String] = [
        "/var/lib/kvmd/pst/data", "", "/with \"quotes\" and \\backslash\\", "/tab\tnew\nline\rcr",
        "/ctl\u{0}\u{1}\u{8}\u{B}\u{C}\u{1F}\u{7F}", "/unicode/é/日本/😀/\u{2028}\u{2029}",
        String((0..<128).map { Character(Unicode.Scalar(UInt8($0))) }),
    ]

    @Test("a storage event is encoded as JSONEncoder encodes it", arguments: paths, [0, 1, 10_000, -3])
    func storageEvent(path: String, clients: Int) throws {
        for writeAllowed in [true, false] {
            let status = StorageStatus(clients: clients, data: .init(path: path, writeAllowed: writeAllowed))
            let text = StorageEvent.storage(status).encodedText()
            #expect(text == (try reference("storage", status)))
            #expect(try StorageEvent(decoding: Array(text.utf8)) == .storage(status))
        }
    }

    @Test("events without a payload are encoded as JSONEncoder encodes them",
          arguments: [StorageEvent.loop, .ping, .pong, .unknown(type: "odd \"type\"/\n")])
    func emptyEvents(event: StorageEvent) throws {
        #expect(event.encodedText() == (try reference(event.eventType, EmptyObject())))
        #expect(try StorageEvent(decoding: Array(event.encodedText().utf8)) == event)
    }

    @Test("decoding keeps its errors: no event_type, and a storage event without a valid event")
    func decodingErrors() throws {
        #expect(throws: StorageEventDecodingError(reason: "not a JSON object with a string \"event_type\"")) {
            try StorageEvent(decoding: Array(#"{"event":{}}"#.utf8))
        }
        for text in [#"{"event_type":"storage"}"#, #"{"event_type":"storage","event":{"clients":1}}"#] {
            #expect(throws: StorageEventDecodingError(reason: "a storage event without clients, data.path and data.write_allowed")) {
                try StorageEvent(decoding: Array(text.utf8))
            }
        }
        #expect(try StorageEvent(decoding: Array(#"{"event_type":"pong","event":[1,2]}"#.utf8)) == .pong)
        #expect(try StorageEvent(decoding: Array(#"{"event_type":"loop"}"#.utf8)) == .loop)
    }

    @Test("storage_state (kvmd 4.8 to 4.35) is read as the storage event, with the same errors, and written back as storage")
    func legacyEventName() throws {
        let status = StorageStatus(clients: 2, data: .init(path: "/var/lib/kvmd/pst", writeAllowed: false))
        let legacy = #"{"event_type": "storage_state", "event": {"clients": 2, "data": {"path": "/var/lib/kvmd/pst", "write_allowed": false}}}"#
        #expect(try StorageEvent(decoding: Array(legacy.utf8)) == .storage(status))
        #expect(try StorageEvent(decodingWithJSONDecoder: Array(legacy.utf8)) == .storage(status))
        #expect(StorageEvent.storage(status).encodedText().contains(#""event_type":"storage""#))
        #expect(throws: StorageEventDecodingError(reason: "a storage event without clients, data.path and data.write_allowed")) {
            try StorageEvent(decoding: Array(#"{"event_type":"storage_state","event":{"clients":1}}"#.utf8))
        }
        // Only the two names: a look-alike stays unknown.
        #expect(try StorageEvent(decoding: Array(#"{"event_type":"storage_states","event":{}}"#.utf8)) == .unknown(type: "storage_states"))
    }

    /// What the fast path must take, and what it must leave to JSONDecoder.
    static let plainInputs: [(String, StorageEvent?)] = [
        (#"{"event":{"clients":1,"data":{"path":"/var/lib/kvmd/pst/data","write_allowed":true}},"event_type":"storage"}"#,
         .storage(StorageStatus(clients: 1, data: .init(path: "/var/lib/kvmd/pst/data", writeAllowed: true)))),
        // The Python daemon's json.dumps: spaces, the other key order.
        (#"{"event_type": "storage", "event": {"clients": 0, "data": {"write_allowed": false, "path": "/pst/ünï"}}}"#,
         .storage(StorageStatus(clients: 0, data: .init(path: "/pst/ünï", writeAllowed: false)))),
        // kvmd 4.8 to 4.35 name the same event storage_state.
        (#"{"event_type": "storage_state", "event": {"clients": 1, "data": {"path": "/var/lib/kvmd/pst", "write_allowed": true}}}"#,
         .storage(StorageStatus(clients: 1, data: .init(path: "/var/lib/kvmd/pst", writeAllowed: true)))),
        (" {\n\t\"event_type\" : \"loop\" , \"event\" : { } } \r\n", .loop),
        (#"{"event_type": "pong"}"#, .pong),
        (#"{"event_type": "news", "event": {}}"#, .unknown(type: "news")),
        // Left to JSONDecoder: escapes, other keys, other numbers, duplicates, nesting.
        (#"{"event_type": "storage", "event": {"clients": 1, "data": {"path": "/a\\/b", "write_allowed": true}}}"#, nil),
        (#"{"event_type": "storage", "event": {"clients": 1, "data": {"path": "/a", "write_allowed": true, "x": 1}}}"#, nil),
        (#"{"event_type": "storage", "event": {"clients": 1.0, "data": {"path": "/a", "write_allowed": true}}}"#, nil),
        (#"{"event_type": "storage", "event": {"clients": 01, "data": {"path": "/a", "write_allowed": true}}}"#, nil),
        (#"{"event_type": "loop", "event_type": "ping"}"#, nil),
        (#"{"event_type": "loop", "event": [1]}"#, nil),
        (#"{"event_type": "storage", "event": {}}"#, nil),
        (#"{"event_type": "storage_state", "event": {}}"#, nil),
        (#"{"event_type": "storage_state", "event": {"clients": 1, "data": {"path": "/a\\/b", "write_allowed": false}}}"#, nil),
        (#"{"event_type": "storage"}"#, nil),
        (#"{"event_type": "loop"} x"#, nil),
        (#"{"event_type": "loop""#, nil),
        ("", nil),
    ]

    @Test("the plain-JSON fast path reads what daemons send, and agrees with JSONDecoder", arguments: plainInputs)
    func plainJSON(text: String, expected: StorageEvent?) {
        let bytes = Array(text.utf8)
        let fast = bytes.withUnsafeBufferPointer(StorageEvent.init(plainJSON:))
        #expect(fast == expected)
        let slow = try? StorageEvent(decodingWithJSONDecoder: bytes)
        if let fast { #expect(slow == fast) }
        #expect((try? StorageEvent(decoding: bytes)) == slow)
    }
}
