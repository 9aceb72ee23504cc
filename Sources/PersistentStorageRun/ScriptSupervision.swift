import Glibc
import Logging
import PersistentStorage

/// Watches a running script and stops it when it must not write any more:
/// the session was revoked (read-only remount, daemon gone, protocol error),
/// or `kvmd-pstrun` itself was told to stop.
///
/// One poll(2) on one thread waits for all of it: the session's socket, and
/// the signals (the script's exit is a SIGCHLD). No thread is started.
struct ScriptSupervision {
    let script: ScriptProcess
    let killGracePeriod: Duration
    let logger: Logger

    /// Returns the script's exit code once it has exited.
    ///
    /// - Parameter signals: watches SIGCHLD and the signals to pass on.
    func untilExit(session: BlockingSession, signals: SignalWatch) -> Int32 {
        var watchingSession = true
        // What came with the status that granted access is read already.
        var sessionReadable = true
        var killDeadline: ContinuousClock.Instant?
        var stopping = false

        func stop(with signal: Int32) {
            script.signalGroup(signal)
            guard !stopping else { return }
            stopping = true
            killDeadline = .now + killGracePeriod
        }

        while true {
            // Checked first: a script that has exited needs nothing else.
            if script.hasExited() {
                if stopping {
                    // Children the script left behind could keep files on the
                    // PST open and block the read-only remount. The leader is
                    // still a zombie, so the group id cannot have been reused.
                    script.signalGroup(SIGKILL)
                }
                return script.reap()
            }
            if let deadline = killDeadline, deadline <= .now {
                logger.error("The process did not exit in time; killing its process group")
                script.signalGroup(SIGKILL)
                killDeadline = nil
            }
            if watchingSession && sessionReadable, let reason = session.readAvailable() {
                logger.error("PST write access was revoked (\(reason)); stopping the process")
                watchingSession = false
                stop(with: SIGTERM)
                continue
            }
            var entries = [pollfd(fd: signals.descriptor, events: Int16(POLLIN), revents: 0)]
            if watchingSession { entries.append(pollfd(fd: session.descriptor, events: Int16(POLLIN), revents: 0)) }
            let ready = Glibc.poll(&entries, nfds_t(entries.count), killDeadline.map(BlockingSession.pollTimeout(until:)) ?? -1)
            guard ready > 0 else { continue }  // a timeout or EINTR: look again
            while let number = signals.next() {
                guard number != SIGCHLD else { continue }
                logger.info("Got signal \(number); passing it on to the process")
                stop(with: number)
            }
            sessionReadable = watchingSession && entries[1].revents != 0
        }
    }
}
