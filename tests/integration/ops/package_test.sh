#!/usr/bin/env bash
# Builds phigate_<version>_<arch>.deb (target package-deb) and checks it:
# control fields, file list and modes, maintainer scripts, lintian, and a real
# dpkg install / reinstall / purge inside a private mount namespace whose /usr,
# /etc and /var are overlays (so the host is never touched).
set -uo pipefail
build="$1"
src="$2"
version="$3"
has_ctl="${4:-0}"   # 1 when the build defines a phigatectl target
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { echo "ok: $*"; }
for t in dpkg-deb dpkg-shlibdeps lintian; do
  command -v "$t" >/dev/null || { echo "SKIP: $t not installed"; exit 77; }
done

if ! out="$(cmake --build "$build" --target package-deb 2>&1)"; then
  echo "$out"
  echo "FAIL: cmake --build --target package-deb failed"
  exit 1
fi
arch="$(dpkg --print-architecture)"
deb="$build/phigate_${version}_${arch}.deb"
[ -f "$deb" ] || { echo "$out"; echo "FAIL: $deb not produced"; exit 1; }
ok "built $(basename "$deb")"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# --- control ---------------------------------------------------------------
field() { dpkg-deb -f "$deb" "$1"; }
[ "$(field Package)" = phigate ] || fail "Package: $(field Package)"
[ "$(field Version)" = "$version" ] || fail "Version: $(field Version)"
[ "$(field Section)" = net ] || fail "Section: $(field Section)"
[ "$(field Priority)" = optional ] || fail "Priority: $(field Priority)"
[ "$(field Maintainer)" = "phigate developers <dev@phigate.invalid>" ] || fail "Maintainer: $(field Maintainer)"
deps="$(field Depends)"
echo "$deps" | grep -qw adduser || fail "Depends lacks adduser: $deps"
echo "$deps" | grep -qw libc6 || fail "Depends lacks libc6 (dpkg-shlibdeps not run?): $deps"
ok "Depends: $deps"
[ "$(field Description | wc -l)" -ge 5 ] || fail "Description has no long description"

dpkg-deb -e "$deb" "$tmp/control"
for s in postinst prerm postrm; do
  f="$tmp/control/$s"
  [ -f "$f" ] || { fail "no $s"; continue; }
  [ "$(stat -c %a "$f")" = 755 ] || fail "$s mode $(stat -c %a "$f")"
  sh -n "$f" && ok "$s: sh -n clean, mode 0755" || fail "$s: sh -n failed"
  if command -v checkbashisms >/dev/null; then checkbashisms "$f" || fail "$s has bashisms"; fi
done
grep -q 'rm -rf\|rm -r ' "$tmp/control/postrm" && fail "postrm removes directories recursively"
if [ -f "$src/conf/phigate.yaml" ]; then
  grep -qx /etc/phigate/phigate.yaml "$tmp/control/conffiles" 2>/dev/null \
    && ok "conffile /etc/phigate/phigate.yaml" || fail "phigate.yaml is not a conffile"
fi

# --- contents --------------------------------------------------------------
contents="$(dpkg-deb --contents "$deb")"
expect_file() {  # MODE PATH
  local line
  line="$(echo "$contents" | awk -v p="./$2" '$6 == p')"
  if [ -z "$line" ]; then
    fail "missing $2"
  else
    local mode owner
    mode="$(echo "$line" | awk '{print $1}')"
    owner="$(echo "$line" | awk '{print $2}')"
    [ "$mode" = "$1" ] && [ "$owner" = root/root ] && ok "$2 $mode $owner" \
      || fail "$2 is $mode $owner, want $1 root/root"
  fi
}
expect_file -rwxr-xr-x usr/sbin/phigated
expect_file -rwxr-xr-x usr/sbin/phigate-provision-volume
expect_file -rwxr-xr-x usr/sbin/phigate-decommission-volume
expect_file -rw-r--r-- lib/systemd/system/phigate.service
expect_file -rw-r--r-- usr/share/doc/phigate/copyright
expect_file -rw-r--r-- usr/share/doc/phigate/changelog.gz
for p in phigated phigatectl phigate-provision-volume phigate-decommission-volume; do
  expect_file -rw-r--r-- "usr/share/man/man8/$p.8.gz"
done
[ -f "$src/conf/phigate.yaml" ] && expect_file -rw-r--r-- etc/phigate/phigate.yaml
if [ "$has_ctl" = 1 ]; then
  expect_file -rwxr-xr-x usr/bin/phigatectl
else
  echo "NOTE: no phigatectl target yet, not expected in the package"
fi
echo "$contents" | awk '{print $6}' | grep -E '^\./var/lib/phigate' && fail "package ships files in /var/lib/phigate"

dpkg-deb -x "$deb" "$tmp/root"
cmp -s "$tmp/root/lib/systemd/system/phigate.service" "$src/systemd/phigate.service" \
  || fail "packaged unit differs from systemd/phigate.service"
gzip -t "$tmp/root/usr/share/man/man8/phigated.8.gz" || fail "man page is not gzip"
file "$tmp/root/usr/sbin/phigated" | grep -q "stripped" && ! file "$tmp/root/usr/sbin/phigated" | grep -q "not stripped" \
  || fail "phigated is not stripped"

