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
# openssl speed reports 1000s of bytes/s for 16 KiB blocks; one core, like the encoder above.
line=$(openssl speed -evp aes-256-gcm -seconds 3 -bytes 16384 2>/dev/null | grep -i 'aes-256-gcm' | tail -1)
kbps=$(echo "$line" | awk '{print $NF}' | tr -d 'k')
echo "openssl speed -evp aes-256-gcm (16 KiB blocks): $(awk -v k="$kbps" 'BEGIN{printf "%.0f", k/1000}') MB/s"
rm -rf "$DIR"
