#!/usr/bin/env bash
# Prints the PST data directory as the daemon reports it (GET /state), without
# opening a session: the storage stays read-only, which is all reading needs.
# Sourced by the other examples; PST_SOCKET overrides the socket.
pst_data_path() {
    local socket=${PST_SOCKET:-/run/kvmd/pst.sock}
    local state
    if ! state=$(curl -sf --unix-socket "$socket" http://localhost/state); then
        echo "cannot read the PST daemon's state at $socket: is kvmd-pst running," \
            "and are you root or in the socket's group (kvmd-pst)?" >&2
        return 1
    fi
    printf '%s' "$state" \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["result"]["data"]["path"])'
}