# --- lintian ---------------------------------------------------------------
lout="$(lintian --fail-on error --display-info "$deb" 2>&1)"
lrc=$?
echo "lintian:"
echo "$lout" | grep -v 'running with root privileges' | sed 's/^/  /'
[ "$lrc" -eq 0 ] && ok "lintian --fail-on error" || fail "lintian reported errors"

# --- real install, in a throw-away overlay of /usr, /etc and /var -----------
can_overlay=0
why=""
if [ "$(id -u)" -ne 0 ]; then
  why="not root"
elif ! command -v unshare >/dev/null; then
  why="unshare not available"
else
  mkdir -p "$tmp/probe/up" "$tmp/probe/work" "$tmp/probe/mnt"
  if unshare -m --propagation private sh -c "mount -t overlay overlay \
      -o lowerdir=/etc,upperdir=$tmp/probe/up,workdir=$tmp/probe/work $tmp/probe/mnt" 2>"$tmp/probe.err"; then
    can_overlay=1
  else
    why="overlay mount in a private mount namespace failed: $(cat "$tmp/probe.err")"
  fi
fi
if [ "$can_overlay" -eq 1 ]; then
  for d in usr etc var; do mkdir -p "$tmp/ov/$d/up" "$tmp/ov/$d/work"; done
  cat >"$tmp/inside.sh" <<'INSIDE'
set -u
ov="$1"; deb="$2"
for d in usr etc var; do
  mount -t overlay overlay -o "lowerdir=/$d,upperdir=$ov/$d/up,workdir=$ov/$d/work" "/$d" || exit 90
done
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { echo "ok: $*"; }
export DEBIAN_FRONTEND=noninteractive
getent passwd phigate >/dev/null && { echo "NOTE: host already has user phigate"; }
if out="$(dpkg -i --force-depends "$deb" 2>&1)"; then ok "dpkg -i"; else echo "$out"; fail "dpkg -i failed"; fi
dpkg -s phigate 2>/dev/null | grep -q '^Status: install ok installed' && ok "dpkg status installed" \
  || fail "not installed according to dpkg"
uid="$(getent passwd phigate | cut -d: -f3)"
[ -n "$uid" ] && [ "$uid" -lt 1000 ] && ok "system user phigate (uid $uid)" || fail "no system user phigate"
[ "$(getent passwd phigate | cut -d: -f7)" = /usr/sbin/nologin ] || fail "phigate has a login shell"
getent group phigate >/dev/null && ok "group phigate" || fail "no group phigate"
getent group phigate-admin >/dev/null && ok "group phigate-admin" || fail "no group phigate-admin"
st() { stat -c '%a %U:%G' "$1" 2>/dev/null; }
check() { [ "$(st "$2")" = "$1" ] && ok "$2 $1" || fail "$2 is '$(st "$2")', want $1"; }
check "750 root:phigate" /etc/phigate
check "750 root:phigate" /etc/phigate/tls
check "750 root:phigate" /etc/phigate/credentials
check "700 phigate:phigate" /var/lib/phigate
[ -f /etc/phigate/phigate.yaml ] && check "640 root:phigate" /etc/phigate/phigate.yaml
[ -x /usr/sbin/phigated ] && /usr/sbin/phigated --version >/dev/null 2>&1 && ok "installed phigated runs" \
  || fail "installed phigated does not run"
# Data in the storage root: a reinstall must not touch it.
echo "pretend PHI" >/var/lib/phigate/catalog.db
chown root:root /var/lib/phigate; chmod 0711 /var/lib/phigate
if out="$(dpkg -i --force-depends "$deb" 2>&1)"; then ok "reinstall (postinst idempotent)"; else echo "$out"; fail "reinstall failed"; fi
check "711 root:root" /var/lib/phigate
echo "$out" | grep -q "already holds data" || fail "postinst did not say it left the storage root alone"
# Purge: data, keys and user stay; the note says so.
echo "kek" >/etc/phigate/credentials/phigate.kek
out="$(dpkg --purge phigate 2>&1)" && ok "dpkg --purge" || { echo "$out"; fail "purge failed"; }
[ -f /var/lib/phigate/catalog.db ] && ok "purge kept /var/lib/phigate data" || fail "purge removed PHI"
[ -f /etc/phigate/credentials/phigate.kek ] && ok "purge kept the KEK" || fail "purge removed the KEK"
getent passwd phigate >/dev/null && ok "purge kept user phigate" || fail "purge removed user phigate"
echo "$out" | grep -q "luksErase" && ok "purge note explains cryptographic erase" || fail "no purge note: $out"
[ -e /usr/sbin/phigated ] && fail "phigated still installed after purge"
[ -e /etc/phigate/phigate.yaml ] && fail "conffile left after purge"
exit $((fails > 0))
INSIDE
  unshare -m --propagation private bash "$tmp/inside.sh" "$tmp/ov" "$deb"
  rc=$?
  if [ "$rc" -eq 90 ]; then
    echo "NOTE: could not overlay /usr, /etc, /var; install part skipped"
  elif [ "$rc" -ne 0 ]; then
    fail "install / reinstall / purge checks failed"
  fi
else
  echo "NOTE: real dpkg install skipped ($why); checked the dpkg-deb -x layout only"
fi

if [ "$fails" -ne 0 ]; then
  echo "$fails check(s) failed"
  exit 1
fi
echo "PASS"
