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
# CPack 3.25 always adds postinst and postrm scripts that run ldconfig for a library under
# /usr/lib. libgreen.so needs none (no SONAME; it is preloaded by path and linked by nothing),
# and a postrm makes dpkg keep the package in state "rc" after dpkg -r, for a later purge:
# the package is rebuilt without them, so that dpkg -r leaves nothing.
rm -rf "$out/_raw"
dpkg-deb -R "$deb" "$out/_raw"
rm -f "$out/_raw/DEBIAN/postinst" "$out/_raw/DEBIAN/postrm"
dpkg-deb --root-owner-group -Zxz -b "$out/_raw" "$out/$(basename "$deb")" >/dev/null
rm -rf "$out/_CPack" "$out/_raw"
echo "$out/$(basename "$deb")"
