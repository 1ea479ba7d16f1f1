#!/usr/bin/env bash
# Natural photographs for the benchmark's picture-quality table: the sample images
# scikit-image ships, taken from Debian's python3-skimage package (downloaded with
# apt-get and unpacked; nothing is installed). Usage: bench-photos.sh DIR
set -euo pipefail
dir="${1:?usage: bench-photos.sh DIR}"
photos=(motorcycle_left.png coffee.png chelsea.png astronaut.png)
have=1
for p in "${photos[@]}"; do [ -f "$dir/$p" ] || have=0; done
[ "$have" = 1 ] && exit 0

mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
if ! apt-get download python3-skimage >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && SUDO=sudo
  $SUDO apt-get update -qq
  apt-get download python3-skimage >/dev/null
fi
dpkg-deb -x python3-skimage_*.deb unpacked
for p in "${photos[@]}"; do
  cp "unpacked/usr/lib/python3/dist-packages/skimage/data/$p" "$dir/$p"
done
echo "bench-photos: ${photos[*]} in $dir" >&2
