# The two commands the README starts with, and a few more.
.PHONY: demo test test-kvmd test-shipped-pstrun crash-test docs bench bench-smoke build release clean \
	install-files install install-beside-kvmd install-debug uninstall uninstall-beside-kvmd package systemd-check

# The whole thing end to end on a demo PST image (root).
demo:
	bash Scripts/demo.sh

# Every test, including the real loop-device and mount tests (root).
test:
	bash Scripts/test.sh

# swift-pst against the real kvmd 4.197 from ../shared/reference, both ways
# (root; CPython >= 3.13 through pyenv, a venv from PyPI, cached in /tmp).
# See Documentation/Compatibility.md.
test-kvmd:
	bash Scripts/test-kvmd.sh

# Power cuts replayed: a real workload recorded on a disk that logs every
# write and flush, then rebuilt and checked at every flush and client return
# (root; about 2 minutes; PST_CRASH_SEED, PST_CRASH_POINTS, PST_CRASH_BIN).
# See Documentation/Reliability.md, "Power cuts".
crash-test:
	bash Scripts/crash-test.sh

# The DocC documentation of the PersistentStorage library; a broken link fails it.
docs:
	bash Scripts/docs.sh

# Benchmarks against the kernel's own remount and spawn times (root; minutes,
# release build); bench-smoke runs every figure with small counts in seconds.
# See Documentation/Benchmarks.md.
bench:
	bash Scripts/bench.sh

bench-smoke:
	bash Scripts/bench.sh --smoke

build:
	bash Scripts/install-deps.sh
	swift build

# The executables as shipped (Documentation/Deploying.md), in .build/shipped:
# release, with the Swift runtime linked in statically, by lld with packed
# relative relocations, without Swift's -export-dynamic, and kvmd-pstrun
# linked fully statically (Scripts/build-release.sh says why).
release:
	bash Scripts/build-release.sh

# The tests that run kvmd-pstrun, once more against the fully static one
# `make release` ships (CI runs this besides `make test`).
test-shipped-pstrun:
	PST_KVMD_PSTRUN="$$(bash Scripts/build-release.sh --pstrun-only | tail -n 1)/kvmd-pstrun" \
	PST_TEST_FILTER='PersistentStorageRunTests|AuthorizationTests|ExamplesTests|RealDaemonLibraryTests' \
	bash Scripts/test.sh

# --- Installing (Documentation/Deploying.md) ---------------------------------
#
#   make release install-files          # as the building user: binaries, man pages, completions
#   make install PREFIX=/usr DESTDIR=/tmp/stage   # then, as root or under fakeroot
#
# `install` lays swift-pst out on its own: the executables in BINDIR, the unit
# kvmd-pst.service (kvmd's model: the kvmd-pst user, sudo and the helper),
# sysusers, tmpfiles and sudoers files, man pages and completions. On a PiKVM,
# where kvmd's package owns /usr/bin/kvmd-pst and kvmd-pst.service, the
# PKGBUILD uses `install-beside-kvmd` instead. Neither builds anything.
PREFIX ?= /usr/local
DESTDIR ?=
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib
DATADIR ?= $(PREFIX)/share
MANDIR ?= $(DATADIR)/man
UNITDIR ?= $(LIBDIR)/systemd/system
# sudo reads only /etc/sudoers.d, whatever the prefix.
SUDOERSDIR ?= /etc/sudoers.d
SHIPPED ?= .build/shipped
EXECUTABLES := kvmd-pst kvmd-pstrun kvmd-helper-pst-remount
MANUALS := man8/kvmd-pst.8 man8/kvmd-helper-pst-remount.8 man1/kvmd-pstrun.1
substitute = sed -e 's|@BINDIR@|$(BINDIR)|g'

# Man pages (generate-manual; kvmd-pstrun's is written by hand) and shell
# completions, made from the built executables into SHIPPED.
install-files:
	bash Scripts/build-install-files.sh $(SHIPPED)

define check-shipped
	@for file in $(EXECUTABLES) $(MANUALS:%=man/%) completions/bash/kvmd-pst; do \
		test -e $(SHIPPED)/$$file || { echo "$(SHIPPED)/$$file is missing: run 'make release install-files' first" >&2; exit 1; }; done
endef

define install-common
	install -d $(DESTDIR)$(BINDIR)
	install -m 0755 $(EXECUTABLES:%=$(SHIPPED)/%) $(DESTDIR)$(BINDIR)/
	install -d $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man8
	for page in $(MANUALS); do install -m 0644 $(SHIPPED)/man/$$page $(DESTDIR)$(MANDIR)/$$page; done
	install -d -m 0750 $(DESTDIR)$(SUDOERSDIR)
	$(substitute) packaging/kvmd-pst.sudoers > $(DESTDIR)$(SUDOERSDIR)/swift-pst
	chmod 0440 $(DESTDIR)$(SUDOERSDIR)/swift-pst
endef

