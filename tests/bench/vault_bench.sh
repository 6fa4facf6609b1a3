#!/usr/bin/env bash
# The vault benchmark (not a test): phigate's durable store path against the
# raw disk with 1/4/16 writers, and the object writer's AES-256-GCM against
# `openssl speed` on this machine, side by side in one run.
# usage: tests/bench/vault_bench.sh [DIR] [objects]   (build first: cmake --build --preset release)
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${PHIGATE_BUILD_DIR:-build}
DIR=${1:-/var/tmp/phigate-vault-bench}
N=${2:-1000}
cmake --build "$BUILD" --target phi_vault_bench >/dev/null
"$BUILD/tests/bench/phi_vault_bench" "$DIR" "$N"
# openssl speed, one core, 1 MiB blocks (our segment size), wall-clock (-elapsed:
# by default openssl divides by CPU time, which flatters it on a busy machine).
"$BUILD/tests/bench/phi_vault_bench" "$DIR" 0 | grep 'AES' | tee /tmp/phi_vault_bench_aes.$$
ours=$(awk '{print $(NF-1)}' /tmp/phi_vault_bench_aes.$$)
rm -f /tmp/phi_vault_bench_aes.$$
kbps=$(openssl speed -elapsed -evp aes-256-gcm -bytes 1048576 -seconds 3 2>/dev/null |
       awk '/^AES-256-GCM/ {print $NF}' | tr -d 'k')
theirs=$(awk -v k="$kbps" 'BEGIN{printf "%.0f", k/1000}')
echo "openssl speed -elapsed -evp aes-256-gcm -bytes 1048576: $theirs MB/s"
awk -v a="$ours" -v b="$theirs" 'BEGIN{printf "object writer / openssl = %.2f (target >= 0.7)\n", a/b}'
rm -rf "$DIR"
