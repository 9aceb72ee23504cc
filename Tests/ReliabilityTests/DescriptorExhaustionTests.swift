import Foundation
import Glibc
import PersistentStorageTestBed
import PersistentStorageTestSupport
import Testing

extension Reliability {
    /// Connections that hold a descriptor each and never become sessions,
    /// against a daemon whose descriptor limit cannot be raised.
    @Suite("Descriptor exhaustion", .serialized, .enabled(if: RealMounts.enabled), .timeLimit(.minutes(1)))
    struct DescriptorExhaustionTests {
        static let descriptorLimit = 1024

        @Test("3,000 idle connections against a hard limit of 1024 descriptors: no spinning, well-behaved clients served, the oldest idle ones closed")
        func idleConnectionsPastTheHardLimit() async throws {
            try await withReliabilityBed(
                executablePrefix: ["/usr/bin/prlimit", "--nofile=\(Self.descriptorLimit):\(Self.descriptorLimit)", "--"]
            ) { bed in
                try bed.expectWellBehavedClientServed("before the idle connections")
                #expect(await bed.settlesReadOnlyWithNoSession())
                let idleDescriptors = try bed.daemonOpenDescriptors()
                var connections: [RawUnixSocketClient] = []
                defer { for connection in connections { connection.close() } }
                for _ in 0..<3000 { connections.append(try RawUnixSocketClient(path: bed.socketPath)) }
                // The last ones are held (or queued): the daemon has reached its cap.
                #expect(try await eventually { try bed.daemonOpenDescriptors() >= Self.descriptorLimit / 2 })

                // Served after all 3,000 connected: the daemon has accepted
                // (and made room for) every one of them before this one, so
                // this first one waits for that, with a client's usual 5 s
                // deadline; the next ones are served as fast as ever.
                let first = try bed.serveWellBehavedClient()
                print("the first well-behaved client behind 3,000 idle connections: \(first)")
                for _ in 0..<3 { try bed.expectWellBehavedClientServed("with 3,000 idle connections open, hard limit 1024") }

                // Before: accept(2) failed with EMFILE over and over, a core at 90%.
                let cpuBefore = try bed.daemonCPUTime()
                let clock = ContinuousClock()
                let started = clock.now
                try await Task.sleep(for: .seconds(1))  // a window to measure CPU over, not a wait for an event
                let cpu = try bed.daemonCPUTime() - cpuBefore
                let elapsed = clock.now - started
                print("3,000 idle connections, limit 1024: daemon CPU \(cpu) in \(elapsed); descriptors \(try bed.daemonOpenDescriptors())")
                #expect(cpu < elapsed / 10, "the daemon used \(cpu) of CPU in \(elapsed)")
                #expect(try bed.daemonOpenDescriptors() <= Self.descriptorLimit - 32, "no reserve left")
                #expect(try bed.clients() == 0)

                // The first ones were closed to make room: the oldest gave way.
                connections[0].timeout = .seconds(2)
                #expect(try connections[0].receiveSome().isEmpty, "the oldest idle connection is still open")

                for connection in connections { connection.close() }
                #expect(try await eventually(within: .seconds(10)) { try bed.daemonOpenDescriptors() <= idleDescriptors },
                        "descriptors: idle \(idleDescriptors), now \((try? bed.daemonOpenDescriptors()) ?? -1)")
                #expect(bed.daemon.log.contains("connections besides sessions: closed the oldest"))
                #expect(bed.daemon.isRunning)
            }
        }
    }
}
