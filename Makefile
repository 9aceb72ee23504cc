# The two commands the README starts with, and a few more.
.PHONY: demo test build clean

# The whole thing end to end on a demo PST image (root).
demo:
	bash Scripts/demo.sh

# Every test, including the real loop-device and mount tests (root).
test:
	bash Scripts/test.sh

build:
	bash Scripts/install-deps.sh
	swift build

clean:
	swift package clean
