/// Why `kvmd-helper-pst-remount` (or the daemon's in-process remount) failed.
public enum StorageRemountError: Error, Equatable, CustomStringConvertible {
    case discovery(StorageDiscoveryError)
    case remount(RemountError)
    case fix(StorageFixError)

    public var description: String {
        switch self {
        case .discovery(let error): error.description
        case .remount(let error): error.description
        case .fix(let error): "remounted read-write, but \(error.description)"
        }
    }
}

/// The whole job of the privileged remount helper: find the partition in the
/// fstab, remount it, and after a read-write remount run the fix step.
public struct StorageRemount: Sendable {
    public var fstabPath: String
    public var layout: DataLayout

    public init(fstabPath: String = FstabReader.defaultPath, layout: DataLayout = .dataSubdirectory) {
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
    public func perform(_ mode: RemountMode, at location: StorageLocation) throws(StorageRemountError) -> [String] {
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
