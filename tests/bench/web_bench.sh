#!/usr/bin/env bash
# The DICOMweb benchmark (not a test). One run, side by side:
#   phigated over HTTPS (TLS 1.3, client certificate) and Orthanc (Debian)
#   with its DICOMweb plugin over PLAIN HTTP (Debian 12's Orthanc crashes with
#   its own HTTPS on), on the same 400-slice CT study.
# phigated's vault holds N synthetic studies (index entries) + the CT study.
# Figures: QIDO /studies?PatientName=SMI* and ?PatientID= p50/p99 with 16
# clients; the 400-instance list; the study metadata; WADO-RS whole study MB/s
# and phigated's peak RSS while streaming it.
# usage: tests/bench/web_bench.sh [N_STUDIES=100000] [CT_SLICES=400]
#        (build first: phigated phi_web_bench_load in $PHIGATE_BUILD_DIR, default build)
#        WEB_BENCH_DIR=DIR keeps the loaded vault in DIR and reuses it on the next
#        run with the same N and slices (loading 100k studies takes minutes).
#        WEB_BENCH_WILDCARD_N=16 shortens the wildcard QIDO run (for builds
#        without the study cache, where one request takes minutes at 100k).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BUILD=${PHIGATE_BUILD_DIR:-build}
N=${1:-100000}
SLICES=${2:-400}
KEEP=${WEB_BENCH_DIR:-}
if [ -n "$KEEP" ]; then
  W=$KEEP
  mkdir -p "$W"
  rm -rf "$W/orthanc-db"
else
  W=$(mktemp -d /var/tmp/phigate-web-bench.XXXXXX)
fi
cleanup() {
  [ -n "${PHI_PID:-}" ] && kill "$PHI_PID" 2>/dev/null || true
  [ -n "${ORTHANC_PID:-}" ] && kill "$ORTHANC_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  if [ -z "$KEEP" ]; then rm -rf "$W"; else rm -rf "$W/orthanc-db"; fi
}
trap cleanup EXIT
cmake --build "$BUILD" --target phigated phi_web_bench_load >/dev/null

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
REUSE=
if [ -n "$KEEP" ] && [ "$(cat "$W/loaded.params" 2>/dev/null)" = "$N $SLICES" ]; then REUSE=1; fi
if [ -z "$REUSE" ]; then
  rm -rf "$W/pki" "$W/kek" "$W/storage" "$W/ct" "$W/loaded" "$W/loaded.params"
  bash scripts/dev-pki.sh "$W/pki" >/dev/null
  head -c 32 /dev/urandom >"$W/kek"; chmod 0400 "$W/kek"
  mkdir -m 0700 "$W/storage" "$W/ct"
fi
WEB=$(free_port)
"$BUILD/daemon/phigated" --print-dev-config "$W" |
  sed -e "s/\bport: 8443\b/port: $WEB/" -e "s/\bport: 2762\b/port: $(free_port)/" \
      -e "s/\bport: 11112\b/port: $(free_port)/" -e "s/\bport: 2576\b/port: $(free_port)/" \
      -e "s/\bport: 2575\b/port: $(free_port)/" -e "s/level: debug/level: notice/" \
      >"$W/phigate.yaml"
sed -i "s|/run/phigate/admin.sock|$W/admin.sock|" "$W/phigate.yaml"

if [ -n "$REUSE" ]; then
  LOAD=$(cat "$W/loaded")
  echo "reusing the vault in $W: $LOAD"
else
  echo "loading $N synthetic studies + a $SLICES-slice CT study into the vault..."
  t0=$(date +%s)
  # Start once so that the storage root is initialised, then stop and load.
  "$BUILD/daemon/phigated" --config "$W/phigate.yaml" 2>"$W/phigated.log" & PHI_PID=$!
  for _ in $(seq 100); do curl -sk -o /dev/null "https://127.0.0.1:$WEB/" 2>/dev/null && break; sleep 0.1; done
  kill "$PHI_PID"; wait "$PHI_PID" || true; PHI_PID=
  LOAD=$("$BUILD/tests/bench/phi_web_bench_load" "$W/phigate.yaml" "$N" "$SLICES" "$W/ct" 2>"$W/load.log")
  echo "loaded in $(( $(date +%s) - t0 )) s: $LOAD"
  echo "$LOAD" >"$W/loaded"
  echo "$N $SLICES" >"$W/loaded.params"
fi
eval "$(echo "$LOAD" | tr ' ' '\n' | grep -E '^(ct_study|ct_series|pid)=')"

LOG0=$(wc -l <"$W/phigated.log" 2>/dev/null || echo 0)
"$BUILD/daemon/phigated" --config "$W/phigate.yaml" 2>>"$W/phigated.log" & PHI_PID=$!
t0=$(date +%s.%N)
for _ in $(seq 300); do
  curl -s -o /dev/null --cacert "$W/pki/ca.pem" --cert "$W/pki/clinician.pem" \
    --key "$W/pki/clinician.key" "https://localhost:$WEB/healthz" && break
  sleep 0.1
