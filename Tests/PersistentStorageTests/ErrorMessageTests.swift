import Testing

@testable import PersistentStorage

@Suite("Error messages")
struct ErrorMessageTests {
    @Test("permission denied names the socket's group to join")
    func permissionDeniedNamesGroup() {
        let message = PersistentStorageError.permissionDenied(socketPath: "/run/kvmd/pst.sock", socketGroup: "kvmd-pst").description
        #expect(message.contains("/run/kvmd/pst.sock"))
        #expect(message.contains("usermod -aG kvmd-pst"))
    }

    @Test("permission denied on a root-owned socket does not advise joining root")
    func permissionDeniedRootGroup() {
        let message = PersistentStorageError.permissionDenied(socketPath: "/s", socketGroup: "root").description
        #expect(!message.contains("-aG root"))
        #expect(message.contains("kvmd-pst"))
    }

    @Test("a refusal carries the daemon's reason when it gave one")
    func refusalReason() {
        #expect(PersistentStorageError.writeRefused(reason: "remount failed").description.hasSuffix(": remount failed"))
        #expect(PersistentStorageError.writeRefused(reason: nil).description.contains("journalctl"))
    }

    @Test("durations read as seconds", arguments: [(Duration.seconds(5), "5 s"), (.milliseconds(250), "0.25 s")])
    func durationFormat(duration: Duration, text: String) {
        #expect(duration.formattedSeconds == text)
    }
}
