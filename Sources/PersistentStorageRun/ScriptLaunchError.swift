import Glibc

/// Why the script could not be started, with the exit code the shell would use.
public struct ScriptLaunchError: Error, CustomStringConvertible, Equatable {
    public var command: String
    public var errno: Int32
    /// Set when the program is on a filesystem mounted `noexec` (the PST is).
    public var onNoExecFilesystem: Bool

    public var exitCode: Int32 {
        errno == ENOENT || errno == ENOTDIR ? ScriptExit.notFound : ScriptExit.notExecutable
    }

    public var description: String {
        let reason = String(cString: strerror(errno))
        var text = "cannot run \(command): \(reason)"
        if onNoExecFilesystem {
            text += "; it lives on a filesystem mounted noexec (as the PST is), "
                + "so run it through its interpreter, e.g. kvmd-pstrun -- /bin/sh \(command)"
        }
        return text
    }

    init(command: String, errno: Int32) {
        self.command = command
        self.errno = errno
        self.onNoExecFilesystem = errno == EACCES && Self.isOnNoExecFilesystem(Self.resolve(command))
    }

    /// The file `posix_spawnp` would have tried: the command itself when it
    /// has a slash, else the first match in PATH.
    private static func resolve(_ command: String) -> String? {
        if command.contains("/") { return command }
        let path = getenv("PATH").map { String(cString: $0) } ?? "/usr/bin:/bin"
        return path.split(separator: ":").map { "\($0)/\(command)" }.first { access($0, F_OK) == 0 }
    }

    private static func isOnNoExecFilesystem(_ path: String?) -> Bool {
        // ST_NOEXEC; glibc declares it only under _GNU_SOURCE.
        let mountedNoExec: UInt = 8
        var info = statvfs()
        guard let path, statvfs(path, &info) == 0 else { return false }
        return info.f_flag & mountedNoExec != 0
    }
}
