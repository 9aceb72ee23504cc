import Dispatch
import Glibc

/// Delivers signals to `kvmd-pstrun` as an async sequence instead of their
/// default action, until ``stop()`` puts the previous actions back.
final class SignalWatch {
    let signals: AsyncStream<Int32>
    private let sources: [any DispatchSourceSignal]
    private let previousActions: [(signal: Int32, action: sighandler_t?)]

    init(_ watched: [Int32]) {
        let (signals, continuation) = AsyncStream<Int32>.makeStream()
        self.signals = signals
        // The default action must be off for the dispatch source to see the
        // signal instead of the process dying of it.
        previousActions = watched.map { ($0, signal($0, SIG_IGN)) }
        sources = watched.map { number in
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { continuation.yield(number) }
            source.resume()
            return source
        }
    }

    func stop() {
        for source in sources { source.cancel() }
        for (number, action) in previousActions { signal(number, action) }
    }
}

/// Signals ignored while the script has the terminal: ^C and ^\ are meant for
/// the script, and `kvmd-pstrun` must survive them to close the session.
struct IgnoredSignals {
    private let previousActions: [(signal: Int32, action: sighandler_t?)]

    init(_ ignored: [Int32]) {
        previousActions = ignored.map { ($0, signal($0, SIG_IGN)) }
    }

    func restore() {
        for (number, action) in previousActions { signal(number, action) }
    }
}
