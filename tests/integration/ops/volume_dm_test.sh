#!/usr/bin/env bash
# The device-mapper half of the volume scripts: provision opens the LUKS2
# volume, makes ext4, mounts it nodev,nosuid,noexec; decommission unmounts,
# closes and erases. Needs root, device-mapper and loop devices; otherwise it
# reports SKIP with the reason (exit 77).
set -uo pipefail
scripts="$1"
skip() { echo "SKIP: $*"; exit 77; }

[ "$(id -u)" -eq 0 ] || skip "needs root"
command -v cryptsetup >/dev/null || skip "cryptsetup not installed"
[ -e /dev/mapper/control ] || skip "device-mapper not available here: /dev/mapper/control is missing"
err="$(dmsetup version 2>&1 >/dev/null)" || skip "device-mapper not available here: dmsetup version failed: $(echo "$err" | head -n 1)"
[ -e /dev/loop-control ] || skip "loop devices not available here: /dev/loop-control is missing"

fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { echo "ok: $*"; }
tmp="$(mktemp -d)"
name="phigate-test-$$"
mnt="$tmp/mnt"
cleanup() {
  umount "$mnt" 2>/dev/null
  cryptsetup close "$name" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
img="$tmp/volume.img"
truncate -s 64M "$img"

if ! out="$(bash "$scripts/provision-volume.sh" "$img" --key-file "$tmp/key" --mount "$mnt" \
      --name "$name" --weak-kdf-for-tests --yes 2>&1)"; then
  echo "$out"
  echo "FAIL: provision failed"
  exit 1
fi
[ -e "/dev/mapper/$name" ] && ok "/dev/mapper/$name open" || fail "mapping not open"
uuid="$(dmsetup info -c --noheadings -o uuid "$name" 2>/dev/null)"
case "$uuid" in CRYPT-LUKS2-*) ok "dm uuid $uuid" ;; *) fail "dm uuid '$uuid' is not CRYPT-LUKS2-*" ;; esac
opts="$(findmnt -n -o FSTYPE,OPTIONS "$mnt")"
echo "$opts" | grep -q '^ext4 ' && ok "ext4 mounted" || fail "not ext4 on $mnt: $opts"
for o in nodev nosuid noexec; do echo "$opts" | grep -qw "$o" || fail "mount lacks $o: $opts"; done
[ "$(stat -c %a "$mnt")" = 700 ] && ok "mount point mode 0700" || fail "mode $(stat -c %a "$mnt")"
echo "$out" | grep -q "^$name UUID=" || fail "no crypttab line"

if dout="$(bash "$scripts/decommission-volume.sh" "$img" --name "$name" --yes 2>&1)"; then
  ok "decommission"
else
  echo "$dout"; fail "decommission failed"
fi
[ -e "/dev/mapper/$name" ] && fail "mapping still open after decommission"
findmnt "$mnt" >/dev/null && fail "still mounted after decommission"
cryptsetup open --test-passphrase --key-file "$tmp/key" "$img" 2>/dev/null && fail "key still unlocks"

if [ "$fails" -ne 0 ]; then
  echo "$fails check(s) failed"
  exit 1
fi
echo "PASS"
