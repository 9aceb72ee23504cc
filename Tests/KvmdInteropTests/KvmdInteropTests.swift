import PersistentStorageTestSupport
import Testing

/// swift-pst against the real kvmd 4.197, both ways: kvmd's `kvmd-pstrun`
/// against our daemon, and our `kvmd-pstrun` and library against kvmd's
/// daemon, on the real harness's loop mount (`make test-kvmd`). Where the
/// two implementations differ on purpose (exit statuses, Protocol.md), each
/// side is held to its own documented behaviour; everything else must be
/// the same whichever side is ours.
///
/// One storage and one daemon at a time: the suites run one test after another.
@Suite("Against the real kvmd", .serialized, .enabled(if: KvmdAnchor.enabled), .timeLimit(.minutes(5)))
struct KvmdInteropTests {}

/// Which daemon serves, and which `kvmd-pstrun` runs.
struct Pairing: CustomTestStringConvertible, Sendable {
    var daemon: KvmdAnchor.Daemon
    var client: KvmdAnchor.Client

    var testDescription: String { "\(client.testDescription) against \(daemon.testDescription)" }

    /// kvmd's client against our daemon, and ours against kvmd's.
    static let crossed = [Pairing(daemon: .ours, client: .kvmd), Pairing(daemon: .kvmd, client: .ours)]
    /// The same, and kvmd against kvmd: what the real thing does, for the
    /// cases where our side must simply do the same.
    static let crossedAndReference = crossed + [Pairing(daemon: .kvmd, client: .kvmd)]

    /// A name for files this pairing writes, unique per pairing.
    var tag: String { "\(client.rawValue)-client-\(daemon.rawValue)-daemon" }
}
