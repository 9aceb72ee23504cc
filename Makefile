# The two commands the README starts with, and a few more.
.PHONY: demo test docs bench bench-smoke build release clean

# The whole thing end to end on a demo PST image (root).
demo:
	bash Scripts/demo.sh

# Every test, including the real loop-device and mount tests (root).
test:
	bash Scripts/test.sh

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

# The executables as shipped (Documentation/Deploying.md): release, with the
# Swift runtime linked in statically, which roughly halves kvmd-pstrun's
# start-up time and cuts the daemon's idle RSS; linked by lld with packed
# relative relocations (Scripts/release-toolset.json; glibc 2.36 or later);
# and without Swift's -export-dynamic, which put every symbol in the dynamic
# symbol table (nothing looks them up there). The last two save the daemon
# 4 MiB of RSS.
release:
	bash Scripts/install-deps.sh
	swift build -c release --static-swift-stdlib --toolset Scripts/release-toolset.json -Xlinker --no-export-dynamic

clean:
	swift package clean
