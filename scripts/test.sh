#!/usr/bin/env bash
# Runs libgreen's whole test suite: unit tests, the semantic tests natively and under
# LD_PRELOAD, and the integration tests with real programs; then the unit tests again in
# an ASan+UBSan build and in a ThreadSanitizer build. Prints ctest's summary for each. Usage: scripts/test.sh [ctest args]
set -euo pipefail
cd "$(dirname "$0")/.."

jobs=$(nproc)
cmake --build build
# Integration tests open thousands of sockets.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

echo "== test suite (build/)"
ctest --test-dir build --output-on-failure --timeout 300 -j "$jobs" "$@"

echo "== unit tests under AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/)"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DGREEN_SANITIZE=ON \
  -DGREEN_WERROR=ON -DGREEN_BUILD_BENCH=OFF >/dev/null
cmake --build build-asan --target green_tests
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure --timeout 300 -L unit "$@"

echo "== unit tests under ThreadSanitizer (build-tsan/)"
cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DGREEN_TSAN=ON \
  -DGREEN_WERROR=ON -DGREEN_BUILD_BENCH=OFF >/dev/null
cmake --build build-tsan --target green_tests
# Ten thousand fibers need more shadow memory for their histories than TSan maps.
TSAN_OPTIONS=halt_on_error=1 \
  ctest --test-dir build-tsan --output-on-failure --timeout 300 -L unit -E TenThousand "$@"
