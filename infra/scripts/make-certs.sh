#!/usr/bin/env bash
# Makes test certificates with openssl (installing Debian's `openssl` when missing) in DIR:
#
#   bash infra/scripts/make-certs.sh DIR
#
#   DIR/ca.pem, ca.key              a CA
#   DIR/other-ca.pem, other-ca.key  another CA, which signed nothing here (for "wrong CA" tests)
#   DIR/server.pem, server.key      a server certificate signed by ca.pem, for localhost and
#                                   127.0.0.1
#
# Used by start-postgres.sh (PostgreSQL over TLS) and start-certs.sh (the TLS tests of the
# other backends).
set -euo pipefail

dir="${1:?usage: make-certs.sh DIR}"
log() { printf 'make-certs: %s\n' "$*" >&2; }

if ! command -v openssl >/dev/null 2>&1; then
  log "installing debian's openssl (to make the test certificates)"
  if [ "$(id -u)" = "0" ]; then sudo=""; else sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update >&2
  $sudo apt-get install -y openssl >&2
fi
mkdir -p "$dir"
log "making a CA and a server certificate in $dir"
ca_ext=(-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign")
openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=ferrisfx test ca" "${ca_ext[@]}" \
  -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=another ca" "${ca_ext[@]}" \
  -keyout "$dir/other-ca.key" -out "$dir/other-ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
  -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' \
  > "$dir/server.ext"
openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
  -CAcreateserial -days 3650 -extfile "$dir/server.ext" -out "$dir/server.pem" 2>/dev/null
chmod 600 "$dir/server.key" "$dir/ca.key" "$dir/other-ca.key"
chmod 644 "$dir/ca.pem" "$dir/other-ca.pem" "$dir/server.pem"
