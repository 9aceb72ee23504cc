#!/usr/bin/env bash
# `make test-kvmd`: swift-pst against the real kvmd 4.197, both ways
# (Documentation/Compatibility.md). Root.
#
# 1. Finds CPython >= 3.13 (pyenv; installs 3.13 through pyenv if it has
#    none) and lets the reference harness fill a venv from PyPI, both cached
#    under PST_KVMD_CACHE (default /tmp/swift-pst-kvmd-cache), with kvmd's
#    unpacked source.
# 2. Brings up the harness (../shared/reference/harness/up.sh): a real ext4
#    loop mount in a private mount namespace with kvmd's config paths, and no
#    daemon: each test starts kvmd's or ours on it.
# 3. Runs the KvmdInteropTests and fails if any of them was skipped.
# 4. Tears the harness down whatever happened (daemons and every process in
#    its namespace, mounts, the namespace, its loop device, its files), and
#    fails if a loop device or mount of it is left.
#
#   PST_KVMD_REFERENCE  the reference folder (default ../shared/reference)
#   KVMD_PYTHON         an interpreter >= 3.13 to make the venv with
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "test-kvmd: run as root (loop devices, mounts, mount namespaces)" >&2; exit 1; }
started=$(date +%s)

reference=${PST_KVMD_REFERENCE:-$(cd .. && pwd)/shared/reference}
harness=$reference/harness
tarball=$reference/kvmd-4.197.tar.gz
[ -x "$harness/up.sh" ] && [ -f "$tarball" ] || { echo "test-kvmd: no kvmd reference in $reference" >&2; exit 1; }
cache=${PST_KVMD_CACHE:-/tmp/swift-pst-kvmd-cache}
mkdir -p "$cache"

bash Scripts/install-deps.sh
command -v patchelf >/dev/null || apt-get install -y -qq patchelf >/dev/null
for tool in losetup mkfs.ext4 nsenter findmnt setsid curl sudo gcc patchelf readelf; do
    command -v "$tool" >/dev/null || { echo "test-kvmd: missing tool: $tool" >&2; exit 1; }
done
# evdev, which kvmd imports, builds from its sdist against the kernel's headers.
[ -f /usr/include/linux/input.h ] || apt-get install -y -qq linux-libc-dev >/dev/null

# ----- kvmd's source, unpacked once
export KVMD_SRC=$cache/kvmd-4.197
if [ ! -f "$KVMD_SRC/.unpacked" ]; then
    rm -rf "$KVMD_SRC"
    mkdir -p "$KVMD_SRC"
    tar -xzf "$tarball" -C "$KVMD_SRC" --strip-components=1
    touch "$KVMD_SRC/.unpacked"
fi

# ----- CPython >= 3.13 and the venv (the harness fills it from PyPI)
# The interpreter is copied out of pyenv's tree (under /root, which others
# cannot enter): kvmd-certbot runs kvmd-pstrun as a user that is not root.
export KVMD_VENV=$cache/venv
if [ ! -x "$KVMD_VENV/bin/python" ] && [ -z "${KVMD_PYTHON:-}" ]; then
    command -v pyenv >/dev/null || { echo "test-kvmd: kvmd needs CPython >= 3.13: install pyenv, or set KVMD_PYTHON" >&2; exit 1; }
    newest() { pyenv versions --bare 2>/dev/null | grep -E '^3\.(1[3-9]|[2-9][0-9])(\.[0-9]+)?$' | sort -V | tail -n 1; }
    version=$(newest)
    if [ -z "$version" ]; then
        echo "test-kvmd: installing CPython 3.13 through pyenv (once; minutes)" >&2
        pyenv install -s 3.13
        version=$(newest)
    fi
    if [ ! -x "$cache/cpython-$version/bin/python3" ]; then
        rm -rf "$cache/cpython-$version"
        cp -a "$(pyenv root)/versions/$version" "$cache/cpython-$version"
        rm -rf "$cache/cpython-$version/lib/python${version%.*}/test"
        chmod -R a+rX "$cache/cpython-$version"
        # pyenv links python to its libpython by an absolute run path, into /root.
        for binary in "$cache/cpython-$version"/bin/python3.*; do
            if [ -f "$binary" ] && [ ! -L "$binary" ] && readelf -d "$binary" 2>/dev/null | grep -q RUNPATH; then
                patchelf --set-rpath '$ORIGIN/../lib' "$binary"
            fi
        done
    fi
    export KVMD_PYTHON=$cache/cpython-$version/bin/python3
fi
chmod 755 "$cache"

# ----- the build
swift build --build-tests

# ----- the harness, torn down however this ends
anchor=$(mktemp -d /tmp/swift-pst-kvmd.XXXXXX)
chmod 755 "$anchor"   # kvmd-certbot's user reaches the socket below it
override=$(mktemp /tmp/swift-pst-kvmd-override.XXXXXX)
log=$(mktemp /tmp/swift-pst-kvmd-test.XXXXXX)
teardown() {
    local status=$?
    set +e
    PST_ANCHOR_DIR=$anchor PST_ANCHOR_KEEP_LOG=$cache/kvmd-pst-last.log "$harness/down.sh" >/dev/null || status=1
    if losetup -a | grep -F "$anchor"; then
        echo "test-kvmd: loop devices of the harness are left attached" >&2
        status=1
    fi
    if findmnt -rn -o TARGET | grep -F "$anchor"; then
        echo "test-kvmd: mounts of the harness are left" >&2
        status=1
    fi
    rm -rf "$anchor" "$override" "$log"
    echo "test-kvmd: $(( $(date +%s) - started )) s in all (daemon log of the last run: $cache/kvmd-pst-last.log)"
    exit "$status"
}
trap teardown EXIT

# A short heartbeat, so that a session of a few seconds outlasts several,
# and a short wait for clients at shutdown; the tests start our daemon with
# the same values (Tests/KvmdInteropTests/Support/KvmdAnchor.swift).
cat > "$override" <<'EOF'
pst:
    server:
        heartbeat: 2.0
    ro_cleanup_delay: 1.0
EOF
chmod 644 "$override"   # read by kvmd's kvmd-pstrun as kvmd-certbot's user, as on a PiKVM
PST_ANCHOR_DIR=$anchor PST_NO_DAEMON=1 PST_IMAGE_SIZE=32M PST_ANCHOR_OVERRIDE=$override "$harness/up.sh" >/dev/null

# ----- the tests
set +e
PST_KVMD_ANCHOR_ENV=$anchor/anchor.env PST_KVMD_HARNESS=$harness \
    swift test --skip-build --filter KvmdInteropTests 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
if grep -E '(Test|Suite) "[^"]*" skipped' "$log" >/dev/null || ! grep -E 'Test run with [1-9][0-9]* tests? .*passed|Test run with [1-9][0-9]* tests? .*failed' "$log" >/dev/null; then
    echo "test-kvmd: the real-kvmd tests did not all run" >&2
    status=1
fi
exit "$status"
