#!/bin/sh
# Runs hl7_bench on a fresh dev dir. Usage: tests/bench/hl7_bench.sh BUILD_DIR [seconds_per_run [only]]
# (only: e.g. plain:8 runs one transport/connection count)
# (build first: cmake --build BUILD_DIR --target phigated phi_hl7_bench)
set -eu
build=${1:?build dir}
secs=${2:-5}
src=$(cd "$(dirname "$0")/../.." && pwd)
dir=$(mktemp -d /tmp/hl7bench.XXXXXX)
trap 'rm -rf "$dir"' EXIT
bash "$src/scripts/dev-pki.sh" "$dir/pki" >/dev/null
head -c 32 /dev/urandom > "$dir/kek"; chmod 0400 "$dir/kek"
mkdir -m 0700 "$dir/storage"
"$build/daemon/phigated" --print-dev-config "$dir" | sed 's/level: debug/level: warning/' > "$dir/phigate.yaml"
exec_bench=${HL7_BENCH_WRAP:-}
$exec_bench "$build/tests/bench/phi_hl7_bench" "$dir" "$secs" ${3:+"$3"}
