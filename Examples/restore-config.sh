#!/usr/bin/env bash
# Restores a configuration directory saved by backup-config.sh.
#
#   restore-config.sh NAME TARGET_DIR
#
# Reading needs no session: the storage is readable while read-only.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/pst-data-path.sh"
if [ $# -ne 2 ]; then
    echo "usage: $0 NAME TARGET_DIR" >&2
    exit 2
fi
name=$1
target=$2

archive="$(pst_data_path)/backups/$name.tar.gz"
if [ ! -f "$archive" ]; then
    echo "no backup named $name in the PST ($archive)" >&2
    exit 1
fi
mkdir -p "$target"
tar -xzf "$archive" -C "$target"
echo "restored $name into $target"
