import Foundation
import Glibc
import PersistentStorage

/// The scale figure's clients, spread over several processes of this runner.
///
/// One process holding 10,000 NIO channels on 2 threads answers the daemon's
/// heartbeat pings too late while it is still opening the rest, and the
/// daemon rightly drops it (a pong must come within half the interval). The
/// figure is about the daemon, so the clients run in `processes` children
/// (`pst-bench --hold-sessions N`), each opening its share with at most
/// `inFlight` opens outstanding, then holding them until told to close.
///
/// A child talks on stdout, one line each:
/// `opened FAILED LATENCY_US,...` once its sessions are open (or failed),
/// `failure TEXT` for its first failure (before `opened`), and `closed` at the
/// end, after the parent wrote `close` to its stdin.
enum SessionHolders {
    struct Opened {
        var opened = 0
        var failureCount = 0
        var firstFailure: String?
        var latency = Samples()
    }

    /// The child's side: open, report, wait for stdin to close, close, report.
    static func runChild(socketPath: String, count: Int, inFlight: Int, timeout: Duration) async {
        let storage = PersistentStorageClient(socketPath: socketPath, timeout: timeout)
        let result = await openConcurrently(storage, count: count, inFlight: inFlight)
        if let first = result.failures.first { say("failure \(first.replacingOccurrences(of: "\n", with: " "))") }
        say("opened \(result.failures.count) " + result.latency.microseconds.map { String(Int($0)) }.joined(separator: ","))
        // Wait for the parent to write a line (or close our stdin).
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            Thread.detachNewThread {
                var byte: UInt8 = 0
                _ = read(0, &byte, 1)
                done.resume()
            }
        }
        await closeAll(result.sessions)
        say("closed")
    }

    private static func say(_ line: String) {
        let text = line + "\n"
        _ = text.withCString { write(1, $0, strlen($0)) }
    }

    /// The parent's side: the running children.
    final class Group {
        private var children: [(process: Process, input: FileHandle, lines: LineReader)] = []

        init(socketPath: String, count: Int, processes: Int, inFlight: Int, timeout: Duration) throws {
            let executable = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
            for index in 0..<processes {
                let share = count / processes + (index < count % processes ? 1 : 0)
                let process = Process()
                process.executableURL = URL(fileURLWithPath: executable)
                process.arguments = [
                    "--hold-sessions", String(share), "--socket", socketPath,
                    "--in-flight", String(inFlight), "--timeout", String(Int(timeout.seconds)),
                ]
                let input = Pipe(), output = Pipe()
                process.standardInput = input
                process.standardOutput = output
                try process.run()
                children.append((process, input.fileHandleForWriting, LineReader(output.fileHandleForReading)))
            }
        }

        /// Waits until every child has opened its share (or failed to).
        func waitUntilOpened() async throws -> Opened {
            var total = Opened()
            for child in children {
                while true {
                    guard let line = await child.lines.next() else {
                        throw BenchmarkFailure("a session-holding child exited before reporting its sessions")
                    }
                    if line.hasPrefix("failure ") {
                        total.firstFailure = total.firstFailure ?? String(line.dropFirst("failure ".count))
                    } else if line.hasPrefix("opened ") {
                        let fields = line.split(separator: " ", maxSplits: 2)
                        total.failureCount += Int(fields[1]) ?? 0
                        let latencies = fields.count > 2 ? fields[2].split(separator: ",").compactMap { Double($0) } : []
                        for microseconds in latencies { total.latency.append(.microseconds(microseconds)) }
                        total.opened += latencies.count
                        break
                    }
                }
            }
            return total
        }

        /// Tells every child to close its sessions and waits until they have.
        func closeAll() async throws {
            // A line rather than EOF: a later child may have inherited an
            // earlier one's pipe, and would keep its EOF from coming.
            for child in children {
                try? child.input.write(contentsOf: Data("close\n".utf8))
                try? child.input.close()
            }
            for child in children {
                while let line = await child.lines.next(), line != "closed" {}
                child.process.waitUntilExit()
                if child.process.terminationStatus != 0 {
                    throw BenchmarkFailure("a session-holding child exited with \(child.process.terminationStatus)")
                }
            }
        }

        /// For errors: make sure no child outlives the run.
        func terminate() {
            for child in children where child.process.isRunning {
                try? child.input.close()
                child.process.terminate()
            }
        }
    }
}

/// Lines from a pipe, read on a thread of its own (never on the cooperative pool).
final class LineReader: @unchecked Sendable {
    private let handle: FileHandle
    private var buffer = Data()

    init(_ handle: FileHandle) { self.handle = handle }

    func next() async -> String? {
        await withCheckedContinuation { continuation in
            Thread.detachNewThread { continuation.resume(returning: self.nextBlocking()) }
        }
    }

    private func nextBlocking() -> String? {
        while true {
            if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: buffer[buffer.startIndex..<newline], as: UTF8.self)
                buffer.removeSubrange(buffer.startIndex...newline)
                return line
            }
            let chunk = handle.availableData
            if chunk.isEmpty { return nil }
            buffer.append(chunk)
        }
    }
}