install:
	$(check-shipped)
	$(install-common)
	install -d $(DESTDIR)$(UNITDIR) $(DESTDIR)$(DATADIR)/swift-pst
	$(substitute) packaging/kvmd-pst.service > $(DESTDIR)$(UNITDIR)/kvmd-pst.service
	for unit in kvmd-pst-root kvmd-pst-capabilities; do \
		$(substitute) packaging/$$unit.service > $(DESTDIR)$(DATADIR)/swift-pst/$$unit.service; done
	chmod 0644 $(DESTDIR)$(UNITDIR)/kvmd-pst.service $(DESTDIR)$(DATADIR)/swift-pst/*.service
	install -D -m 0644 packaging/swift-pst.sysusers $(DESTDIR)$(LIBDIR)/sysusers.d/swift-pst.conf
	install -D -m 0644 packaging/swift-pst.tmpfiles $(DESTDIR)$(LIBDIR)/tmpfiles.d/swift-pst.conf
	install -D -m 0644 $(SHIPPED)/completions/bash/kvmd-pst $(DESTDIR)$(DATADIR)/bash-completion/completions/kvmd-pst
	install -D -m 0644 $(SHIPPED)/completions/bash/kvmd-helper-pst-remount $(DESTDIR)$(DATADIR)/bash-completion/completions/kvmd-helper-pst-remount
	install -D -m 0644 packaging/kvmd-pstrun.bash-completion $(DESTDIR)$(DATADIR)/bash-completion/completions/kvmd-pstrun
	install -D -m 0644 $(SHIPPED)/completions/zsh/_kvmd-pst $(DESTDIR)$(DATADIR)/zsh/site-functions/_kvmd-pst
	install -D -m 0644 $(SHIPPED)/completions/zsh/_kvmd-helper-pst-remount $(DESTDIR)$(DATADIR)/zsh/site-functions/_kvmd-helper-pst-remount
	install -D -m 0644 $(SHIPPED)/completions/fish/kvmd-pst.fish $(DESTDIR)$(DATADIR)/fish/vendor_completions.d/kvmd-pst.fish
	install -D -m 0644 $(SHIPPED)/completions/fish/kvmd-helper-pst-remount.fish $(DESTDIR)$(DATADIR)/fish/vendor_completions.d/kvmd-helper-pst-remount.fish

# Beside kvmd (PiKVM OS): the executables out of PATH in LIBDIR/swift-pst,
# where they replace none of kvmd's files; a drop-in that makes kvmd's own
# kvmd-pst.service run them; our sudoers line. No unit, sysusers or tmpfiles
# (kvmd's are there), no completions (they would complete our options for
# kvmd's kvmd-pst and kvmd-pstrun in /usr/bin).
install-beside-kvmd: BINDIR = $(LIBDIR)/swift-pst
install-beside-kvmd:
	$(check-shipped)
	$(install-common)
	install -d $(DESTDIR)$(UNITDIR)/kvmd-pst.service.d
	$(substitute) packaging/kvmd-pst-beside-kvmd.conf > $(DESTDIR)$(UNITDIR)/kvmd-pst.service.d/swift-pst.conf
	chmod 0644 $(DESTDIR)$(UNITDIR)/kvmd-pst.service.d/swift-pst.conf

# The debug information Scripts/build-release.sh split off, where gdb and
# coredumpctl look for it (/usr/lib/debug + the binary's path).
install-debug:
	for name in $(EXECUTABLES); do \
		install -D -m 0644 $(SHIPPED)/.debug/$$name.debug $(DESTDIR)/usr/lib/debug$(BINDIR)/$$name.debug; done

# What `install` installed (not for a PiKVM, where PREFIX=/usr names kvmd's
# own files: there it is `uninstall-beside-kvmd`, or pacman -R).
uninstall:
	rm -f $(EXECUTABLES:%=$(DESTDIR)$(BINDIR)/%) $(MANUALS:%=$(DESTDIR)$(MANDIR)/%)
	rm -f $(DESTDIR)$(UNITDIR)/kvmd-pst.service $(DESTDIR)$(SUDOERSDIR)/swift-pst
	rm -rf $(DESTDIR)$(DATADIR)/swift-pst
	rm -f $(DESTDIR)$(LIBDIR)/sysusers.d/swift-pst.conf $(DESTDIR)$(LIBDIR)/tmpfiles.d/swift-pst.conf
	rm -f $(DESTDIR)$(DATADIR)/bash-completion/completions/kvmd-pst* $(DESTDIR)$(DATADIR)/bash-completion/completions/kvmd-helper-pst-remount
	rm -f $(DESTDIR)$(DATADIR)/zsh/site-functions/_kvmd-pst $(DESTDIR)$(DATADIR)/zsh/site-functions/_kvmd-helper-pst-remount
	rm -f $(DESTDIR)$(DATADIR)/fish/vendor_completions.d/kvmd-pst.fish $(DESTDIR)$(DATADIR)/fish/vendor_completions.d/kvmd-helper-pst-remount.fish

uninstall-beside-kvmd: BINDIR = $(LIBDIR)/swift-pst
uninstall-beside-kvmd:
	rm -f $(EXECUTABLES:%=$(DESTDIR)$(BINDIR)/%) $(MANUALS:%=$(DESTDIR)$(MANDIR)/%)
	rm -f $(DESTDIR)$(UNITDIR)/kvmd-pst.service.d/swift-pst.conf $(DESTDIR)$(SUDOERSDIR)/swift-pst
	-rmdir $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR)/kvmd-pst.service.d 2>/dev/null

# The pacman package for PiKVM OS (packaging/PKGBUILD), built here with
# makepkg for x86_64, its files listed and its executables run (root).
package:
	bash Scripts/build-package.sh

# The units under a real systemd, PID 1 of a systemd-nspawn container (root;
# Documentation/Deploying.md).
systemd-check:
	bash Scripts/systemd-check.sh

clean:
	swift package clean
