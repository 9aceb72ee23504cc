import Foundation
import Testing

@testable import PersistentStorage

/// `GET /state`'s answer as the client reads it without an HTTP library
/// (``StateRequest``): every way HTTP/1 delimits a body, and the answers a
/// daemon should not give.
@Suite("GET /state answers", .timeLimit(.minutes(1)))
struct StateRequestTests {
    private static let body = #"{"ok": true, "result": {"clients": 3, "data": {"path": "/var/lib/kvmd/pst/data", "write_allowed": false}}}"#
    private static let expected = StorageStatus(clients: 3, data: .init(path: "/var/lib/kvmd/pst/data", writeAllowed: false))

    private static func state(
        answer: String, thenClose: Bool = false, timeout: Duration = .seconds(5)
    ) async throws -> Result<StorageStatus, PersistentStorageError> {
        try await CannedAnswerServer.withServer(answer: { _ in Array(answer.utf8) }, thenClose: thenClose) { socketPath in
            do {
                return .success(try await PersistentStorageClient(socketPath: socketPath, timeout: timeout).state().status)
            } catch let error as PersistentStorageError {
                return .failure(error)
            }
        }
    }

    @Test("a body with a Content-Length is read without waiting for the connection to end")
    func contentLength() async throws {
        let answer = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: \(Self.body.utf8.count)\r\n\r\n\(Self.body)"
        #expect(try await Self.state(answer: answer) == .success(Self.expected))
    }

    @Test("a chunked body, with a chunk extension, is joined")
    func chunked() async throws {
        let bytes = Array(Self.body.utf8)
        var chunks = ""
        for start in stride(from: 0, to: bytes.count, by: 17) {
            let chunk = bytes[start..<min(start + 17, bytes.count)]
            chunks += String(chunk.count, radix: 16) + (start == 0 ? ";name=value" : "") + "\r\n" + String(decoding: chunk, as: UTF8.self) + "\r\n"
        }
        let answer = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + "0\r\n\r\n"
        #expect(try await Self.state(answer: answer) == .success(Self.expected))
    }

    @Test("a body without a length ends with the connection; an interim 100 is skipped")
    func untilTheEnd() async throws {
        #expect(try await Self.state(answer: "HTTP/1.0 200 OK\r\n\r\n\(Self.body)", thenClose: true) == .success(Self.expected))
        #expect(try await Self.state(answer: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\n\r\n\(Self.body)", thenClose: true)
            == .success(Self.expected))
    }

    @Test("the daemon's error envelope is a refusal with its reason")
    func errorEnvelope() async throws {
        let body = #"{"ok": false, "result": {"error": "Busy", "error_msg": "stopping"}}"#
        let result = try await Self.state(answer: "HTTP/1.1 503 Service Unavailable\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
        guard case .failure(.daemonUnavailable(_, "stopping")) = result else {
            Issue.record("\(result)")
            return
        }
    }

    @Test("an answer that is not HTTP, a broken chunk, a body cut short or over the bound is a protocol violation")
    func broken() async throws {
        #expect(try await Self.state(answer: "SSH-2.0-OpenSSH\r\n\r\n") == .failure(.protocolViolation("the /state answer is not HTTP: SSH-2.0-OpenSSH")))
        #expect(try await Self.state(answer: "HTTP/1.1 2000 OK\r\n\r\n") == .failure(.protocolViolation("the /state answer is not HTTP: HTTP/1.1 2000 OK")))
        #expect(try await Self.state(answer: "\r\n\r\n") == .failure(.protocolViolation("the /state answer is empty")))
        #expect(try await Self.state(answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
            == .failure(.protocolViolation("the /state answer has a malformed chunk size: zz\r")))
        #expect(try await Self.state(answer: "HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n\(Self.body)", thenClose: true)
            == .failure(.protocolViolation("the connection closed before the /state answer was complete")))
        #expect(try await Self.state(answer: "HTTP/1.1 200 OK\r\nContent-Length: \(StateRequest.maximumBodySize + 1)\r\n\r\n")
            == .failure(.protocolViolation("the /state answer is larger than \(StateRequest.maximumBodySize) bytes")))
        #expect(try await Self.state(answer: "HTTP/1.1 200 OK\r\n" + String(repeating: "X-Filler: y\r\n", count: 2000))
            == .failure(.protocolViolation("the /state answer has no end of head within 16384 bytes")))
    }

    @Test("a daemon that never answers times out")
    func silent() async throws {
        let result = try await CannedAnswerServer.withServer(answer: { _ in nil }) { socketPath in
            do {
                _ = try await PersistentStorageClient(socketPath: socketPath, timeout: .milliseconds(300)).state()
                return nil as PersistentStorageError?
            } catch let error as PersistentStorageError {
                return error
            }
        }
        #expect(result == .timedOut(after: .milliseconds(300), waitingFor: "GET /state"))
    }
}
