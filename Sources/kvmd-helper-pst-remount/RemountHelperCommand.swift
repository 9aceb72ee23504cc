import ArgumentParser
import Glibc
import PersistentStorageMount
import SystemSupport
import PersistentStorageVersion

extension RemountMode: ExpressibleByArgument {}
extension DataLayout: ExpressibleByArgument {}

@main
struct RemountHelperCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kvmd-helper-pst-remount",
        abstract: "Remount the persistent storage read-write or read-only (run as root).",
        discussion: """
            Finds the partition in the fstab (the first entry with an X-kvmd.pst-root, \
            X-kvmd.pst-user or X-kvmd.pst-group option) and remounts it. After a read-write \
            remount it creates the data directory and gives it and the root to the entry's \
            user and group. Exit status: 0 on success, 1 when the remount failed, 2 on a usage error.
            """,
        version: SwiftPSTVersion.string)

    @Argument(help: "rw (read-write, then the fix step) or ro (read-only).")
    var mode: RemountMode

    @Option(help: ArgumentHelp("The fstab to find the partition in.", valueName: "path"))
    var fstab: String = FstabReader.defaultPath

    @Option(help: ArgumentHelp("Where the data directory lives: data (ROOT/data, the PST document's layout) or root (ROOT itself, as kvmd since 4.8); give the daemon's --data-layout.", valueName: "layout"))
    var dataLayout: DataLayout = .kvmdDefault

    func run() throws {
        let name = Self.configuration.commandName!
        do {
            let (location, repairs) = try StorageRemount(fstabPath: fstab, layout: dataLayout).perform(mode)
            for repair in repairs { writeToStandardError("\(name): warning: \(repair)\n") }
            writeToStandardError("\(name): \(location.mountPath) is now \(mode)\n")
        } catch {
            writeToStandardError("\(name): \(error)\n")
            throw ExitCode.failure
        }
    }

    /// Usage errors exit with 2, as the shell convention and the reference
    /// helper do, rather than ArgumentParser's 64.
    static func main() {
        let command: Self
        do {
            command = try parse()
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                print(fullMessage(for: error))
                Glibc.exit(0)
            }
            writeToStandardError(fullMessage(for: error) + "\n")
            Glibc.exit(2)
        }
        do {
            try command.run()
        } catch {
            Glibc.exit(exitCode(for: error).rawValue)
        }
    }
}

