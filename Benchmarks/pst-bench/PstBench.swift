import ArgumentParser
import Foundation
import Glibc

/// `pst-bench`: measures a real `kvmd-pst` on a real loop device against
/// what the kernel itself costs, prints a Markdown table and writes JSON.
///
/// Needs root (loop device, mount); `make bench` runs it in a private mount
/// namespace. The figures are described in Documentation/Benchmarks.md.
@main
struct PstBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pst-bench",
        abstract: "Benchmarks kvmd-pst, its client and kvmd-pstrun against the kernel's own remount and spawn times.")

    @Flag(help: "Small counts and short windows: proves every figure still runs, in seconds.")
    var smoke = false

    @Option(help: ArgumentHelp("Write the results as JSON here.", valueName: "path"))
    var json: String?

    @Option(help: ArgumentHelp("Only these figure groups, comma separated (\(BenchmarkRun.Group.allCases.map(\.rawValue).joined(separator: ","))).", valueName: "groups"))
    var only: String?

    @Option(help: ArgumentHelp("Recorded in the results: how the binaries were built.", valueName: "configuration"))
    var buildConfiguration = "unknown"

    @Option(help: ArgumentHelp("Internal: be one of the scale figure's client processes, holding this many sessions.", visibility: .private))
    var holdSessions: Int?

    @Option(help: ArgumentHelp("Internal: with --hold-sessions, the daemon's socket.", visibility: .private))
    var socket: String?

    @Option(help: ArgumentHelp("Internal: with --hold-sessions, at most this many opens at a time.", visibility: .private))
    var inFlight = 256

    @Option(help: ArgumentHelp("Internal: with --hold-sessions, the client timeout in seconds.", visibility: .private))
    var timeout = 120

    func run() async throws {
        if let holdSessions, let socket {
            await SessionHolders.runChild(socketPath: socket, count: holdSessions, inFlight: inFlight, timeout: .seconds(timeout))
            return
        }
        guard getuid() == 0 else {
            throw ValidationError("pst-bench needs root: it attaches a loop device and remounts it (use make bench)")
        }
        var groups = Set(BenchmarkRun.Group.allCases)
        if let only {
            groups = try Set(only.split(separator: ",").map { name in
                guard let group = BenchmarkRun.Group(rawValue: String(name)) else {
                    throw ValidationError("--only: unknown group '\(name)'")
                }
                return group
            })
        }
        let machine = Machine.current(buildConfiguration: buildConfiguration)
        let mode = smoke ? "smoke" : "full"
        let log = { (line: String) in
            FileHandle.standardError.write(Data("[pst-bench] \(line)\n".utf8))
        }
        log("\(mode) run on \(machine.cpuModel), \(machine.cores) cores, \(machine.kernel), load \(Machine.loadNow)")
        let started = Date()
        let clock = ContinuousClock()
        let start = clock.now
        let run = BenchmarkRun(workload: smoke ? .smoke : .full, groups: groups, log: log)
        let results = Results()
        var failure: (any Error)?
        do {
            try await run.run(into: results)
        } catch {
            failure = error
            results.notes.append("the run stopped early: \(error)")
        }
        let (figures, notes) = (results.figures, results.notes)
        let report = Report(
            machine: machine, mode: mode, command: CommandLine.arguments.joined(separator: " "),
            startedAt: ISO8601DateFormatter().string(from: started), loadAtEnd: Machine.loadNow,
            durationSeconds: (clock.now - start).seconds, figures: figures, notes: notes)

        print("""

            swift-pst benchmark (\(mode), \(buildConfiguration) build)
            machine: \(machine.cpuModel), \(machine.cores) cores, \(Report.format(machine.memoryGiB)) GiB, \(machine.kernel)
            load average at start: \(machine.loadAverage.map { String(format: "%.2f", $0) }.joined(separator: " ")), at end: \(report.loadAtEnd)
            duration: \(Report.format(report.durationSeconds)) s

            \(report.table)

            """)
        for note in notes { print("note: \(note)") }
        if let json {
            try report.write(json: json)
            print("results written to \(json)")
        }
        let missed = figures.filter { $0.targetMet == false }.map(\.key)
        if !missed.isEmpty { print("targets missed: \(missed.joined(separator: ", "))") }
        if let failure { throw failure }
    }
}
