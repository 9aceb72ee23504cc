#!/usr/bin/env bash
# `make systemd-check`: swift-pst's units under a real systemd (252, PID 1 of
# a systemd-nspawn container booted from a Debian bookworm tree), with the
# executables as shipped and installed by `make install`, on a real ext4
# image on a loop device mounted with PiKVM's options. Root.
#
#   our kvmd-pst.service (Type=notify, User=kvmd-pst, sudo and the helper):
#     - `systemctl start` returns once the daemon is ready, storage read-only
#     - a session through kvmd-pstrun writes, and the storage is read-only after
#     - `systemctl stop` during a session leaves the storage read-only
#     - kill -9 during a session: systemd restarts the daemon, which makes
#       the storage read-only again
#     - a start-up failure that a restart cannot fix (a bad option) fails
#       the start, is not retried, and `systemctl status` shows its reason;
#       one a restart may fix (no X-kvmd.pst entry in the fstab) is retried
#       every RestartSec, its reason in the journal, until it serves
#   kvmd's own kvmd-pst.service, taken at run time from the kvmd archive in
#   ../shared/reference (never copied into this repository), with kvmd's
#   sysusers, tmpfiles and sudoers files and a real main.yaml:
#     - /run/kvmd stays kvmd's (our tmpfiles line does not re-own it)
#     - our /usr/bin/kvmd-pst --run serves as User=kvmd-pst, a session
#       works, `systemctl stop` leaves the storage read-only
#   the PiKVM layout (the PKGBUILD's): kvmd's unit in /usr/lib/systemd/system
#   with `make install-beside-kvmd`'s drop-in over it: the daemon from
#   /usr/lib/swift-pst serves as kvmd-pst, Type=notify; after `make
#   uninstall-beside-kvmd` kvmd's unit is as it was
#
# Everything it makes is removed on exit, failure or Ctrl-C: the container
# (SIGTERM, then SIGKILL), the loop device, the overlay over the cached tree
# (all mounts live in a private mount namespace of this script), the
# temporary directory.
#
# Environment:
#   PST_SYSTEMD_CACHE   where the bookworm tree is cached (default
#                       /var/cache/swift-pst-systemd-check; made with
#                       debootstrap the first time, about 40 s to 3 min)
#   PST_SHIPPED         built executables, man pages and completions (default:
#                       build them with Scripts/build-release.sh and
#                       Scripts/build-install-files.sh)
#   KVMD_TARBALL        kvmd's archive (default ../shared/reference/kvmd-4.197.tar.gz);
#                       without it the kvmd-unit part is skipped, said loudly
set -euo pipefail
cd "$(dirname "$0")/.."
repository=$PWD
[ "$(id -u)" = 0 ] || { echo "systemd-check needs root" >&2; exit 1; }

# Every mount this script makes (the overlay, and what the container makes
# in its own namespace below it) dies with this private namespace.
if [ "${PST_SYSTEMD_CHECK_NAMESPACE:-}" != 1 ]; then
    export PST_SYSTEMD_CHECK_NAMESPACE=1
    exec unshare --mount --propagation private bash "$0" "$@"
fi

started=$(date +%s)
step() { echo "--- [$(( $(date +%s) - started )) s] $*"; }
fail() { echo "systemd-check: FAILED: $*" >&2; exit 1; }

