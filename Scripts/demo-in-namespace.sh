#!/usr/bin/env bash
# The demo itself; Scripts/demo.sh runs it in a private mount namespace.
set -euo pipefail
bin=$1
work=$(mktemp -d /tmp/swift-pst-demo.XXXXXX)
mnt=$work/pst
sock=$work/pst.sock
daemon_pid=

cleanup() {
    [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
    mountpoint -q "$mnt" && umount "$mnt"
    rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show_mount() { printf 'kernel: %s is %s\n' "$mnt" "$(findmnt -no OPTIONS "$mnt" | cut -d, -f1)"; }

step "A demo PST image: 64 MiB of ext4 on a loop device, mounted like on a PiKVM"
truncate -s 64M "$work/pst.img"
mkfs.ext4 -q -F -L PIPST "$work/pst.img"
dev=$(losetup -f --show "$work/pst.img")
mkdir "$mnt"
options=nodev,nosuid,noexec,ro,errors=remount-ro,data=journal
mount -t ext4 -o "$options" "$dev" "$mnt"
losetup -d "$dev"   # autoclear: the device goes away with the mount
echo "$dev $mnt ext4 $options,X-kvmd.pst-user=root,X-kvmd.pst-group=root 0 0" | tee "$work/fstab"
show_mount

step "The privileged helper remounts it read-write (and fixes the data directory), then read-only"
"$bin/kvmd-helper-pst-remount" --fstab "$work/fstab" rw
show_mount
"$bin/kvmd-helper-pst-remount" --fstab "$work/fstab" ro
show_mount

if [ ! -x "$bin/kvmd-pst" ] || ! "$bin/kvmd-pst" --help >/dev/null 2>&1; then
    exit 0
fi

step "The daemon kvmd-pst serves the storage on $sock"
"$bin/kvmd-pst" --run --socket "$sock" --fstab "$work/fstab" --socket-group root --ro-cleanup-delay 0 2>"$work/daemon.log" &
daemon_pid=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
state() { printf 'GET /state: %s\n' "$(curl -s --unix-socket "$sock" http://localhost/state)"; }
echo "before any session:"
show_mount
state

step "kvmd-pstrun runs the PST document's script while it holds a session"
echo "\$ kvmd-pstrun -- Examples/test.sh --some --script --args"
"$bin/kvmd-pstrun" --socket "$sock" -- "$PWD/Examples/test.sh" --some --script --args
wait_read_only() {
    for _ in $(seq 100); do
        findmnt -no OPTIONS "$mnt" | grep -q '^ro' && return 0
        sleep 0.05
    done
}
wait_read_only
echo "after the session:"
show_mount
state
echo "what the script left in $mnt/foo (the data path is the storage root, as kvmd since 4.8):"
cat "$mnt/foo"

step "While a session is open the storage is read-write"
"$bin/kvmd-pstrun" --socket "$sock" -- sh -c 'printf "during the session: %s\n" "$(findmnt -no OPTIONS "$1" | cut -d, -f1)"' sh "$mnt"
wait_read_only
echo "after it:"
show_mount

step "Stopping the daemon (SIGTERM): it leaves the storage read-only"
kill -TERM "$daemon_pid"
wait "$daemon_pid" || true
daemon_pid=
show_mount
echo "the daemon's log:"
sed 's/^/    /' "$work/daemon.log"
