import Glibc
@testable import PersistentStorageDaemon
import Testing

@Suite("Reading a peer's groups")
struct PeerGroupsTests {
    @Test("The Groups: line of /proc/PID/status is read, and a runtime group authorizes")
    func groupsLine() {
        let status = "Name:\tcurl\nUid:\t65534\t65534\t65534\t65534\nGroups:\t100 27 \nNSpid:\t7\n"
        #expect(PeerCredentials.groups(inStatus: status) == [100, 27])
        #expect(PeerCredentials.groups(inStatus: "Groups:\t\n").isEmpty)
        let authorization = PeerAuthorization(groupID: 100, ownerID: 0)
        let withGroup = PeerCredentials(pid: 7, uid: 4242, gid: 4242, command: "curl", supplementaryGroups: [27, 100])
        let without = PeerCredentials(pid: 7, uid: 4242, gid: 4242, command: "curl", supplementaryGroups: [27])
        #expect(authorization.allows(withGroup))
        #expect(!authorization.allows(without))
    }
}
