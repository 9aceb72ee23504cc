import CSystemShims
import Glibc

/// A plain detached pthread for blocking work (waitid, poll), kept off
/// Swift's cooperative pool; for the package's executables, not its API.
/// Foundation's `Thread` does the same but brings all of Foundation along.
package enum DetachedThread {
    private final class Body {
        let name: String?
        let run: @Sendable () -> Void
        init(name: String?, run: @escaping @Sendable () -> Void) {
            self.name = name
            self.run = run
        }
    }

    /// Runs `body` on a new thread, named `name` (at most 15 bytes show).
    package static func run(name: String? = nil, _ body: @escaping @Sendable () -> Void) {
        if let body = start(name: name, body) {
            // No thread to be had (EAGAIN): block this one rather than never return.
            body()
        }
    }

    /// Starts `body` on a new thread, named `name`; if no thread can be had
    /// (EAGAIN), returns `body` unrun, for a caller that cannot block its
    /// own thread instead.
    package static func start(name: String? = nil, _ body: @escaping @Sendable () -> Void) -> (@Sendable () -> Void)? {
        let context = Unmanaged.passRetained(Body(name: name, run: body)).toOpaque()
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        var thread = pthread_t()
        let result = pthread_create(&thread, &attributes, { context in
            let body = Unmanaged<Body>.fromOpaque(context!).takeRetainedValue()
            if let name = body.name { _ = pst_set_current_thread_name(name) }
            body.run()
            return nil
        }, context)
        guard result == 0 else { return Unmanaged<Body>.fromOpaque(context).takeRetainedValue().run }
        return nil
    }
}
