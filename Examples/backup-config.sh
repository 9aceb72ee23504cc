#!/usr/bin/env bash
# Saves a configuration directory into the PST, at DATA/backups/NAME.tar.gz.
#
#   backup-config.sh SOURCE_DIR NAME
#
# The archive is built outside the storage first; a session is opened only
# when it differs from the saved one, and the new archive replaces the old
# with a rename, so a power cut leaves either the old or the new backup.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/pst-data-path.sh"
if [ $# -ne 2 ] || [ ! -d "$1" ]; then
    echo "usage: $0 SOURCE_DIR NAME" >&2
    exit 2
fi
source_dir=$1
name=$2
pstrun=${KVMD_PSTRUN:-kvmd-pstrun}
socket=${PST_SOCKET:-/run/kvmd/pst.sock}

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
# A reproducible archive (sorted, fixed times and owners), so that an
# unchanged directory gives identical bytes and needs no session.
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
    -C "$source_dir" -cf - . | gzip -n > "$scratch/$name.tar.gz"

data=$(pst_data_path)
if cmp -s "$scratch/$name.tar.gz" "$data/backups/$name.tar.gz"; then
    echo "backup $name unchanged: no session opened"
    exit 0
fi

"$pstrun" --socket "$socket" -- /bin/sh -c '
    set -eu
    mkdir -p "$KVMD_PST_DATA/backups"
    cp "$1" "$KVMD_PST_DATA/backups/.$2.tar.gz.partial"
    mv "$KVMD_PST_DATA/backups/.$2.tar.gz.partial" "$KVMD_PST_DATA/backups/$2.tar.gz"
    echo "backup $2 saved"
' backup-config "$scratch/$name.tar.gz" "$name"
