#!/usr/bin/env bash
# decommission-volume.sh (installed as phigate-decommission-volume): NIST SP
# 800-88 cryptographic erase of phigate's LUKS2 volume. Every key slot is
# destroyed (cryptsetup luksErase), so the data can never be decrypted again,
# whatever copies of the ciphertext remain.
#
# Usage: decommission-volume.sh DEVICE_OR_IMAGE [--name NAME] [--yes]
#
#   --name NAME  device-mapper name of the open volume, default phigate; if it
#                is open on DEVICE it is unmounted and closed first
#   --yes        do not ask to type the device path
#
# Stop phigate.service first. Afterwards, remove the crypttab/fstab lines and
# destroy the key file (e.g. shred -u /etc/phigate/volume.key).
#
# Exit status: 0 erased and verified (no key slot remains), 1 error, 2 usage.
set -euo pipefail

prog="phigate-decommission-volume"
die() { echo "$prog: error: $*" >&2; exit 1; }
usage() {
  sed -n '7p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

dev=""
name="phigate"
yes=0
while [ $# -gt 0 ]; do
  case "$1" in
    --name) [ $# -ge 2 ] || usage; name="$2"; shift ;;
    --name=*) name="${1#*=}" ;;
    --yes) yes=1 ;;
    -h | --help) usage ;;
    -*) echo "$prog: unknown option: $1" >&2; usage ;;
    *) [ -z "$dev" ] || usage; dev="$1" ;;
  esac
  shift
done
[ -n "$dev" ] || usage
case "$name" in
  *[!A-Za-z0-9_-]* | "") die "invalid --name: $name" ;;
esac
command -v cryptsetup >/dev/null || die "cryptsetup not found"
[ -e "$dev" ] || die "no such device or image: $dev"
cryptsetup isLuks "$dev" || die "$dev has no LUKS header"

# Close the mapping if it is open on this device. Without device-mapper
# nothing can be open, so there is nothing to close.
if [ -e "/dev/mapper/$name" ]; then
  backing="$(cryptsetup status "$name" 2>/dev/null | awk '$1 == "device:" {print $2}')"
  loop_file=""
  case "$backing" in
    /dev/loop*) loop_file="$(losetup -nO BACK-FILE "$backing" 2>/dev/null || true)" ;;
  esac
  if [ "$(readlink -f "$backing")" = "$(readlink -f "$dev")" ] || \
     { [ -n "$loop_file" ] && [ "$(readlink -f "$loop_file")" = "$(readlink -f "$dev")" ]; }; then
    if command -v systemctl >/dev/null && systemctl is-active --quiet phigate.service 2>/dev/null; then
      die "phigate.service is running; stop it first (systemctl stop phigate)"
    fi
    while mp="$(findmnt -rn -o TARGET -S "/dev/mapper/$name" | head -n 1)" && [ -n "$mp" ]; do
      umount "$mp" || die "cannot unmount $mp (in use?)"
      echo "$prog: unmounted $mp" >&2
    done
    cryptsetup close "$name" || die "cryptsetup close $name failed"
    echo "$prog: closed /dev/mapper/$name" >&2
  else
    echo "$prog: note: /dev/mapper/$name is open on another device ($backing); leaving it" >&2
  fi
elif [ ! -e /dev/mapper/control ]; then
  echo "$prog: note: device-mapper not available here, so no mapping can be open" >&2
fi

if [ "$yes" -eq 0 ]; then
  echo "This destroys every key slot of $dev: its data becomes permanently unreadable." >&2
  printf 'Type the device path (%s) to continue: ' "$dev" >&2
  answer=""
  if [ -r /dev/tty ] && [ -t 0 ]; then read -r answer </dev/tty || true; else read -r answer || true; fi
  [ "$answer" = "$dev" ] || die "confirmation did not match; nothing was erased"
fi

cryptsetup luksErase --batch-mode "$dev" || die "cryptsetup luksErase failed"

# Proof: the dump must show no key slot at all.
dump="$(cryptsetup luksDump "$dev")" || die "cryptsetup luksDump failed after erase"
echo "$dump"
slots="$(echo "$dump" | awk '
  /^Keyslots:/ {in_ks = 1; next}
  in_ks && /^[^ \t]/ {in_ks = 0}
  in_ks && /^  [0-9]+: / {n++}
  /^Key Slot [0-9]+: ENABLED/ {n++}
  END {print n + 0}')"
if [ "$slots" -ne 0 ]; then
  die "$slots key slot(s) still present after luksErase"
fi
echo "$prog: OK: no key slot remains on $dev (cryptographic erase complete)"
echo "$prog: now remove its crypttab/fstab lines and destroy its key file (shred -u)" >&2
