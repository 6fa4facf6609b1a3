#!/usr/bin/env bash
# Ingest benchmark (issue 4): phigated vs storescp vs Orthanc, storescu over 1
# and 4 associations, plain and TLS. Not a ctest test: run by hand.
#   tests/bench/ingest.sh BUILD_DIR [ingest_bench.py options]
# e.g. tests/bench/ingest.sh build-release
#      tests/bench/ingest.sh build-release --targets phigated,storescp --assoc 4 --subsets ct
# Needs: dcmtk (storescu, storescp, echoscu), orthanc, python3.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="${1:?usage: ingest.sh BUILD_DIR [options]}"
shift
exec python3 "$here/ingest_bench.py" --phigated "$build/daemon/phigated" \
  --dev-pki "$here/../../scripts/dev-pki.sh" "$@"
