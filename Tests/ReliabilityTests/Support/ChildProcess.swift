import Foundation
import Glibc
import PersistentStorageTestSupport

/// A child process started by a test (normally `kvmd-pstrun`), with its
/// output collected: a real client that a test can SIGKILL or SIGSTOP, or an
/// outside process that holds a file open.
final class ChildProcess: @unchecked Sendable {
    // @unchecked: Process and the pipes are only touched through their
    // thread-safe calls (run, isRunning, waitUntilExit, reads of whole pipes).
    let process = Process()
    private let output = Pipe()
    private let errors = Pipe()

    var pid: pid_t { process.processIdentifier }

    /// `kvmd-pstrun --socket SOCKET -- COMMAND...`
    convenience init(pstrunOn socketPath: String, command: [String]) throws {
        try self.init(executable: BuiltProducts.path(of: "kvmd-pstrun"), arguments: ["--socket", socketPath, "--"] + command)
    }

    /// An outside process (not a session) that opens `path` for writing and
    /// keeps it open for `seconds`, which makes a read-only remount busy.
    /// Returns once the file is open.
    static func holdingOpenForWriting(_ path: String, seconds: Int = 60) async throws -> ChildProcess {
        let holder = try ChildProcess(executable: "/bin/sh", arguments: [
            "-c", #"exec 3>>"$0"; echo held; exec sleep "$1""#, path, String(seconds),
        ])
        guard await holder.nextOutputLine() == "held" else {
            kill(holder.pid, SIGKILL)
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: path])
        }
        return holder
    }

    init(executable: String, arguments: [String]) throws {
        process.executableURL = URL(filePath: executable)
        process.arguments = arguments
        process.standardOutput = output
        process.standardError = errors
        process.standardInput = FileHandle.nullDevice
        try SystemCommand.launch(process)
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGCONT)
            kill(process.processIdentifier, SIGKILL)
        }
    }

    /// The next line the script prints on stdout (read byte by byte on a
    /// thread, so nothing after it is consumed); nil at end of output.
    func nextOutputLine() async -> String? {
        let descriptor = output.fileHandleForReading.fileDescriptor
        return await withCheckedContinuation { (continuation: CheckedContinuation<String?, Never>) in
            Thread.detachNewThread {
                var line: [UInt8] = []
                var byte: UInt8 = 0
                while read(descriptor, &byte, 1) == 1 {
                    if byte == UInt8(ascii: "\n") { return continuation.resume(returning: String(decoding: line, as: UTF8.self)) }
                    line.append(byte)
                }
                continuation.resume(returning: nil)
            }
        }
    }

    struct Finished: Sendable {
        var status: Int32
        var standardOutput: String
        var standardError: String
    }

    /// Waits for the exit (on a thread: waitUntilExit blocks), at most `timeout`;
    /// after that the process is killed and nil returned.
    func finish(timeout: Duration = .seconds(20)) async -> Finished? {
        let process = self.process
        let exited = await eventually(within: timeout) { !process.isRunning }
        if !exited {
            kill(process.processIdentifier, SIGCONT)
            kill(process.processIdentifier, SIGKILL)
        }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            Thread.detachNewThread {
                process.waitUntilExit()
                continuation.resume()
            }
        }
        guard exited else { return nil }
        let status = process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
        let standardOutput = String(decoding: (try? output.fileHandleForReading.readToEnd()) ?? Data(), as: UTF8.self)
        let standardError = String(decoding: (try? errors.fileHandleForReading.readToEnd()) ?? Data(), as: UTF8.self)
        return Finished(status: status, standardOutput: standardOutput, standardError: standardError)
    }
}

/// Kills `pid` (a script left behind by a test) if it is still alive.
func killIfAlive(_ pid: pid_t?) {
    guard let pid, pid > 1, processIsAlive(pid) else { return }
    kill(pid, SIGKILL)
}
