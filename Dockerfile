# The MCU server image: `docker build -t mcu .` (or `docker compose build`).
# See docs/deployment.md for running it with a TURN server.

# ---------------------------------------------------------------------------
# Build stage: Rust 1.95 (edition 2024) on Debian 12 with the GStreamer 1.22 and
# libopus headers the -sys crates link against.
# ---------------------------------------------------------------------------
FROM rust:1.95-bookworm AS builder

RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      pkg-config cmake \
      libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libopus-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src

# 1. Dependencies only: build the locked dependency graph against placeholder
#    sources, so this layer is reused until Cargo.toml or Cargo.lock change. The
#    workspace's other member (crates/mcu-bench, the load generator) only needs its
#    manifest here: the image builds the server alone.
COPY Cargo.toml Cargo.lock ./
COPY crates/mcu-bench/Cargo.toml ./crates/mcu-bench/
RUN mkdir -p src crates/mcu-bench/src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs crates/mcu-bench/src/lib.rs \
 && echo 'fn main() {}' > crates/mcu-bench/src/main.rs \
 && cargo build --release --locked -p mcu \
 && rm -rf src \
      target/release/mcu target/release/mcu.d \
      target/release/deps/mcu-* target/release/deps/libmcu-* \
      target/release/.fingerprint/mcu-*

# 2. The real sources. The binary embeds pipelines/*.pipeline and web/* with
#    include_str!, so both directories must be present for this build.
COPY pipelines ./pipelines
COPY web ./web
COPY src ./src
# COPY keeps the files' original timestamps; touching the crate roots makes sure
# cargo never mistakes them for older than the placeholder build.
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked -p mcu \
 && install -D -m 0755 target/release/mcu /out/mcu

# ---------------------------------------------------------------------------
# Runtime stage: Debian 12 slim with only the runtime libraries and the
# GStreamer plugins the pipelines use:
#   libgstreamer1.0-0            capsfilter, queue, filesink (coreelements)
#   gstreamer1.0-plugins-base    appsrc/appsink, compositor, videotestsrc,
#                                videoconvert, videoscale
#   gstreamer1.0-plugins-good    rtpjitterbuffer, rtpvp8depay, vp8enc/vp8dec,
#                                webmmux/matroskamux
#   libopus0                     audio mixing (linked directly)
#   curl                         the HEALTHCHECK
# ---------------------------------------------------------------------------
FROM debian:bookworm-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libgstreamer1.0-0 libgstreamer-plugins-base1.0-0 \
      gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
      libopus0 ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*

# Unprivileged user with a fixed uid/gid (so volume ownership is predictable).
# Its home is the working directory, where GStreamer keeps its plugin registry
# cache (~/.cache/gstreamer-1.0).
RUN groupadd --system --gid 10001 mcu \
 && useradd --system --uid 10001 --gid mcu --home-dir /var/lib/mcu --no-create-home \
      --shell /usr/sbin/nologin mcu \
 && mkdir -p /var/lib/mcu/recordings \
 && chown -R mcu:mcu /var/lib/mcu

COPY --from=builder /out/mcu /usr/local/bin/mcu

ENV MCU_LISTEN=0.0.0.0:8080 \
    MCU_UDP_PORT=10000 \
    MCU_RECORDINGS_DIR=/var/lib/mcu/recordings \
    RUST_LOG=info,webrtc=error,webrtc_ice=error,webrtc_dtls=error,webrtc_srtp=error,warp=error

USER mcu:mcu
WORKDIR /var/lib/mcu

# 8080/tcp: HTTP API, web client, /healthz, /metrics.
# 10000/udp: all WebRTC media (one port, ICE UDP mux); it must be published as the
# same port number, and MCU_PUBLIC_IP set to the address clients reach it on.
EXPOSE 8080/tcp 10000/udp

HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD curl -fsS -o /dev/null http://127.0.0.1:8080/healthz || exit 1

# SIGTERM (docker stop) finalises recordings and closes peers within 10 s.
STOPSIGNAL SIGTERM
ENTRYPOINT ["mcu"]
CMD ["serve"]
