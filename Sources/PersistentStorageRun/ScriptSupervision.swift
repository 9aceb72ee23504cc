import Glibc
import Logging
import PersistentStorage

/// Watches a running script and stops it when it must not write any more:
/// the session was revoked (read-only remount, daemon gone, protocol error),
/// or `kvmd-pstrun` itself was told to stop.
struct ScriptSupervision: Sendable {
    let script: ScriptProcess
    let killGracePeriod: Duration
    let logger: Logger

    private enum Event: Sendable {
        case exited
        case revoked(RevocationReason?)
        case signal(Int32?)
        case gracePeriodOver
    }

    /// Returns the script's exit code once it has exited.
    func untilExit(session: StorageSession, signals: AsyncStream<Int32>) async -> Int32 {
        await withTaskGroup(of: Event.self) { group in
            group.addTask { await script.waitForExit(); return .exited }
            group.addTask { .revoked(await session.waitUntilRevoked()) }
            group.addTask { await Self.nextSignal(signals) }

            var stopping = false
            func stop(with signal: Int32) {
                script.signalGroup(signal)
                guard !stopping else { return }
                stopping = true
                group.addTask { [killGracePeriod] in
                    try? await Task.sleep(for: killGracePeriod)
                    return .gracePeriodOver
                }
            }

            while let event = await group.next() {
                switch event {
                case .exited:
                    group.cancelAll()
                    if stopping {
                        // Children the script left behind could keep files on the
                        // PST open and block the read-only remount. The leader is
                        // still a zombie, so the group id cannot have been reused.
                        script.signalGroup(SIGKILL)
                    }
                    return script.reap()
                case .revoked(let reason?):
                    logger.error("PST write access was revoked (\(reason)); stopping the process")
                    stop(with: SIGTERM)
                case .revoked(nil):
                    break
                case .signal(let number?):
                    logger.info("Got signal \(number); passing it on to the process")
                    stop(with: number)
                    group.addTask { await Self.nextSignal(signals) }
                case .signal(nil):
                    break
                case .gracePeriodOver:
                    logger.error("The process did not exit in time; killing its process group")
                    script.signalGroup(SIGKILL)
                }
            }
            preconditionFailure("the exit watch always reports")
        }
    }

    private static func nextSignal(_ signals: AsyncStream<Int32>) async -> Event {
        for await number in signals { return .signal(number) }
        return .signal(nil)
    }
}
