import Glibc

/// Decides who may talk to the daemon: root, the daemon's own user, and
/// members of the socket's group.
///
/// The socket file's mode already says the same thing, but a file mode is
/// checked only at connect(2) and only on that path; checking the kernel's
/// peer credentials on every connection also holds when the mode was changed
/// by hand, or the socket was passed on.
struct PeerAuthorization: Sendable {
    /// The socket's group: members may connect.
    var groupID: gid_t
    /// The daemon's own user (the socket's owner) may always connect.
    var ownerID: uid_t

    func allows(_ peer: PeerCredentials) -> Bool {
        if peer.uid == 0 || peer.uid == ownerID || peer.gid == groupID { return true }
        if peer.supplementaryGroups.contains(groupID) { return true }
        guard let account = UserAccount(uid: peer.uid) else { return false }
        return account.primaryGroup == groupID || GroupMembers(gid: groupID).names.contains(account.name)
    }
}

/// A user's name and primary group, from the passwd database.
struct UserAccount {
    var name: String
    var primaryGroup: gid_t

    init?(uid: uid_t) {
        // The reentrant variant: connections are checked on several threads.
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 16384)
        guard getpwuid_r(uid, &entry, &buffer, buffer.count, &result) == 0, result != nil else { return nil }
        name = String(cString: entry.pw_name)
        primaryGroup = entry.pw_gid
    }
}

/// The supplementary members of a group, from the group database.
struct GroupMembers {
    var names: Set<String> = []

    init(gid: gid_t) {
        var entry = group()
        var result: UnsafeMutablePointer<group>?
        var buffer = [CChar](repeating: 0, count: 65536)
        guard getgrgid_r(gid, &entry, &buffer, buffer.count, &result) == 0, result != nil,
              var member = entry.gr_mem else { return }
        while let name = member.pointee {
            names.insert(String(cString: name))
            member += 1
        }
    }

    /// The id of the group called `name`, or nil when there is none.
    static func id(named name: String) -> gid_t? {
        var entry = group()
        var result: UnsafeMutablePointer<group>?
        var buffer = [CChar](repeating: 0, count: 65536)
        guard getgrnam_r(name, &entry, &buffer, buffer.count, &result) == 0, result != nil else { return nil }
        return entry.gr_gid
    }
}
