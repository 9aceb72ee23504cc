import Logging

/// The daemon's logger for lines a peer causes: each names the peer and is
/// charged to its ``PeerLogBudget``.
///
/// Lines below the logger's level are not charged, and their text is never
/// built.
struct PeerLogger: Sendable {
    let logger: Logger
    let peer: PeerCredentials
    let budget: PeerLogBudget

    func debug(_ message: @autoclosure () -> String) { log(.debug, message()) }
    func info(_ message: @autoclosure () -> String) { log(.info, message()) }
    func warning(_ message: @autoclosure () -> String) { log(.warning, message()) }

    private func log(_ level: Logger.Level, _ message: @autoclosure () -> String) {
        guard level >= logger.logLevel else { return }
        guard case .log(let suppressed) = budget.admit(peer.pid) else { return }
        let note = suppressed > 0 ? " (\(suppressed) earlier line(s) from this peer not logged: too many)" : ""
        logger.log(level: level, "\(message()) (\(peer))\(note)")
    }
}
