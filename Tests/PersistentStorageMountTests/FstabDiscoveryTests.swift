import Foundation
import PersistentStorageMount
import Testing

/// Discovery reads only a file, so these run anywhere, as any user.
@Suite("Finding the partition in an fstab")
struct FstabDiscoveryTests {
    private func discover(_ text: String) throws -> StorageDiscovery {
        let path = NSTemporaryDirectory() + "fstab-\(UUID().uuidString)"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        return try FstabReader(path: path).findStorage()
    }

    private func discoveryError(_ text: String) -> StorageDiscoveryError? {
        do {
            _ = try discover(text)
            return nil
        } catch let error as StorageDiscoveryError {
            return error
        } catch {
            return nil
        }
    }

    @Test("The PiKVM line is found, with the user and the ROOT/data layout")
    func pikvmLine() throws {
        let found = try discover("""
            /dev/mmcblk0p1 /boot vfat nodev,nosuid,noexec,ro,errors=remount-ro 0 0
            LABEL=PIPST /var/lib/kvmd/pst  ext4  nodev,nosuid,noexec,ro,errors=remount-ro,data=journal,X-kvmd.pst-user=kvmd-pst  0 0
            """)
        #expect(found.location.source == "LABEL=PIPST")
        #expect(found.location.mountPath == "/var/lib/kvmd/pst")
        #expect(found.location.rootPath == "/var/lib/kvmd/pst")
        #expect(found.location.user == "kvmd-pst")
        #expect(found.location.group == nil)
        #expect(found.location.dataPath(for: .dataSubdirectory) == "/var/lib/kvmd/pst/data")
        #expect(found.location.dataPath(for: .root) == "/var/lib/kvmd/pst")
        #expect(found.line == 2)
    }

    @Test("Each of the three options marks the entry", arguments: [
        "X-kvmd.pst-root=/srv/pst/root", "X-kvmd.pst-user=kvmd-pst", "X-kvmd.pst-group=kvmd-pst",
    ])
    func eachMarker(option: String) throws {
        let found = try discover("/dev/sda1 /srv/pst ext4 ro,\(option) 0 0\n")
        #expect(found.location.mountPath == "/srv/pst")
    }

    @Test("X-kvmd.pst-root sets the root, and the data path follows it")
    func rootOption() throws {
        let found = try discover("/dev/sda1 /srv/pst ext4 ro,X-kvmd.pst-root=/srv/pst/kvmd,X-kvmd.pst-group=g 0 0\n")
        #expect(found.location.rootPath == "/srv/pst/kvmd")
        #expect(found.location.group == "g")
        #expect(found.location.dataPath(for: .dataSubdirectory) == "/srv/pst/kvmd/data")
    }

    @Test("The first marked entry wins; unmarked entries are passed over")
    func firstMatchWins() throws {
        let found = try discover("""
            /dev/sda1 / ext4 ro 0 1
            /dev/sda2 /first ext4 ro,X-kvmd.pst-user=a 0 0
            /dev/sda3 /second ext4 ro,X-kvmd.pst-user=b 0 0
            """)
        #expect(found.location.mountPath == "/first")
        #expect(found.location.user == "a")
    }

    @Test("Comments, blank lines and malformed lines do not hide the entry")
    func commentsAndMalformedLines() throws {
        let found = try discover("""
            # /dev/sdz /commented ext4 ro,X-kvmd.pst-user=no 0 0

               \t
            justonefield
            /dev/sda2 /pst ext4 ro,X-kvmd.pst-user=yes 0 0
            """)
        #expect(found.location.mountPath == "/pst")
        #expect(found.location.user == "yes")
        #expect(found.skippedLines.map(\.line) == [4])
        #expect(found.skippedLines.first?.description.hasSuffix(":4: not a valid fstab line") == true)
    }

    @Test("A marked entry without all six fields is not the partition")
    func sixFieldRule() throws {
        let found = try discover("""
            /dev/sda1 /four ext4 ro,X-kvmd.pst-user=a
            /dev/sda2 /five ext4 ro,X-kvmd.pst-user=b 0
            /dev/sda3 /six ext4 ro,X-kvmd.pst-user=c 0 0
            """)
        #expect(found.location.mountPath == "/six")
        #expect(found.skippedLines.map(\.line) == [1, 2])
    }

    @Test("An fstab with no marked entry is a clear error naming the file")
    func noEntry() throws {
        let error = try #require(discoveryError("/dev/sda1 / ext4 ro 0 1\n"))
        guard case .noEntry = error else {
            Issue.record("expected noEntry, got \(error)")
            return
        }
        #expect(error.description.hasPrefix("no fstab entry with X-kvmd.pst-* options in /"))
    }

    @Test("A missing fstab is a clear error")
    func missingFstab() {
        #expect(throws: StorageDiscoveryError.fstabUnreadable(path: "/nonexistent/fstab", reason: "No such file or directory")) {
            try FstabReader(path: "/nonexistent/fstab").findStorage()
        }
    }

    @Test("An fstab that is a FIFO, a device or a directory is refused at once, not read (no hang, no unbounded memory)")
    func specialFilesRefused() throws {
        let directory = FileManager.default.temporaryDirectory.appending(path: "pst-fstab-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let fifo = directory + "/fifo"
        #expect(mkfifo(fifo, 0o600) == 0)
        let cases = [
            (fifo, "cannot read \(fifo): it is a FIFO, not a regular file"),
            ("/dev/zero", "cannot read /dev/zero: it is a character device, not a regular file"),
            (directory, "cannot read \(directory): it is a directory, not a regular file"),
        ]
        for (path, message) in cases {
            do {
                _ = try FstabReader(path: path).findStorage()
                Issue.record("\(path) was read as an fstab")
            } catch {
                #expect(error.description == message)
            }
        }
        let huge = directory + "/huge"
        _ = FileManager.default.createFile(atPath: huge, contents: Data(count: 2 << 20))
        do {
            _ = try FstabReader(path: huge).findStorage()
            Issue.record("a 2 MiB fstab was read")
        } catch {
            #expect(error.description.hasSuffix("it is larger than 1024 KiB, which no configuration file is"))
        }
    }

    @Test("A relative PST root is refused with its line")
    func relativeRoot() throws {
        let error = try #require(discoveryError("/dev/sda1 /pst ext4 ro,X-kvmd.pst-root=relative/dir 0 0\n"))
        #expect(error.description.hasSuffix(":1: the PST path 'relative/dir' is not absolute"))
    }

    @Test("A PST root outside the mount point, or reached through '..', is refused with its line (attack round)", arguments: [
        "/x/pst/../outside", "/x/outside", "/", "/x/pst/./sub",
    ])
    func rootOutsideTheMount(root: String) throws {
        let error = try #require(discoveryError("/dev/sda1 /x/pst ext4 ro,X-kvmd.pst-root=\(root) 0 0\n"))
        #expect(error.description.hasSuffix(":1: the PST root '\(root)' is not inside the mount /x/pst (or contains '.' or '..')"), "\(error)")
    }

    @Test("Escaped spaces in the mount path are decoded")
    func octalEscapes() throws {
        let found = try discover("/dev/sda1 /mnt/my\\040pst ext4 ro,X-kvmd.pst-user=a 0 0\n")
        #expect(found.location.mountPath == "/mnt/my pst")
    }
}
