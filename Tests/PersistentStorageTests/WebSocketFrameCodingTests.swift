import PersistentStorageProtocol
import NIOCore
import NIOEmbedded
import NIOWebSocket
import PersistentStorageTestSupport
import Testing

@testable import PersistentStorage

/// The client's own frame reading and writing, checked against NIO's frame
/// encoder and decoder, which a daemon built on NIO uses.
@Suite("WebSocket frame coding")
struct WebSocketFrameCodingTests {
    /// `frame` as NIO's encoder writes it: what a NIO daemon sends.
    private func encodedByNIO(_ frame: WebSocketFrame) throws -> ByteBuffer {
        let channel = EmbeddedChannel(handler: WebSocketFrameEncoder())
        defer { _ = try? channel.finish() }
        try channel.writeOutbound(frame)
        var all = ByteBuffer()
        while var part = try channel.readOutbound(as: ByteBuffer.self) { all.writeBuffer(&part) }
        return all
    }

    /// What NIO's decoder reads from `bytes`: what a NIO daemon receives.
    private func decodedByNIO(_ bytes: ByteBuffer) throws -> [WebSocketFrame] {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: 1 << 20)))
        defer { _ = try? channel.finish() }
        try channel.writeInbound(bytes)
        var frames: [WebSocketFrame] = []
        while let frame = try channel.readInbound(as: WebSocketFrame.self) { frames.append(frame) }
        return frames
    }

    private static func frame(_ opcode: WebSocketOpcode, fin: Bool = true, size: Int, maskKey: WebSocketMaskingKey? = nil) -> WebSocketFrame {
        let payload = ByteBuffer(bytes: (0..<size).map { UInt8(truncatingIfNeeded: $0 * 7) })
        return WebSocketFrame(fin: fin, opcode: opcode, maskKey: maskKey, data: payload)
    }

    @Test("frames as NIO writes them are read back, with 7-, 16- and 64-bit lengths", arguments: [0, 5, 125, 126, 65_535, 65_536, 70_000])
    func readsWhatNIOWrites(size: Int) throws {
        for original in [Self.frame(.text, size: size), Self.frame(.continuation, fin: false, size: size)] {
            var bytes = try encodedByNIO(original)
            let read = try WebSocketFrameCoding.readFrame(from: &bytes, maximumSize: 1 << 20)
            #expect(read?.opcode == original.opcode)
            #expect(read?.fin == original.fin)
            #expect(read?.unmaskedData == original.data)
            #expect(bytes.readableBytes == 0)
        }
    }

    @Test("a frame arriving a byte at a time is read once it is whole, and nothing is taken before")
    func readsInPieces() throws {
        let masked = Self.frame(.text, size: 300, maskKey: WebSocketMaskingKey([1, 2, 3, 4]))
        let whole = try encodedByNIO(masked)
        var buffer = ByteBuffer()
        for (index, byte) in whole.readableBytesView.enumerated() {
            buffer.writeInteger(byte)
            let read = try WebSocketFrameCoding.readFrame(from: &buffer, maximumSize: 1 << 20)
            if index < whole.readableBytes - 1 {
                #expect(read == nil)
                #expect(buffer.readableBytes == index + 1)
            } else {
                #expect(read?.maskKey == WebSocketMaskingKey([1, 2, 3, 4]))
                #expect(read?.unmaskedData == Self.frame(.text, size: 300).data)
            }
        }
    }

    @Test("two frames in one read come out one after the other")
    func readsBackToBack() throws {
        var bytes = try encodedByNIO(Self.frame(.ping, size: 4))
        var second = try encodedByNIO(Self.frame(.text, size: 10))
        bytes.writeBuffer(&second)
        #expect(try WebSocketFrameCoding.readFrame(from: &bytes, maximumSize: 100)?.opcode == .ping)
        #expect(try WebSocketFrameCoding.readFrame(from: &bytes, maximumSize: 100)?.opcode == .text)
        #expect(try WebSocketFrameCoding.readFrame(from: &bytes, maximumSize: 100) == nil)
    }

    @Test("a frame over the bound fails by its header alone, with 1009")
    func tooLarge() throws {
        // The header of a 64-bit-length frame of 2^40 bytes and no payload.
        var header = ByteBuffer(bytes: [0x81, 127])
        header.writeInteger(UInt64(1) << 40)
        #expect(throws: WebSocketFrameCoding.ReadFailure.frameTooLarge(limit: 65_536)) {
            _ = try WebSocketFrameCoding.readFrame(from: &header, maximumSize: 65_536)
        }
        #expect(WebSocketFrameCoding.ReadFailure.frameTooLarge(limit: 1).closeCode == .messageTooLarge)
    }

    @Test("control frames must be whole and short: otherwise 1002")
    func controlFrameRules() throws {
        var fragmentedPing = ByteBuffer(bytes: [0x09, 0x00])
        #expect(throws: WebSocketFrameCoding.ReadFailure.fragmentedControlFrame) {
            _ = try WebSocketFrameCoding.readFrame(from: &fragmentedPing, maximumSize: 1000)
        }
        var longClose = ByteBuffer(bytes: [0x88, 126, 0x00, 126])
        #expect(throws: WebSocketFrameCoding.ReadFailure.controlFrameTooLong) {
            _ = try WebSocketFrameCoding.readFrame(from: &longClose, maximumSize: 1000)
        }
        #expect(WebSocketFrameCoding.ReadFailure.controlFrameTooLong.closeCode == .protocolError)
    }

    @Test("frames the client writes are masked and read by NIO as sent", arguments: [0, 2, 125, 126, 70_000])
    func writesWhatNIOReads(size: Int) throws {
        let key: WebSocketMaskingKey = [0xA1, 0xB2, 0xC3, 0xD4]
        let original = Self.frame(.connectionClose, size: min(size, 125))
        let text = Self.frame(.text, size: size)
        var bytes = ByteBuffer()
        WebSocketFrameCoding.write(original, maskedWith: key, to: &bytes)
        WebSocketFrameCoding.write(text, maskedWith: key, to: &bytes)
        let frames = try decodedByNIO(bytes)
        #expect(frames.count == 2)
        #expect(frames.map(\.opcode) == [.connectionClose, .text])
        #expect(frames.allSatisfy { $0.maskKey == key && $0.fin })
        #expect(frames.first?.unmaskedData == original.data)
        #expect(frames.last?.unmaskedData == text.data)
        // The payload on the wire is not the plain one (unless it is empty).
        if size > 0 { #expect(frames.last?.data != text.data) }
        // Writing leaves the frame's own buffer as it was.
        #expect(text.data == Self.frame(.text, size: size).data)
    }

    /// NIO's decoder over `bytes`: the frames it reads, and whether it failed.
    private func nioReading(_ bytes: ByteBuffer, maximumSize: Int) -> (frames: [WebSocketFrame], failed: Bool) {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: maximumSize)))
        defer { _ = try? channel.finish() }
        let failed = (try? channel.writeInbound(bytes)) == nil
        var frames: [WebSocketFrame] = []
        while let frame = try? channel.readInbound(as: WebSocketFrame.self) { frames.append(frame) }
        return (frames, failed)
    }

    @Test("seeded fuzzing: the same frames and the same failures as NIO's decoder, whatever the chunking")
    func agreesWithNIO() throws {
        let seed = UInt64.random(in: 1...UInt64.max)
        var random = SeededRandom(seed: seed)
        let maximumSize = 300
        for round in 0..<3000 {
            // A few frames, mostly well formed, with random header bits, lengths
            // around the size classes and the bound, masks or none, and now
            // and then raw garbage.
            var bytes = ByteBuffer()
            for _ in 0..<Int.random(in: 1...4, using: &random) {
                if Int.random(in: 0..<10, using: &random) == 0 {
                    bytes.writeBytes(random.bytes(Int.random(in: 1...12, using: &random)))
                    continue
                }
                let length = [0, 1, 125, 126, 127, 299, 300, 301, 65_536].randomElement(using: &random)!
                    + Int.random(in: 0...2, using: &random)
                let first = UInt8.random(in: 0...255, using: &random)
                let masked = Bool.random(using: &random)
                bytes.writeInteger(first)
                switch length {
                case ..<126: bytes.writeInteger((masked ? 0x80 : 0) | UInt8(length))
                case ...0xFFFF:
                    bytes.writeInteger((masked ? 0x80 : 0) | UInt8(126))
                    bytes.writeInteger(UInt16(length))
                default:
                    bytes.writeInteger((masked ? 0x80 : 0) | UInt8(127))
                    bytes.writeInteger(UInt64(length))
                }
                if masked { bytes.writeBytes(random.bytes(4)) }
                // Sometimes cut short: the frame is then incomplete.
                let payload = Int.random(in: 0..<8, using: &random) == 0 ? Int.random(in: 0...length, using: &random) : length
                bytes.writeBytes(random.bytes(min(payload, 400)))
            }
            let expected = nioReading(bytes, maximumSize: maximumSize)

            // Ours, the reader both ends use, fed in random chunks.
            var reader = WebSocketFrameReader(maximumSize: maximumSize)
            var frames: [WebSocketFrame] = []
            var failed = false
            var input = bytes
            reading: while input.readableBytes > 0 {
                reader.append(input.readSlice(length: min(input.readableBytes, Int.random(in: 1...64, using: &random)))!)
                do {
                    while let frame = try reader.nextFrame() { frames.append(frame) }
                } catch {
                    failed = true
                    break reading
                }
            }
            // Whatever is left over is the start of a frame, and the reader says so.
            if !failed {
                var rest = bytes
                while (try? WebSocketFrameCoding.readFrame(from: &rest, maximumSize: maximumSize)).flatMap({ $0 }) != nil {}
                #expect(reader.isInsideFrame == (rest.readableBytes > 0), "round \(round), seed \(seed)")
            }
            #expect(failed == expected.failed, "round \(round), seed \(seed): failed \(failed), NIO \(expected.failed)")
            #expect(frames == expected.frames, "round \(round), seed \(seed): \(frames.count) frames, NIO \(expected.frames.count)")
            if failed != expected.failed || frames != expected.frames { break }
        }
    }

    @Test("frames the daemon writes are unmasked and read by NIO as sent", arguments: [0, 122, 126, 70_000])
    func writesUnmasked(size: Int) throws {
        let text = Self.frame(.text, size: size)
        var bytes = ByteBuffer()
        WebSocketFrameCoding.write(text, maskedWith: nil, to: &bytes)
        // Byte for byte what NIO's own encoder writes.
        #expect(bytes == (try encodedByNIO(text)))
        let frames = try decodedByNIO(bytes)
        #expect(frames.count == 1)
        #expect(frames.first?.maskKey == nil)
        #expect(frames.first?.data == text.data)
    }
}

