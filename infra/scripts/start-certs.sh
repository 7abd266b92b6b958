#!/usr/bin/env bash
# Makes the certificates of the TLS tests (Elasticsearch, S3, Kafka over TLS) and prints where
# they are; nothing is started:
#
#   eval "$(bash infra/scripts/start-certs.sh)"
#
# stdout:
#   export FX_TEST_TLS_CA=DIR/ca.pem              the CA that signed the server certificate
#   export FX_TEST_TLS_OTHER_CA=DIR/other-ca.pem  a CA that signed nothing of it
#   export FX_TEST_TLS_CERT=DIR/server.pem        for localhost and 127.0.0.1
#   export FX_TEST_TLS_KEY=DIR/server.key
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dir="$(mktemp -d /tmp/fx-certs.XXXXXX)"
bash "$root/infra/scripts/make-certs.sh" "$dir"
echo "export FX_TEST_TLS_CA=$dir/ca.pem"
echo "export FX_TEST_TLS_OTHER_CA=$dir/other-ca.pem"
echo "export FX_TEST_TLS_CERT=$dir/server.pem"
echo "export FX_TEST_TLS_KEY=$dir/server.key"
