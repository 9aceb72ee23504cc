import PersistentStorageProtocol
import Logging
import NIOCore
import NIOWebSocket
import Testing

@testable import PersistentStorage

/// What both clients make of the daemon's bytes after the upgrade.
@Suite("Reading the daemon's events")
struct DaemonEventReaderTests {
    private static let writable = StorageStatus(clients: 1, data: .init(path: "/var/lib/kvmd/pst/data", writeAllowed: true))

    private static func frame(_ opcode: WebSocketOpcode, _ payload: [UInt8], fin: Bool = true) -> ByteBuffer {
        var bytes = ByteBuffer()
        WebSocketFrameCoding.write(WebSocketFrame(fin: fin, opcode: opcode, data: ByteBuffer(bytes: payload)), maskedWith: nil, to: &bytes)
        return bytes
    }

    private static func text(_ event: StorageEvent) -> [UInt8] { Array(event.encodedText().utf8) }

    /// Everything `reader` makes of `bytes`, fed one byte at a time.
    private static func incoming(from bytes: ByteBuffer, reader: inout DaemonEventReader) -> [DaemonEventReader.Incoming] {
        var all: [DaemonEventReader.Incoming] = []
        for byte in bytes.readableBytesView {
            reader.append(ByteBuffer(bytes: [byte]))
            while let next = reader.next() { all.append(next) }
        }
        return all
    }

    @Test("statuses, pings and the close code come out in order; loop, pong, unknown and unreadable events are skipped")
    func inOrder() {
        var bytes = Self.frame(.text, Self.text(.loop))
        bytes.writeImmutableBuffer(Self.frame(.text, Self.text(.storage(Self.writable))))
        bytes.writeImmutableBuffer(Self.frame(.pong, []))
        bytes.writeImmutableBuffer(Self.frame(.ping, Array("beat".utf8)))
        bytes.writeImmutableBuffer(Self.frame(.text, Array(#"{"event_type": "news", "event": {}}"#.utf8)))
        bytes.writeImmutableBuffer(Self.frame(.text, Array("not json".utf8)))
        // A fragmented status is read whole.
        let status = Self.text(.storage(Self.writable))
        bytes.writeImmutableBuffer(Self.frame(.text, Array(status.prefix(10)), fin: false))
        bytes.writeImmutableBuffer(Self.frame(.continuation, Array(status.dropFirst(10))))
        bytes.writeImmutableBuffer(Self.frame(.connectionClose, [0x03, 0xE9, 0x21]))
        // Nothing after a close frame is read.
        bytes.writeImmutableBuffer(Self.frame(.text, Self.text(.storage(Self.writable))))
        var reader = DaemonEventReader(logger: Logger(label: "test"))
        #expect(Self.incoming(from: bytes, reader: &reader) == [
            .status(Self.writable), .ping(payload: ByteBuffer(string: "beat")), .status(Self.writable),
            .close(code: ByteBuffer(bytes: [0x03, 0xE9])),
        ])
        #expect(reader.connectionEndReason == .connectionClosed)
    }

    @Test("broken frames name their close code, or none where the client just hangs up")
    func broken() {
        let cases: [(ByteBuffer, DaemonEventReader.Incoming)] = [
            (Self.frame(.text, [UInt8](repeating: 0x20, count: 65_537)),
             .broken(closeCode: .messageTooLarge, reason: "invalid WebSocket frame (a frame larger than 65536 bytes)")),
            (Self.frame(.ping, [], fin: false),
             .broken(closeCode: .protocolError, reason: "invalid WebSocket frame (a fragmented control frame)")),
            (Self.frame(.continuation, [1]),
             .broken(closeCode: .protocolError, reason: "invalid WebSocket message (a continuation frame without a message to continue)")),
            (Self.frame(.binary, [1]), .broken(closeCode: nil, reason: "the daemon sent a binary frame")),
        ]
        for (bytes, expected) in cases {
            var reader = DaemonEventReader(logger: Logger(label: "test"))
            var followed = bytes
            followed.writeImmutableBuffer(Self.frame(.text, Self.text(.storage(Self.writable))))
            #expect(Self.incoming(from: followed, reader: &reader) == [expected])
        }
    }

    @Test("a connection that ends inside a frame is a protocol violation, between frames it is a closed connection")
    func endOfConnection() {
        var reader = DaemonEventReader(logger: Logger(label: "test"))
        reader.append(Self.frame(.text, Self.text(.storage(Self.writable))))
        #expect(reader.next() == .status(Self.writable))
        #expect(reader.connectionEndReason == .connectionClosed)
        reader.append(Self.frame(.text, Self.text(.loop)).getSlice(at: 0, length: 5)!)
        #expect(reader.next() == nil)
        #expect(reader.connectionEndReason == .protocolViolation("the daemon closed the connection in the middle of a WebSocket frame"))
    }
}
