import Glibc

/// The daemon's limit on open files.
enum DescriptorLimit {
    /// Raises the soft limit to the hard one and returns the new soft limit.
    ///
    /// Every connection costs a descriptor, also one that never sends a
    /// request. systemd starts services with a soft limit of 1024 (and a hard
    /// one of 524288), leaving it to a program that needs more to raise it:
    /// with 1024, a thousand idle connections would make accept(2) fail and
    /// keep every well-behaved client waiting until the idle ones time out.
    @discardableResult
    static func raiseToHardLimit() -> UInt64 {
        let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
        var limit = rlimit()
        guard getrlimit(resource, &limit) == 0 else { return 0 }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(resource, &raised) == 0 { return UInt64(raised.rlim_cur) }
        }
        return UInt64(limit.rlim_cur)
    }

    /// The soft limit now (what open(2) and accept(2) are held to).
    static var current: UInt64 {
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 1024 }
        return UInt64(limit.rlim_cur)
    }
}
