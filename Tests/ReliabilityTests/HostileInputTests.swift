import Foundation
import Glibc
import PersistentStorageMount
import PersistentStorageTestBed
import PersistentStorageTestSupport
import Testing

extension Reliability {
    /// Broken and hostile peers against the running daemon. After (and, where it
    /// matters, during) each class of input, a well-behaved client must be served
    /// within normal latency, and the session count and the mount state must be
    /// what the well-behaved sessions alone would make them.
    ///
    /// Random choices come from fixed seeds (`PST_HOSTILE_SEED` overrides).
    @Suite("Hostile and broken input against a real daemon", .serialized, .enabled(if: RealMounts.enabled), .timeLimit(.minutes(2)))
    struct HostileInputTests {
        static let seed = TestParameter.seed("PST_HOSTILE_SEED", default: 0x5EED_0007)

        /// What one hostile connection got back.
        enum Outcome: Hashable, CustomStringConvertible {
            case answered(Int)
            case closedSilently
            case stillOpen

            var description: String {
                switch self {
                case .answered(let code): "answered \(code)"
                case .closedSilently: "closed without an answer"
                case .stillOpen: "left waiting"
                }
            }
        }

        /// Sends `bytes` on a fresh connection and reports what came back within `wait`.
        static func probe(_ bed: ReliabilityBed, _ bytes: [UInt8], wait: Duration = .milliseconds(300)) throws -> Outcome {
            let client = try RawUnixSocketClient(path: bed.socketPath, timeout: wait)
            defer { client.close() }
            do {
                try client.send(bytes)
            } catch RawSocketError.system(_, let code) where code == EPIPE || code == ECONNRESET {
                // The daemon gave up on the request before all of it was sent.
            }
            do {
                return .answered(try client.readHTTPResponse().statusCode)
            } catch RawSocketError.timedOut {
                return .stillOpen
            } catch RawSocketError.closedByPeer {
                return .closedSilently
            } catch RawSocketError.system(_, let code) where code == ECONNRESET {
                return .closedSilently
            }
        }

        static func expectNoSessionAndReadOnly(_ bed: ReliabilityBed, sourceLocation: SourceLocation = #_sourceLocation) async throws {
            #expect(await bed.settlesReadOnlyWithNoSession(), sourceLocation: sourceLocation)
            #expect(bed.daemon.isRunning, sourceLocation: sourceLocation)
        }

        @Test("random bytes: 300 connections of seeded garbage; none becomes a session, none gets a success")
        func randomBytes() async throws {
            try await withReliabilityBed { bed in
                var random = SeededRandom(seed: Self.seed)
                var outcomes: [Outcome: Int] = [:]
                for index in 0..<300 {
                    let length = Int.random(in: 1...4096, using: &random)
                    var bytes = random.bytes(length)
                    // A third start like a request, so the parser gets past the first byte.
                    if index % 3 == 0 { bytes = Array("GET /state HTTP/1.1\r\n".utf8) + bytes }
                    let outcome = try Self.probe(bed, bytes, wait: .milliseconds(100))
                    outcomes[outcome, default: 0] += 1
                    if case .answered(let code) = outcome {
                        #expect(code >= 400 && code < 500, "garbage answered \(code)")
                    }
                    if index % 50 == 49 { try bed.expectWellBehavedClientServed("after \(index + 1) garbage connections") }
                }
                print("random bytes, seed \(Self.seed): \(outcomes)")
                try await Self.expectNoSessionAndReadOnly(bed)
            }
        }

