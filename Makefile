# The two commands the README starts with, and a few more.
.PHONY: demo test test-kvmd test-shipped-pstrun docs bench bench-smoke build release clean

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

clean:
	swift package clean
