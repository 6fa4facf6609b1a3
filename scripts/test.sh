#!/usr/bin/env bash
# Installs dependencies, builds, runs every test with ctest, then the unit tests
# again under AddressSanitizer + UndefinedBehaviorSanitizer. Exit status is the verdict.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

JOBS=$(nproc)
export TCP_NODELAY=1  # DCMTK's tools leave Nagle on otherwise (README, Performance)

echo "== build (release preset)"
cmake --preset release >/dev/null
cmake --build --preset release -j"$JOBS"

echo "== ctest (release preset)"
ctest --preset release -j"$JOBS"

echo "== unit tests under ASan + UBSan (asan preset)"
cmake --preset asan >/dev/null
cmake --build --preset asan -j"$JOBS" --target unit_tests
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --preset asan -j"$JOBS"
