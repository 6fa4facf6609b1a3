#!/usr/bin/env bash
# The man pages render without a single groff or man warning, and document the
# options and exit codes the binaries implement.
set -uo pipefail
dir="$1"
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
command -v groff >/dev/null || { echo "SKIP: groff not installed"; exit 77; }

for page in "$dir"/*.8; do
  w="$(groff -ww -man -z "$page" 2>&1)"
  [ -z "$w" ] && echo "ok: groff -ww clean: $(basename "$page")" || fail "groff warnings in $page: $w"
  if command -v man >/dev/null; then
    w="$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null)"
    [ -z "$w" ] || fail "man warnings in $page: $w"
  fi
done

render() { groff -man -Tascii -P -c -rLL=200n "$1" 2>/dev/null | col -bx; }
d="$(render "$dir/phigated.8")"
for want in "--config file" "--check-config file" "--print-dev-config dir" "--log-level level" \
    "--version" "SIGHUP" "SIGTERM" "/etc/phigate/phigate.yaml" "/run/phigate/admin.sock" \
    "EXIT STATUS"; do
  grep -qF -- "$want" <<<"$d" || fail "phigated.8 does not mention '$want'"
done
c="$(render "$dir/phigatectl.8")"
for want in "--socket path" "--json" "status" "audit verify" "audit export" "erase" "rotate-kek" \
    "verify" "backup" "restore" "phigate-admin"; do
  grep -qF -- "$want" <<<"$c" || fail "phigatectl.8 does not mention '$want'"
done
# Exit codes 0..4 each documented with their meaning.
exits="$(echo "$c" | sed -n '/^EXIT STATUS/,/^[A-Z]/p')"
for code in 0 1 2 3 4; do
  grep -qE "^ +$code +[A-Z]" <<<"$exits" || fail "phigatectl.8 does not document exit code $code"
done
echo "$exits" | grep -A1 -E '^ +3 ' | grep -qi "connect" || fail "exit 3 is not 'cannot connect'"
echo "$exits" | grep -A1 -E '^ +4 ' | grep -qi "permission denied" || fail "exit 4 is not 'permission denied'"

if [ "$fails" -ne 0 ]; then
  echo "$fails check(s) failed"
  exit 1
fi
echo "PASS"
