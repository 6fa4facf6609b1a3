#!/usr/bin/env bash
# provision-volume.sh --format-only and decommission-volume.sh on a 32 MiB
# image file: LUKS2 header with the required cipher/KDF and one key slot, the
# refusals, then a cryptographic erase leaving no key slot. Needs no
# device-mapper and no root.
set -uo pipefail
scripts="$1"
prov="$scripts/provision-volume.sh"
decom="$scripts/decommission-volume.sh"
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { echo "ok: $*"; }

command -v cryptsetup >/dev/null || { echo "SKIP: cryptsetup not installed"; exit 77; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
img="$tmp/volume.img"
key="$tmp/volume.key"
truncate -s 32M "$img"

keyslots() {  # number of LUKS2 key slots in a luksDump
  cryptsetup luksDump "$1" | awk '/^Keyslots:/ {k = 1; next} k && /^[^ \t]/ {k = 0}
                                  k && /^  [0-9]+: / {n++} END {print n + 0}'
}

# A typed confirmation that does not match writes nothing.
echo "not-the-device" | bash "$prov" "$img" --key-file "$key" --format-only --weak-kdf-for-tests \
  >/dev/null 2>&1 && fail "provision without a matching confirmation succeeded"
cryptsetup isLuks "$img" 2>/dev/null && fail "image formatted despite a wrong confirmation"
[ -e "$key" ] && fail "key file created despite a wrong confirmation"

# Format, confirming by typing the path.
if out="$(echo "$img" | bash "$prov" "$img" --key-file "$key" --format-only --weak-kdf-for-tests 2>&1)"; then
  ok "provision --format-only"
else
  echo "$out"; fail "provision --format-only failed"
fi
[ "$(stat -c '%a %s' "$key")" = "400 64" ] && ok "key file 64 bytes mode 0400" \
  || fail "key file is $(stat -c '%a %s' "$key")"
dump="$(cryptsetup luksDump "$img")"
uuid="$(cryptsetup luksUUID "$img")"
echo "$dump" | grep -qE '^Version:\s+2$' && ok "LUKS version 2" || fail "not LUKS2"
echo "$dump" | grep -qE '^\s+cipher:\s+aes-xts-plain64$' && ok "data cipher aes-xts-plain64" || fail "cipher"
echo "$dump" | grep -qE '^\s+PBKDF:\s+argon2id$' && ok "keyslot PBKDF argon2id" || fail "pbkdf"
echo "$dump" | grep -qE '^\s+Key:\s+512 bits$' && ok "512-bit volume key" || fail "key size"
n="$(keyslots "$img")"
[ "$n" = 1 ] && ok "exactly one key slot" || fail "$n key slots, want 1"
echo "$out" | grep -qxF "phigate UUID=$uuid $key luks,discard" && ok "crypttab line" \
  || fail "crypttab line missing: $out"
echo "$out" | grep -qxF "/dev/mapper/phigate /var/lib/phigate ext4 defaults,nodev,nosuid,noexec 0 2" \
  && ok "fstab line" || fail "fstab line missing: $out"
# The generated key really unlocks the volume (checked without device-mapper).
cryptsetup open --test-passphrase --key-file "$key" "$img" && ok "key file unlocks the volume" \
  || fail "key file does not unlock the volume"

# Refuses an existing LUKS header or file system unless --force.
bash "$prov" "$img" --key-file "$key" --format-only --weak-kdf-for-tests --yes >/dev/null 2>&1 \
  && fail "re-provisioning an existing LUKS volume was not refused"
[ "$(cryptsetup luksUUID "$img")" = "$uuid" ] && ok "existing LUKS header refused and kept" \
  || fail "existing header was replaced"
other="$tmp/ext4.img"
truncate -s 8M "$other"
mkfs.ext4 -q -F "$other" 2>/dev/null
if bash "$prov" "$other" --key-file "$key" --format-only --weak-kdf-for-tests --yes >/dev/null 2>&1; then
  fail "a device holding ext4 was formatted without --force"
else
  blkid -p -o value -s TYPE "$other" | grep -qx ext4 && ok "ext4 image refused" || fail "ext4 lost"
fi
bash "$prov" "$other" --key-file "$key" --format-only --weak-kdf-for-tests --yes --force >/dev/null 2>&1 \
  && cryptsetup isLuks "$other" && ok "--force formats over ext4 (existing key reused)" \
  || fail "--force did not format"
# An existing key file with loose permissions is refused.
loose="$tmp/loose.key"
head -c 64 /dev/urandom >"$loose"; chmod 0644 "$loose"
truncate -s 32M "$tmp/third.img"
bash "$prov" "$tmp/third.img" --key-file "$loose" --format-only --weak-kdf-for-tests --yes >/dev/null 2>&1 \
  && fail "a world-readable key file was accepted" || ok "world-readable key file refused"

# Decommission: a wrong confirmation erases nothing.
echo "nope" | bash "$decom" "$img" >/dev/null 2>&1 && fail "decommission without confirmation succeeded"
[ "$(keyslots "$img")" = 1 ] && ok "wrong confirmation kept the key slot" || fail "key slot gone"

if dout="$(bash "$decom" "$img" --yes 2>&1)"; then
  ok "decommission --yes"
else
  echo "$dout"; fail "decommission failed"
fi
n="$(keyslots "$img")"
[ "$n" = 0 ] && ok "no key slot after luksErase" || fail "$n key slots remain"
echo "$dout" | grep -q "no key slot remains" || fail "decommission did not print its proof: $dout"
echo "$dout" | grep -q "^Keyslots:" || fail "decommission did not print luksDump"
cryptsetup open --test-passphrase --key-file "$key" "$img" 2>/dev/null \
  && fail "the key still unlocks the volume after decommission" || ok "key no longer unlocks the volume"

if [ "$fails" -ne 0 ]; then
  echo "$fails check(s) failed"
  exit 1
fi
echo "PASS"
