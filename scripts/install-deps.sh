#!/usr/bin/env bash
# Installs everything phigate needs to build, test and run, from Debian 12's
# packages. Idempotent, and quick when everything is already present.
set -euo pipefail

PKGS=(
  # toolchain
  build-essential cmake ninja-build pkg-config clang libclang-rt-14-dev clang-format
  # libraries
  libdcmtk-dev libboost-dev libboost-system-dev libssl-dev libsqlite3-dev libyaml-cpp-dev
  libfmt-dev libsystemd-dev libgtest-dev libgmock-dev libcli11-dev nlohmann-json3-dev
  zlib1g-dev
  # tools the tests drive for real
  dcmtk openssl sqlite3 curl socat python3 python3-hl7 cryptsetup-bin e2fsprogs
  systemd dpkg-dev fakeroot lintian file procps util-linux
  # ops: volume scripts, man pages, package install test
  dmsetup mount bsdextrautils groff-base man-db adduser
  # DICOMweb: node runs the dicomweb-client test (npm ci from its lock file);
  # Orthanc + its DICOMweb plugin for tests/bench/web_bench.sh
  nodejs orthanc orthanc-dicomweb
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages: ${missing[*]}" >&2
  echo "install-deps: run as root (or: sudo $0)" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
