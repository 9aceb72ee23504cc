#!/usr/bin/env bash
# Runs swift-pst end to end on a demo PST image (needs root):
# a 64 MiB ext4 image on a loop device, mounted read-only with PiKVM's
# options, the daemon kvmd-pst serving it, and kvmd-pstrun running the PST
# document's example script. Everything happens in a private mount namespace
# and is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    echo "make demo needs root: it creates a loop device and mounts it" >&2
    exit 1
fi
bash Scripts/install-deps.sh
swift build
bin=$(swift build --show-bin-path)
exec unshare --mount --propagation private bash Scripts/demo-in-namespace.sh "$bin"
