#!/usr/bin/env bash
# `make package`: builds the pacman package of packaging/PKGBUILD with
# makepkg, as PiKVM OS would, for this machine's architecture (x86_64 here;
# aarch64 and armv7h need a Swift toolchain for them, which this machine
# lacks). Then checks what a PiKVM owner would get: the files the package
# holds, its metadata, and that the executables it installs run and print
# the version the PKGBUILD names. Root (it runs makepkg as `nobody`, as
# makepkg refuses root). The packages end up in PST_PACKAGE_OUT (default
# .build/package), with the executables, man pages and completions makepkg
# built in PST_PACKAGE_OUT/shipped.
#
# The source tarball is the working tree's files known to git (tracked and
# untracked-but-not-ignored), so uncommitted changes are in it.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "make package needs root (makepkg runs as nobody)" >&2; exit 1; }
started=$(date +%s)

missing=()
command -v makepkg >/dev/null || missing+=(makepkg)
command -v pacman >/dev/null || missing+=(pacman-package-manager)
command -v bsdtar >/dev/null || missing+=(libarchive-tools)
command -v fakeroot >/dev/null || missing+=(fakeroot)
command -v objcopy >/dev/null || missing+=(binutils)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
bash Scripts/install-deps.sh >&2

pkgver=$(sed -n 's/^pkgver=//p' packaging/PKGBUILD)
pkgrel=$(sed -n 's/^pkgrel=//p' packaging/PKGBUILD)
arch=$(uname -m)
out=${PST_PACKAGE_OUT:-.build/package}

work=$(mktemp -d /tmp/swift-pst-package.XXXXXX)
cleanup() { rm -rf "$work"; }
trap cleanup EXIT

# The source tarball, as a release's would be.
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' file; do
    [ -e "$file" ] && printf '%s\0' "$file"
done | tar --null -T - --transform "s|^|swift-pst-$pkgver/|" -czf "$work/swift-pst-$pkgver.tar.gz"
cp packaging/PKGBUILD "$work/"
mkdir "$work/home"
# SwiftPM clones the dependencies with git; where they come from a local
# mirror owned by root (this machine's /opt/swift-packages, through git's
# url.insteadOf), git refuses it to another user as "dubious ownership".
printf '[safe]\n\tdirectory = *\n' > "$work/home/.gitconfig"
chown -R nobody:nogroup "$work"

echo "makepkg in $work (as nobody) ..." >&2
# PKGEXT as Arch Linux (ARM) makes packages; Debian's makepkg.conf says .pkg.tar.gz.
(cd "$work" && setpriv --reuid nobody --regid nogroup --clear-groups \
    env HOME="$work/home" PKGEXT=.pkg.tar.zst makepkg --nodeps --force --noconfirm) >&2

package="$work/swift-pst-$pkgver-$pkgrel-$arch.pkg.tar.zst"
debug_package="$work/swift-pst-debug-$pkgver-$pkgrel-$arch.pkg.tar.zst"
ls "$package" "$debug_package" >/dev/null

fail() { echo "make package: $*" >&2; exit 1; }
pacman -Qip "$package"
files=$(pacman -Qlp "$package" | awk '{print $2}')
echo "$files"
for file in /usr/lib/swift-pst/kvmd-pst /usr/lib/swift-pst/kvmd-pstrun /usr/lib/swift-pst/kvmd-helper-pst-remount \
    /usr/lib/systemd/system/kvmd-pst.service.d/swift-pst.conf /etc/sudoers.d/swift-pst \
    /usr/share/man/man8/kvmd-pst.8.gz /usr/share/man/man8/kvmd-helper-pst-remount.8.gz /usr/share/man/man1/kvmd-pstrun.1.gz; do
    grep -qx "$file" <<<"$files" || fail "the package lacks $file"
done
# Nothing of kvmd's: pacman would refuse the package on a PiKVM.
for file in /usr/bin/kvmd-pst /usr/bin/kvmd-pstrun /usr/bin/kvmd-helper-pst-remount /usr/lib/systemd/system/kvmd-pst.service; do
    ! grep -qx "$file" <<<"$files" || fail "the package holds kvmd's $file"
done
for page in kvmd-pst kvmd-helper-pst-remount; do
    bsdtar -xOf "$package" "usr/share/man/man8/$page.8.gz" | gzip -dc > "$work/$page.8"
    grep -q "^\.Nm $page\$" "$work/$page.8" || fail "the man page of $page does not name it"
    grep -q '^\.Op Fl -run$' "$work/$page.8" || [ "$page" != kvmd-pst ] || fail "kvmd-pst's man page lacks --run"
    ! grep -q 'subcommand' "$work/$page.8" || fail "$page's man page names a subcommand it does not have"
done
debug_files=$(pacman -Qlp "$debug_package" | awk '{print $2}')
grep -qx /usr/lib/debug/usr/lib/swift-pst/kvmd-pst.debug <<<"$debug_files" || fail "the debug package lacks kvmd-pst.debug"

# Installed into a staging root by pacman itself, then run.
root="$work/root"
mkdir -p "$root/var/lib/pacman"
# -dd: no dependency checks at all (kvmd, glibc, ... are no packages here).
pacman --root "$root" --dbpath "$root/var/lib/pacman" -U --noconfirm --nodeps --nodeps --noscriptlet "$package" >/dev/null
for executable in kvmd-pst kvmd-pstrun kvmd-helper-pst-remount; do
    version=$("$root/usr/lib/swift-pst/$executable" --version)
    [ "$version" = "$pkgver" ] || fail "$executable --version says '$version', the PKGBUILD $pkgver"
    sections=$(readelf -S "$root/usr/lib/swift-pst/$executable")
    [[ $sections == *.gnu_debuglink* ]] || fail "$executable names no debug file"
    [[ $sections != *.debug_info* ]] || fail "$executable is not stripped"
    echo "$executable --version: $version ($(stat -c %s "$root/usr/lib/swift-pst/$executable") bytes)"
done
[ "$(stat -c %a "$root/etc/sudoers.d/swift-pst")" = 440 ] || fail "the sudoers file is not mode 0440"
visudo -cf "$root/etc/sudoers.d/swift-pst" >/dev/null || fail "visudo rejects the sudoers file"
grep -q '^ExecStart=/usr/lib/swift-pst/kvmd-pst --run' "$root/usr/lib/systemd/system/kvmd-pst.service.d/swift-pst.conf" \
    || fail "the drop-in does not start /usr/lib/swift-pst/kvmd-pst --run"

mkdir -p "$out"
cp "$package" "$debug_package" "$out/"
# What makepkg built, for `PST_SHIPPED=.build/package/shipped make
# systemd-check` (CI), so that one release build serves both.
rm -rf "$out/shipped"
cp -a "$work/src/swift-pst-$pkgver/.build/shipped" "$out/shipped"
chown -R 0:0 "$out/shipped"
echo "packages in $out ($(( $(date +%s) - started )) s)"
