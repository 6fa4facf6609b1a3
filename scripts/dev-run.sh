#!/usr/bin/env bash
# dev-run.sh: build phigate and run phigated in the foreground on a development
# setup under ${PHIGATE_DEV_DIR:-$PWD/.dev}: dev PKI, a 32-byte dev KEK, a plain
# storage directory (require_encrypted_volume: false) and the dev config, all
# created on the first run and reused afterwards. NEVER put patient data in it.
#
#   PHIGATE_BUILD_DIR  build directory (default: the release preset's build/)
#   PHIGATE_DEV_DIR    dev directory   (default: $PWD/.dev)
set -euo pipefail

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$SRC"

bash scripts/install-deps.sh

if [ -n "${PHIGATE_BUILD_DIR:-}" ]; then
  BUILD="$PHIGATE_BUILD_DIR"
  cmake -S "$SRC" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$BUILD" --target phigated phigatectl
else
  BUILD="$SRC/build"
  cmake --preset release >/dev/null
  cmake --build --preset release --target phigated phigatectl
fi
PHIGATED="$BUILD/daemon/phigated"
PHIGATECTL="$BUILD/daemon/phigatectl"

DEV="${PHIGATE_DEV_DIR:-$PWD/.dev}"
mkdir -p "$DEV"
chmod 0700 "$DEV"
DEV="$(cd "$DEV" && pwd)"

bash scripts/dev-pki.sh "$DEV/pki" >/dev/null

if [ ! -e "$DEV/kek" ]; then
  (umask 0377 && head -c 32 /dev/urandom >"$DEV/kek")
fi
chmod 0400 "$DEV/kek"

mkdir -p "$DEV/storage"
chmod 0700 "$DEV/storage"

if [ ! -e "$DEV/phigate.yaml" ]; then
  "$PHIGATED" --print-dev-config "$DEV" >"$DEV/phigate.yaml.new"
  mv "$DEV/phigate.yaml.new" "$DEV/phigate.yaml"
fi

cat <<INFO
== phigate dev instance (development only: never real patient data)
   config   $DEV/phigate.yaml      storage $DEV/storage
   status   $PHIGATECTL --socket $DEV/admin.sock status
   DICOM    echoscu -aet DEVSCU -aec PHIGATE 127.0.0.1 11112
            storescu -aet DEVSCU -aec PHIGATE 127.0.0.1 11112 some.dcm
            storescu +tls $DEV/pki/modality.key $DEV/pki/modality.pem +cf $DEV/pki/ca.pem \\
                     -aet DEVSCU -aec PHIGATE 127.0.0.1 2762 some.dcm
   HTTPS    curl --cacert $DEV/pki/ca.pem --cert $DEV/pki/clinician.pem \\
                 --key $DEV/pki/clinician.key https://127.0.0.1:8443/healthz
   reload   kill -HUP <pid>      stop: Ctrl-C
INFO

exec "$PHIGATED" --config "$DEV/phigate.yaml"
