import Foundation
import Glibc

/// Why a daemon process did not behave.
public enum DaemonProcessError: Error, CustomStringConvertible {
    case notListening(socketPath: String, log: String)
    case exitedEarly(status: Int32, log: String)
    case stillRunning(after: Duration, log: String)

    public var description: String {
        switch self {
        case .notListening(let path, let log): "the daemon did not listen on \(path) in time; its log:\n\(log)"
        case .exitedEarly(let status, let log): "the daemon exited with \(status) before listening; its log:\n\(log)"
        case .stillRunning(let after, let log): "the daemon was still running \(after) after being told to stop; its log:\n\(log)"
        }
    }
}

/// A daemon executable (normally the built `kvmd-pst`) running as a child
/// process with its stderr captured to a file, for process-level tests.
///
/// Prefer ``withDaemonProcess(arguments:socketPath:executable:_:)``: it
/// kills the process even when the test throws. Releasing a running
/// `DaemonProcess` also kills it.
///
/// ```swift
/// try await withDaemonProcess(arguments: ["--run", "--fstab", fixture.fstabPath, "--socket", socket], socketPath: socket) { daemon in
///     let state = try RawUnixSocketClient(path: socket).request("GET", "/state")
///     daemon.terminate()
///     #expect(try await daemon.waitForExit() == 0)
/// }
/// ```
public final class DaemonProcess: @unchecked Sendable {
    // @unchecked: Foundation's Process is thread-safe for what is used here
    // (signals, isRunning, terminationStatus); nothing else is mutable.
    public let socketPath: String
    public let logPath: String
    private let process: Process
    private let directory: String

    /// The daemon's process id.
    public var pid: pid_t { process.processIdentifier }
    public var isRunning: Bool { process.isRunning }
    /// What the daemon wrote to stderr so far.
    public var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Starts `executable` with `arguments` and waits until `socketPath`
    /// accepts connections. `NOTIFY_SOCKET` is removed from its environment
    /// unless given in `environment`.
    public init(
        executable: String = BuiltProducts.path(of: "kvmd-pst"),
        arguments: [String],
        socketPath: String,
        environment: [String: String] = [:],
        startTimeout: Duration = .seconds(15)
    ) async throws {
        self.socketPath = socketPath
        var template = Array((NSTemporaryDirectory() + "/pst-daemon.XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else { throw CocoaError(.fileWriteUnknown) }
        directory = String(cString: made)
        logPath = directory + "/daemon.log"
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)

        process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var merged = ProcessInfo.processInfo.environment
        merged["NOTIFY_SOCKET"] = nil
        merged.merge(environment) { _, new in new }
        process.environment = merged
        process.standardInput = FileHandle.nullDevice
        let logHandle = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process.standardError = logHandle
        process.standardOutput = logHandle
        do {
            try SystemCommand.launch(process)
            try? logHandle.close()
            try await waitUntilListening(timeout: startTimeout)
        } catch {
            try? logHandle.close()
            stop()
            throw error
        }
    }

    deinit {
        stop()
    }

    /// Sends a signal (SIGTERM by default: the graceful shutdown).
    public func terminate(signal: Int32 = SIGTERM) {
        if process.isRunning { kill(process.processIdentifier, signal) }
    }

    /// Waits for the process to exit and returns its exit status (128+N for
    /// a death by signal N, like a shell).
    @discardableResult
    public func waitForExit(timeout: Duration = .seconds(15)) async throws -> Int32 {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning {
            if ContinuousClock.now >= deadline { throw DaemonProcessError.stillRunning(after: timeout, log: log) }
            try await Task.sleep(for: .milliseconds(20))
        }
        return process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
    }

    /// SIGKILL and reap, then remove the log directory. Safe to call twice.
    public func stop() {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func waitUntilListening(timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        while !RawUnixSocketClient.isAccepting(socketPath) {
            if !process.isRunning {
                process.waitUntilExit()
                throw DaemonProcessError.exitedEarly(status: process.terminationStatus, log: log)
            }
            if ContinuousClock.now >= deadline { throw DaemonProcessError.notListening(socketPath: socketPath, log: log) }
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}

/// Runs `body` with a started daemon and kills it afterwards (SIGKILL if it
/// is still running), whether the body returns or throws.
@discardableResult
public func withDaemonProcess<T>(
    arguments: [String],
    socketPath: String,
    executable: String = BuiltProducts.path(of: "kvmd-pst"),
    environment: [String: String] = [:],
    _ body: (DaemonProcess) async throws -> T
) async throws -> T {
    let daemon = try await DaemonProcess(
        executable: executable, arguments: arguments, socketPath: socketPath, environment: environment)
    defer { daemon.stop() }
    return try await body(daemon)
}
