#!/usr/bin/env bash
# Builds the DocC documentation of the PersistentStorage library, and of the
# wire-protocol module whose public types it re-exports (StorageStatus,
# DaemonState; linked as ``/PersistentStorageProtocol/NAME``), with the
# swift-docc plugin, combined into one archive. A broken symbol or article link is an error, so CI
# fails on it. Extra arguments go to the plugin, e.g.
#   bash Scripts/docs.sh --transform-for-static-hosting --output-path /tmp/pst-docs
# (the plugin then also wants --allow-writing-to-directory /tmp/pst-docs before the verb,
# see `swift package plugin generate-documentation --help`).
#
# DOCS_SCRATCH_PATH picks the build directory (default .build, shared with `make test`).
set -euo pipefail
cd "$(dirname "$0")/.."
scratch=${DOCS_SCRATCH_PATH:-.build}
bash Scripts/install-deps.sh
start=$SECONDS
swift package --scratch-path "$scratch" generate-documentation \
    --target PersistentStorage --target PersistentStorageProtocol --enable-experimental-combined-documentation \
    --warnings-as-errors "$@"
echo "documentation built in $((SECONDS - start)) s: $scratch/plugins/Swift-DocC/outputs/swift-pst.doccarchive"
echo "preview it with: swift package --disable-sandbox preview-documentation --target PersistentStorage"
