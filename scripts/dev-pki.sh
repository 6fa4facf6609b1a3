#!/usr/bin/env bash
# dev-pki.sh: creates a throw-away development PKI for phigate's TLS tests and
# for running phigated on a laptop. NEVER use these keys for real patient data.
#
# Usage: scripts/dev-pki.sh [--force] DIR
#
# Idempotent: does nothing if DIR/ca.pem already exists, unless --force.
# Creates in DIR (keys mode 0600, certificates 0644), all EC P-256 / SHA-256:
#   ca.pem ca.key                dev CA (CA:TRUE), the one phigated trusts
#   server.pem server.key        localhost; SAN DNS:localhost, IP:127.0.0.1, IP:::1; serverAuth
#   clinician|share|admin|modality .pem/.key
#                                clientAuth, subject /O=phigate-dev/CN=<name>
#                                (RFC 2253: CN=<name>,O=phigate-dev)
#   peer-ct01.pem peer-ct01.key  subject /O=phigate-dev/CN=CT01 (AE-title binding)
#   untrusted-ca.pem untrusted-ca.key
#                                a second CA the server does NOT trust
#   untrusted.pem untrusted.key  signed by untrusted-ca; subject CN=admin,O=phigate-dev on
#                                purpose: a forged admin identity must still be refused
#   expired.pem expired.key      signed by the dev CA, validity 2020-01-01..2021-01-01;
#                                subject CN=clinician,O=phigate-dev (a mapped role, so a
#                                rejection can only come from the expiry check)
#   revoked.pem revoked.key      signed by the dev CA, revoked in crl.pem; subject
#                                CN=clinician,O=phigate-dev (same reason)
#   crl.pem                      CRL of the dev CA (10 years), lists revoked.pem
# Prints one summary line on success; errors go to stderr with a non-zero exit.
set -euo pipefail

usage() {
  echo "usage: $0 [--force] DIR" >&2
  exit 2
}

force=0
dir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --force) force=1 ;;
    -h | --help) usage ;;
    -*) echo "dev-pki: unknown option: $1" >&2; usage ;;
    *)
      [ -z "$dir" ] || usage
      dir="$1"
      ;;
  esac
  shift
done
[ -n "$dir" ] || usage

if [ -e "$dir/ca.pem" ] && [ "$force" -eq 0 ]; then
  echo "dev-pki: $dir/ca.pem exists, nothing to do (use --force to regenerate)"
  exit 0
fi

command -v openssl >/dev/null || { echo "dev-pki: openssl not found" >&2; exit 1; }

umask 077
work="$(mktemp -d "${TMPDIR:-/tmp}/phigate-dev-pki.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# All errors from openssl go to a log that is shown only on failure.
log="$work/openssl.log"
run() {
  if ! "$@" >>"$log" 2>&1; then
    echo "dev-pki: failed: $*" >&2
    cat "$log" >&2
    exit 1
  fi
}

newkey() {  # newkey FILE
  run openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"
}

cat >"$work/ext.cnf" <<'CNF'
[ req ]
distinguished_name = req_dn
prompt = no
string_mask = utf8only

[ req_dn ]
O = unused

[ v3_ca ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[ server ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[ client ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

# A DICOM peer (modality) is a TLS client when it stores and a TLS server when
# it receives C-MOVE results.
[ peer ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth, serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
CNF

# Minimal `openssl ca` setup for the dev CA, so that certificates can be issued
# with explicit (past) validity and revoked into a CRL. OpenSSL 3.0's x509 -req
# has no -not_before/-not_after.
mkca() {  # mkca NAME: state dir $work/NAME-db for CA $work/NAME.pem/.key
  local name="$1" db="$work/$1-db"
  mkdir -p "$db/new"
  : >"$db/index.txt"
  echo "unique_subject = no" >"$db/index.txt.attr"
  openssl rand -hex 16 | sed 's/^./1/' >"$db/serial"
  echo 1000 >"$db/crlnumber"
  cat >"$db/ca.cnf" <<CNF
[ ca ]
default_ca = dev

[ dev ]
dir = $db
database = \$dir/index.txt
new_certs_dir = \$dir/new
serial = \$dir/serial
crlnumber = \$dir/crlnumber
certificate = $work/$name.pem
private_key = $work/$name.key
default_md = sha256
default_days = 3650
default_crl_days = 3650
policy = policy_any
preserve = yes
email_in_dn = no
unique_subject = no
copy_extensions = none

[ policy_any ]
organizationName = supplied
commonName = supplied
CNF
  newkey "$work/$name.key"
  run openssl req -new -x509 -sha256 -days 3650 -key "$work/$name.key" \
    -subj "/O=phigate-dev/CN=$2" -config "$work/ext.cnf" \
    -extensions v3_ca -out "$work/$name.pem"
}

issue() {  # issue CA NAME SUBJECT PROFILE [extra openssl ca args...]
  local ca="$1" name="$2" subj="$3" profile="$4"
  shift 4
  newkey "$work/$name.key"
  run openssl req -new -key "$work/$name.key" -subj "$subj" -config "$work/ext.cnf" \
    -out "$work/$name.csr"
  run openssl ca -batch -notext -config "$work/$ca-db/ca.cnf" -in "$work/$name.csr" \
    -extfile "$work/ext.cnf" -extensions "$profile" -out "$work/$name.pem" "$@"
  rm -f "$work/$name.csr"
}

mkca ca "phigate dev CA"
mkca untrusted-ca "phigate untrusted CA"

issue ca server "/O=phigate-dev/CN=localhost" server
for n in clinician share admin modality; do
  issue ca "$n" "/O=phigate-dev/CN=$n" client
done
issue ca peer-ct01 "/O=phigate-dev/CN=CT01" peer
issue untrusted-ca untrusted "/O=phigate-dev/CN=admin" client
issue ca expired "/O=phigate-dev/CN=clinician" client \
  -startdate 20200101000000Z -enddate 20210101000000Z
issue ca revoked "/O=phigate-dev/CN=clinician" client
run openssl ca -batch -config "$work/ca-db/ca.cnf" -revoke "$work/revoked.pem" \
  -crl_reason keyCompromise
run openssl ca -batch -config "$work/ca-db/ca.cnf" -gencrl -crldays 3650 -out "$work/crl.pem"

# Install into DIR. ca.pem goes last: its presence marks a complete PKI.
mkdir -p "$dir"
rm -f "$dir/ca.pem"
names=(server clinician share admin modality peer-ct01 untrusted-ca untrusted expired revoked)
for n in "${names[@]}"; do
  install -m 0600 "$work/$n.key" "$dir/$n.key"
  install -m 0644 "$work/$n.pem" "$dir/$n.pem"
done
install -m 0644 "$work/crl.pem" "$dir/crl.pem"
install -m 0600 "$work/ca.key" "$dir/ca.key"
install -m 0644 "$work/ca.pem" "$dir/ca.pem"

echo "dev-pki: created dev CA, server, 4 clients, peer-ct01, untrusted, expired, revoked and crl.pem in $dir"
