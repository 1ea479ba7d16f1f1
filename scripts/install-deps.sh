#!/usr/bin/env bash
# Installs the system packages the MCU needs to build, run and test, when missing.
# Debian/Ubuntu only; needs root (or sudo) for apt-get. Safe to run repeatedly:
# it does nothing when every package is already installed.
set -euo pipefail

BUILD_PKGS=(
  pkg-config cmake build-essential
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev libopus-dev
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav
)
EXTRA_PKGS=()
for group in "$@"; do
  case "$group" in
    build) ;;
    test) EXTRA_PKGS+=(ffmpeg gstreamer1.0-plugins-base-apps gstreamer1.0-nice python3-yaml iproute2 nftables nginx libnginx-mod-rtmp redis-server) ;;
    browser) EXTRA_PKGS+=(chromium nodejs npm) ;;
    turn) EXTRA_PKGS+=(coturn) ;;
    bench) EXTRA_PKGS+=(janus linux-perf) ;;
    *) echo "install-deps: unknown group '$group'" >&2; exit 2 ;;
  esac
done

missing=()
for pkg in "${BUILD_PKGS[@]}" "${EXTRA_PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
# node/npm may come from elsewhere than Debian (e.g. nodesource); accept any working ones.
if command -v node >/dev/null && command -v npm >/dev/null; then
  filtered=()
  for pkg in "${missing[@]}"; do
    [[ "$pkg" == nodejs || "$pkg" == npm ]] || filtered+=("$pkg")
  done
  missing=("${filtered[@]}")
fi

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "install-deps: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO=sudo; else
    echo "install-deps: missing packages (${missing[*]}) and not root; install them first" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
