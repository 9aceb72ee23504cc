import PersistentStorageProtocol
import Foundation
import Glibc
import PersistentStorageMount
import PersistentStorageTestBed
import PersistentStorageTestSupport
import Synchronization
import Testing

@Suite("Sessions on /ws against a real mount", .serialized)
struct SessionWireTests {
    @Test("a session gets loop, then storage with write_allowed true; closing it makes the storage RO again", .enabled(if: RealMounts.enabled))
    func loopThenStorageThenReadOnly() async throws {
        try await withDaemonTestBed { bed in
            let session = try bed.openSession()
            let event = try #require(try DaemonTestBed.nextStorageEvent(on: session))
            #expect(event["clients"] as? Int == 1)
            #expect((event["data"] as? [String: Any])?["path"] as? String == bed.fixture.dataPath)
            #expect(DaemonTestBed.writeAllowed(in: event) == true)
            #expect(bed.fixture.state == .readWrite)
            #expect(try bed.writeAllowed() == true)

            try session.sendFrame(RawWebSocketFrame(opcode: RawWebSocketFrame.close, payload: [0x03, 0xE8]))
            let reply = try session.readFrame()
            #expect(reply?.opcode == RawWebSocketFrame.close)
            #expect(await eventually { bed.fixture.state == .readOnly })
            // The kernel shows RO a moment before the daemon counts the remount.
            _ = try await eventually { try bed.remounts().ro == 2 }
            let counters = try bed.remounts()
            #expect(counters.rw == 2 && counters.ro == 2 && counters.failed == 0)
        }
    }

