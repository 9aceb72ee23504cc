import CLibMount
import CSystemShims
import Glibc
import SystemSupport

/// Read-only or read-write.
public enum RemountMode: String, Sendable, CaseIterable, CustomStringConvertible {
    case readWrite = "rw"
    case readOnly = "ro"

    public var description: String { self == .readWrite ? "read-write" : "read-only" }
}

/// Why a remount failed, in terms a user can act on.
public struct RemountError: Error, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable, Equatable {
        /// `EBUSY` on RO: a file is open for writing, or a deleted file is still open.
        case busy
        /// The block device does not allow writing (`EACCES`/`EROFS` on RW).
        case writeProtected = "write-protected"
        /// The process lacks `CAP_SYS_ADMIN`.
        case notPermitted = "not permitted"
        /// Nothing is mounted at the path.
        case notMounted = "not mounted"
        case other
    }

    public var kind: Kind
    public var mountPath: String
    public var mode: RemountMode
    /// The kernel's errno, 0 when the failure did not come from the system call.
    public var errno: Int32
    /// libmount's own message, when it gave one.
    public var message: String

    public init(kind: Kind, mountPath: String, mode: RemountMode, errno: Int32, message: String) {
        self.kind = kind
        self.mountPath = mountPath
        self.mode = mode
        self.errno = errno
        self.message = message
    }

    public var description: String {
        var text = "cannot remount \(mountPath) \(mode)"
        switch kind {
        case .busy: text += ": busy (a file is open for writing, or a deleted file is still open)"
        case .writeProtected: text += ": the device is write-protected"
        case .notPermitted: text += ": not permitted (needs root or CAP_SYS_ADMIN)"
        case .notMounted: text += ": nothing is mounted there"
        case .other: text += ": \(message.isEmpty ? String(cString: strerror(errno)) : message)"
        }
        if kind != .other && errno != 0 {
            text += " [\(String(cString: strerror(errno)))]"
        }
        return text
    }
}

/// Remounts a mounted filesystem read-only or read-write in this process,
/// through libmount, keeping every other option of the mount.
public struct KernelRemounter: Sendable {
    /// The fstab libmount merges options from, as `mount -o remount` does.
    public var fstabPath: String

    public init(fstabPath: String = FstabReader.defaultPath) {
        self.fstabPath = fstabPath
    }

    public func remount(_ mountPath: String, to mode: RemountMode) throws(RemountError) {
        // Whether anything is mounted there is asked only when the remount
        // fails, to say so: reading the mount table first cost every remount
        // a pass over /proc/self/mountinfo, which libmount reads anyway. The
        // kernel refuses MS_REMOUNT on a directory that is not a mount's root
        // (EINVAL), so nothing else can be remounted by mistake.
        if mode == .readOnly {
            // The kernel syncs the filesystem when it goes read-only; doing it
            // first as well keeps that work out of the window in which a new
            // writer could make the remount fail with EBUSY.
            syncFilesystem(at: mountPath)
        }
        guard let context = mnt_new_context() else {
            throw RemountError(kind: .other, mountPath: mountPath, mode: mode, errno: ENOMEM, message: "libmount: out of memory")
        }
        defer { mnt_free_context(context) }

        // Without this libmount treats a non-root process that has
        // CAP_SYS_ADMIN as an ordinary user and refuses the remount.
        mnt_context_force_unrestricted(context)
        // No /sbin/mount.* helper, no utab bookkeeping: only the system call.
        mnt_context_disable_helpers(context, 1)
        mnt_context_disable_mtab(context, 1)
        // Options not named here (nodev,nosuid,noexec,data=journal, ...) come
        // from the fstab entry or, failing that, from the mount itself, the
        // way `mount -o remount,ro PATH` does it.
        let fstab = LibMountTable()
        if let text = try? readFile(fstabPath), parseFstab(text, named: fstabPath, into: fstab) == 0 {
            mnt_context_set_fstab(context, fstab.handle)
        }
        mnt_context_set_target(context, mountPath)
        mnt_context_set_options(context, "remount,\(mode.rawValue)")

        let rc = mnt_context_mount(context)
        let syscallErrno = mnt_context_syscall_called(context) == 1 ? mnt_context_get_syscall_errno(context) : 0
        if rc == 0 && syscallErrno == 0 { return }

        var buffer = [CChar](repeating: 0, count: 1024)
        _ = mnt_context_get_excode(context, rc, &buffer, buffer.count)
        let message = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard MountTable.filesystem(mountedAt: mountPath) != nil else {
            throw RemountError(kind: .notMounted, mountPath: mountPath, mode: mode, errno: ENOENT, message: "")
        }
        let code = syscallErrno != 0 ? syscallErrno : (rc < 0 ? -rc : 0)
        // Without the privilege libmount may fail before the system call,
        // with an errno of its own (EACCES opening the device, which reads
        // as write-protected); the missing privilege is the real reason.
        let kind = Self.hasRemountPrivilege() ? Self.kind(of: code, mode: mode) : .notPermitted
        throw RemountError(kind: kind, mountPath: mountPath, mode: mode, errno: code, message: message)
    }

    /// Whether this process has `CAP_SYS_ADMIN` in its effective set
    /// (`CapEff` in `/proc/self/status`), which mount(2) needs.
    public static func hasRemountPrivilege() -> Bool {
        guard let status = try? readFile("/proc/self/status"),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("CapEff:") }),
              let mask = UInt64(line.dropFirst("CapEff:".count).trimmingPrefix { $0 == "\t" || $0 == " " }, radix: 16)
        else { return geteuid() == 0 }
        let capSysAdmin: UInt64 = 21
        return mask & (1 << capSysAdmin) != 0
    }

    static func kind(of code: Int32, mode: RemountMode) -> RemountError.Kind {
        switch code {
        case EBUSY: .busy
        case EACCES, EROFS: mode == .readWrite ? .writeProtected : .other
        case EPERM: .notPermitted
        default: .other
        }
    }

    private func syncFilesystem(at path: String) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = pst_syncfs(fd)
        close(fd)
    }
}
