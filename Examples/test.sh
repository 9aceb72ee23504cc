#!/bin/sh
# The PST document's example: run as `kvmd-pstrun -- Examples/test.sh --some --script --args`.
# kvmd-pstrun sets KVMD_PST_DATA to the data directory, writable while this runs.
set -e
echo "$(date) + $*" > "$KVMD_PST_DATA/foo"
cat "$KVMD_PST_DATA/foo"
