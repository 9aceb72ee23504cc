#!/usr/bin/env bash
# Benchmarks swift-pst (needs root): a real kvmd-pst on a real loop device,
# against the kernel's own remount and spawn times. Prints a Markdown table
# and writes JSON. See Documentation/Benchmarks.md.
#
#   Scripts/bench.sh            the full run (release build, several minutes)
#   Scripts/bench.sh --smoke    seconds, small counts, debug build (CI)
#
# Other options are passed to pst-bench (--only GROUPS, --json PATH).
# PST_BENCH_SCRATCH picks the build directory (default .build-bench).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    echo "the benchmark needs root: it creates a loop device and remounts it" >&2
    exit 1
fi

configuration=release
for argument in "$@"; do
    # The smoke run proves the runner works; a debug build spares CI a second, release, build.
    [ "$argument" = --smoke ] && configuration=debug
done
scratch=${PST_BENCH_SCRATCH:-.build-bench}

# The release run measures what Deploying.md ships, built by
# Scripts/build-release.sh (which says how and why); the smoke run a debug
# build.
if [ "$configuration" = release ]; then
    bin=$(PST_RELEASE_SCRATCH=$scratch bash Scripts/build-release.sh pst-bench | tail -n 1)
else
    bash Scripts/install-deps.sh
    build_flags=(-c debug --scratch-path "$scratch")
    for product in kvmd-pst kvmd-pstrun pst-bench; do
        swift build "${build_flags[@]}" --product "$product"
    done
    bin=$(swift build "${build_flags[@]}" --show-bin-path)
fi

run_dir=$(mktemp -d /tmp/swift-pst-bench.XXXXXX)
chmod 755 "$run_dir"
trap 'rm -rf "$run_dir"' EXIT
export PST_FIXTURE_ROOT="$run_dir/fixtures"

json=${PST_BENCH_JSON:-$scratch/bench/results-$([ "$configuration" = debug ] && echo smoke || echo full).json}

# A private mount namespace: every remount happens in it, and the fixture's
# mount (and with it the autoclear loop device) dies with it even if the
# runner crashes.
status=0
unshare --mount --propagation private \
    "$bin/pst-bench" --build-configuration "$configuration" --json "$json" "$@" || status=$?

leftover=$(losetup -a | grep -F "$run_dir" || true)
if [ -n "$leftover" ]; then
    echo "error: loop devices left attached by the benchmark:" >&2
    echo "$leftover" >&2
    status=1
fi
exit "$status"