    @Test("a ping event gets a pong event; bad JSON and unknown events are ignored", .enabled(if: RealMounts.enabled))
    func pingAndJunk() async throws {
        try await withDaemonTestBed { bed in
            let session = try bed.openSession()
            _ = try DaemonTestBed.nextStorageEvent(on: session)
            try session.sendText("{not json")
            try session.sendText(#"{"event_type": "surprise", "event": {}}"#)
            try session.sendText(#"["an", "array"]"#)
            try session.sendText(#"{"event_type": "ping", "event": {}}"#)
            let pong = try #require(try session.readJSONMessage())
            #expect(pong["event_type"] as? String == "pong")
            #expect(try bed.clients() == 1)
        }
    }

    @Test("100 overlapping sessions cause one RW and one RO remount", .enabled(if: RealMounts.enabled))
    func overlappingSessions() async throws {
        try await withDaemonTestBed { bed in
            let before = try bed.remounts()
            var sessions: [RawUnixSocketClient] = []
            for _ in 0..<100 {
                let session = try RawUnixSocketClient(path: bed.socketPath)
                try session.upgradeToWebSocket()
                sessions.append(session)
            }
            for session in sessions {
                var event = try #require(try DaemonTestBed.nextStorageEvent(on: session))
                // Later events carry growing client counts; the first is what matters.
                #expect(DaemonTestBed.writeAllowed(in: event) == true)
                event = [:]
            }
            #expect(try bed.clients() == 100)
            for session in sessions { session.close() }
            #expect(await eventually { bed.fixture.state == .readOnly })
            #expect(try await eventually { try bed.clients() == 0 })
            // The kernel shows RO a moment before the daemon counts the remount.
            _ = try await eventually { try bed.remounts().ro - before.ro >= 1 }
            let after = try bed.remounts()
            #expect(after.rw - before.rw == 1)
            #expect(after.ro - before.ro == 1)
            #expect(after.failed == before.failed)
        }
    }

    @Test("an external remount to RO reaches every session within a second", .enabled(if: RealMounts.enabled))
    func externalRemountIsBroadcast() async throws {
        try await withDaemonTestBed { bed in
            let sessions = try (0..<2).map { _ in try bed.openSession() }
            for session in sessions {
                while DaemonTestBed.writeAllowed(in: try DaemonTestBed.nextStorageEvent(on: session)) != true {}
            }
            let remountedAt = ContinuousClock.now
            try bed.fixture.remountExternally(.readOnly)
            for session in sessions {
                session.timeout = .seconds(1)
                var revoked = false
                while !revoked, let event = try DaemonTestBed.nextStorageEvent(on: session) {
                    revoked = DaemonTestBed.writeAllowed(in: event) == false
                }
                #expect(revoked)
            }
            #expect(ContinuousClock.now - remountedAt < .seconds(1))
            #expect(try bed.writeAllowed() == false)
        }
    }

    @Test("a binary frame ends the session", .enabled(if: RealMounts.enabled))
    func binaryFrameEndsSession() async throws {
        try await withDaemonTestBed { bed in
            let session = try bed.openSession()
            _ = try DaemonTestBed.nextStorageEvent(on: session)
            try session.sendFrame(RawWebSocketFrame(opcode: RawWebSocketFrame.binary, payload: [1, 2, 3]))
            var closeCode: UInt16?
            while let frame = try session.readFrame() {
                if frame.opcode == RawWebSocketFrame.close { closeCode = frame.closeCode }
            }
            #expect(closeCode == 1003)
            #expect(try await eventually { try bed.clients() == 0 })
            #expect(await eventually { bed.fixture.state == .readOnly })
        }
    }

    @Test("a frame over 64 KiB ends the session with 1009", .enabled(if: RealMounts.enabled))
    func oversizedFrameEndsSession() async throws {
        try await withDaemonTestBed { bed in
            let session = try bed.openSession()
            _ = try DaemonTestBed.nextStorageEvent(on: session)
            try session.sendText(String(repeating: "x", count: 70 * 1024))
            var closeCode: UInt16?
            while let frame = try session.readFrame() {
                if frame.opcode == RawWebSocketFrame.close { closeCode = frame.closeCode }
            }
            #expect(closeCode == 1009)
            #expect(try await eventually { try bed.clients() == 0 })
        }
    }

    @Test("a fragmented control frame ends the session with 1002", .enabled(if: RealMounts.enabled))
    func fragmentedControlFrameEndsSession() async throws {
        try await withDaemonTestBed { bed in
            let session = try bed.openSession()
            _ = try DaemonTestBed.nextStorageEvent(on: session)
            try session.sendFrame(RawWebSocketFrame(fin: false, opcode: RawWebSocketFrame.ping, payload: [1]))
            var closeCode: UInt16?
            while let frame = try session.readFrame() {
                if frame.opcode == RawWebSocketFrame.close { closeCode = frame.closeCode }
            }
            #expect(closeCode == 1002)
            #expect(try await eventually { try bed.clients() == 0 })
        }
    }

    @Test("a fragmented event is joined; a stray continuation ends the session with 1002", .enabled(if: RealMounts.enabled))
    func fragmentedEvents() async throws {
        try await withDaemonTestBed { bed in
            let session = try bed.openSession()
            _ = try DaemonTestBed.nextStorageEvent(on: session)
            try session.sendFrame(RawWebSocketFrame(fin: false, opcode: RawWebSocketFrame.text, payload: Array(#"{"event_type": "#.utf8)))
            // A control frame may come between the fragments.
            try session.sendFrame(RawWebSocketFrame(opcode: RawWebSocketFrame.ping, payload: [7]))
            try session.sendFrame(RawWebSocketFrame(fin: true, opcode: RawWebSocketFrame.continuation, payload: Array(#""ping", "event": {}}"#.utf8)))
            var sawPong = false
            var sawPongEvent = false
            while !(sawPong && sawPongEvent), let frame = try session.readFrame() {
                if frame.opcode == RawWebSocketFrame.pong { sawPong = frame.payload == [7] }
                if frame.opcode == RawWebSocketFrame.text, String(decoding: frame.payload, as: UTF8.self).contains("\"pong\"") { sawPongEvent = true }
            }
            #expect(sawPong && sawPongEvent)

            try session.sendFrame(RawWebSocketFrame(fin: true, opcode: RawWebSocketFrame.continuation, payload: [0x7B]))
            var closeCode: UInt16?
            while let frame = try session.readFrame() {
                if frame.opcode == RawWebSocketFrame.close { closeCode = frame.closeCode }
            }
            #expect(closeCode == 1002)
            #expect(try await eventually { try bed.clients() == 0 })
        }
    }

    @Test("a fragmented message over 64 KiB ends the session with 1009", .enabled(if: RealMounts.enabled))
    func oversizedFragmentedMessage() async throws {
        try await withDaemonTestBed { bed in
            let session = try bed.openSession()
            _ = try DaemonTestBed.nextStorageEvent(on: session)
            let chunk = [UInt8](repeating: 0x20, count: 40 * 1024)
            try session.sendFrame(RawWebSocketFrame(fin: false, opcode: RawWebSocketFrame.text, payload: chunk))
            try session.sendFrame(RawWebSocketFrame(fin: true, opcode: RawWebSocketFrame.continuation, payload: chunk))
            var closeCode: UInt16?
            while let frame = try session.readFrame() {
                if frame.opcode == RawWebSocketFrame.close { closeCode = frame.closeCode }
            }
            #expect(closeCode == 1009)
        }
    }

    @Test("a peer that does not answer pings is dropped after the heartbeat", .enabled(if: RealMounts.enabled))
    func heartbeatDropsSilentPeer() async throws {
        let heardAlone = Mutex(false)
        let readerFinished = Mutex(false)
        try await withDaemonTestBed(arguments: ["--heartbeat", "0.4"]) { bed in
            let silent = try RawUnixSocketClient(path: bed.socketPath)
            try silent.upgradeToWebSocket()
            let polite = try bed.openSession()
            // The polite peer answers its pings all along (readJSONMessage
            // does) until the daemon goes away, on a thread of its own: a
            // task on the cooperative pool, starved by the suites running
            // beside this one, could miss the 0.2 s pong deadline.
            nonisolated(unsafe) let politeReader = polite
            Thread.detachNewThread {
                politeReader.timeout = .seconds(10)
                while let event = try? DaemonTestBed.nextStorageEvent(on: politeReader) {
                    if event["clients"] as? Int == 1 { heardAlone.withLock { $0 = true } }
                }
                readerFinished.withLock { $0 = true }
            }
            var sawPing = false
            // The silent peer reads but never answers: ping, then the hang-up.
            while let frame = try silent.readFrame() {
                if frame.opcode == RawWebSocketFrame.ping { sawPing = true }
            }
            #expect(sawPing)
            #expect(await eventually { heardAlone.withLock { $0 } })
            #expect(try bed.clients() == 1)
        }
        // The daemon has stopped, so the polite peer's connection has ended too.
        #expect(await eventually { readerFinished.withLock { $0 } })
    }
}
