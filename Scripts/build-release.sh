#!/usr/bin/env bash
# Builds the executables as shipped (Documentation/Deploying.md) and copies
# them into one directory, SCRATCH/shipped, which it prints last.
#
#   Scripts/build-release.sh [--pstrun-only] [EXTRA_PRODUCT...]
#
# SCRATCH is PST_RELEASE_SCRATCH (default .build). EXTRA_PRODUCTs (e.g.
# pst-bench) are built like the daemon and copied alongside.
#
# - kvmd-pst, kvmd-helper-pst-remount (and EXTRA_PRODUCTs): release, with the
#   Swift runtime and Foundation linked statically (dynamically linked, the
#   daemon's idle RSS carried the relocated pages of a dozen shared
#   libraries), by lld with packed relative relocations
#   (Scripts/release-toolset.json; glibc 2.36 or later), without Swift's
#   -export-dynamic. They stay dynamically linked against glibc and
#   libmount: libmount has no static library, and the daemon looks up users
#   and groups through glibc's NSS.
# - kvmd-pstrun: the same, and linked fully statically, glibc included. A
#   process that lives for one script pays for the dynamic loader on every
#   start: with libstdc++, libm and glibc to relocate, that was half of a
#   `kvmd-pstrun -- true` (Documentation/Benchmarks.md). -static-executable
#   is a compiler flag, so it gets a build directory of its own.
#
# Every copy in SCRATCH/shipped is stripped (what `make install` installs:
# the unstripped ones were 24-49 MB, mostly DWARF); its debug information is
# kept beside it, where gdb looks first, in SCRATCH/shipped/.debug/NAME.debug (objcopy
# --only-keep-debug), and the binary names that file in .gnu_debuglink, so
# gdb and coredumpctl find it next to the binary, or under /usr/lib/debug
# where `make install-debug` puts it. PST_RELEASE_KEEP_SYMBOLS=1 ships the
# binaries unstripped (benchmarks that profile want the symbols).
set -euo pipefail
cd "$(dirname "$0")/.."

pstrun_only=false
extra=()
for argument in "$@"; do
    case $argument in
        --pstrun-only) pstrun_only=true ;;
        *) extra+=("$argument") ;;
    esac
done
scratch=${PST_RELEASE_SCRATCH:-.build}
flags=(-c release --static-swift-stdlib --toolset Scripts/release-toolset.json -Xlinker --no-export-dynamic)

# As root it installs what is missing; a package build (makepkg, unprivileged)
# has its makedepends instead.
if [ "$(id -u)" = 0 ]; then bash Scripts/install-deps.sh >&2; fi
shipped="$scratch/shipped"
mkdir -p "$shipped"
if [ "$pstrun_only" = false ]; then
    for product in kvmd-pst kvmd-helper-pst-remount "${extra[@]}"; do
        swift build "${flags[@]}" --scratch-path "$scratch" --product "$product" >&2
        cp "$(swift build "${flags[@]}" --scratch-path "$scratch" --show-bin-path)/$product" "$shipped/"
    done
fi
static=(--scratch-path "$scratch/static-pstrun" -Xswiftc -static-executable)
swift build "${flags[@]}" "${static[@]}" --product kvmd-pstrun >&2
cp "$(swift build "${flags[@]}" "${static[@]}" --show-bin-path)/kvmd-pstrun" "$shipped/"

# The debug information into its own file, then out of the binary.
# --strip-all also drops .symtab: nothing resolves symbols at run time (the
# executables export none, --no-export-dynamic), and the Swift runtime
# finds its metadata through sections, not symbols.
if [ "${PST_RELEASE_KEEP_SYMBOLS:-0}" != 1 ]; then
    mkdir -p "$shipped/.debug"
    for binary in "$shipped"/*; do
        [ -f "$binary" ] && [ -x "$binary" ] || continue
        # Stripped by an earlier run and not copied anew (--pstrun-only
        # leaves the daemon's copy alone): its debug file is already there.
        sections=$(readelf -S "$binary")
        [[ $sections == *.gnu_debuglink* ]] && continue
        name=$(basename "$binary")
        objcopy --only-keep-debug "$binary" "$shipped/.debug/$name.debug"
        chmod 0644 "$shipped/.debug/$name.debug"
        objcopy --strip-all --remove-section=.gnu_debuglink "$binary"
        (cd "$shipped/.debug" && objcopy --add-gnu-debuglink="$name.debug" "../$name")
    done
fi
echo "$shipped"
