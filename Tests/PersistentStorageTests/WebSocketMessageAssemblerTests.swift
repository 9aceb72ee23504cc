import PersistentStorageProtocol
import NIOCore
import NIOWebSocket
import Testing

@testable import PersistentStorage

@Suite("Joining fragmented WebSocket messages")
struct WebSocketMessageAssemblerTests {
    private func frame(_ opcode: WebSocketOpcode, fin: Bool, _ text: String, masked: Bool = false) -> WebSocketFrame {
        var frame = WebSocketFrame(fin: fin, opcode: opcode, data: ByteBuffer(string: text))
        if masked {
            // A masked frame carries its bytes masked; unmaskedData undoes it.
            let key = WebSocketMaskingKey([1, 2, 3, 4])!
            var data = ByteBuffer(string: text)
            data.webSocketMask(key)
            frame = WebSocketFrame(fin: fin, opcode: opcode, maskKey: key, data: data)
        }
        return frame
    }

    @Test("whole messages pass, fragments are joined (masked ones unmasked), and it starts afresh after")
    func joins() {
        var assembler = WebSocketMessageAssembler(maximumSize: 100, maximumFragments: 3, minimumNonFinalFragmentSize: 1)
        #expect(assembler.add(frame(.text, fin: true, "whole")) == .message(.text, ByteBuffer(string: "whole")))
        #expect(assembler.add(frame(.text, fin: false, "ab", masked: true)) == .incomplete)
        #expect(assembler.add(frame(.continuation, fin: false, "cd", masked: true)) == .incomplete)
        #expect(assembler.add(frame(.continuation, fin: true, "ef", masked: true)) == .message(.text, ByteBuffer(string: "abcdef")))
        #expect(assembler.add(frame(.binary, fin: true, "x")) == .message(.binary, ByteBuffer(string: "x")))
    }

    @Test("broken sequences and limits are failures with the RFC's close codes")
    func failures() {
        var assembler = WebSocketMessageAssembler(maximumSize: 5, maximumFragments: 2, minimumNonFinalFragmentSize: 2)
        #expect(assembler.add(frame(.continuation, fin: true, "x")) == .failure(.protocolError, "a continuation frame without a message to continue"))
        #expect(assembler.add(frame(.text, fin: false, "ab")) == .incomplete)
        #expect(assembler.add(frame(.text, fin: true, "c")) == .failure(.protocolError, "a new message began before the previous one ended"))
        #expect(assembler.add(frame(.text, fin: false, "a")) == .failure(.protocolError, "a fragment smaller than 2 bytes"))
        #expect(assembler.add(frame(.text, fin: false, "abcd")) == .incomplete)
        #expect(assembler.add(frame(.continuation, fin: true, "ef")) == .failure(.messageTooLarge, "a message larger than 5 bytes"))
        #expect(assembler.add(frame(.text, fin: false, "ab")) == .incomplete)
        #expect(assembler.add(frame(.continuation, fin: false, "cd")) == .incomplete)
        #expect(assembler.add(frame(.continuation, fin: true, "")) == .failure(.protocolError, "a message in more than 2 fragments"))
    }
}
