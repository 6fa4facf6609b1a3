#!/usr/bin/env bash
# Runs scripts/dev-pki.sh into a temp dir and checks the PKI with openssl.
set -uo pipefail
script="$1"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { echo "ok: $*"; }

out="$(bash "$script" "$tmp/pki" 2>&1)" || { echo "FAIL: dev-pki.sh failed:"; echo "$out"; exit 1; }
[ "$(echo "$out" | wc -l)" -eq 1 ] || fail "expected one summary line, got: $out"
cd "$tmp/pki" || exit 1

for n in server clinician share admin modality peer-ct01; do
  if v="$(openssl verify -CAfile ca.pem -crl_check -CRLfile crl.pem "$n.pem" 2>&1)"; then
    ok "$n verifies against ca.pem (with CRL check)"
  else
    fail "$n does not verify: $v"
  fi
done

if v="$(openssl verify -CAfile ca.pem untrusted.pem 2>&1)"; then
  fail "untrusted.pem verified against ca.pem"
else
  ok "untrusted.pem refused: $(echo "$v" | grep -m1 error)"
fi
openssl verify -CAfile untrusted-ca.pem untrusted.pem >/dev/null 2>&1 \
  || fail "untrusted.pem does not even verify against its own CA"

v="$(openssl verify -CAfile ca.pem expired.pem 2>&1)" && fail "expired.pem verified"
echo "$v" | grep -q "certificate has expired" && ok "expired.pem: certificate has expired" \
  || fail "expired.pem: expected 'certificate has expired', got: $v"

openssl verify -CAfile ca.pem revoked.pem >/dev/null 2>&1 \
  || fail "revoked.pem should verify without a CRL check (it is only revoked)"
v="$(openssl verify -CAfile ca.pem -crl_check -CRLfile crl.pem revoked.pem 2>&1)" \
  && fail "revoked.pem verified with -crl_check"
echo "$v" | grep -q "certificate revoked" && ok "revoked.pem: certificate revoked" \
  || fail "revoked.pem: expected 'certificate revoked', got: $v"

# CRL: signed by the dev CA, valid about 10 years.
openssl crl -in crl.pem -CAfile ca.pem -noout 2>&1 | grep -q "verify OK" || fail "crl.pem not signed by ca.pem"
next="$(openssl crl -in crl.pem -noout -nextupdate | cut -d= -f2)"
next_s="$(date -d "$next" +%s)"
[ $((next_s - $(date +%s))) -gt $((9 * 365 * 86400)) ] && ok "CRL valid until $next" \
  || fail "CRL nextUpdate too soon: $next"

subject() { openssl x509 -in "$1" -noout -subject -nameopt RFC2253 | sed 's/^subject=//'; }
for n in clinician share admin modality; do
  s="$(subject "$n.pem")"
  [ "$s" = "CN=$n,O=phigate-dev" ] && ok "$n subject $s" || fail "$n subject is '$s'"
done
s="$(subject peer-ct01.pem)"
[ "$s" = "CN=CT01,O=phigate-dev" ] && ok "peer-ct01 subject $s" || fail "peer-ct01 subject is '$s'"

# Extensions.
openssl x509 -in ca.pem -noout -ext basicConstraints | grep -q "CA:TRUE" || fail "ca.pem is not CA:TRUE"
san="$(openssl x509 -in server.pem -noout -ext subjectAltName)"
for want in "DNS:localhost" "IP Address:127.0.0.1" "IP Address:0:0:0:0:0:0:0:1"; do
  echo "$san" | grep -qF "$want" || fail "server SAN lacks $want: $san"
done
openssl x509 -in server.pem -noout -ext extendedKeyUsage | grep -q "TLS Web Server Authentication" \
  || fail "server.pem lacks serverAuth"
for n in clinician share admin modality; do
  openssl x509 -in "$n.pem" -noout -ext extendedKeyUsage | grep -q "TLS Web Client Authentication" \
    || fail "$n.pem lacks clientAuth"
  openssl verify -CAfile ca.pem -purpose sslclient "$n.pem" >/dev/null 2>&1 \
    || fail "$n.pem not valid for purpose sslclient"
done
openssl verify -CAfile ca.pem -purpose sslserver server.pem >/dev/null 2>&1 \
  || fail "server.pem not valid for purpose sslserver"
openssl verify -CAfile ca.pem -purpose sslserver clinician.pem >/dev/null 2>&1 \
  && fail "clinician.pem accepted as a TLS server certificate"

# Each key matches its certificate; keys are 0600.
for n in ca server clinician share admin modality peer-ct01 untrusted-ca untrusted expired revoked; do
  [ "$(stat -c %a "$n.key")" = "600" ] || fail "$n.key mode $(stat -c %a "$n.key")"
  a="$(openssl pkey -in "$n.key" -pubout 2>/dev/null | sha256sum)"
  b="$(openssl x509 -in "$n.pem" -noout -pubkey | sha256sum)"
  [ "$a" = "$b" ] || fail "$n.key does not match $n.pem"
done

# Idempotent: a second run changes nothing; --force regenerates.
before="$(sha256sum ca.pem)"
bash "$script" "$tmp/pki" >/dev/null 2>&1 || fail "second run failed"
[ "$(sha256sum ca.pem)" = "$before" ] && ok "second run left ca.pem alone" || fail "second run changed ca.pem"
bash "$script" --force "$tmp/pki" >/dev/null 2>&1 || fail "--force run failed"
[ "$(sha256sum ca.pem)" != "$before" ] && ok "--force regenerated ca.pem" || fail "--force did not regenerate"
openssl verify -CAfile ca.pem server.pem >/dev/null 2>&1 || fail "after --force server.pem does not verify"

if [ "$fails" -ne 0 ]; then
  echo "$fails check(s) failed"
  exit 1
fi
echo "PASS"