missing=()
command -v systemd-nspawn >/dev/null || missing+=(systemd-container)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v mkfs.ext4 >/dev/null || missing+=(e2fsprogs)
if [ ${#missing[@]} -gt 0 ]; then
    step "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi

cache=${PST_SYSTEMD_CACHE:-/var/cache/swift-pst-systemd-check}
if [ ! -x "$cache/rootfs/usr/lib/systemd/systemd" ]; then
    step "debootstrap bookworm into $cache/rootfs (once)"
    mkdir -p "$cache"
    rm -rf "$cache/rootfs.partial"
    debootstrap --variant=minbase \
        --include=systemd,systemd-sysv,dbus,e2fsprogs,util-linux,procps,sudo,curl \
        bookworm "$cache/rootfs.partial" >"$cache/debootstrap.log" 2>&1 \
        || { tail -n 20 "$cache/debootstrap.log" >&2; fail "debootstrap (log: $cache/debootstrap.log)"; }
    mv "$cache/rootfs.partial" "$cache/rootfs"
fi

if [ -n "${PST_SHIPPED:-}" ]; then
    shipped=$PST_SHIPPED
else
    step "building the executables as shipped"
    shipped=$(bash Scripts/build-release.sh | tail -n 1)
    bash Scripts/build-install-files.sh "$shipped" >&2
fi

kvmd_tarball=${KVMD_TARBALL:-$repository/../shared/reference/kvmd-4.197.tar.gz}

work=$(mktemp -d /tmp/swift-pst-systemd-check.XXXXXX)
root="$work/root"
loop=""
nspawn_pid=""
cleanup() {
    local status=$?
    set +e
    if [ $status != 0 ] && [ -n "${pid1:-}" ] && kill -0 "$pid1" 2>/dev/null; then
        echo "--- systemctl status kvmd-pst in the container:" >&2
        nsenter -t "$pid1" -a systemctl status --no-pager --lines=0 kvmd-pst.service >&2
        echo "--- journalctl -u kvmd-pst (last 15 lines):" >&2
        nsenter -t "$pid1" -a journalctl --no-pager -n 15 -u kvmd-pst.service >&2
    fi
    if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
        kill -TERM "$nspawn_pid"
        for _ in $(seq 100); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$nspawn_pid" 2>/dev/null && { echo "the container did not stop: SIGKILL" >&2; kill -KILL "$nspawn_pid"; }
        wait "$nspawn_pid" 2>/dev/null
    fi
    if [ -n "$loop" ]; then
        umount "$root/var/lib/kvmd/pst" 2>/dev/null
        losetup -d "$loop" || echo "systemd-check: could not detach $loop" >&2
    fi
    if mountpoint -q "$root"; then umount "$root" || umount -l "$root"; fi
    if [ $status != 0 ] && [ -z "${pid1:-}" ] && [ -f "$work/console.log" ]; then
        echo "--- the container's console (last 40 lines):" >&2
        tail -n 40 "$work/console.log" >&2
    fi
    rm -rf "$work"
    exit $status
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step "the container: an overlay over $cache/rootfs, swift-pst installed with make install PREFIX=/usr"
mkdir -p "$work/upper" "$work/overlay-work" "$root"
mount -t overlay overlay -o "lowerdir=$cache/rootfs,upperdir=$work/upper,workdir=$work/overlay-work" "$root"
make -s install PREFIX=/usr DESTDIR="$root" SHIPPED="$shipped" >/dev/null
echo swift-pst-check > "$root/etc/hostname"
printf '127.0.0.1 localhost swift-pst-check\n' > "$root/etc/hosts"

have_kvmd=false
if [ -f "$kvmd_tarball" ]; then
    have_kvmd=true
    mkdir -p "$work/kvmd"
    tar -xzf "$kvmd_tarball" -C "$work/kvmd" --strip-components=1 --wildcards \
        '*/configs/os/services/kvmd-pst.service' '*/configs/os/sysusers.conf' '*/configs/os/tmpfiles.conf' \
        '*/configs/os/sudoers/v2-hdmi' '*/configs/kvmd/main/v2-hdmi-rpi4.yaml'
    # As kvmd's PKGBUILD installs them (the unit comes later, in place of ours).
    install -D -m 0644 "$work/kvmd/configs/os/sysusers.conf" "$root/usr/lib/sysusers.d/kvmd.conf"
    install -D -m 0644 "$work/kvmd/configs/os/tmpfiles.conf" "$root/usr/lib/tmpfiles.d/kvmd.conf"
    install -D -m 0644 "$work/kvmd/configs/kvmd/main/v2-hdmi-rpi4.yaml" "$root/usr/lib/kvmd/main.yaml"
    install -D -m 0440 "$work/kvmd/configs/os/sudoers/v2-hdmi" "$root/etc/sudoers.d/99_kvmd"
else
    echo "NOTE: no kvmd archive at $kvmd_tarball: kvmd's own unit is not checked" >&2
fi

# As a package's install hook would; the container's own systemd-sysusers
# runs only when /etc needs an update (ConditionNeedsUpdate).
sysusers_output=$(systemd-sysusers --root="$root" 2>&1) || { echo "$sysusers_output" >&2; fail "systemd-sysusers"; }

step "a PST image on a loop device"
truncate -s 64M "$work/pst.img"
mkfs.ext4 -q -L PIPST "$work/pst.img"
loop=$(losetup --find --show "$work/pst.img")
mkdir -p "$root/var/lib/kvmd/pst"
# PiKVM's line, but the device by path (no udev in the container to resolve
# LABEL=) and noauto: the container's systemd would wait for a device unit
# that never appears; the check mounts it by hand, as boot would.
fstab_line="$loop /var/lib/kvmd/pst ext4 nodev,nosuid,noexec,ro,errors=remount-ro,data=journal,X-kvmd.pst-user=kvmd-pst,noauto 0 0"
echo "$fstab_line" > "$root/etc/fstab"

step "booting systemd in the container"
systemd-nspawn -D "$root" --machine="swift-pst-check-$$" -b --register=no --keep-unit --console=pipe --capability=all \
    --bind=/dev/loop-control --bind="$loop" </dev/null >"$work/console.log" 2>&1 &
nspawn_pid=$!
# The container's PID 1 is nspawn's child once that child is systemd (it
# execs it after setting the container up).
pid1=""
for _ in $(seq 200); do
    kill -0 "$nspawn_pid" 2>/dev/null || fail "systemd-nspawn exited"
    candidate=$(awk '{print $1}' "/proc/$nspawn_pid/task/$nspawn_pid/children" 2>/dev/null || true)
    if [ -n "$candidate" ] && [ "$(cat "/proc/$candidate/comm" 2>/dev/null)" = systemd ]; then pid1=$candidate; break; fi
    sleep 0.1
done
[ -n "$pid1" ] || fail "no systemd as PID 1 in the container after 20 s"
inside() { nsenter -t "$pid1" -a "$@"; }
# Until its D-Bus socket is up, systemctl cannot even ask (it says nothing,
# or "offline").
state=""
for _ in $(seq 300); do
    state=$(timeout 60 nsenter -t "$pid1" -a systemctl is-system-running --wait 2>/dev/null || true)
    [ -n "$state" ] && [ "$state" != offline ] && break
    sleep 0.1
done
[ "$state" = running ] || { inside systemctl --failed --no-pager || true; fail "the container's systemd is '$state', not running"; }
inside systemctl --version | head -n 1

storage_mode() { inside findmnt -no OPTIONS /var/lib/kvmd/pst | cut -d, -f1; }
expect_storage() {
    local mode
    mode=$(storage_mode)
    [ "$mode" = "$1" ] || fail "$2: the storage is '$mode', not '$1'"
    echo "ok: $2: the storage is $1"
}
# Waits up to $2 seconds for the command "$3..." to succeed.
wait_for() {
    local what=$1 seconds=$2
    shift 2
    for _ in $(seq $(( seconds * 10 ))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
    fail "waited $seconds s for $what"
}
unit_property() { inside systemctl show -P "$1" kvmd-pst.service; }
property_is() { [ "$(unit_property "$1")" = "$2" ]; }
storage_is() { [ "$(storage_mode)" = "$1" ]; }
state_answer() { inside curl -sf --unix-socket /run/kvmd/pst.sock http://localhost/state; }
# A session held in the background, until the daemon goes away.
background_session() {
    inside kvmd-pstrun --timeout 10 -- sleep 600 >"$work/session.log" 2>&1 &
    session_pid=$!
    wait_for "the session to make the storage writable" 15 storage_is rw
}
end_background_session() {
    local status=0
    wait "$session_pid" || status=$?
    [ $status != 0 ] || fail "kvmd-pstrun exited 0 though its session was taken away"
    echo "ok: kvmd-pstrun exited $status when the daemon went away"
}

# A session through kvmd-pstrun: writes a file, sees the storage writable.
check_session() {
    local output
    output=$(inside kvmd-pstrun -- sh -c 'echo "written by $0" > "$KVMD_PST_DATA/probe" && findmnt -no OPTIONS /var/lib/kvmd/pst | cut -d, -f1' "$1") \
        || fail "$1: kvmd-pstrun failed: $output"
    [ "$(tail -n 1 <<<"$output")" = rw ] || fail "$1: the storage was not writable during the session: $output"
    [ "$(inside cat /var/lib/kvmd/pst/probe)" = "written by $1" ] || fail "$1: the file written in the session is not there"
    wait_for "the storage to be read-only after the session" 10 storage_is ro
    echo "ok: $1: a session through kvmd-pstrun wrote, and the storage is read-only after"
}

step "the PST mounted with PiKVM's options"
inside mount /var/lib/kvmd/pst
expect_storage ro "mounted from the fstab"
if $have_kvmd; then
    owner=$(inside stat -c '%U:%G %a' /run/kvmd)
    [ "$owner" = "kvmd:kvmd 775" ] || fail "/run/kvmd is '$owner', not kvmd's 'kvmd:kvmd 775'"
    echo "ok: /run/kvmd is kvmd's ($owner): our tmpfiles line did not re-own it"
else
    owner=$(inside stat -c '%U:%G %a' /run/kvmd)
    [ "$owner" = "root:kvmd 775" ] || fail "/run/kvmd is '$owner', not 'root:kvmd 775'"
fi
inside id kvmd-pst

step "our kvmd-pst.service (Type=notify): start"
[ "$(unit_property Type)" = notify ] || fail "our unit is not Type=notify"
inside systemctl start kvmd-pst.service   # returns once READY=1 arrived
[ "$(unit_property ActiveState)" = active ] || fail "not active after start"
[ "$(unit_property SubState)" = running ] || fail "not running after start"
inside test -S /run/kvmd/pst.sock || fail "no socket once systemctl start returned"
main_pid=$(unit_property MainPID)
[ "$(inside ps -o user= -p "$main_pid")" = kvmd-pst ] || fail "the daemon does not run as kvmd-pst"
echo "ok: ready when systemctl start returned: $(unit_property StatusText)"
state_answer | grep '"write_allowed": *false' >/dev/null || fail "/state: $(state_answer)"
expect_storage ro "after start"

step "our unit: a session"
check_session "our unit"

step "our unit: systemctl stop during a session"
background_session
inside systemctl stop kvmd-pst.service
end_background_session
expect_storage ro "after systemctl stop during a session"
inside test ! -e /run/kvmd/pst.sock || fail "the socket is left after stop"

step "our unit: kill -9 during a session, restarted by systemd"
inside systemctl start kvmd-pst.service
restarts=$(unit_property NRestarts)
old_pid=$(unit_property MainPID)
background_session
inside kill -KILL "$old_pid"
end_background_session
wait_for "systemd to restart the daemon" 20 property_is NRestarts $(( restarts + 1 ))
wait_for "the restarted daemon to be ready" 20 property_is SubState running
[ "$(unit_property MainPID)" != "$old_pid" ] || fail "the same daemon after a restart"
echo "ok: restarted by systemd (NRestarts $(unit_property NRestarts))"
expect_storage ro "after the crash and the restart"
check_session "after the restart"

step "our unit: a start-up failure that a restart cannot fix shows its reason in systemctl status"
# A configuration error (exit 2): RestartPreventExitStatus=2 keeps systemd
# from retrying it every RestartSec, so the unit ends "failed" and status
# shows the daemon's last lines.
inside systemctl stop kvmd-pst.service
mkdir -p "$root/etc/systemd/system/kvmd-pst.service.d"
printf '[Service]\nExecStart=\nExecStart=/usr/bin/kvmd-pst --run --heartbeat -5\n' \
    > "$root/etc/systemd/system/kvmd-pst.service.d/broken.conf"
inside systemctl daemon-reload
restarts=$(unit_property NRestarts)
if inside systemctl start kvmd-pst.service 2>/dev/null; then fail "started with --heartbeat -5"; fi
[ "$(unit_property ActiveState)" = failed ] || fail "the unit is $(unit_property ActiveState), not failed"
[ "$(unit_property ExecMainStatus)" = 2 ] || fail "the daemon exited $(unit_property ExecMainStatus), not 2"
# (systemctl status exits 3 for a failed unit.)
status_text() { inside systemctl status --no-pager --lines=20 kvmd-pst.service || true; }
status_says() { status_text | grep -- "$1" >/dev/null; }
wait_for "systemctl status to show the reason" 5 status_says "--heartbeat: -5"
echo "ok: systemctl status says: $(status_text | grep -o -- '--heartbeat: -5.*' | head -n 1)"
sleep 4   # past RestartSec=3
[ "$(unit_property NRestarts)" = "$restarts" ] || fail "systemd restarted a configuration error"
[ "$(unit_property ActiveState)" = failed ] || fail "the unit is $(unit_property ActiveState) after RestartSec, not failed"
echo "ok: not restarted (RestartPreventExitStatus=2)"
rm "$root/etc/systemd/system/kvmd-pst.service.d/broken.conf"
inside systemctl daemon-reload
inside systemctl reset-failed kvmd-pst.service
expect_storage ro "after the failed start"

step "our unit: a start-up failure that a restart may fix (no fstab entry) is retried, its reason in the journal"
echo "# the PST line removed on purpose" > "$root/etc/fstab"
if timeout 60 nsenter -t "$pid1" -a systemctl start kvmd-pst.service 2>/dev/null; then fail "started without an fstab entry"; fi
reason="no fstab entry with X-kvmd.pst-\* options in /etc/fstab"
journal_says() { inside journalctl --no-pager -u kvmd-pst.service | grep -- "$1" >/dev/null; }
wait_for "the journal to show the reason" 5 journal_says "$reason"
echo "ok: journalctl -u kvmd-pst says: $(inside journalctl --no-pager -u kvmd-pst.service | grep -o -- "$reason" | tail -n 1)"
wait_for "systemd to retry" 10 property_is NRestarts $(( $(unit_property NRestarts) + 1 ))
echo "ok: retried every RestartSec (NRestarts $(unit_property NRestarts)); systemd 252's status hides the reason meanwhile (see Deploying.md)"
echo "$fstab_line" > "$root/etc/fstab"
# The next retry finds the storage again.
wait_for "the retried daemon to serve once the fstab has the entry again" 15 property_is SubState running
expect_storage ro "after the retries"
check_session "after the retries"
inside systemctl stop kvmd-pst.service

if $have_kvmd; then
    step "kvmd's own kvmd-pst.service (User=kvmd-pst, --run) with our /usr/bin/kvmd-pst"
    install -m 0644 "$work/kvmd/configs/os/services/kvmd-pst.service" "$root/etc/systemd/system/kvmd-pst.service"
    grep -q '^ExecStart=/usr/bin/kvmd-pst --run$' "$root/etc/systemd/system/kvmd-pst.service" \
        || fail "kvmd's unit does not run /usr/bin/kvmd-pst --run"
    # kvmd's unit passes nothing but --run: everything else comes from kvmd's
    # config tree (here the real main.yaml of a v2 on a Pi 4, which sets no
    # pst: keys). kvmd's scheme then remounts with sudo and
    # /usr/bin/kvmd-helper-pst-remount, which kvmd's sudoers allows; ours
    # does the same when it may not remount by itself (it says so).
    # (grep reads all its input: grep -q would end the pipe early, and
    # pipefail would count the writer's SIGPIPE as a failure.)
    if ! inside /usr/bin/kvmd-pst --help | grep -- '--main-config' >/dev/null; then
        echo "NOTE: kvmd-pst does not read kvmd's config tree: passing kvmd's remount_cmd as --remount-command" >&2
        kvmd_remount_dropin=true
    else
        kvmd_remount_dropin=false
    fi
    if $kvmd_remount_dropin; then
        mkdir -p "$root/etc/systemd/system/kvmd-pst.service.d"
        printf '[Service]\nExecStart=\nExecStart=/usr/bin/kvmd-pst --run --remount-command "/usr/bin/sudo --non-interactive /usr/bin/kvmd-helper-pst-remount {mode}"\n' \
            > "$root/etc/systemd/system/kvmd-pst.service.d/kvmd-remount-cmd.conf"
    fi
    inside systemctl daemon-reload
    [ "$(unit_property Type)" = simple ] || fail "kvmd's unit is not the one loaded"
    inside systemctl start kvmd-pst.service
    # Type=simple: systemctl returns at once; the daemon serves a moment later.
    wait_for "kvmd's unit to serve /state" 20 state_answer
    main_pid=$(unit_property MainPID)
    [ "$(inside ps -o user= -p "$main_pid")" = kvmd-pst ] || fail "kvmd's unit: the daemon does not run as kvmd-pst"
    [ "$(inside readlink "/proc/$main_pid/exe")" = /usr/bin/kvmd-pst ] || fail "kvmd's unit does not run our /usr/bin/kvmd-pst"
    echo "ok: kvmd's unit: our daemon serves as kvmd-pst"
    expect_storage ro "kvmd's unit, after start"
    check_session "kvmd's unit"
    background_session
    inside systemctl stop kvmd-pst.service
    end_background_session
    expect_storage ro "kvmd's unit, after systemctl stop during a session"

    step "the PiKVM layout: kvmd's unit where kvmd's package puts it, make install-beside-kvmd (the PKGBUILD's) over it"
    rm -rf "$root/etc/systemd/system/kvmd-pst.service" "$root/etc/systemd/system/kvmd-pst.service.d"
    install -m 0644 "$work/kvmd/configs/os/services/kvmd-pst.service" "$root/usr/lib/systemd/system/kvmd-pst.service"
    make -s install-beside-kvmd PREFIX=/usr DESTDIR="$root" SHIPPED="$shipped" >/dev/null
    inside systemctl daemon-reload
    [ "$(unit_property Type)" = notify ] || fail "the drop-in does not make kvmd's unit Type=notify"
    [ "$(unit_property User)" = kvmd-pst ] || fail "the drop-in lost kvmd's User=kvmd-pst"
    inside systemctl start kvmd-pst.service   # returns once READY=1 arrived
    [ "$(unit_property SubState)" = running ] || fail "beside kvmd: not running after start"
    main_pid=$(unit_property MainPID)
    [ "$(inside readlink "/proc/$main_pid/exe")" = /usr/lib/swift-pst/kvmd-pst ] || fail "beside kvmd: not our /usr/lib/swift-pst/kvmd-pst"
    [ "$(inside ps -o user= -p "$main_pid")" = kvmd-pst ] || fail "beside kvmd: the daemon does not run as kvmd-pst"
    echo "ok: beside kvmd: kvmd's unit runs /usr/lib/swift-pst/kvmd-pst as kvmd-pst, ready when systemctl start returned"
    check_session "beside kvmd"
    background_session
    inside systemctl stop kvmd-pst.service
    end_background_session
    expect_storage ro "beside kvmd, after systemctl stop during a session"

    step "going back: make uninstall-beside-kvmd (what pacman -R removes), kvmd's unit as it was"
    make -s uninstall-beside-kvmd PREFIX=/usr DESTDIR="$root" >/dev/null
    inside systemctl daemon-reload
    [ "$(unit_property Type)" = simple ] || fail "after uninstalling, kvmd's unit is not Type=simple again"
    [ "$(unit_property ExecStart | grep -o 'path=[^ ;]*')" = path=/usr/bin/kvmd-pst ] || fail "after uninstalling, kvmd's unit does not run /usr/bin/kvmd-pst"
    inside test ! -e /etc/sudoers.d/swift-pst || fail "our sudoers file is left"
    echo "ok: kvmd's unit is kvmd's again"
fi

step "passed"
