import Foundation
import Glibc
import PersistentStorage
import Testing

@Suite("DurableFile: replace a file with its old or new content only")
struct DurableFileTests {
    private static func directory() throws -> String {
        let path = FileManager.default.temporaryDirectory.appending(path: "durable-\(UUID().uuidString)").path(percentEncoded: false)
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
        return path
    }

    private static func entries(_ directory: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
    }

    @Test("creates, then replaces keeping the old file's mode; no temporary file is left")
    func replaces() throws {
        let directory = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let file = URL(filePath: directory + "/settings.json")
        try DurableFile.write(Data("one\n".utf8), to: file)
        #expect(try String(contentsOf: file, encoding: .utf8) == "one\n")
        #expect(chmod(file.path(percentEncoded: false), 0o600) == 0)
        try DurableFile.write(Data("two\n".utf8), to: file)
        #expect(try String(contentsOf: file, encoding: .utf8) == "two\n")
        var info = stat()
        #expect(stat(file.path(percentEncoded: false), &info) == 0 && info.st_mode & 0o7777 == 0o600)
        try DurableFile.write(Data(), to: file)
        #expect(try Data(contentsOf: file).isEmpty)
        #expect(try Self.entries(directory) == ["settings.json"])
    }

    @Test("a failure names its step, leaves the old file as it was and no temporary file behind")
    func failuresNameTheStep() throws {
        let directory = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        #expect(throws: DurableWriteError(step: .createTemporary, path: directory + "/missing/file", errno: ENOENT)) {
            try DurableFile.write(Data("x".utf8), to: URL(filePath: directory + "/missing/file"))
        }
        // A directory in the way: everything is written, the rename refuses.
        try FileManager.default.createDirectory(atPath: directory + "/taken/inner", withIntermediateDirectories: true)
        #expect { try DurableFile.write(Data("x".utf8), to: URL(filePath: directory + "/taken")) } throws: { error in
            guard let error = error as? DurableWriteError else { return false }
            return error.step == .rename && "\(error)".hasPrefix("cannot replace \(directory)/taken durably: renaming it over the file failed")
        }
        #expect(try Self.entries(directory) == ["taken"])
    }

    @Test("a symbolic link where the temporary file would go is never followed")
    func doesNotFollowLinks() throws {
        let directory = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // The name is random: a planted link cannot be predicted, and O_EXCL|O_NOFOLLOW
        // would refuse it anyway. What is checked: the target itself being a link is replaced, not written through.
        let outside = directory + "/outside"
        try Data("untouched\n".utf8).write(to: URL(filePath: outside))
        #expect(symlink(outside, directory + "/file") == 0)
        try DurableFile.write(Data("new\n".utf8), to: URL(filePath: directory + "/file"))
        #expect(try String(contentsOfFile: outside, encoding: .utf8) == "untouched\n")
        var info = stat()
        #expect(lstat(directory + "/file", &info) == 0 && info.st_mode & S_IFMT == S_IFREG)
    }
}
