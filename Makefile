# Quick start (Debian/Ubuntu): `make run` serves on 0.0.0.0:8080, `make test` runs
# every check. Both install missing system packages first (apt-get, as root or sudo).

CARGO ?= cargo
export RUST_LOG ?= warn,warp=error

.PHONY: deps test-deps run build test lint unit fmt bench stress-connect soak fuzz

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
	$(CARGO) clippy --workspace --all-targets --features mcu/fault-injection -- -D warnings

# Integration tests start real servers and real WebRTC peers; one at a time keeps
# them real-time on a 2-core machine. The test build has the fault route
# (tests/room_panic.rs); `make build`/`make run` never do.
test: test-deps lint
	$(CARGO) test --workspace --all-targets --features mcu/fault-injection -- --test-threads=1

fmt:
	$(CARGO) fmt --all

# Benchmarks: installs janus and perf, builds, runs every measurement against servers
# it starts itself (~25 min on 2 cores), prints the figures and rewrites
# BENCHMARKS.md and docs/bench/ from them.
bench: deps
	@bash scripts/install-deps.sh bench
	@bash scripts/bench-photos.sh target/bench-media/photos
	$(CARGO) build --release --workspace
	RUST_LOG=error ./target/release/mcu-bench all

# Join reliability: 1000 joins one after another and 200 with 50 at once, each with
# and without a CPU hog, against a server it starts; prints the table and updates
# its section of BENCHMARKS.md (the other figures are kept).
stress-connect: deps
	$(CARGO) build --release --workspace
	RUST_LOG=error ./target/release/mcu-bench all --only connect

# Fuzzing: every parser of outside input (SDP offers, the API's JSON bodies, the audio
# jitter buffer, keyframe payloads, tokens) for FUZZ_SECONDS each (default 300), on
# nightly with cargo-fuzz (both installed when missing); FUZZ_TARGETS picks some.
# Prints one summary line per target; crashes are saved under fuzz/artifacts/.
FUZZ_SECONDS ?= 300
fuzz: deps
	FUZZ_SECONDS="$(FUZZ_SECONDS)" FUZZ_TARGETS="$(FUZZ_TARGETS)" CARGO="$(CARGO)" bash scripts/fuzz.sh

# Long run: rooms opening and closing, participants joining and leaving every second,
# recordings started and stopped, for SOAK_SECS (the test command runs 120); prints the
# peak resident memory of each 12 s period and fails on growth, leftover gauges,
# file descriptors or threads.
SOAK_SECS ?= 1800
soak: test-deps
	MCU_SOAK_SECS=$(SOAK_SECS) $(CARGO) test --test soak -- --nocapture
