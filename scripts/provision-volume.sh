#!/usr/bin/env bash
# provision-volume.sh (installed as phigate-provision-volume): creates the
# LUKS2 volume that holds phigate's storage root.
#
# Usage: provision-volume.sh DEVICE_OR_IMAGE [--key-file FILE | --tpm2] [--mount DIR]
#                            [--name NAME] [--yes] [--force] [--format-only]
#
#   --key-file FILE  unlock key; generated (64 random bytes, mode 0400) if FILE
#                    does not exist. Default /etc/phigate/volume.key. Never put
#                    it on the data volume.
#   --tpm2           additionally enrol the TPM2 (systemd-cryptenroll
#                    --tpm2-device=auto); the key file then becomes the
#                    recovery key: move it offline.
#   --mount DIR      mount point, default /var/lib/phigate
#   --name NAME      device-mapper name, default phigate
#   --yes            do not ask for the typed confirmation
#   --force          format even if DEVICE already holds a filesystem or LUKS header
#   --format-only    only luksFormat (and TPM2 enrolment); no open, mkfs or mount.
#                    Works on a plain image file without device-mapper.
#   --weak-kdf-for-tests
#                    argon2id with 4 iterations / 32 MiB so tests run fast. NEVER
#                    use it for a real volume.
#
# Volume: LUKS2, aes-xts-plain64, 512-bit key (AES-256-XTS), argon2id.
# Then: cryptsetup open, mkfs.ext4, mount (nodev,nosuid,noexec), chown to user
# phigate (if it exists) mode 0700, and print the crypttab and fstab lines.
#
# Exit status: 0 done, 1 error, 2 usage, 3 device-mapper or TPM2 not available
# (checked before anything is written).
set -euo pipefail

prog="phigate-provision-volume"
die() { echo "$prog: error: $*" >&2; exit 1; }
usage() {
  sed -n '5,7p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

dev=""
key_file=""
tpm2=0
mount_dir="/var/lib/phigate"
name="phigate"
yes=0
force=0
format_only=0
weak_kdf=0
while [ $# -gt 0 ]; do
  case "$1" in
    --key-file) [ $# -ge 2 ] || usage; key_file="$2"; shift ;;
    --key-file=*) key_file="${1#*=}" ;;
    --tpm2) tpm2=1 ;;
    --mount) [ $# -ge 2 ] || usage; mount_dir="$2"; shift ;;
    --mount=*) mount_dir="${1#*=}" ;;
    --name) [ $# -ge 2 ] || usage; name="$2"; shift ;;
    --name=*) name="${1#*=}" ;;
    --yes) yes=1 ;;
    --force) force=1 ;;
    --format-only) format_only=1 ;;
    --weak-kdf-for-tests) weak_kdf=1 ;;
    -h | --help) usage ;;
    -*) echo "$prog: unknown option: $1" >&2; usage ;;
    *) [ -z "$dev" ] || usage; dev="$1" ;;
  esac
  shift
done
[ -n "$dev" ] || usage
[ -n "$key_file" ] || key_file="/etc/phigate/volume.key"
key_file="$(realpath -m -- "$key_file")"
case "$name" in
  *[!A-Za-z0-9_-]* | "") die "invalid --name: $name" ;;
