import Glibc
import Logging
import PersistentStorage

/// Watches a running script and stops it when it must not write any more:
/// the session was revoked (read-only remount, daemon gone, protocol error),
/// or a signal would end `kvmd-pstrun` itself. And when the script exits,
/// what it left running in its process group is stopped too, so that nothing
/// it started writes after the session is closed.
///
/// One poll(2) on one thread waits for all of it: the session's socket, and
/// the signals (the script's exit is a SIGCHLD). No thread is started.
struct ScriptSupervision {
    let script: ScriptProcess
    let killGracePeriod: Duration
    let logger: Logger

    /// Signals passed on as they are: each asks a program to stop, and a
    /// script may trap them to clean up. Any other signal that would end
    /// `kvmd-pstrun` (SIGUSR1, SIGPIPE, SIGALRM, ...) means something else,
    /// or nothing, to the script, so it gets SIGTERM instead.
    static let passedOn: Set<Int32> = [SIGTERM, SIGHUP, SIGINT, SIGQUIT]

    /// How often the group is looked at again while what the script left in
    /// it is being stopped: those processes are not our children, so their
    /// end is no event we can wait for.
    static let leftoverRecheck: Duration = .milliseconds(10)

    struct Outcome {
        /// The script's own exit code (128 + N if signal N killed it).
        var scriptExitCode: Int32
        /// The first signal that would have ended `kvmd-pstrun`, if one came.
        var endingSignal: Int32?
    }

    /// Returns once the script has exited and nothing is left in its group
    /// (or what is left did not die within the grace period after SIGKILL).
    ///
    /// - Parameter signals: watches SIGCHLD and the signals that would end us.
    func untilExit(session: BlockingSession, signals: SignalWatch) -> Outcome {
        var watchingSession = true
        // What came with the status that granted access is read already.
        var sessionReadable = true
        var stopping = false
        var killDeadline: ContinuousClock.Instant?
        var killedAt: ContinuousClock.Instant?
        var endingSignal: Int32?
        // Set once the script has been reaped.
        var exitCode: Int32?

        func stop(with signal: Int32) {
            script.signalGroup(signal)
            guard !stopping else { return }
            stopping = true
            killDeadline = .now + killGracePeriod
        }
        func kill() {
            script.signalGroup(SIGKILL)
            killDeadline = nil
            killedAt = .now
        }

        while true {
            if let deadline = killDeadline, deadline <= .now {
                logger.error("The process did not exit in time; killing its process group")
                kill()
            }
            var recheck = false
            // Checked first: a script that has exited needs nothing but its group emptied.
            if exitCode != nil || script.hasExited() {
                // Reaped first, so that the kernel can say at once whether
                // anyone is left in the group (a zombie leader would count):
                // the usual answer, "no", then costs one kill(2) instead of a
                // walk through /proc (which doubled `kvmd-pstrun -- true`).
                // The group id cannot be reused while anyone is left in it.
                let code = exitCode ?? script.reap()
                exitCode = code
                if Glibc.kill(-script.processGroup, 0) != 0 && errno == ESRCH {
                    return Outcome(scriptExitCode: code, endingSignal: endingSignal)
                }
                let leftovers = ProcessGroupMembers.living(in: script.processGroup, except: script.pid)
                if leftovers.isEmpty {
                    return Outcome(scriptExitCode: code, endingSignal: endingSignal)
                }
                if let killedAt {
                    if ContinuousClock.now - killedAt >= killGracePeriod {
                        logger.error("Processes \(leftovers) of the process group did not die after SIGKILL")
                        return Outcome(scriptExitCode: code, endingSignal: endingSignal)
                    }
                } else if !stopping {
                    // They could keep files on the PST open (blocking the
                    // read-only remount) or go on writing after the session.
                    logger.info("The process exited, leaving \(leftovers.count) process(es) in its group; stopping them")
                    stop(with: SIGTERM)
                }
                // Otherwise they had their SIGTERM with the script; SIGKILL
                // follows when the grace period is over, as for the script.
                recheck = true
            }
            if watchingSession && sessionReadable, let reason = session.readAvailable() {
                logger.error("PST write access was revoked (\(reason)); stopping the process")
                watchingSession = false
                stop(with: SIGTERM)
                continue
            }
            var entries = [pollfd(fd: signals.descriptor, events: Int16(POLLIN), revents: 0)]
            if watchingSession { entries.append(pollfd(fd: session.descriptor, events: Int16(POLLIN), revents: 0)) }
            var wakeUp = killDeadline
            if recheck { wakeUp = min(wakeUp ?? .now + Self.leftoverRecheck, .now + Self.leftoverRecheck) }
            let ready = Glibc.poll(&entries, nfds_t(entries.count), wakeUp.map(BlockingSession.pollTimeout(until:)) ?? -1)
            guard ready > 0 else { continue }  // a timeout or EINTR: look again
            while let number = signals.next() {
                guard number != SIGCHLD else { continue }
                if Self.passedOn.contains(number) {
                    logger.info("Got signal \(number); passing it on to the process")
                    stop(with: number)
                } else {
                    logger.info("Got signal \(number); stopping the process with SIGTERM")
                    stop(with: SIGTERM)
                }
                endingSignal = endingSignal ?? number
            }
            sessionReadable = watchingSession && entries[1].revents != 0
        }
    }
}
