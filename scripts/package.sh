#!/usr/bin/env bash
# Builds libgreen's Debian package (CPack's DEB generator) from the build tree and prints its
# path. Install it with `apt install ./libgreen_*.deb` (or dpkg -i), remove it with
# `dpkg -r libgreen`. Usage: scripts/package.sh [BUILD_DIR [OUT_DIR]] (defaults: build, build)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
out=${2:-$build}
[[ -f $build/CMakeCache.txt ]] || cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build "$build" --target green green_man >/dev/null
mkdir -p "$out"
out=$(cd "$out" && pwd)
(cd "$build" && cpack -G DEB -B "$out/_CPack" >"$out/cpack.log" 2>&1) ||
  { cat "$out/cpack.log"; exit 1; }
deb=$(ls -t "$out"/_CPack/libgreen_*.deb | head -1)
mv -f "$deb" "$out/"
rm -rf "$out/_CPack"
echo "$out/$(basename "$deb")"