esac
case "$mount_dir" in
  /*) ;;
  *) die "--mount must be an absolute path: $mount_dir" ;;
esac

command -v cryptsetup >/dev/null || die "cryptsetup not found (apt-get install cryptsetup-bin)"

[ -e "$dev" ] || die "no such device or image: $dev"
if [ -b "$dev" ]; then
  kind="block device"
elif [ -f "$dev" ]; then
  kind="image file"
else
  die "$dev is neither a block device nor a regular file"
fi

# --- Preflight: everything that could stop us is checked before writing. ---
if [ "$format_only" -eq 0 ]; then
  [ "$(id -u)" -eq 0 ] || die "must run as root (or use --format-only on an image file)"
  why=""
  if [ ! -e /dev/mapper/control ]; then
    why="/dev/mapper/control is missing"
  elif ! err="$(dmsetup version 2>&1 >/dev/null)"; then
    why="dmsetup version failed: $(echo "$err" | head -n 1)"
  fi
  if [ -n "$why" ]; then
    echo "$prog: device-mapper not available here: $why" >&2
    echo "$prog: nothing was written; use --format-only to only create the LUKS header" >&2
    exit 3
  fi
  command -v mkfs.ext4 >/dev/null || die "mkfs.ext4 not found (apt-get install e2fsprogs)"
  if [ -e "/dev/mapper/$name" ]; then
    die "/dev/mapper/$name already exists: another volume is open under that name"
  fi
fi
if [ "$tpm2" -eq 1 ]; then
  command -v systemd-cryptenroll >/dev/null || { echo "$prog: systemd-cryptenroll not found" >&2; exit 3; }
  if ! systemd-cryptenroll --tpm2-device=list 2>/dev/null | grep -q '^/dev/'; then
    echo "$prog: --tpm2 given but no TPM2 device found (systemd-cryptenroll --tpm2-device=list)" >&2
    exit 3
  fi
fi

if [ -b "$dev" ] && { findmnt -rn -S "$dev" >/dev/null 2>&1 || \
   [ "$(lsblk -nr -o NAME "$dev" 2>/dev/null | wc -l)" -gt 1 ]; }; then
  die "$dev is mounted or has partitions/holders in use; refusing"
fi

existing=""
if cryptsetup isLuks "$dev" 2>/dev/null; then
  existing="a LUKS header"
elif sig="$(blkid -p -o value -s TYPE "$dev" 2>/dev/null)" && [ -n "$sig" ]; then
  existing="a $sig signature"
elif blkid -p -o value -s PTTYPE "$dev" 2>/dev/null | grep -q .; then
  existing="a partition table"
fi
if [ -n "$existing" ]; then
  if [ "$force" -eq 0 ]; then
    die "$dev already contains $existing; refusing (use --force to destroy it)"
  fi
  echo "$prog: warning: --force: $existing on $dev will be destroyed" >&2
fi

# Key file: reuse an existing one (it may already unlock something else: never
# overwrite it), or create 64 random bytes with mode 0400.
if [ -e "$key_file" ]; then
  [ -f "$key_file" ] || die "key file is not a regular file: $key_file"
  size="$(stat -c %s "$key_file")"
  [ "$size" -ge 32 ] || die "key file $key_file is $size bytes, need at least 32"
  mode="$(stat -c %a "$key_file")"
  case "$mode" in
    400 | 600) ;;
    *) die "key file $key_file has mode $mode; it must be 0400 or 0600" ;;
  esac
  new_key=0
else
  key_dir="$(dirname "$key_file")"
  [ -d "$key_dir" ] || die "directory for the key file does not exist: $key_dir"
  new_key=1
fi

if [ "$yes" -eq 0 ]; then
  echo "This will DESTROY all data on $dev ($kind) and create a LUKS2 volume." >&2
  printf 'Type the device path (%s) to continue: ' "$dev" >&2
  answer=""
  if [ -r /dev/tty ] && [ -t 0 ]; then read -r answer </dev/tty || true; else read -r answer || true; fi
  [ "$answer" = "$dev" ] || die "confirmation did not match; nothing was written"
fi

if [ "$new_key" -eq 1 ]; then
  (umask 0377 && dd if=/dev/urandom of="$key_file" bs=64 count=1 iflag=fullblock status=none)
  chmod 0400 "$key_file"
  echo "$prog: generated key file $key_file (64 bytes, mode 0400)" >&2
fi

kdf=(--pbkdf argon2id)
if [ "$weak_kdf" -eq 1 ]; then
  echo "$prog: warning: --weak-kdf-for-tests: weak key derivation, test use only" >&2
  kdf+=(--pbkdf-force-iterations 4 --pbkdf-memory 32768 --pbkdf-parallel 1)
fi

cryptsetup luksFormat --batch-mode --type luks2 --cipher aes-xts-plain64 --key-size 512 \
  --hash sha256 "${kdf[@]}" --label phigate --key-file "$key_file" "$dev" \
  || die "cryptsetup luksFormat failed"
uuid="$(cryptsetup luksUUID "$dev")"
echo "$prog: formatted $dev as LUKS2 (aes-xts-plain64, 512-bit key, argon2id), UUID=$uuid" >&2

if [ "$tpm2" -eq 1 ]; then
  systemd-cryptenroll --unlock-key-file="$key_file" --tpm2-device=auto "$dev" \
    || die "TPM2 enrolment failed (the key file still unlocks the volume)"
  echo "$prog: TPM2 enrolled; $key_file is now the recovery key: store it offline" >&2
fi

if [ "$format_only" -eq 0 ]; then
  cryptsetup open --type luks2 --key-file "$key_file" --allow-discards "$dev" "$name" \
    || die "cryptsetup open failed"
  mkfs.ext4 -q -L phigate-data "/dev/mapper/$name" || die "mkfs.ext4 failed"
  mkdir -p "$mount_dir"
  mount -o nodev,nosuid,noexec "/dev/mapper/$name" "$mount_dir" || die "mount failed"
  if getent passwd phigate >/dev/null; then
    chown phigate:phigate "$mount_dir"
  else
    echo "$prog: note: user phigate does not exist yet; $mount_dir left owned by root" >&2
  fi
  chmod 0700 "$mount_dir"
  rmdir "$mount_dir/lost+found" 2>/dev/null || true
  echo "$prog: /dev/mapper/$name is open and mounted on $mount_dir" >&2
fi

if [ "$tpm2" -eq 1 ]; then
  crypttab_key="none"
  crypttab_opts="luks,discard,tpm2-device=auto"
else
  crypttab_key="$key_file"
  crypttab_opts="luks,discard"
fi
echo "# /etc/crypttab"
echo "$name UUID=$uuid $crypttab_key $crypttab_opts"
echo "# /etc/fstab"
echo "/dev/mapper/$name $mount_dir ext4 defaults,nodev,nosuid,noexec 0 2"
