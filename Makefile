# Quick start (Debian/Ubuntu): `make run` serves on 0.0.0.0:8080, `make test` runs
# every check. Both install missing system packages first (apt-get, as root or sudo).

CARGO ?= cargo
export RUST_LOG ?= warn,warp=error

.PHONY: deps test-deps run build test lint unit fmt bench stress-connect

deps:
	@bash scripts/install-deps.sh

# Everything the tests use: ffmpeg/gst-discoverer (recordings), Chromium and
# playwright-core (browser end-to-end), coturn (TURN relay test), nginx with the RTMP
# module (live streaming test).
test-deps: deps
	@bash scripts/install-deps.sh test browser turn
	@test -d tests/browser/node_modules/playwright-core || npm ci --prefix tests/browser --no-audit --no-fund

build: deps
	$(CARGO) build --release

run: deps
	$(CARGO) run --release -- serve

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Integration tests start real servers and real WebRTC peers; one at a time keeps
# them real-time on a 2-core machine.
test: test-deps lint
	$(CARGO) test --workspace --all-targets -- --test-threads=1

fmt:
	$(CARGO) fmt --all

# Benchmarks: installs janus and perf, builds, runs every measurement against servers
# it starts itself (~25 min on 2 cores), prints the figures and rewrites
# BENCHMARKS.md and docs/bench/ from them.
bench: deps
	@bash scripts/install-deps.sh bench
	$(CARGO) build --release --workspace
	RUST_LOG=error ./target/release/mcu-bench all

# Join reliability: 1000 joins one after another and 200 with 50 at once, each with
# and without a CPU hog, against a server it starts; prints the table and updates
# its section of BENCHMARKS.md (the other figures are kept).
stress-connect: deps
	$(CARGO) build --release --workspace
	RUST_LOG=error ./target/release/mcu-bench all --only connect
