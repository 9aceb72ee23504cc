#!/usr/bin/env bash
# Compares two builds of swift-pst on this host by interleaved runs: the
# benchmark runner of each build is run in turn, PAIRS times, so that both
# see the same drift of a shared host. Needs root, like Scripts/bench.sh.
#
#   Scripts/bench-compare.sh BEFORE_DIR AFTER_DIR [PAIRS] [GROUPS]
#
# Each directory holds kvmd-pst, kvmd-pstrun and pst-bench from one build,
# copied out of a release build directory (e.g. .build-perf/release) before
# and after a change. PAIRS defaults to 3, GROUPS to latency,churn. Prints
# the CPU-per-session and latency lines of each run; judge a change pair by
# pair (see Documentation/Benchmarks.md, fourth round).
set -euo pipefail

if [ $# -lt 2 ]; then
    sed -n '2,12p' "$0" >&2
    exit 64
fi
if [ "$(id -u)" != 0 ]; then
    echo "the benchmark needs root: it creates a loop device and remounts it" >&2
    exit 1
fi
before=$1 after=$2 pairs=${3:-3} groups=${4:-latency,churn}
for dir in "$before" "$after"; do
    for binary in kvmd-pst kvmd-pstrun pst-bench; do
        [ -x "$dir/$binary" ] || { echo "error: $dir/$binary is missing" >&2; exit 1; }
    done
done

run_dir=$(mktemp -d /tmp/swift-pst-compare.XXXXXX)
chmod 755 "$run_dir"
trap 'rm -rf "$run_dir"' EXIT

run() {
    local fixtures="$run_dir/fixtures-$RANDOM"
    PST_FIXTURE_ROOT=$fixtures unshare --mount --propagation private \
        "$1/pst-bench" --build-configuration release --json "$run_dir/results.json" --only "$groups" 2>/dev/null \
        | grep -E 'warm (acquire|open)|sessions/s|CPU per session|kvmd-pstrun' || true
}

for pair in $(seq "$pairs"); do
    echo "## pair $pair: before ($before)"
    run "$before"
    echo "## pair $pair: after ($after)"
    run "$after"
done

leftover=$(losetup -a | grep -F "$run_dir" || true)
if [ -n "$leftover" ]; then
    echo "error: loop devices left attached:" >&2
    echo "$leftover" >&2
    exit 1
fi
