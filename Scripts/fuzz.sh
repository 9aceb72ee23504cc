#!/usr/bin/env bash
# libFuzzer (coverage-guided) on the event JSON parser, StorageEvent(decoding:).
#
#   bash Scripts/fuzz.sh            # 60 s, the CI budget
#   bash Scripts/fuzz.sh 3600       # an hour; any libFuzzer flags may follow
#
# The corpus grows in .build-fuzz/corpus (seeded from Fuzz/corpus); a crash
# leaves crash-* in .build-fuzz and exits non-zero. The seeded, in-suite
# fuzzers of the daemon's whole connection pipeline run with the tests:
#   PST_FUZZ_SECONDS=25 swift test --filter ReliabilityTests.FuzzTests
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
out=.build-fuzz
mkdir -p "$out/corpus"
cp -n Fuzz/corpus/* "$out/corpus/" 2>/dev/null || true
swiftc -sanitize=fuzzer,address -parse-as-library -O -g -package-name swift_pst \
    Fuzz/StorageEventFuzzer.swift Sources/PersistentStorageProtocol/StorageEvent*.swift \
    Sources/PersistentStorageProtocol/StorageStatus.swift \
    -o "$out/storage-event-fuzzer"
cd "$out"
./storage-event-fuzzer -max_total_time="$seconds" -max_len=65536 -print_final_stats=1 "$@" corpus
