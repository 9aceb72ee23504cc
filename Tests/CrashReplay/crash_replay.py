#!/usr/bin/env python3
"""The crash-point replay: records a PST workload on a logging disk, then
rebuilds that disk as a power cut would have left it at many points of the
recording and checks each one (Documentation/Reliability.md, "Power cuts").

Scripts/crash-test.sh runs this as root inside a private mount and PID
namespace (so that every mount and process it leaves behind dies with it):

    crash_replay.py --mode journal|ordered|selfcheck --work DIR --bin DIR
                    --recordfs PATH --seed N --points N --summary FILE
                    [--rounds N] [--jobs N] [--show N]

Record: a 32 MiB ext4 image (base.img) is copied to DIR/disk/image, which
recordfs (recordfs.c) serves through FUSE and logs every write and fsync of;
a loop device over it is the PST partition, mounted with the mode's options,
and the real kvmd-pst serves it. The workload's clients are the real
kvmd-pstrun and SettingsService; around each call it writes a marker into
the log: "S id" before starting it, "C id" the instant it returned 0.

Replay: a crash point is a position in the log. The disk then holds every
write up to the last fsync before it, plus any subset of the writes since
(the disk's cache may have written some of them). Each point's image gets
`e2fsck -fy` (the journal replay), `e2fsck -fn` (must be clean), a read-only
mount, and the contract: what every call that had returned before the point
wrote is there, exactly; a file DurableFile.write was replacing holds its old
or its new content; nothing else changed.
"""

import argparse
import concurrent.futures
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

IMAGE_BYTES = 32 * 1024 * 1024
BLOCK = 4096

# The mount options of each mode. "journal": the PST document's (and
# PiKVM's older images'); "ordered": those of PiKVM OS's fstab today
# (pikvm/os, stages/arch/pikvm/Dockerfile.part: PART_OPTS without data=,
# so ext4's default data=ordered).
MODES = {
    "journal": ("nodev,nosuid,noexec,ro,errors=remount-ro,data=journal", "data"),
    "ordered": ("nodev,nosuid,noexec,ro,errors=remount-ro", "root"),
    "selfcheck": ("nodev,nosuid,noexec,ro,errors=remount-ro,data=journal", "root"),
}

SETTINGS = "settings-service/settings.json"
TEMPORARY = re.compile(r"^(.*/)?\.settings\.json\.[0-9a-z]+\.tmp$")


def log(message):
    print(message, flush=True)


def run(*command, check=True, **options):
    return subprocess.run(command, check=check, **options)


class WorkloadError(Exception):
    pass


# --- The model of what was written --------------------------------------------

class Effect:
    """What one call does to one file. kind: "exact" (a script's plain
    writes: any state while it runs, exactly `content` once it returned),
    "durable" (DurableFile.write: old or `content`, never anything else),
    "json" (a SettingsService set among parallel ones: some complete
    settings file made of values that were set; `content` is unknown)."""

    def __init__(self, kind, content=None, pair=None, group=None):
        self.kind = kind
        self.content = content  # bytes, or None: the file is deleted
        self.pair = pair
        self.group = group


class Call:
    def __init__(self, ident, description):
        self.ident = ident
        self.description = description
        self.effects = {}       # path relative to the data directory -> Effect
        self.start = None       # log positions, filled in from the markers
        self.commit = None
        self.expect_failure = False


# --- Recording -----------------------------------------------------------------