done
# The study cache (wildcard queries) is built in the background at start;
# queries are served meanwhile, by decrypting rows. Wait for it, and say how long.
since_start() { tail -n +"$((LOG0 + 1))" "$W/phigated.log"; }
if grep -q "study cache ready" "$BUILD/daemon/phigated"; then  # (older builds have none)
  for _ in $(seq 3000); do since_start | grep -q "study cache ready" && break; sleep 0.1; done
  echo "phigated study cache: $(since_start | grep -o 'study cache ready.*' | tail -1)" \
    "(ready $(echo "$(date +%s.%N) - $t0" | bc | cut -c1-5) s after start)"
fi

# Orthanc + DICOMweb plugin, plain HTTP, same CT study.
OHTTP=$(free_port)
mkdir -p "$W/orthanc-db"
cat >"$W/orthanc.json" <<JSON
{ "Name": "bench", "StorageDirectory": "$W/orthanc-db", "IndexDirectory": "$W/orthanc-db",
  "HttpPort": $OHTTP, "DicomPort": $(free_port), "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false, "Plugins": ["/usr/share/orthanc/plugins/libOrthancDicomWeb.so"],
  "DicomWeb": { "Enable": true, "Root": "/dicom-web/", "StudiesMetadata": "Full",
                "SeriesMetadata": "Full" } }
JSON
Orthanc "$W/orthanc.json" >"$W/orthanc.log" 2>&1 & ORTHANC_PID=$!
for _ in $(seq 300); do curl -s -o /dev/null "http://127.0.0.1:$OHTTP/system" && break; sleep 0.1; done
for f in "$W"/ct/*.dcm; do curl -s -o /dev/null -X POST "http://127.0.0.1:$OHTTP/instances" --data-binary @"$f"; done

PB="https://localhost:$WEB"
TLS=(--cert "$W/pki/clinician.pem" --key "$W/pki/clinician.key" --ca "$W/pki/ca.pem")
OB="http://127.0.0.1:$OHTTP/dicom-web"
B=tests/bench/web_bench.py
MP='multipart/related; type="application/dicom"'
echo
echo "== phigated (HTTPS, mTLS) vs Orthanc $(Orthanc --version 2>/dev/null | head -1 | awk '{print $NF}') + DICOMweb (plain HTTP) =="
python3 $B --base "$PB" "${TLS[@]}" --path "/studies?PatientName=SMI*" -c 16 -n "${WEB_BENCH_WILDCARD_N:-64}" --label "phigated QIDO PatientName=SMI* ($N studies)"
python3 $B --base "$PB" "${TLS[@]}" --path "/studies?PatientID=$pid" -c 16 -n 320 --label "phigated QIDO PatientID=<one> ($N studies)"
python3 $B --base "$OB" --path "/studies?PatientName=SMI*" -c 16 -n 320 --label "orthanc  QIDO PatientName=SMI* (1 study)"
python3 $B --base "$PB" "${TLS[@]}" --path "/studies/$ct_study/series/$ct_series/instances" -c 1 -n 10 --label "phigated $SLICES-instance list"
python3 $B --base "$OB" --path "/studies/$ct_study/series/$ct_series/instances" -c 1 -n 10 --label "orthanc  $SLICES-instance list"
python3 $B --base "$PB" "${TLS[@]}" --path "/studies/$ct_study/metadata" -c 1 -n 5 --label "phigated study metadata"
python3 $B --base "$OB" --path "/studies/$ct_study/metadata" -c 1 -n 5 --label "orthanc  study metadata"
# Bulk throughput with curl (C client; Python's ssl reads would be the bottleneck).
wado() {  # wado LABEL URL [curl args...]: 3 retrievals, MB/s of the total
  local label=$1 url=$2; shift 2
  local out
  out=$(for _ in 1 2 3; do curl -s -o /dev/null -H "Accept: $MP" -w '%{size_download} %{time_total}\n' "$@" "$url"; done)
  echo "$out" | awk -v l="$label" '{b+=$1; t+=$2} END {printf "%-48s %8.1f MB/s  (3 x %.1f MB, curl)\n", l, b/t/1e6, b/3/1e6}'
}
python3 $B --base "$PB" "${TLS[@]}" --path "/studies/$ct_study" --accept "$MP" -c 1 -n 3 --throughput --label "phigated WADO-RS whole study (HTTPS, python)" &
BP=$!
peak=0
while kill -0 $BP 2>/dev/null; do
  r=$(awk '/VmRSS/{print $2}' /proc/$PHI_PID/status 2>/dev/null || echo 0); [ "$r" -gt "$peak" ] && peak=$r
  sleep 0.05
done
wait $BP
echo "phigated peak RSS while streaming: $((peak / 1024)) MiB"
python3 $B --base "$OB" --path "/studies/$ct_study" --accept "$MP" -c 1 -n 3 --throughput --label "orthanc  WADO-RS whole study (plain HTTP, python)"
wado "phigated WADO-RS whole study (HTTPS)" "$PB/studies/$ct_study" --cacert "$W/pki/ca.pem" \
  --cert "$W/pki/clinician.pem" --key "$W/pki/clinician.key"
wado "orthanc  WADO-RS whole study (plain HTTP)" "$OB/studies/$ct_study"
