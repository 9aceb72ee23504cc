#!/usr/bin/env bash
# Installs the system packages the build, the tests and the demo need, when missing.
set -euo pipefail

missing=()
pkg-config --exists mount 2>/dev/null || missing+=(libmount-dev pkg-config)
command -v mkfs.ext4 >/dev/null || missing+=(e2fsprogs)
command -v e2fsck >/dev/null || missing+=(e2fsprogs)
command -v losetup >/dev/null || missing+=(mount)
command -v setpriv >/dev/null || missing+=(util-linux)
command -v unshare >/dev/null || missing+=(util-linux)
command -v script >/dev/null || missing+=(bsdutils)
command -v curl >/dev/null || missing+=(curl)
# The example tests check the deployment files with the tools a PiKVM reads them with.
command -v visudo >/dev/null || missing+=(sudo)
command -v systemd-analyze >/dev/null || missing+=(systemd)
# The crash-point replay (make crash-test) builds and mounts a FUSE filesystem.
command -v fusermount3 >/dev/null || missing+=(fuse3)
pkg-config --exists fuse3 2>/dev/null || missing+=(libfuse3-dev pkg-config)
command -v gcc >/dev/null || missing+=(gcc)

if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "missing packages: ${missing[*]} (run as root, or install them with apt-get)" >&2
        exit 1
    fi
    echo "installing: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The interoperability tests talk to aiohttp peers, as the Python kvmd does.
if ! python3 -c 'import aiohttp' 2>/dev/null; then
    echo "installing: aiohttp (PyPI)" >&2
    python3 -m pip install -q --disable-pip-version-check aiohttp >/dev/null
fi
