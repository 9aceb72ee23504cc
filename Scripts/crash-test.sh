#!/usr/bin/env bash
# make crash-test: the crash-point replay (root; Documentation/Reliability.md,
# "Power cuts"). Records real PST workloads on a disk that logs every write
# and flush (Tests/CrashReplay/recordfs.c, through FUSE), then rebuilds that
# disk as a power cut would have left it at every flush, every client return
# and random instants in between, and checks each image
# (Tests/CrashReplay/crash_replay.py).
#
#   PST_CRASH_SEED=N       the seed (default 0xC4A50017; printed)
#   PST_CRASH_POINTS=N     crash points per mount-option mode (default 1000)
#   PST_CRASH_ROUNDS=N     times each mode's workload runs (default 1); every
#                          flush and return of it is replayed
#   PST_CRASH_BIN=DIR      take kvmd-pst, kvmd-pstrun and SettingsService from
#                          DIR instead of building them
#   PST_CRASH_SELFCHECK=1  only the self-check: fake clients that break the
#                          promise (success reported before any sync; a file
#                          "replaced durably" by rewriting it in place); they
#                          must be caught (this run then fails, as it should)
#   PST_CRASH_KEEP=1       keep the work directory (logs, images) for a look
#
# Without PST_CRASH_SELFCHECK the self-check runs first, as a gate: if the
# replay cannot catch those clients, its "0 lost" means nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    echo "make crash-test needs root: it mounts FUSE, loop devices and ext4" >&2
    exit 1
fi
bash Scripts/install-deps.sh

seed=${PST_CRASH_SEED:-0xC4A50017}
points=${PST_CRASH_POINTS:-1000}
rounds=${PST_CRASH_ROUNDS:-1}
if [ -n "${PST_CRASH_BIN:-}" ]; then
    bin=$PST_CRASH_BIN
else
    for product in kvmd-pst kvmd-pstrun SettingsService; do
        # SettingsService is an example target: a product only implicitly.
        swift build --product "$product" >&2 || swift build --target "$product" >&2
    done
    bin=$(swift build --show-bin-path)
fi
for product in kvmd-pst kvmd-pstrun SettingsService; do
    [ -x "$bin/$product" ] || { echo "no $bin/$product" >&2; exit 1; }
done

mkdir -p .build/crash-test
recordfs=.build/crash-test/recordfs
if [ ! -x "$recordfs" ] || [ Tests/CrashReplay/recordfs.c -nt "$recordfs" ]; then
    # shellcheck disable=SC2046 # pkg-config's flags are separate words
    gcc -O2 -Wall -Wextra -Werror -o "$recordfs" Tests/CrashReplay/recordfs.c $(pkg-config --cflags --libs fuse3)
fi
recordfs=$PWD/$recordfs

# tmpfs: the disk, its log and every replayed image live in memory.
work=$(mktemp -d /dev/shm/swift-pst-crash.XXXXXX)
runner=
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    set +e
    # The runner is PID 1 of its own PID namespace: killing it kills every
    # process in there (daemon, clients, recordfs), and with the last of
    # them its mount namespace and everything mounted in it goes.
    [ -n "$runner" ] && kill -KILL "$runner" 2>/dev/null && wait "$runner" 2>/dev/null
    if [ "${PST_CRASH_KEEP:-0}" = 1 ]; then
        echo "kept $work" >&2
    else
        # The namespace goes a moment after its last process: until then
        # its mount points in $work are busy.
        for _ in $(seq 50); do
            rm -rf "$work" 2>/dev/null && break
            sleep 0.1
        done
        [ -e "$work" ] && echo "could not remove $work" >&2
    fi
    # Loop devices autoclear when their mount goes; one that was attached
    # but never mounted would not.
    losetup -a 2>/dev/null | grep -F "$work" | cut -d: -f1 | while read -r device; do
        losetup -d "$device" 2>/dev/null || true
    done
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# One mode, in fresh mount and PID namespaces. Runs in the background and is
# waited for, so that the traps above run on ctrl-C or SIGTERM at once.
replay() {
    local mode=$1 count=$2 status=0
    shift 2
    PYTHONDONTWRITEBYTECODE=1 unshare --mount --propagation private --pid --fork --kill-child --mount-proc \
        python3 Tests/CrashReplay/crash_replay.py --mode "$mode" --work "$work/$mode" \
        --bin "$bin" --recordfs "$recordfs" --seed "$seed" --points "$count" --rounds "$rounds" \
        --summary "$work/$mode.json" "$@" &
    runner=$!
    wait "$runner" || status=$?
    runner=
    return "$status"
}

# The last line: the totals of the summaries given (a mode whose workload
# failed wrote none, and has failed the run already).
summarize() {
    python3 - "$@" << 'EOF'
import json, os, sys
summaries = [json.load(open(path)) for path in sys.argv[1:] if os.path.exists(path)]
total = {key: sum(s[key] for s in summaries) for key in ("points", "clean", "lost")}
print(f"crash points: {total['points']}, fsck clean: {total['clean']}, committed files lost: {total['lost']}")
EOF
}

started=$SECONDS
echo "crash-point replay: seed $seed, $points points per mode, workload x$rounds, binaries from $bin"

if [ "${PST_CRASH_SELFCHECK:-0}" = 1 ]; then
    replay selfcheck "$points" && status=0 || status=$?
    summarize "$work/selfcheck.json"
    exit "$status"
fi

status=0
replay selfcheck 200 --show 3 || status=$?
# Both fakes must be caught: the files written without a sync (lost at
# their return) and the in-place rewrite claimed durable (empty between its
# syncs).
caught=$(python3 -c 'import json, sys; b = json.load(open(sys.argv[1]))["broken"]
print(min(b.get("unsynced", 0), b.get("torn.bin", 0)), sum(b.values()))' "$work/selfcheck.json" 2>/dev/null || echo 0 0)
if [ "$status" != 1 ] || [ "${caught% *}" = 0 ]; then
    echo "self-check FAILED: the replay did not catch a client that reports success before syncing," \
        "or a file rewritten in place that claims to be durable" >&2
    exit 1
fi
echo "self-check: the fake clients were caught (${caught#* } broken files at the crash points), as they must be"

failed=0
for mode in journal ordered; do
    replay "$mode" "$points" || failed=1
done
echo "runtime: $((SECONDS - started)) s"
summarize "$work/journal.json" "$work/ordered.json" || failed=1
exit "$failed"
