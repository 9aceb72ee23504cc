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

    @Test("a peer's command name is read from /proc and trimmed; text is trimmed by its ASCII blanks only")
    func commandName() {
        let me = PeerCredentials(pid: getpid(), uid: 0, gid: 0)
        #expect(!me.command.isEmpty && me.command != "?" && me.command == me.command.trimmingWhitespace())
        #expect(PeerCredentials(pid: 0x7fff_fff0, uid: 0, gid: 0).command == "?")
        #expect(" \tkvmd-pstrun\n".trimmingWhitespace() == "kvmd-pstrun")
        #expect("\n\r\n".trimmingWhitespace() == "")
        #expect("".trimmingWhitespace() == "")
        #expect(" é x\u{00A0}".trimmingWhitespace() == "é x\u{00A0}")
    }
}
