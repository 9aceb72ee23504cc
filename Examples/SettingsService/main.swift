// SettingsService: a service that keeps its settings in PiKVM's persistent
// storage (PST), as a small JSON file.
//
//     SettingsService get [KEY]        print one setting, or all of them as JSON
//     SettingsService set KEY VALUE    change one setting
//
// The daemon's socket is $PST_SOCKET, or /run/kvmd/pst.sock.
//
// The two rules every PST client should follow are both here:
//
// 1. Reading needs no session. The storage is always readable; only writing
//    needs it remounted read-write, so `get` never opens a session.
// 2. Keep sessions rare and short. `set` compares first, without a session,
//    and opens one only when something changed; inside it, it only replaces
//    one small file.
//
// And one rule for writing anything that must survive a power cut: replace
// the file with `DurableFile.write` (a temporary file beside the real one,
// fsynced, renamed over it, the directory fsynced). A reader (and the file
// after a crash) then sees either the old settings or the new ones, never
// half of either.
//
// Sessions of several processes overlap (the storage is writable for all of
// them at once), so a read-modify-write of a shared file needs a lock of its
// own: `set` takes flock(2) on its directory around it.

import Foundation
import PersistentStorage

#if canImport(Glibc)
import Glibc
#endif

/// The settings: a flat map of strings, stored as pretty-printed JSON.
typealias Settings = [String: String]

/// Our own directory inside the PST data directory: services share the
/// storage, so each keeps to a subdirectory named after itself.
let subdirectory = "settings-service"
let fileName = "settings.json"

let storage = PersistentStorageClient(
    socketPath: ProcessInfo.processInfo.environment["PST_SOCKET"] ?? "/run/kvmd/pst.sock")

/// Reads the settings in `directory`; a missing file means "no settings yet".
func readSettings(in directory: URL) throws -> Settings {
    let file = directory.appending(path: fileName)
    guard FileManager.default.fileExists(atPath: file.path(percentEncoded: false)) else { return [:] }
    return try JSONDecoder().decode(Settings.self, from: Data(contentsOf: file))
}

/// Encodes settings the same way every time, so equal settings give equal bytes.
func encode(_ settings: Settings) throws -> Data {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    return try encoder.encode(settings) + Data("\n".utf8)
}

/// `get [KEY]`: no session, the storage stays read-only.
func get(_ key: String?) async throws -> Int32 {
    let settings = try readSettings(in: try await storage.dataDirectory(subdirectory: subdirectory))
    guard let key else {
        print(String(decoding: try encode(settings), as: UTF8.self), terminator: "")
        return 0
    }
    guard let value = settings[key] else {
        FileHandle.standardError.write(Data("no setting named \(key)\n".utf8))
        return 1
    }
    print(value)
    return 0
}

/// Runs `body` holding an exclusive flock(2) on `directory` itself. Two
/// `set`s may hold overlapping sessions (each has its own): without the
/// lock both read the same file and the later write drops the other's key.
/// The directory, not a lock file, so nothing is left behind.
func whileLocked<T>(_ directory: URL, _ body: () throws -> T) throws -> T {
    let descriptor = open(directory.path(percentEncoded: false), O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard descriptor >= 0 else { throw CocoaError(.fileReadUnknown, userInfo: [NSURLErrorKey: directory]) }
    defer { close(descriptor) }
    while flock(descriptor, LOCK_EX) != 0 {
        guard errno == EINTR else { throw CocoaError(.fileWriteUnknown, userInfo: [NSURLErrorKey: directory]) }
    }
    return try body()
}

/// `set KEY VALUE`: a session only if the value changes.
func set(_ key: String, to value: String) async throws -> Int32 {
    let current = try readSettings(in: try await storage.dataDirectory(subdirectory: subdirectory))
    if current[key] == value {
        print("\(key) is already \(value): no session opened")
        return 0
    }
    try await storage.withWritableStorage(subdirectory: subdirectory) { directory in
        try whileLocked(directory) {
            // Read again inside the session and the lock: another process
            // may have written since we looked, or be writing now.
            var settings = try readSettings(in: directory)
            settings[key] = value
            // Old or new settings after a power cut, never half of either: the
            // library writes a temporary file, fsyncs it, renames it over the
            // real one and fsyncs the directory.
            // Revoked meanwhile (the task is then cancelled): leave the old file.
            try Task.checkCancellation()
            try DurableFile.write(try encode(settings), to: directory.appending(path: fileName))
        }
    }
    print("saved \(key)")
    return 0
}

let usage = """
    usage: SettingsService get [KEY]
           SettingsService set KEY VALUE
    Keeps settings in the PiKVM persistent storage; PST_SOCKET names the daemon's socket.

    """

let arguments = Array(CommandLine.arguments.dropFirst())
let status: Int32
do {
    switch arguments.first {
    case "get" where arguments.count <= 2:
        status = try await get(arguments.dropFirst().first)
    case "set" where arguments.count == 3:
        status = try await set(arguments[1], to: arguments[2])
    case "-h", "--help":
        print(usage, terminator: "")
        status = 0
    default:
        FileHandle.standardError.write(Data(usage.utf8))
        status = 2
    }
} catch {
    // PersistentStorageError's messages say what to do ("is kvmd-pst running?").
    FileHandle.standardError.write(Data("SettingsService: \(error)\n".utf8))
    status = 1
}
exit(status)
