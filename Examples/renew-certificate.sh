#!/usr/bin/env bash
# Keeps a certificate set in the PST, at DATA/certs/current.
#
#   renew-certificate.sh NEW_CERT_DIR
#
# The new files are prepared outside the storage (here: NEW_CERT_DIR, e.g.
# what certbot just wrote) and compared with what the PST holds, reading it
# without a session. Only when something changed is a session opened, and
# then only for a copy and two renames: the storage is writable for as short
# a time as possible. Readers never see a half-written set: `current` is a
# symlink to a complete generation directory, swapped with one rename.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/pst-data-path.sh"
if [ $# -ne 1 ] || [ ! -d "$1" ]; then
    echo "usage: $0 NEW_CERT_DIR" >&2
    exit 2
fi
new=$(cd "$1" && pwd)
pstrun=${KVMD_PSTRUN:-kvmd-pstrun}
socket=${PST_SOCKET:-/run/kvmd/pst.sock}

data=$(pst_data_path)
if [ -d "$data/certs/current" ] && diff -qr "$new" "$data/certs/current" >/dev/null; then
    echo "certificate unchanged: no session opened"
    exit 0
fi

"$pstrun" --socket "$socket" -- /bin/sh -c '
    set -eu
    certs="$KVMD_PST_DATA/certs"
    mkdir -p "$certs"
    generation="gen-$(date +%Y%m%d%H%M%S)-$$"
    cp -R "$1/." "$certs/$generation.partial"
    mv "$certs/$generation.partial" "$certs/$generation"
    rm -f "$certs/current.new"   # left by an interrupted run
    ln -s "$generation" "$certs/current.new"
    mv -T "$certs/current.new" "$certs/current"
    for old in "$certs"/gen-*; do
        [ "${old##*/}" = "$generation" ] || rm -rf "$old"
    done
    echo "certificate installed as $generation"
' renew-certificate "$new"
