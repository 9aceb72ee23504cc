import Foundation
import Glibc
import PersistentStorageProtocol
import PersistentStorageTestSupport
import Synchronization
import Testing

@testable import PersistentStorage

/// A daemon that never stops sending pings (found by the issue 15 attack):
/// the one client core read until the socket was empty, which a flood
/// never lets happen, so kvmd-pstrun saw neither its signals nor its
/// script's exit (77 % CPU, the script a zombie, SIGTERM ignored) and the
/// library's `close()` never returned; a daemon that read none of the pongs
/// held each one for a second, for ever.
@Suite("A daemon that floods pings", .timeLimit(.minutes(1)))
final class PingFloodTests {
    // Each test gets its own instance, and with it its own data directory.
    private let dataRoot: TemporaryDataDirectory

    init() throws {
        dataRoot = try TemporaryDataDirectory("pst-flood")
    }

    private var dataPath: String { dataRoot.path }

    @Test("the library: close() returns at once while pings flood in, and the pongs are read")
    func libraryCloseDuringFlood() async throws {
        try await PingFloodDaemon.with(dataPath: dataPath, readsPongs: true) { socketPath in
            let session = try await PersistentStorageClient(socketPath: socketPath).openSession()
            try await Task.sleep(for: .milliseconds(300))
            let start = ContinuousClock.now
            await session.close()
            #expect(ContinuousClock.now - start < .seconds(3), "close() took \(ContinuousClock.now - start)")
        }
    }

    @Test("the library: a daemon that reads none of the pongs ends the session within seconds, with the reason")
    func libraryDaemonReadsNothing() async throws {
        try await PingFloodDaemon.with(dataPath: dataPath, readsPongs: false) { socketPath in
            let session = try await PersistentStorageClient(socketPath: socketPath).openSession()
            let start = ContinuousClock.now
            let reason = await session.waitUntilRevoked()
            #expect(reason == .protocolViolation("the daemon took no pong for a second: it does not read the connection"))
            #expect(ContinuousClock.now - start < .seconds(20), "revoked after \(ContinuousClock.now - start)")
            await session.close()
        }
    }

    @Test("kvmd-pstrun: the script's exit ends it, and so does SIGTERM, while pings flood in")
    func pstrunDuringFlood() async throws {
        try await PingFloodDaemon.with(dataPath: dataPath, readsPongs: true) { socketPath in
            let pstrun = BuiltProducts.path(of: "kvmd-pstrun")
            // The script ends on its own.
            let ending = Process()
            ending.executableURL = URL(filePath: pstrun)
            ending.arguments = ["--socket", socketPath, "--", "sh", "-c", "sleep 0.3; exit 7"]
            ending.standardOutput = FileHandle.nullDevice
            ending.standardError = FileHandle.nullDevice
            try SystemCommand.launch(ending)
            let endedInTime = await eventually(within: .seconds(5)) { !ending.isRunning }
            if !endedInTime { kill(ending.processIdentifier, SIGKILL) }
            ending.waitUntilExit()
            #expect(endedInTime, "kvmd-pstrun did not end after its script")
            #expect(ending.terminationStatus == 7)

            // SIGTERM while the script sleeps.
            let stopped = Process()
            stopped.executableURL = URL(filePath: pstrun)
            stopped.arguments = ["--socket", socketPath, "--", "sleep", "30"]
            stopped.standardOutput = FileHandle.nullDevice
            stopped.standardError = FileHandle.nullDevice
            try SystemCommand.launch(stopped)
            try await Task.sleep(for: .milliseconds(500))
            kill(stopped.processIdentifier, SIGTERM)
            let stoppedInTime = await eventually(within: .seconds(5)) { !stopped.isRunning }
            if !stoppedInTime { kill(stopped.processIdentifier, SIGKILL) }
            stopped.waitUntilExit()
            #expect(stoppedInTime, "kvmd-pstrun did not stop on SIGTERM")
        }
    }
}

/// A daemon that grants write access and then sends pings without end, on
/// threads of its own with plain blocking sockets: not on NIO's shared event
/// loops or the cooperative pool, which the other suites' scripted daemons
/// use (a flood there starved them). A blocking send paces it to what the
/// client reads.
private final class PingFloodDaemon: Sendable {
    private let listener: CInt
    private let stopping = Atomic<Bool>(false)

    private init(listener: CInt) { self.listener = listener }

    static func with<T>(dataPath: String, readsPongs: Bool, _ body: (String) async throws -> T) async throws -> T {
        let directory = FileManager.default.temporaryDirectory.appending(path: "pst-flood-daemon-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let socketPath = directory.appending(path: "pst.sock").path(percentEncoded: false)
        let listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: socketPath.utf8.prefix(raw.count - 1))
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0, listen(listener, 16) == 0 else {
            close(listener)
            throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
        }
        let daemon = PingFloodDaemon(listener: listener)
        let acceptor = Thread { daemon.serve(dataPath: dataPath, readsPongs: readsPongs) }
        acceptor.start()
        defer {
            daemon.stopping.store(true, ordering: .relaxed)
            shutdown(listener, Int32(SHUT_RDWR))
        }
        return try await body(socketPath)
    }

    private func serve(dataPath: String, readsPongs: Bool) {
        defer { close(listener) }
        while !stopping.load(ordering: .relaxed) {
            let connection = accept(listener, nil, nil)
            guard connection >= 0 else { return }
            Thread { self.flood(connection, dataPath: dataPath, readsPongs: readsPongs) }.start()
        }
    }

    private func flood(_ connection: CInt, dataPath: String, readsPongs: Bool) {
        defer { close(connection) }
        var head = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !head.suffix(4).elementsEqual("\r\n\r\n".utf8) {
            let count = read(connection, &buffer, buffer.count)
            guard count > 0 else { return }
            head += buffer[..<count]
        }
        let text = String(decoding: head, as: UTF8.self)
        guard let keyLine = text.split(separator: "\r\n").first(where: { $0.lowercased().hasPrefix("sec-websocket-key:") }) else {
            // GET /state: not needed here.
            return
        }
        let key = keyLine.split(separator: ":", maxSplits: 1)[1].trimmingCharacters(in: .whitespaces)
        let event = #"{"event_type": "storage", "event": {"clients": 1, "data": {"path": "\#(dataPath)", "write_allowed": true}}}"#
        var greeting = Array("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: \(WebSocketAccept.value(forKey: key))\r\n\r\n".utf8)
        let length = event.utf8.count
        greeting += (length < 126 ? [0x81, UInt8(length)] : [0x81, 126, UInt8(length >> 8), UInt8(length & 0xFF)]) + Array(event.utf8)
        guard sendAll(greeting, on: connection) else { return }
        if readsPongs {
            Thread {
                var sink = [UInt8](repeating: 0, count: 65536)
                while read(connection, &sink, sink.count) > 0 {}
            }.start()
        }
        // Pings with an empty payload, 10,000 to a send.
        let pings: [UInt8] = Array(repeating: [0x89, 0x00], count: 10_000).flatMap { $0 }
        while !stopping.load(ordering: .relaxed), sendAll(pings, on: connection) {}
        shutdown(connection, Int32(SHUT_RDWR))
    }

    private func sendAll(_ bytes: [UInt8], on connection: CInt) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes { send(connection, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if sent < 0 && errno == EINTR { continue }
            guard sent > 0 else { return false }
            offset += sent
        }
        return true
    }
}