class Recorder:
    def __init__(self, args):
        self.args = args
        self.options, self.layout = MODES[args.mode]
        self.work = args.work
        self.rng = random.Random(args.seed)
        self.mnt = os.path.join(self.work, "pst")
        self.data = self.mnt if self.layout == "root" else os.path.join(self.mnt, "data")
        self.sock = os.path.join(self.work, "pst.sock")
        self.fstab = os.path.join(self.work, "fstab")
        self.fuse = os.path.join(self.work, "disk")
        self.payloads = os.path.join(self.work, "payloads")
        self.calls = []
        self.live = {}          # the harness's view of the files now
        self.initial = {}
        self.outside = {}
        self.daemon = None
        self.recordfs = None
        self.holders = []
        self.marker_lock = threading.Lock()
        self.marker_fd = None
        self.counter = 0
        self.notes = []

    # Setting up the disk.

    def make_base_image(self):
        base = os.path.join(self.work, "base.img")
        with open(base, "wb") as f:
            f.truncate(IMAGE_BYTES)
        run("mkfs.ext4", "-q", "-F", "-b", str(BLOCK), "-L", "PIPST", base)
        staging = os.path.join(self.work, "staging")
        os.mkdir(staging)
        run("mount", "-t", "ext4", "-o", "loop", base, staging)
        try:
            # Files that are there before anything runs and that nothing
            # writes: a canary beside the data directory (layout "data")
            # and one inside it.
            data = staging if self.layout == "root" else os.path.join(staging, "data")
            os.makedirs(data, exist_ok=True)
            os.makedirs(os.path.join(data, "settings-service"))
            self.initial["canary.bin"] = self.rng.randbytes(9000)
            if self.layout == "data":
                with open(os.path.join(staging, "outside-canary.bin"), "wb") as f:
                    f.write(self.rng.randbytes(5000))
            for path, content in self.initial.items():
                with open(os.path.join(data, path), "wb") as f:
                    f.write(content)
            self.live = dict(self.initial)
            self.outside = snapshot_outside(staging, self.layout)
        finally:
            run("umount", staging)
        os.rmdir(staging)
        return base

    def start_disk(self, base):
        os.mkdir(self.fuse)
        os.mkdir(self.mnt)
        backing = os.path.join(self.work, "image")
        shutil.copyfile(base, backing)
        self.recordfs = subprocess.Popen(
            [self.args.recordfs, backing, os.path.join(self.work, "disk.log"), self.fuse, "-f"])
        wait_for(lambda: os.path.exists(os.path.join(self.fuse, "image")), 5, "recordfs to mount")
        device = run("losetup", "-f", "--show", "--direct-io=off", os.path.join(self.fuse, "image"),
                     stdout=subprocess.PIPE, text=True).stdout.strip()
        try:
            run("mount", "-t", "ext4", "-o", self.options, device, self.mnt)
        finally:
            # Autoclear: the loop device goes away with the mount.
            run("losetup", "-d", device)
        with open(self.fstab, "w") as f:
            f.write(f"{device} {self.mnt} ext4 {self.options},X-kvmd.pst-user=root,X-kvmd.pst-group=root 0 0\n")
        self.marker_fd = os.open(os.path.join(self.fuse, "marker"), os.O_WRONLY)
        os.mkdir(self.payloads)

    def stop_disk(self):
        if self.marker_fd is not None:
            os.close(self.marker_fd)
            self.marker_fd = None
        if os.path.ismount(self.mnt):
            run("umount", self.mnt, check=False)
        if self.recordfs is not None:
            # The loop device lets go of the image a moment after the
            # unmount (autoclear); until then the FUSE mount is busy.
            for _ in range(100):
                if run("fusermount3", "-u", self.fuse, check=False,
                       stderr=subprocess.DEVNULL).returncode == 0:
                    break
                time.sleep(0.05)
            try:
                self.recordfs.wait(5)
            except subprocess.TimeoutExpired:
                self.recordfs.kill()
                self.recordfs.wait()
            self.recordfs = None

    def marker(self, text):
        with self.marker_lock:
            os.write(self.marker_fd, (text + "\n").encode())

    # The daemon.

    def start_daemon(self):
        daemon_log = open(os.path.join(self.work, "daemon.log"), "ab")
        self.daemon = subprocess.Popen(
            [os.path.join(self.args.bin, "kvmd-pst"), "--run", "--socket", self.sock,
             "--fstab", self.fstab, "--socket-group", "root", "--ro-cleanup-delay", "0",
             "--ro-retries-delay", "0.3", "--data-layout", self.layout],
            stdout=daemon_log, stderr=daemon_log)
        daemon_log.close()
        wait_for(lambda: self.state() is not None, 10, "kvmd-pst to answer GET /state")

    def stop_daemon(self, sig=signal.SIGTERM):
        if self.daemon is None:
            return
        if self.daemon.poll() is None:
            self.daemon.send_signal(sig)
        try:
            self.daemon.wait(20)
        except subprocess.TimeoutExpired:
            self.daemon.kill()
            self.daemon.wait()
        self.daemon = None

    def state(self):
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(2)
                s.connect(self.sock)
                s.sendall(b"GET /state HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                answer = b""
                while chunk := s.recv(65536):
                    answer += chunk
            return json.loads(answer.split(b"\r\n\r\n", 1)[1])["result"]
        except (OSError, ValueError, KeyError, IndexError):
            return None

    def read_only(self):
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                if fields[4] == self.mnt:
                    return fields[5].split(",")[0] == "ro"
        raise WorkloadError(f"{self.mnt} is not mounted")

    # Calls. Each is one client process, bracketed by markers.

    def new_call(self, description):
        self.counter += 1
        call = Call(self.counter, description)
        self.calls.append(call)
        return call

    def payload(self, size):
        content = self.rng.randbytes(size)
        path = os.path.join(self.payloads, f"p{len(os.listdir(self.payloads))}")
        with open(path, "wb") as f:
            f.write(content)
        return path, content

    def size(self):
        # Mostly small files, as PST holds; some over a few blocks and a few
        # large enough to fill a good part of the journal.
        r = self.rng.random()
        if r < 0.1:
            return 0
        if r < 0.6:
            return self.rng.randrange(1, 4096)
        if r < 0.95:
            return self.rng.randrange(4096, 48 * 1024)
        return self.rng.randrange(100 * 1024, 400 * 1024)

    def script_call(self, owned, prefix, sleep=0.0):
        """A kvmd-pstrun script that creates, appends to, rewrites and
        deletes files; `owned` lists the existing files it may touch (no
        other call running at the same time touches them)."""
        call = self.new_call("kvmd-pstrun script")
        lines = []
        for _ in range(self.rng.randrange(1, 4)):
            name = f"{prefix}/f{call.ident}-{self.rng.randrange(10**6)}.bin"
            source, content = self.payload(self.size())
            lines.append(f'mkdir -p "$KVMD_PST_DATA/{prefix}" && cp {source} "$KVMD_PST_DATA/{name}"')
            call.effects[name] = Effect("exact", content)
        existing = list(owned)
        self.rng.shuffle(existing)
        for path in existing[:self.rng.randrange(0, 4)]:
            action = self.rng.choice(["append", "rewrite", "delete", "replace"])
            source, content = self.payload(self.size())
            if action == "append":
                lines.append(f'cat {source} >> "$KVMD_PST_DATA/{path}"')
                call.effects[path] = Effect("exact", self.live[path] + content)
            elif action == "rewrite":
                lines.append(f'cat {source} > "$KVMD_PST_DATA/{path}"')
                call.effects[path] = Effect("exact", content)
            elif action == "replace":
                # rename(2) over the file, without any fsync.
                lines.append(f'cp {source} "$KVMD_PST_DATA/{path}.new" && mv "$KVMD_PST_DATA/{path}.new" "$KVMD_PST_DATA/{path}"')
                call.effects[path] = Effect("exact", content)
                call.effects[path + ".new"] = Effect("exact", None)
            else:
                lines.append(f'rm "$KVMD_PST_DATA/{path}"')
                call.effects[path] = Effect("exact", None)
        if sleep:
            lines.append(f"sleep {sleep}")
        script = "set -e\n" + "\n".join(lines)
        command = [os.path.join(self.args.bin, "kvmd-pstrun"), "--socket", self.sock,
                   "--timeout", "20", "--", "sh", "-c", script]
        return call, command

    def settings_call(self, key, value, group=None):
        call = self.new_call(f"SettingsService set {key} {value}")
        call.effects[SETTINGS] = Effect("json" if group is not None else "durable",
                                        pair=(key, value), group=group)
        command = [os.path.join(self.args.bin, "SettingsService"), "set", key, value]
        return call, command

    def execute(self, call, command):
        """Runs one call to its end, with its markers; True if it returned 0."""
        self.marker(f"S {call.ident}")
        env = dict(os.environ, PST_SOCKET=self.sock)
        result = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if result.returncode == 0:
            self.marker(f"C {call.ident}")
            return True
        if not call.expect_failure:
            raise WorkloadError(f"call {call.ident} ({call.description}) exited "
                                f"{result.returncode}:\n{result.stdout.decode(errors='replace')}")
        return False

    def apply(self, call):
        for path, effect in call.effects.items():
            if effect.kind == "exact":
                if effect.content is None:
                    self.live.pop(path, None)
                else:
                    self.live[path] = effect.content
            else:
                # What SettingsService wrote: read it back from the live
                # mount while nothing else writes it.
                with open(os.path.join(self.data, SETTINGS), "rb") as f:
                    effect.content = f.read()
                self.live[path] = effect.content

    def serial(self, prefix="serial"):
        owned = [p for p in self.live if p.startswith(prefix + "/")]
        call, command = self.script_call(owned, prefix)
        self.execute(call, command)
        self.apply(call)

    def serial_settings(self):
        key = self.rng.choice(["theme", "language", "hostname", "timezone", "motd"])
        value = f"v{self.rng.randrange(10**9)}"
        call, command = self.settings_call(key, value)
        if self.execute(call, command):
            self.apply(call)

    def parallel(self, scripts, settings):
        """Sessions that overlap: `scripts` kvmd-pstrun calls, each on its own
        files, and `settings` SettingsService calls on the one settings file."""
        group = self.counter + 1
        jobs = []
        for slot in range(scripts):
            prefix = f"par{slot}"
            owned = [p for p in self.live if p.startswith(prefix + "/")]
            jobs.append(self.script_call(owned, prefix, sleep=self.rng.choice([0, 0, 0.1, 0.3])))
        for _ in range(settings):
            key = self.rng.choice(["theme", "language", "hostname", "timezone", "motd"])
            jobs.append(self.settings_call(key, f"p{self.rng.randrange(10**9)}", group=group))
        before = self.live.get(SETTINGS)
        for call, _ in jobs:
            if SETTINGS in call.effects:
                call.effects[SETTINGS].content = before  # the baseline of the group
        threads = []
        failures = []

        def one(call, command):
            try:
                self.execute(call, command)
            except WorkloadError as error:
                failures.append(error)

        for call, command in jobs:
            thread = threading.Thread(target=one, args=(call, command))
            thread.start()
            threads.append(thread)
            time.sleep(self.rng.choice([0, 0.01, 0.05]))
        for thread in threads:
            thread.join()
        if failures:
            raise failures[0]
        for call, _ in jobs:
            if SETTINGS not in call.effects:
                self.apply(call)
        if settings:
            # Nothing runs now: what the group left is the settings file's
            # committed content from here on.
            seal = self.new_call("settings after the parallel group")
            self.marker(f"S {seal.ident}")
            with open(os.path.join(self.data, SETTINGS), "rb") as f:
                final = f.read()
            seal.effects[SETTINGS] = Effect("durable", final)
            self.marker(f"C {seal.ident}")
            self.live[SETTINGS] = final
            # Not a power-cut matter, but worth knowing: a key the group set
            # whose value is none of those it was set to was lost to another
            # call's read-modify-write.
            values = {}
            for call, _ in jobs:
                if SETTINGS in call.effects:
                    key, value = call.effects[SETTINGS].pair
                    values.setdefault(key, set()).add(value)
            settled = json.loads(final)
            lost = sorted(key for key, candidates in values.items() if settled.get(key) not in candidates)
            if lost:
                self.notes.append(f"parallel SettingsService: the setting of {', '.join(lost)} was lost "
                                  "to another call's read-modify-write (no power cut involved)")

    def busy_read_only(self):
        """A script leaves a process behind (in its own session, so that
        kvmd-pstrun does not stop it) that keeps a file open for writing: the
        read-only remount is refused and retried. Other calls come and go;
        then the holder goes and the remount succeeds."""
        call = self.new_call("kvmd-pstrun script leaving a writer behind")
        pidfile = os.path.join(self.work, f"holder{call.ident}.pid")
        source, content = self.payload(self.rng.randrange(1, 8000))
        script = (f'cp {source} "$KVMD_PST_DATA/held.bin"\n'
                  f'setsid sh -c \'echo $$ > {pidfile}; exec sleep 60\' 3>>"$KVMD_PST_DATA/held.bin" '
                  f'</dev/null >/dev/null 2>&1 &\n'
                  f'while [ ! -s {pidfile} ]; do sleep 0.01; done')
        call.effects["held.bin"] = Effect("exact", content)
        command = [os.path.join(self.args.bin, "kvmd-pstrun"), "--socket", self.sock, "--", "sh", "-c", script]
        self.execute(call, command)
        self.apply(call)
        with open(pidfile) as f:
            holder = int(f.read())
        self.holders.append(holder)
        wait_for(lambda: (self.state() or {}).get("remounts", {}).get("failed", 0) > 0, 10,
                 "a refused read-only remount")
        for _ in range(3):
            self.serial()
        self.serial_settings()
        refused = self.state()["remounts"]["failed"]
        os.kill(holder, signal.SIGKILL)
        self.holders.remove(holder)
        wait_for(self.read_only, 10, "the read-only remount after the writer went")
        self.notes.append(f"busy read-only: {refused} refused remounts, then read-only once the writer went")

    def daemon_killed(self):
        """The daemon is killed (SIGKILL) while a script is in its session;
        kvmd-pstrun then stops the script and fails, so nothing it wrote is
        promised. The restarted daemon makes the storage read-only."""
        call = self.new_call("kvmd-pstrun script whose daemon is killed")
        call.expect_failure = True
        name = f"killed/k{call.ident}.bin"
        source, content = self.payload(self.rng.randrange(1, 30000))
        script = f'mkdir -p "$KVMD_PST_DATA/killed" && cp {source} "$KVMD_PST_DATA/{name}" && exec sleep 60'
        call.effects[name] = Effect("exact", content)
        command = [os.path.join(self.args.bin, "kvmd-pstrun"), "--socket", self.sock, "--", "sh", "-c", script]
        self.marker(f"S {call.ident}")
        client = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        target = os.path.join(self.data, name)
        wait_for(lambda: os.path.exists(target) and os.path.getsize(target) == len(content), 10,
                 "the script's file")
        self.stop_daemon(signal.SIGKILL)
        status = client.wait(20)
        if status == 0:
            raise WorkloadError("kvmd-pstrun exited 0 although its daemon was killed")
        self.start_daemon()
        wait_for(self.read_only, 10, "the restarted daemon's read-only remount")
        # The file is whatever the crash left; the next call owns it again.
        self.live.pop(name, None)
        self.notes.append(f"daemon killed mid-session: kvmd-pstrun exited {status}; restarted daemon made it read-only")
        rewrite = self.new_call("kvmd-pstrun script after the restart")
        source, content = self.payload(self.rng.randrange(1, 30000))
        rewrite.effects[name] = Effect("exact", content)
        command = [os.path.join(self.args.bin, "kvmd-pstrun"), "--socket", self.sock, "--",
                   "sh", "-c", f'cp {source} "$KVMD_PST_DATA/{name}"']
        self.execute(rewrite, command)
        self.apply(rewrite)

    def daemon_killed_under_settings(self, early):
        """The daemon is killed at a moment of a SettingsService set:
        before its session, in it or after it. If the call fails it promises
        nothing, but its file was being replaced durably: the old settings
        or the new ones, whatever the crash, until the next set."""
        key = self.rng.choice(["theme", "language", "hostname", "timezone", "motd"])
        call, command = self.settings_call(key, f"k{self.rng.randrange(10**9)}")
        call.expect_failure = True
        before = self.live.get(SETTINGS)
        self.marker(f"S {call.ident}")
        client = subprocess.Popen(command, env=dict(os.environ, PST_SOCKET=self.sock),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # A set takes about 60 ms (debug build): `early` 0, 1 and 2 kill the
        # daemon before its session, about in it, and about after it.
        delay = 0.005 + 0.03 * early + self.rng.uniform(0, 0.03)
        time.sleep(delay)
        self.stop_daemon(signal.SIGKILL)
        status = client.wait(20)
        if status == 0:
            self.marker(f"C {call.ident}")
        self.start_daemon()
        wait_for(self.read_only, 10, "the restarted daemon's read-only remount")
        # What the call left is its new version or the old one; from here
        # on the model expects the old one or this.
        with open(os.path.join(self.data, SETTINGS), "rb") as f:
            call.effects[SETTINGS].content = f.read()
        self.live[SETTINGS] = call.effects[SETTINGS].content
        changed = "changed" if self.live[SETTINGS] != before else "left as it was"
        self.notes.append(f"daemon killed {delay * 1000:.0f} ms into a SettingsService set: "
                          f"it exited {status}, the settings file {changed}")

    def unsynced_writer(self):
        """Self-check: a fake client that writes plain files while another
        session keeps the storage writable, and marks them committed without
        any sync. The replay must find them lost at some points."""
        holder = subprocess.Popen(
            [os.path.join(self.args.bin, "kvmd-pstrun"), "--socket", self.sock, "--", "sleep", "4"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: (self.state() or {}).get("clients", 0) > 0 and not self.read_only(), 10,
                 "the holding session")
        for _ in range(4):
            call = self.new_call("unsynced plain write (self-check)")
            name = f"unsynced/u{call.ident}.bin"
            content = self.rng.randbytes(self.rng.randrange(100, 20000))
            call.effects[name] = Effect("exact", content)
            self.marker(f"S {call.ident}")
            os.makedirs(os.path.join(self.data, "unsynced"), exist_ok=True)
            with open(os.path.join(self.data, name), "wb") as f:
                f.write(content)
            self.marker(f"C {call.ident}")
            self.apply(call)
            time.sleep(0.3)
        # And a file "replaced durably" by rewriting it in place: first
        # written and synced properly, then truncated, synced, rewritten and
        # synced. Between the two syncs the disk holds an empty file, which
        # the old-or-new rule must catch.
        old_content = self.rng.randbytes(3000)
        new_content = self.rng.randbytes(5000)
        path = os.path.join(self.data, "torn.bin")
        first = self.new_call("a file written and synced (self-check)")
        first.effects["torn.bin"] = Effect("exact", old_content)
        self.marker(f"S {first.ident}")
        with open(path, "wb") as f:
            f.write(old_content)
            os.fsync(f.fileno())
        directory = os.open(self.data, os.O_RDONLY | os.O_DIRECTORY)
        os.fsync(directory)
        os.close(directory)
        self.marker(f"C {first.ident}")
        self.apply(first)
        torn = self.new_call("in-place rewrite claimed durable (self-check)")
        torn.effects["torn.bin"] = Effect("durable", new_content)
        self.marker(f"S {torn.ident}")
        with open(path, "wb") as f:
            os.fsync(f.fileno())
            f.write(new_content)
            f.flush()
            os.fsync(f.fileno())
        self.marker(f"C {torn.ident}")
        self.live["torn.bin"] = new_content
        if holder.wait(20) != 0:
            raise WorkloadError("the holding session failed")
        self.serial()

    def workload(self):
        rng = self.rng
        if self.args.mode == "selfcheck":
            self.serial()
            self.unsynced_writer()
            return
        for _ in range(self.args.rounds):
            for _ in range(6):
                self.serial()
            for _ in range(4):
                self.serial_settings()
            for _ in range(3):
                self.parallel(scripts=rng.randrange(2, 4), settings=rng.randrange(2, 4))
            self.busy_read_only()
            for _ in range(2):
                self.serial()
                self.serial_settings()
            self.daemon_killed()
            for early in range(3):
                self.daemon_killed_under_settings(early)
            self.serial_settings()
            self.parallel(scripts=3, settings=2)
            for _ in range(3):
                self.serial()
            self.serial_settings()

    def record(self):
        base = self.make_base_image()
        self.start_disk(base)
        try:
            self.start_daemon()
            self.workload()
            self.stop_daemon()
            if not self.read_only():
                raise WorkloadError("the storage is not read-only after the daemon stopped")
        finally:
            self.cleanup()
        return base

    def cleanup(self):
        for holder in self.holders:
            try:
                os.kill(holder, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.stop_daemon(signal.SIGKILL)
        self.stop_disk()


def wait_for(condition, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise WorkloadError(f"timed out waiting for {what}")


def snapshot_outside(root, layout):
    """Everything outside the data directory: path -> bytes (files) or
    "dir". With layout "root" the data directory is the root: nothing."""
    found = {}
    if layout == "root":
        return found
    for directory, names, files in os.walk(root):
        relative = os.path.relpath(directory, root)
        if relative == "data" or relative.startswith("data/"):
            continue
        for name in names:
            path = os.path.normpath(os.path.join(relative, name))
            if path != "data":
                found[path] = "dir"
        for name in files:
            path = os.path.normpath(os.path.join(relative, name))
            with open(os.path.join(directory, name), "rb") as f:
                found[path] = f.read()
    return found


# --- Replay ----------------------------------------------------------------------

def read_log(path):
    """The records: ("W", offset, bytes), ("Z", offset, length), ("S",),
    ("M", text). Writes are split into blocks: a disk persists each block
    whole or not at all, but not a multi-block write as one."""
    with open(path, "rb") as f:
        raw = f.read()
    records = []
    i = 0
    while i < len(raw):
        kind = chr(raw[i])
        value, length = struct.unpack_from("<QI", raw, i + 1)
        i += 13
        if kind == "W":
            data = raw[i:i + length]
            i += length
            start = value
            while data:
                cut = BLOCK - start % BLOCK
                records.append(("W", start, data[:cut]))
                start += len(data[:cut])
                data = data[cut:]
        elif kind == "M":
            records.append(("M", raw[i:i + length].decode().strip()))
            i += length
        elif kind == "Z":
            records.append(("Z", value, length))
        elif kind == "S":
            records.append(("S",))
    return records


class Point:
    def __init__(self, kind, position, flushed, extra):
        self.kind = kind            # "flush", "return" or "between"
        self.position = position    # the crash happens just before this record
        self.flushed = flushed      # index of the last fsync before it, or -1
        self.extra = extra          # the unflushed writes the disk kept


def choose_points(records, rng, wanted):
    syncs = [i for i, r in enumerate(records) if r[0] == "S"]
    last_sync_before = []
    last = -1
    for i, r in enumerate(records):
        last_sync_before.append(last)
        if r[0] == "S":
            last = i

    def unflushed(position):
        begin = last_sync_before[position] + 1
        return [i for i in range(begin, position) if records[i][0] in "WZ"]

    def subset(candidates):
        keep = rng.random()
        return [i for i in candidates if rng.random() < keep]

    points = []
    # Every flush: the disk as it stands once the flush is done (the state
    # just before the next record, with nothing more written).
    for s in syncs:
        points.append(Point("flush", s + 1, s, []))
    # Every call's return: the disk at that instant, with a random part of
    # what was not flushed yet.
    for i, r in enumerate(records):
        if r[0] == "M" and r[1].startswith("C "):
            points.append(Point("return", i + 1, last_sync_before[i + 1] if i + 1 < len(records) else last,
                                subset(unflushed(i + 1) if i + 1 < len(records) else [])))
    # Then random instants between flushes, to the number wanted.
    gaps = [(a + 1, b) for a, b in zip([-1] + syncs, syncs + [len(records)]) if b > a + 1]
    while len(points) < wanted and gaps:
        begin, end = rng.choice(gaps)
        position = rng.randrange(begin, end + 1) if end < len(records) else rng.randrange(begin, end)
        if position >= len(records):
            position = len(records) - 1
        points.append(Point("between", position, last_sync_before[position], subset(unflushed(position))))
    points.sort(key=lambda p: (p.flushed, p.position))
    return points


class Checker:
    def __init__(self, recorder, records):
        self.r = recorder
        positions = {}
        for i, record in enumerate(records):
            if record[0] == "M":
                kind, ident = record[1].split()
                positions[(kind, int(ident))] = i
        for call in recorder.calls:
            call.start = positions.get(("S", call.ident))
            call.commit = positions.get(("C", call.ident))
            if call.start is None:
                raise WorkloadError(f"no start marker for call {call.ident}")
        self.by_path = {}
        for call in recorder.calls:
            for path in call.effects:
                self.by_path.setdefault(path, []).append(call)

    def acceptable(self, path, c):
        """What `path` may hold after a crash just before record c: a list of
        bytes/None, or a function, or True (anything: a call in flight that
        makes no promise)."""
        calls = self.by_path.get(path, [])
        last = -1
        for i, call in enumerate(calls):
            if call.commit is not None and call.commit < c:
                last = i
        options = []
        if last < 0:
            options.append(self.r.initial.get(path))
        else:
            effect = calls[last].effects[path]
            if effect.kind == "json":
                options.append(self.settings_rule(effect.group, c))
            else:
                options.append(effect.content)
        for call in calls[last + 1:]:
            if call.start >= c:
                continue
            effect = call.effects[path]
            if effect.kind == "exact":
                return True
            if effect.kind == "durable":
                options.append(effect.content)
            else:
                options.append(self.settings_rule(effect.group, c))
        return options

    def settings_rule(self, group, c):
        """A settings file written by one of several parallel
        SettingsService calls: whole JSON, every value one that was there
        before the group or that a call of the group had started to set."""
        members = [call for call in self.r.calls
                   if SETTINGS in call.effects and call.effects[SETTINGS].group == group]
        baseline = members[0].effects[SETTINGS].content
        allowed = {}
        if baseline:
            for key, value in json.loads(baseline).items():
                allowed.setdefault(key, set()).add(value)
        for call in members:
            if call.start < c:
                key, value = call.effects[SETTINGS].pair
                allowed.setdefault(key, set()).add(value)

        def rule(content):
            if content is None:
                return baseline is None
            try:
                settings = json.loads(content)
            except ValueError:
                return False
            return isinstance(settings, dict) and all(
                k in allowed and v in allowed[k] for k, v in settings.items())
        return rule

    def temporary_allowed(self, c):
        return any(call.start < c and (call.commit is None or call.commit >= c)
                   and SETTINGS in call.effects and call.effects[SETTINGS].kind != "exact"
                   for call in self.r.calls)

    def check(self, files, outside, c):
        """Returns the violations at crash position c."""
        problems = []
        paths = set(self.by_path) | set(self.r.initial)
        for path in sorted(paths):
            options = self.acceptable(path, c)
            if options is True:
                continue
            actual = files.get(path)
            if not any(option(actual) if callable(option) else option == actual for option in options):
                problems.append(describe(path, actual, options))
        for path in sorted(set(files) - paths):
            if TEMPORARY.match(path) and self.temporary_allowed(c):
                continue
            problems.append(f"{path}: unexpected file ({len(files[path])} bytes)")
        if outside != self.r.outside:
            problems.append("outside the data directory: "
                            f"{sorted(set(outside) ^ set(self.r.outside)) or 'content changed'}")
        return problems


def describe(path, actual, options):
    def show(value):
        if callable(value):
            return "a complete settings file"
        return "absent" if value is None else f"{len(value)} bytes"
    return f"{path}: {show(actual)}, expected {' or '.join(show(o) for o in options)}"


def read_tree(mnt, layout):
    data = mnt if layout == "root" else os.path.join(mnt, "data")
    files = {}
    for directory, names, names_files in os.walk(data):
        relative = os.path.relpath(directory, data)
        if relative == "lost+found":
            names[:] = []
        for name in names_files:
            path = os.path.normpath(os.path.join(relative, name))
            with open(os.path.join(directory, name), "rb") as f:
                files[path] = f.read()
    return files, snapshot_outside(mnt, layout)


# What e2fsck fixes after every journal replay: ext4 keeps the superblock's
# free block and inode totals out of the journal and recomputes them at
# mount, so after a power cut they are stale. Any other fix is a
# filesystem the crash left inconsistent.
BENIGN = re.compile(r"^Free (blocks|inodes) count wrong \(\d+, counted=\d+\)\.$")


def repairs(output):
    """The problems e2fsck -fy fixed, but for the benign ones."""
    fixed = []
    lines = [line.strip() for line in output.splitlines()]
    for i, line in enumerate(lines):
        if not line.endswith("? yes"):
            continue
        # "Fix? yes" alone on its line answers the line before it.
        problem = lines[i - 1] if re.fullmatch(r"\w+\? yes", line) and i > 0 else line
        if not BENIGN.match(problem):
            fixed.append(problem)
    return fixed


def check_point(point, image, checker, layout, work):
    """e2fsck, mount, compare. Returns (clean, problems, notes, replayed):
    problems are files that break the contract, notes what e2fsck said."""
    repair = run("e2fsck", "-fy", image, check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    verify = run("e2fsck", "-fn", image, check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    fixes = repairs(repair.stdout)
    clean = repair.returncode in (0, 1) and not fixes and verify.returncode == 0
    fsck_notes = []
    if not clean:
        fsck_notes.append(f"e2fsck -fy exited {repair.returncode} (fixed: {fixes}), "
                          f"-fn exited {verify.returncode}:\n" + repair.stdout[-1500:] + verify.stdout[-1500:])
    mnt = os.path.join(work, f"mnt-{threading.get_ident()}")
    os.makedirs(mnt, exist_ok=True)
    mounted = run("mount", "-t", "ext4", "-o", "loop,ro", image, mnt, check=False,
                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    replayed = "recovering journal" in repair.stdout
    if mounted.returncode != 0:
        os.unlink(image)
        return False, [f"cannot mount: {mounted.stdout.strip()}"], fsck_notes, replayed
    try:
        files, outside = read_tree(mnt, layout)
    finally:
        unmount(mnt)
        os.unlink(image)
    return clean, checker.check(files, outside, point.position), fsck_notes, replayed


def unmount(mnt):
    # The other worker's fork may hold one of our directory descriptors for
    # the moment until its exec closes it: then the mount is busy, briefly.
    for _ in range(100):
        if run("umount", mnt, check=False, stderr=subprocess.DEVNULL).returncode == 0:
            return
        time.sleep(0.01)
    run("umount", mnt)


def replay(recorder, base, args):
    records = read_log(os.path.join(recorder.work, "disk.log"))
    rng = random.Random(args.seed ^ 0x5EED)
    points = choose_points(records, rng, args.points)
    checker = Checker(recorder, records)
    counts = {k: sum(1 for p in points if p.kind == k) for k in ("flush", "return", "between")}
    # Returns at which the disk had writes not flushed yet: another
    # session's, or the daemon's read-only remount under way (a call flushes
    # its own before it returns).
    pending = 0
    for point in points:
        if point.kind == "return" and any(records[i][0] in "WZ"
                                          for i in range(point.flushed + 1, min(point.position, len(records)))):
            pending += 1
    writes = sum(1 for r in records if r[0] == "W")
    log(f"[{args.mode}] log: {writes} block writes, {sum(1 for r in records if r[0] == 'S')} flushes, "
        f"{len(recorder.calls)} calls; replaying {len(points)} crash points "
        f"({counts['flush']} at flushes, {counts['return']} at returns, {counts['between']} in between)")
    images = os.path.join(recorder.work, "replay")
    os.makedirs(images, exist_ok=True)
    with open(base, "rb") as f:
        state = bytearray(f.read())
    applied = -1

    def put(target, record):
        if record[0] == "W":
            target[record[1]:record[1] + len(record[2])] = record[2]
        else:
            target[record[1]:record[1] + record[2]] = bytes(record[2])

    results = []
    failures = []
    lock = threading.Lock()
    throttle = threading.Semaphore(args.jobs * 2)

    def finish(number, point, future):
        try:
            clean, problems, notes, replayed = future.result()
        except Exception as error:  # a harness error must fail the point, not hang the run
            clean, problems, notes, replayed = False, [f"harness error: {error!r}"], [], False
        finally:
            throttle.release()
        with lock:
            results.append((clean, problems, replayed))
            if problems or not clean:
                failures.append((number, point, problems + notes))

    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        for number, point in enumerate(points):
            while applied < point.flushed:
                applied += 1
                if records[applied][0] in "WZ":
                    put(state, records[applied])
            image = os.path.join(images, f"point{number}.img")
            with open(image, "wb") as f:
                f.write(state)
                for i in point.extra:
                    record = records[i]
                    f.seek(record[1])
                    f.write(record[2] if record[0] == "W" else bytes(record[2]))
            throttle.acquire()
            future = pool.submit(check_point, point, image, checker, recorder.layout, images)
            future.add_done_callback(lambda fut, n=number, p=point: finish(n, p, fut))
    lost = sum(len(problems) for _, problems, _ in results)
    clean = sum(1 for c, _, _ in results if c)
    replayed = sum(1 for _, _, r in results if r)
    # Which files broke the contract, by top-level name, for the self-check.
    by_file = {}
    for _, problems, _ in results:
        for problem in problems:
            top = problem.split(":")[0].split("/")[0]
            by_file[top] = by_file.get(top, 0) + 1
    if by_file:
        log(f"[{args.mode}] broken, by file or directory: "
            + ", ".join(f"{name}: {count}" for name, count in sorted(by_file.items())))
    for number, point, problems in sorted(failures, key=lambda f: f[0])[:args.show]:
        log(f"[{args.mode}] point {number} ({point.kind}, before log record {point.position}, "
            f"last flush at {point.flushed}, {len(point.extra)} unflushed writes kept):")
        for problem in problems[:5]:
            log(f"    {problem}")
    return {"mode": args.mode, "points": len(results), "clean": clean, "lost": lost,
            "replayed": replayed, "flushes": counts["flush"], "returns": counts["return"], "returns_pending": pending,
            "writes": writes, "calls": len(recorder.calls), "notes": recorder.notes, "broken": by_file}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=sorted(MODES), required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--bin", required=True)
    parser.add_argument("--recordfs", required=True)
    parser.add_argument("--seed", type=lambda s: int(s, 0), required=True)
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--rounds", type=int, default=1, help="times the workload runs")
    parser.add_argument("--summary", required=True)
    parser.add_argument("--show", type=int, default=10, help="failing points to describe")
    args = parser.parse_args()
    # SIGTERM (and SIGINT, as KeyboardInterrupt) end the run through the
    # cleanup in Recorder.record.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.makedirs(args.work, exist_ok=True)
    started = time.monotonic()
    recorder = Recorder(args)
    try:
        base = recorder.record()
    except WorkloadError as error:
        log(f"[{args.mode}] the workload failed: {error}")
        return 2
    recorded = time.monotonic() - started
    summary = replay(recorder, base, args)
    summary["record_seconds"] = round(recorded, 1)
    summary["seconds"] = round(time.monotonic() - started, 1)
    for note in recorder.notes:
        log(f"[{args.mode}] {note}")
    log(f"[{args.mode}] crash points: {summary['points']}, fsck clean: {summary['clean']}, "
        f"committed files lost: {summary['lost']} (the journal replayed at {summary['replayed']}; "
        f"unflushed writes at {summary['returns_pending']} of {summary['returns']} returns; "
        f"recorded in {summary['record_seconds']} s, {summary['seconds']} s in all)")
    with open(args.summary, "w") as f:
        json.dump(summary, f)
    return 0 if summary["clean"] == summary["points"] and summary["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
