/// Where the data directory lives relative to the storage root.
public enum DataLayout: String, Sendable, CaseIterable {
    /// `ROOT/data`, as the PST document describes (`/var/lib/kvmd/pst/data`).
    case dataSubdirectory = "data"
    /// `ROOT` itself, as kvmd hands it out since 2024 (sticky `1775`, each
    /// service makes its own subdirectory).
    case root

    /// `root`: what kvmd's daemon hands out since 4.8 (2024-08), and so the
    /// default of the daemon, the helper and the library's types.
    public static let kvmdDefault: DataLayout = .root
}

/// The persistent-storage partition as the fstab describes it.
public struct StorageLocation: Sendable, Equatable {
    /// The fstab's first field (`LABEL=PIPST`, `/dev/loop0`, ...).
    public var source: String
    /// Where the partition is mounted (fstab field 2).
    public var mountPath: String
    /// `X-kvmd.pst-root`, or the mount path when that option is absent.
    public var rootPath: String
    /// `X-kvmd.pst-user`: who should own the root and the data directory.
    public var user: String?
    /// `X-kvmd.pst-group`: which group should own them.
    public var group: String?
    /// The entry's option string, as written in the fstab.
    public var options: String

    public init(
        source: String, mountPath: String, rootPath: String,
        user: String? = nil, group: String? = nil, options: String = ""
    ) {
        self.source = source
        self.mountPath = mountPath
        self.rootPath = rootPath
        self.user = user
        self.group = group
        self.options = options
    }

    /// The directory handed to clients for the given layout.
    public func dataPath(for layout: DataLayout) -> String {
        switch layout {
        case .dataSubdirectory: rootPath.hasSuffix("/") ? rootPath + "data" : rootPath + "/data"
        case .root: rootPath
        }
    }
}
