#!/usr/bin/env bash
# Makes what `make install` installs besides the executables, from the
# executables Scripts/build-release.sh left in SHIPPED (default .build/shipped):
#
#   SHIPPED/man/man8/kvmd-pst.8, man8/kvmd-helper-pst-remount.8
#       swift-argument-parser's generate-manual (the tool behind its
#       generate-manual plugin, built here as a product: the plugin would
#       build every product of the package first, in debug), run on the
#       shipped executables. Section 8: both are run by the system or by root.
#   SHIPPED/man/man1/kvmd-pstrun.1
#       packaging/kvmd-pstrun.1, written by hand: kvmd-pstrun parses its own
#       arguments, so there is no ArgumentParser description to generate from.
#   SHIPPED/completions/{bash,zsh,fish}/...
#       `--generate-completion-script` of the two ArgumentParser executables.
#       kvmd-pstrun's bash completion is packaging/kvmd-pstrun.bash-completion.
#
# The pages are dated SOURCE_DATE_EPOCH (makepkg sets it), else the last
# commit, so that two builds of one commit make the same files.
set -euo pipefail
cd "$(dirname "$0")/.."
shipped=${1:-.build/shipped}
for executable in kvmd-pst kvmd-helper-pst-remount kvmd-pstrun; do
    [ -x "$shipped/$executable" ] || { echo "$shipped/$executable is missing: run Scripts/build-release.sh first" >&2; exit 1; }
done

swift build --product generate-manual >&2
generate_manual="$(swift build --show-bin-path)/generate-manual"
if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
    date=$(date -u -d "@$SOURCE_DATE_EPOCH" +%F)
else
    date=$(git log -1 --format=%cs 2>/dev/null || date -u +%F)
fi

rm -rf "$shipped/man" "$shipped/completions"
mkdir -p "$shipped/man/man1" "$shipped/man/man8" "$shipped/completions/bash" "$shipped/completions/zsh" "$shipped/completions/fish"
for executable in kvmd-pst kvmd-helper-pst-remount; do
    "$generate_manual" "$shipped/$executable" --section 8 --date "$date" --output-directory "$shipped/man/man8"
    # generate-manual 1.8.2 documents ArgumentParser's implicit `help`
    # subcommand of a command that has no other: "subcommand" in the
    # synopsis, and a "help" entry with its own list. Neither executable
    # has subcommands (`kvmd-pst help` is an unknown argument), so both go.
    page="$shipped/man/man8/$executable.8"
    awk '/^\.Ar subcommand$/ { next }
         /^\.It Em help$/ { skipping = 1; next }
         skipping && /^\.El$/ { skipping = 0; next }
         !skipping { print }' "$page" > "$page.tmp"
    mv "$page.tmp" "$page"
    "$shipped/$executable" --generate-completion-script bash > "$shipped/completions/bash/$executable"
    "$shipped/$executable" --generate-completion-script zsh > "$shipped/completions/zsh/_$executable"
    "$shipped/$executable" --generate-completion-script fish > "$shipped/completions/fish/$executable.fish"
done
cp packaging/kvmd-pstrun.1 "$shipped/man/man1/kvmd-pstrun.1"
ls "$shipped/man/man8/kvmd-pst.8" "$shipped/man/man8/kvmd-helper-pst-remount.8" >/dev/null
