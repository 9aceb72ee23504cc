/// Why `kvmd-helper-pst-remount` (or the daemon's in-process remount) failed.
public enum StorageRemountError: Error, Equatable, CustomStringConvertible {
    case discovery(StorageDiscoveryError)
    case remount(RemountError)
    case fix(StorageFixError)
    /// What is mounted at the mount point is not the storage.
    case otherFilesystem(mountPath: String)

    public var description: String {
        switch self {
        case .discovery(let error): error.description
        case .remount(let error): error.description
        case .fix(let error): "remounted read-write, but \(error.description)"
        case .otherFilesystem(let mountPath):
            "another filesystem is mounted over the storage at \(mountPath); not remounting it (unmount it first)"
        }
    }
}

/// The whole job of the privileged remount helper: find the partition in the
/// fstab, remount it, and after a read-write remount run the fix step.
public struct StorageRemount: Sendable {
    public var fstabPath: String
    public var layout: DataLayout

    public init(fstabPath: String = FstabReader.defaultPath, layout: DataLayout = .kvmdDefault) {
        self.fstabPath = fstabPath
        self.layout = layout
    }

    /// Returns the location it remounted and what the fix step repaired, for messages.
    @discardableResult
    public func perform(_ mode: RemountMode) throws(StorageRemountError) -> (location: StorageLocation, repairs: [String]) {
        let location: StorageLocation
        do {
            location = try FstabReader(path: fstabPath).findStorage().location
        } catch {
            throw .discovery(error)
        }
        let repairs = try perform(mode, at: location)
        return (location, repairs)
    }

    /// Remounts an already discovered location. Returns what the fix step
    /// repaired (see ``StorageFix/apply()``).
    @discardableResult
    /// `storage`, when given, is kept between calls so that the storage's
    /// device is resolved from the fstab once, not before every remount.
    public func perform(
        _ mode: RemountMode, at location: StorageLocation, storage: MountedStorage? = nil
    ) throws(StorageRemountError) -> [String] {
        // A remount acts on whatever is on top at the mount point, and the
        // fix step gives it to the storage's user: it must be the storage.
        let storage = storage ?? MountedStorage(mountPath: location.mountPath, fstabPath: fstabPath)
        if !storage.isOnTop() {
            throw .otherFilesystem(mountPath: location.mountPath)
        }
        do {
            try KernelRemounter(fstabPath: fstabPath).remount(location.mountPath, to: mode)
        } catch {
            throw .remount(error)
        }
        guard mode == .readWrite else { return [] }
        do {
            return try StorageFix(location: location, layout: layout).apply()
        } catch {
            throw .fix(error)
        }
    }
}
