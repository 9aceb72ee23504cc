import Foundation
import Glibc
import PersistentStorageTestBed
import PersistentStorageTestSupport
import Testing

/// When the kernel refuses the read-only remount as busy, the daemon finds
/// who holds the storage (issue 16): in the log and in `GET /state`'s
/// `busy`, until a remount succeeds. Real holders of each kind.
@Suite("Who holds the storage busy", .serialized, .enabled(if: RealMounts.enabled))
struct BusyDiagnosisTests {
    /// A holder started while a session keeps the storage writable, which
    /// then ends: the read-only remount is refused because of the holder.
    private func diagnose(
        kind: String, holderScript: String, expectedWhy: String, sentence: (Int32, String) -> String
    ) async throws {
        try await withReliabilityBed { bed in
            let path = bed.fixture.dataPath + "/held-\(kind)"
            let session = try bed.openWritableSession()
            let holder = try ChildProcess(executable: "/usr/bin/python3", arguments: ["-c", holderScript, path])
            defer { kill(holder.pid, SIGKILL) }
            #expect(await holder.nextOutputLine() == "held")
            session.close()

            let busy = try await eventually(within: .seconds(5)) { () -> [[String: Any]]? in
                guard let busy = try bed.state()["busy"] as? [[String: Any]], !busy.isEmpty else { return nil }
                return busy
            }
            let entry = try #require(busy?.first { $0["pid"] as? Int == Int(holder.pid) }, "\(String(describing: busy))\n\(bed.daemon.log)")
            #expect(entry["command"] as? String == "python3")
            #expect(entry["path"] as? String == path)
            #expect(entry["why"] as? String == expectedWhy)
            #expect(bed.daemon.log.contains("read-only refused: busy: \(sentence(holder.pid, path))"), "\(bed.daemon.log)")
            #expect(bed.fixture.state == .readWrite)

            kill(holder.pid, SIGKILL)
            _ = await holder.finish()
            #expect(await bed.settlesReadOnlyWithNoSession(), "\(bed.daemon.log)")
            // The kernel's state flips before the daemon hears its remount returned.
            #expect(try await eventually(within: .seconds(2)) { try bed.state()["busy"] == nil }, "not cleared: \(bed.daemon.log)")
        }
    }

    @Test("a file open for writing: pid, command, path, \"open for writing\"")
    func openForWriting() async throws {
        try await diagnose(
            kind: "open", holderScript: "import sys,time; f=open(sys.argv[1],'a'); print('held',flush=True); time.sleep(60)",
            expectedWhy: "open for writing", sentence: { "pid \($0) (python3) holds \($1) open for writing" })
    }

    @Test("a deleted file still open (read-only): \"deleted, still open\"")
    func deletedStillOpen() async throws {
        try await diagnose(
            kind: "deleted",
            holderScript: "import os,sys,time; open(sys.argv[1],'w').close(); f=open(sys.argv[1]); os.unlink(sys.argv[1]); print('held',flush=True); time.sleep(60)",
            expectedWhy: "deleted, still open", sentence: { "pid \($0) (python3) holds \($1) open, which was deleted" })
    }

    @Test("a shared writable mapping whose descriptor is closed: \"mapped writable\"")
    func mappedWritable() async throws {
        try await diagnose(
            kind: "mapped",
            // mmap(2) through ctypes: Python's mmap module keeps a descriptor of its own.
            holderScript: """
                import ctypes,os,sys,time
                fd=os.open(sys.argv[1],os.O_RDWR|os.O_CREAT,0o644); os.write(fd,b'x'*4096)
                libc=ctypes.CDLL(None); libc.mmap.restype=ctypes.c_void_p
                libc.mmap.argtypes=[ctypes.c_void_p,ctypes.c_size_t,ctypes.c_int,ctypes.c_int,ctypes.c_int,ctypes.c_long]
                assert libc.mmap(None,4096,3,1,fd,0) not in (None,ctypes.c_void_p(-1).value)
                os.close(fd); print('held',flush=True); time.sleep(60)
                """,
            expectedWhy: "mapped writable", sentence: { "pid \($0) (python3) has \($1) mapped writable" })
    }
}
