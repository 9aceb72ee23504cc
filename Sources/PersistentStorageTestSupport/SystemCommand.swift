import Foundation
import Synchronization

/// A command-line tool that failed, with what it printed.
public struct SystemCommandError: Error, CustomStringConvertible {
    public var arguments: [String]
    public var status: Int32
    public var output: String

    public var description: String {
        "`\(arguments.joined(separator: " "))` exited with \(status): \(output)"
    }
}

private let spawnLock = Mutex(())

/// Runs system tools (mkfs.ext4, losetup, mount, ...) for test fixtures.
public enum SystemCommand {
    /// Runs `arguments` (looked up in PATH), waits, and returns its standard
    /// output; throws with standard output and error when it exits non-zero.
    @discardableResult
    public static func run(_ arguments: [String]) throws -> String {
        let result = try execute(arguments)
        guard result.status == 0 else {
            throw SystemCommandError(
                arguments: arguments, status: result.status,
                output: (result.standardOutput + result.standardError)
                    .trimmingCharacters(in: .whitespacesAndNewlines))
        }
        return result.standardOutput
    }

    /// What a finished command printed and how it exited.
    public struct Result: Sendable {
        public var status: Int32
        public var standardOutput: String
        public var standardError: String
    }

    /// Runs `arguments` (an absolute path, or a name looked up in PATH) and
    /// returns its exit status and output, whatever the status.
    public static func execute(_ arguments: [String], environment: [String: String]? = nil) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        if let environment { process.environment = environment }
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        process.standardInput = FileHandle.nullDevice
        try launch(process)
        // Drain both pipes concurrently so a chatty tool cannot block on a full pipe.
        nonisolated(unsafe) var errData = Data()
        let done = DispatchSemaphore(value: 0)
        Thread {
            errData = errors.fileHandleForReading.readDataToEndOfFile()
            done.signal()
        }.start()
        let outData = output.fileHandleForReading.readDataToEndOfFile()
        done.wait()
        process.waitUntilExit()
        let status = process.terminationReason == .uncaughtSignal
            ? 128 + process.terminationStatus : process.terminationStatus
        return Result(
            status: status,
            standardOutput: String(decoding: outData, as: UTF8.self),
            standardError: String(decoding: errData, as: UTF8.self))
    }

    /// ``run(_:)`` on a thread of its own, for async code (see ``onOwnThread(_:)``).
    @discardableResult
    public static func run(_ arguments: [String]) async throws -> String {
        try await onOwnThread { try run(arguments) }
    }

    /// ``execute(_:environment:)`` on a thread of its own, for async code (see ``onOwnThread(_:)``).
    public static func execute(_ arguments: [String], environment: [String: String]? = nil) async throws -> Result {
        try await onOwnThread { try execute(arguments, environment: environment) }
    }

    /// Starts `process`. Every test helper that starts a `Process` goes
    /// through here: Foundation's Process.run is not safe to call from
    /// several threads at once on Linux (a spawn can hit EBADF on a
    /// descriptor another spawn is closing), and test suites run in parallel.
    public static func launch(_ process: Process) throws {
        try spawnLock.withLock { _ in try process.run() }
    }

    /// Whether `name` is an executable somewhere in PATH.
    public static func exists(_ name: String) -> Bool {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin"
        return path.split(separator: ":").contains {
            FileManager.default.isExecutableFile(atPath: "\($0)/\(name)")
        }
    }
}
