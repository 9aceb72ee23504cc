/// Polls `probe` every few milliseconds until it gives a value or `timeout`
/// passes. For state that has no event to await: the kernel's mount table
/// changed by another process, work an actor does in its own tasks.
public func eventually<T>(within timeout: Duration = .seconds(5), _ probe: () async throws -> T?) async rethrows -> T? {
    let deadline = ContinuousClock.now + timeout
    while true {
        if let value = try await probe() { return value }
        if ContinuousClock.now >= deadline { return nil }
        try? await Task.sleep(for: .milliseconds(5))
    }
}

/// Polls until `condition` holds; false when `timeout` passed first.
public func eventually(within timeout: Duration = .seconds(5), _ condition: () async throws -> Bool) async rethrows -> Bool {
    try await eventually(within: timeout) { try await condition() ? true : nil } ?? false
}
