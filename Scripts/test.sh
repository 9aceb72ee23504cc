#!/usr/bin/env bash
# Builds and runs the whole test suite.
#
# As root, the suite runs in a private mount namespace: every mount a test
# makes dies with the namespace, and the loop devices (attached with
# autoclear) go with their mounts, even if a test process crashes. Fixture
# images live in a per-run directory removed at the end.
#
# With CI=true (or PST_REQUIRE_REAL_MOUNTS=1) tests that need real loop
# devices and mounts never skip: if they cannot run, they fail.
#
# PST_TEST_FILTER, if set, runs only the tests it matches (swift test --filter).
set -euo pipefail
cd "$(dirname "$0")/.."

bash Scripts/install-deps.sh
swift build --build-tests "$@"

run_dir=$(mktemp -d /tmp/swift-pst-test.XXXXXX)
# Some tests run tools as `nobody`, which must reach the fixtures.
chmod 755 "$run_dir"
trap 'rm -rf "$run_dir"' EXIT
export PST_FIXTURE_ROOT="$run_dir/fixtures"
export PST_FIXTURE_LOG="$run_dir/fixtures.log"
if [ "${CI:-}" = true ]; then export PST_REQUIRE_REAL_MOUNTS=1; fi

runner=()
if [ "$(id -u)" = 0 ]; then
    runner=(unshare --mount --propagation private)
fi

set +e
filter=()
if [ -n "${PST_TEST_FILTER:-}" ]; then filter=(--filter "$PST_TEST_FILTER"); fi
"${runner[@]}" swift test --skip-build "${filter[@]}" "$@" 2>&1 | tee "$run_dir/test.log"
status=${PIPESTATUS[0]}
set -e

real_mounts=$(wc -l < "$PST_FIXTURE_LOG" 2>/dev/null || echo 0)
echo "real loop-device mounts made by the tests: $real_mounts"
if [ "${PST_REQUIRE_REAL_MOUNTS:-}" = 1 ] && [ "$real_mounts" -eq 0 ]; then
    echo "error: no real-mount test ran, but they are required here" >&2
    status=1
fi
leftover=$(losetup -a | grep -F "$run_dir" || true)
if [ -n "$leftover" ]; then
    echo "error: loop devices left attached by the tests:" >&2
    echo "$leftover" >&2
    status=1
fi
exit "$status"
