import Foundation
import Glibc

/// One child process run to completion with posix_spawn(3) and wait4(2).
struct SpawnedRun {
    var exitStatus: Int32
    /// From just before posix_spawn to wait4 returning.
    var wallTime: Duration
    /// The child's peak resident set size, KiB (wait4's `ru_maxrss`).
    var peakRSSKiB: Int
}

struct SpawnError: Error, CustomStringConvertible {
    var command: [String]
    var errno: Int32
    var description: String { "cannot run \(command.joined(separator: " ")): \(String(cString: strerror(errno)))" }
}

/// Spawns `arguments` (the first looked up in PATH) with stdout and stderr
/// on /dev/null, waits for it, and times the whole thing.
func spawnAndWait(_ arguments: [String], environment: [String: String] = ProcessInfo.processInfo.environment) throws -> SpawnedRun {
    let argv = CStringArray(arguments)
    let envp = CStringArray(environment.map { "\($0.key)=\($0.value)" })
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)

    let clock = ContinuousClock()
    let start = clock.now
    var pid: pid_t = 0
    let rc = posix_spawnp(&pid, argv.pointers[0]!, &actions, nil, argv.pointers, envp.pointers)
    guard rc == 0 else { throw SpawnError(command: arguments, errno: rc) }
    var status: Int32 = 0
    var usage = rusage()
    while wait4(pid, &status, 0, &usage) < 0 {
        guard errno == EINTR else { throw SpawnError(command: arguments, errno: errno) }
    }
    let wall = clock.now - start
    let exitStatus = status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    return SpawnedRun(exitStatus: exitStatus, wallTime: wall, peakRSSKiB: usage.ru_maxrss)
}

/// A NULL-terminated `char *[]`, freed when it goes away.
final class CStringArray {
    let pointers: [UnsafeMutablePointer<CChar>?]

    init(_ strings: [String]) {
        pointers = strings.map { strdup($0) } + [nil]
    }

    deinit {
        for pointer in pointers { free(pointer) }
    }
}
