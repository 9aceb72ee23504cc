import Glibc
import PersistentStorageMount

/// What the kernel itself costs for the work a session triggers: the
/// remounts, a process spawn and a socket exchange, timed without the daemon
/// in between.
struct PhysicalLimit {
    var mountReadWrite: Samples
    var mountReadOnly: Samples
    var libmountReadWrite: Samples
    var libmountReadOnly: Samples
    var spawnTrue: Samples
    /// ``SocketExchange``: connect, request, answer; the floor of a session's open.
    var socketExchange: Samples

    /// Two bare remounts and one spawn: what `kvmd-pstrun -- true` cannot beat.
    var pstrunFloorMicroseconds: Double { mountReadWrite.median + mountReadOnly.median + spawnTrue.median }

    /// Runs before the daemon starts, so that nobody else touches the mount.
    static func measure(
        mountPath: String, fstabPath: String, socketDirectory: String, cycles: Int, spawns: Int, exchanges: Int
    ) throws -> PhysicalLimit {
        var limit = PhysicalLimit(
            mountReadWrite: Samples(), mountReadOnly: Samples(),
            libmountReadWrite: Samples(), libmountReadOnly: Samples(), spawnTrue: Samples(), socketExchange: Samples())
        let clock = ContinuousClock()
        for cycle in -2..<cycles {
            let startWrite = clock.now
            try remountWithSystemCall(mountPath, readOnly: false)
            let startRead = clock.now
            try remountWithSystemCall(mountPath, readOnly: true)
            let end = clock.now
            if cycle >= 0 {
                limit.mountReadWrite.append(startRead - startWrite)
                limit.mountReadOnly.append(end - startRead)
            }
        }
        let remounter = KernelRemounter(fstabPath: fstabPath)
        for cycle in -2..<cycles {
            let startWrite = clock.now
            try remounter.remount(mountPath, to: .readWrite)
            let startRead = clock.now
            try remounter.remount(mountPath, to: .readOnly)
            let end = clock.now
            if cycle >= 0 {
                limit.libmountReadWrite.append(startRead - startWrite)
                limit.libmountReadOnly.append(end - startRead)
            }
        }
        for spawn in -5..<spawns {
            let run = try spawnAndWait(["true"])
            if spawn >= 0 { limit.spawnTrue.append(run.wallTime) }
        }
        limit.socketExchange = try SocketExchange.measure(directory: socketDirectory, count: exchanges)
        return limit
    }

    /// mount(2) with MS_REMOUNT and nothing else: the per-mount flags the
    /// PiKVM mount has are passed again (a remount resets the ones left
    /// out), and the filesystem keeps its own options.
    static func remountWithSystemCall(_ path: String, readOnly: Bool) throws {
        let remount: UInt = 32, readOnlyFlag: UInt = 1, noSetUID: UInt = 2, noDevices: UInt = 4, noExec: UInt = 8
        let flags = remount | noSetUID | noDevices | noExec | (readOnly ? readOnlyFlag : 0)
        guard mount(nil, path, nil, flags, nil) == 0 else {
            throw RemountError(
                kind: .other, mountPath: path, mode: readOnly ? .readOnly : .readWrite, errno: errno,
                message: "mount(2): \(String(cString: strerror(errno)))")
        }
    }
}