        @Test("random bytes after the upgrade: 50 sessions speak garbage; the daemon ends them and goes RO")
        func randomBytesInSessions() async throws {
            try await withReliabilityBed { bed in
                var random = SeededRandom(seed: Self.seed &+ 1)
                let steady = try bed.openWritableSession()
                var sessions: [RawUnixSocketClient] = []
                for _ in 0..<50 {
                    let session = try bed.openSession()
                    try? session.send(random.bytes(Int.random(in: 1...2048, using: &random)))
                    sessions.append(session)
                }
                try bed.expectWellBehavedClientServed("while garbage sessions are open")
                for session in sessions { session.close() }
                #expect(try await eventually { try bed.clients() == 1 }, "only the steady session is left")
                // The steady session was not disturbed.
                try steady.sendText(#"{"event_type": "ping", "event": {}}"#)
                var sawPong = false
                while !sawPong, let message = try steady.readJSONMessage() { sawPong = message["event_type"] as? String == "pong" }
                #expect(sawPong)
                steady.close()
                try await Self.expectNoSessionAndReadOnly(bed)
            }
        }

        @Test("truncated requests: every prefix of three valid requests, then the peer hangs up")
        func truncatedRequests() async throws {
            let requests = [
                "GET /state HTTP/1.1\r\nHost: localhost:0\r\nUser-Agent: KVMD-PSTRun/4.0\r\n\r\n",
                "GET /ws HTTP/1.1\r\nHost: localhost:0\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                "POST /state HTTP/1.1\r\nHost: localhost:0\r\nContent-Length: 40\r\n\r\n{\"event_type\": \"ping\", \"event\": {}}    ",
            ].map { Array($0.utf8) }
            try await withReliabilityBed { bed in
                var count = 0
                for request in requests {
                    for length in 0..<request.count {
                        let client = try RawUnixSocketClient(path: bed.socketPath)
                        try client.send(Array(request[..<length]))
                        client.close()
                        count += 1
                    }
                    // A few that stay: the daemon must not answer a head it has
                    // not seen whole. It answers once the head is whole, body or
                    // not: no route reads a body.
                    let headLength = request.firstRange(of: Array("\r\n\r\n".utf8))!.upperBound
                    for length in stride(from: 1, to: request.count - 1, by: request.count / 4) {
                        let outcome = try Self.probe(bed, Array(request[..<length]), wait: .milliseconds(100))
                        #expect(outcome == (length < headLength ? .stillOpen : .answered(405)), "\(length) bytes: \(outcome)")
                    }
                    try bed.expectWellBehavedClientServed("after truncated requests")
                }
                print("truncated requests: \(count) connections")
                try await Self.expectNoSessionAndReadOnly(bed)
            }
        }

        @Test("slow clients: 20 request heads that never end, one byte every 50 ms, while well-behaved clients are served")
        func slowClients() async throws {
            try await withReliabilityBed { bed in
                var slow: [RawUnixSocketClient] = []
                for _ in 0..<20 {
                    let client = try RawUnixSocketClient(path: bed.socketPath)
                    try client.send("GET /state HTTP/1.1\r\nHost: localhost:0\r\nX-Drip: ")
                    slow.append(client)
                }
                let started = ContinuousClock.now
                var served = 0
                while ContinuousClock.now - started < .seconds(3) {
                    for client in slow { try client.send("a") }
                    try await Task.sleep(for: .milliseconds(50))
                    if served < Int((ContinuousClock.now - started) / .milliseconds(500)) {
                        try bed.expectWellBehavedClientServed("while 20 heads drip")
                        served += 1
                    }
                }
                #expect(served >= 2)
                // The slow heads were only slow: finished, they are answered.
                for client in slow {
                    try client.send("\r\n\r\n")
                    #expect(try client.readHTTPResponse().statusCode == 200)
                }
                try await Self.expectNoSessionAndReadOnly(bed)
            }
        }

        @Test("huge headers: over the 16 KiB limit, too many fields, and a megabyte of header get 431 or 400; just under the limit is served")
        func hugeHeaders() async throws {
            try await withReliabilityBed { bed in
                func request(_ headers: String) -> [UInt8] {
                    Array("GET /state HTTP/1.1\r\nHost: localhost:0\r\n\(headers)\r\n".utf8)
                }
                let oversized: [String: [UInt8]] = [
                    "one 20 KiB field": request("X-Big: \(String(repeating: "a", count: 20 * 1024))\r\n"),
                    "300 fields": request((0..<300).map { "X-F\($0): v\r\n" }.joined()),
                    "a 1 MiB head": request(String(repeating: "X-Filler: \(String(repeating: "b", count: 1000))\r\n", count: 1024)),
                    "a 20 KiB request line": Array("GET /\(String(repeating: "s", count: 20 * 1024)) HTTP/1.1\r\n\r\n".utf8),
                ]
                for (name, bytes) in oversized.sorted(by: { $0.key < $1.key }) {
                    let outcome = try Self.probe(bed, bytes, wait: .seconds(2))
                    #expect(outcome == .answered(431) || outcome == .answered(400) || outcome == .closedSilently, "\(name): \(outcome)")
                }
                let underLimit = try Self.probe(bed, request("X-Big: \(String(repeating: "a", count: 12 * 1024))\r\n"), wait: .seconds(2))
                #expect(underLimit == .answered(200))
                try bed.expectWellBehavedClientServed("after huge headers")
                try await Self.expectNoSessionAndReadOnly(bed)
            }
        }

        @Test("unknown paths and methods get a 3xx/4xx answer, never a session or a 5xx")
        func unknownPathsAndMethods() async throws {
            let methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE", "CONNECT", "BREW", "get"]
            let paths = ["/", "/x", "/state/", "/state/../ws", "/ws/", "//state", "/%00", "/state?x=1", "/ws?x=1#f", "*",
                         "http://localhost/state", "/\(String(repeating: "p", count: 8000))", "/st%61te"]
            try await withReliabilityBed { bed in
                var answers: [Int: Int] = [:]
                for method in methods {
                    for path in paths {
                        let bytes = Array("\(method) \(path) HTTP/1.1\r\nHost: localhost:0\r\nContent-Length: 0\r\n\r\n".utf8)
                        let outcome = try Self.probe(bed, bytes, wait: .seconds(2))
                        guard case .answered(let code) = outcome else {
                            #expect(outcome == .closedSilently, "\(method) \(path): \(outcome)")
                            continue
                        }
                        answers[code, default: 0] += 1
                        #expect((200..<500).contains(code) && code != 101, "\(method) \(path): \(code)")
                        // The absolute form is the same request (RFC 9112 3.2.2).
                        if code == 200 {
                            #expect(method == "GET" && (path.hasPrefix("/state?") || path == "http://localhost/state"), "\(method) \(path) succeeded")
                        }
                    }
                }
                print("unknown paths and methods: \(methods.count * paths.count) requests, answers \(answers.sorted { $0.key < $1.key })")
                try bed.expectWellBehavedClientServed("after unknown paths and methods")
                try await Self.expectNoSessionAndReadOnly(bed)
            }
        }

        @Test("invalid and huge JSON in a session is ignored: the session stays, and a ping still gets its pong")
        func invalidAndHugeJSON() async throws {
            let texts: [String] = [
                "", "{", "}", "null", "42", "\"event_type\"", "{\"event_type\": 1, \"event\": {}}",
                "{\"event_type\": null}", "{\"event\": {}}", "{\"event_type\": \"storage\", \"event\": {\"clients\": \"many\"}}",
                "{\"event_type\": \"storage\", \"event\": {\"clients\": 1e999999, \"data\": {}}}",
                "{\"event_type\": \"ping\", \"event_type\": \"pong\", \"event\": {}}",
                String(repeating: "[", count: 60_000),
                String(repeating: "{\"a\":", count: 10_000) + "1" + String(repeating: "}", count: 10_000),
                "{\"event_type\": \"\(String(repeating: "x", count: 60_000))\", \"event\": {}}",
                "{" + (0..<4000).map { "\"k\($0)\": \($0)" }.joined(separator: ",") + "}",
                "{\"event_type\": \"ping\", \"event\": \"\(String(repeating: "\\u0000", count: 5000))\"}",
                "{\"event_type\": \"\\ud800\", \"event\": {}}",
                "{\"event_type\": \"ping\", \"event\": {}} trailing",
            ]
            try await withReliabilityBed { bed in
                let session = try bed.openWritableSession()
                for text in texts {
                    try session.sendText(text)
                    try session.sendText(#"{"event_type": "ping", "event": {}}"#)
                    var sawPong = false
                    while !sawPong, let message = try session.readJSONMessage() { sawPong = message["event_type"] as? String == "pong" }
                    #expect(sawPong, "no pong after \(text.prefix(60))")
                }
                #expect(try bed.clients() == 1)
                #expect(bed.fixture.state == .readWrite)
                try bed.expectWellBehavedClientServed("after invalid JSON")
                session.close()
                try await Self.expectNoSessionAndReadOnly(bed)
            }
        }

        @Test("broken frames each end their session (binary, oversized, bad control frames, unmasked, reserved bits and opcodes); the storage goes RO")
        func brokenFrames() async throws {
            typealias Frame = RawWebSocketFrame
            let cases: [(name: String, send: (RawUnixSocketClient) throws -> Void)] = [
                ("binary", { try $0.sendFrame(Frame(opcode: Frame.binary, payload: [1, 2, 3])) }),
                ("70 KiB text", { try $0.sendText(String(repeating: "x", count: 70 * 1024)) }),
                ("300 fragments of 1 KiB", { session in
                    try session.sendFrame(Frame(fin: false, opcode: Frame.text, payload: Array(repeating: 0x20, count: 1024)))
                    for _ in 0..<299 { try session.sendFrame(Frame(fin: false, opcode: Frame.continuation, payload: Array(repeating: 0x20, count: 1024))) }
                }),
                ("a ping of 200 bytes", { try $0.sendFrame(Frame(opcode: Frame.ping, payload: Array(repeating: 1, count: 200))) }),
                ("a fragmented ping", { try $0.sendFrame(Frame(fin: false, opcode: Frame.ping, payload: [])) }),
                ("an unmasked frame", { try $0.sendFrame(Frame(opcode: Frame.text, payload: Array("{}".utf8)), masked: false) }),
                ("reserved opcode 3", { try $0.sendFrame(Frame(opcode: 0x3, payload: [])) }),
                ("reserved opcode 0xB", { try $0.sendFrame(Frame(opcode: 0xB, payload: [])) }),
                ("RSV1 set", { try $0.send([0xC1, 0x80, 0, 0, 0, 0]) }),
                ("a continuation with nothing to continue", { try $0.sendFrame(Frame(opcode: Frame.continuation, payload: [1])) }),
                ("a 2^63-byte length", { try $0.send([0x81, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0]) }),
                ("a close with code 0", { try $0.sendFrame(Frame(opcode: Frame.close, payload: [0, 0])) }),
                ("a close with a 1-byte payload", { try $0.sendFrame(Frame(opcode: Frame.close, payload: [3])) }),
            ]
            try await withReliabilityBed { bed in
                var ended = 0
                for (name, send) in cases {
                    let session = try bed.openWritableSession()
                    try? send(session)
                    session.timeout = .seconds(5)
                    var closed = false
                    do {
                        while try session.readFrame() != nil {}
                        closed = true
                    } catch RawSocketError.closedByPeer {
                        closed = true
                    } catch RawSocketError.system(_, let code) where code == ECONNRESET {
                        closed = true
                    } catch RawSocketError.timedOut {
                        closed = false
                    }
                    #expect(closed, "\(name): the session was not ended")
                    if closed { ended += 1 }
                    #expect(try await eventually { try bed.clients() == 0 }, "\(name): the session is still counted")
                }
                print("broken frames: \(ended) of \(cases.count) sessions ended by the daemon")
                try bed.expectWellBehavedClientServed("after broken frames")
                try await Self.expectNoSessionAndReadOnly(bed)
            }
        }

        /// Opens `count` connections that never upgrade; half send the start of a head.
        static func openIdleConnections(_ bed: ReliabilityBed, count: Int) throws -> [RawUnixSocketClient] {
            var connections: [RawUnixSocketClient] = []
            connections.reserveCapacity(count)
            for index in 0..<count {
                let client = try RawUnixSocketClient(path: bed.socketPath)
                if index.isMultiple(of: 2) { try client.send("GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n") }
                connections.append(client)
            }
            return connections
        }

        @Test("2,000 connections that never upgrade: a well-behaved client is still served; afterwards the daemon's descriptors are back to idle")
        func thousandsOfIdleConnections() async throws {
            // Above the default cap on connections besides sessions (1000),
            // which DescriptorExhaustionTests covers: here all are held.
            try await withReliabilityBed(arguments: ["--max-connections", "5000"]) { bed in
                // Idle means after a first session: the first remount opens a
                // descriptor that stays (the soak shows it does not grow).
                try bed.expectWellBehavedClientServed("before the idle connections")
                #expect(await bed.settlesReadOnlyWithNoSession())
                let idleDescriptors = try bed.daemonOpenDescriptors()
                let connections = try Self.openIdleConnections(bed, count: 2000)
                #expect(try await eventually { try bed.daemonOpenDescriptors() >= idleDescriptors + 1990 }, "the daemon should hold them all")
                for _ in 0..<3 { try bed.expectWellBehavedClientServed("with 2,000 idle connections open") }
                #expect(try bed.clients() == 0)
                for connection in connections { connection.close() }
                #expect(try await eventually(within: .seconds(10)) { try bed.daemonOpenDescriptors() <= idleDescriptors },
                        "descriptors: idle \(idleDescriptors), now \((try? bed.daemonOpenDescriptors()) ?? -1)")
                try await Self.expectNoSessionAndReadOnly(bed)
            }
        }

        /// This process's hard limit: the daemon's may not be raised above it here.
        static var hardDescriptorLimit: UInt64 {
            var limit = rlimit()
            getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
            return UInt64(limit.rlim_max)
        }

        @Test("2,000 idle connections against systemd's default descriptor limit (soft 1024): a well-behaved client is still served")
        func thousandsOfIdleConnectionsUnderDefaultLimit() async throws {
            try await withReliabilityBed(
                arguments: ["--max-connections", "5000"],
                executablePrefix: ["/usr/bin/prlimit", "--nofile=1024:\(Self.hardDescriptorLimit)", "--"]
            ) { bed in
                let idleDescriptors = try bed.daemonOpenDescriptors()
                let connections = try Self.openIdleConnections(bed, count: 2000)
                defer { for connection in connections { connection.close() } }
                #expect(try await eventually { try bed.daemonOpenDescriptors() >= idleDescriptors + 1990 }, "the daemon should accept them all")
                for _ in 0..<3 { try bed.expectWellBehavedClientServed("with 2,000 idle connections open, soft limit 1024") }
                #expect(try bed.clients() == 0)
            }
        }
    }
}
