import Foundation
import PersistentStorageTestSupport

/// A `kvmd-pstrun` started by a test, with its output collected.
final class RunningPstRun: @unchecked Sendable {
    // @unchecked: Process and the pipes are only touched through their
    // thread-safe calls (run, isRunning, terminate, readDataToEndOfFile).
    let process = Process()
    private let output = Pipe()
    private let errors = Pipe()
    private let input = Pipe()

    /// - Parameter defaultSignals: start it with every signal at its default
    ///   action, as systemd starts a service, instead of inheriting the test
    ///   runner's (which ignores SIGPIPE). `env` execs it: the pid stays its.
    init(socketPath: String, defaultSignals: Bool = false, command: [String], options: [String] = []) throws {
        let arguments = ["--socket", socketPath] + options + ["--"] + command
        if defaultSignals {
            process.executableURL = URL(filePath: "/usr/bin/env")
            process.arguments = ["--default-signal", BuiltProducts.path(of: "kvmd-pstrun")] + arguments
        } else {
            process.executableURL = URL(filePath: BuiltProducts.path(of: "kvmd-pstrun"))
            process.arguments = arguments
        }
        process.standardOutput = output
        process.standardError = errors
        process.standardInput = input
        try SystemCommand.launch(process)
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }

    func write(_ text: String) {
        input.fileHandleForWriting.write(Data(text.utf8))
        try? input.fileHandleForWriting.close()
    }

    /// Reads stdout until a line equal to `line` arrives, so a test can wait
    /// for the script to reach a point instead of sleeping.
    func waitForOutputLine(_ line: String) async -> Bool {
        while let next = await nextOutputLine() {
            if next == line { return true }
        }
        return false
    }

    /// The script's next line on stdout, nil at its end. Reads byte by byte
    /// (on a thread: the read blocks) so nothing after that line is consumed.
    func nextOutputLine() async -> String? {
        let descriptor = output.fileHandleForReading.fileDescriptor
        return await withCheckedContinuation { (continuation: CheckedContinuation<String?, Never>) in
            Thread.detachNewThread {
                var pending: [UInt8] = []
                var byte: UInt8 = 0
                while read(descriptor, &byte, 1) == 1 {
                    if byte == UInt8(ascii: "\n") { return continuation.resume(returning: String(decoding: pending, as: UTF8.self)) }
                    pending.append(byte)
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

    /// Whether kvmd-pstrun exits within `timeout`; if not, it is killed (a
    /// test then records that, instead of waiting past its time limit, which
    /// cannot interrupt a blocked wait). Unlike ``finish()`` it does not read
    /// the output, which would wait for whatever else holds the pipes: a
    /// script left running.
    func exits(within timeout: Duration) async -> Bool {
        let process = self.process
        if await eventually(within: timeout, { !process.isRunning }) { return true }
        kill(process.processIdentifier, SIGKILL)
        return false
    }

    /// Waits for kvmd-pstrun's exit (on a thread of its own: waitUntilExit
    /// blocks) and returns its status as a shell reports it (128 + N for
    /// signal N).
    func exitStatus() async -> Int32 {
        let process = self.process
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            Thread.detachNewThread {
                process.waitUntilExit()
                continuation.resume()
            }
        }
        return process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
    }

    /// Waits for the exit, then reads all the output.
    func finish() async -> Finished {
        try? input.fileHandleForWriting.close()
        let status = await exitStatus()
        let standardOutput = String(decoding: (try? output.fileHandleForReading.readToEnd()) ?? Data(), as: UTF8.self)
        let standardError = String(decoding: (try? errors.fileHandleForReading.readToEnd()) ?? Data(), as: UTF8.self)
        return Finished(status: status, standardOutput: standardOutput, standardError: standardError)
    }
}
