#!/usr/bin/env bash
# Starts a throwaway PostgreSQL for the tests, on a spare port of 127.0.0.1, with a database `fx`
# and trust authentication, accepting TLS too with a certificate for localhost and 127.0.0.1
# signed by a CA made here with openssl. Installs Debian's `postgresql` only when it is
# missing. Prints its lines on stdout, everything else on stderr, so that the caller can:
#
#   eval "$(bash infra/scripts/start-postgres.sh)"
#   cargo test -p fx-core postgres
#   bash infra/scripts/stop-postgres.sh
#
# stdout:
#   export FX_TEST_POSTGRES=postgres://postgres@127.0.0.1:PORT/fx
#   export FX_TEST_POSTGRES_PGDATA=DIR
#   export FX_TEST_POSTGRES_CA=DIR/tls/ca.pem            (the CA of the server's certificate)
#   export FX_TEST_POSTGRES_OTHER_CA=DIR/tls/other-ca.pem (a CA that signed nothing of it)
#
# Must run as root (it installs packages and runs the server as the `postgres` user).
set -euo pipefail

log() { printf 'start-postgres: %s\n' "$*" >&2; }

find_pgbin() {
  local initdb
  initdb="$(ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 || true)"
  if [ -n "$initdb" ]; then
    dirname "$initdb"
  fi
}

pgbin="$(find_pgbin)"
if [ -z "$pgbin" ]; then
  log "installing debian's postgresql"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update >&2
  apt-get install -y postgresql >&2
  pgbin="$(find_pgbin)"
fi
if [ -z "$pgbin" ]; then
  log "no initdb under /usr/lib/postgresql after installing postgresql"
  exit 1
fi

dir="$(mktemp -d /tmp/fx-postgres.XXXXXX)"
chown postgres:postgres "$dir"
chmod 700 "$dir"

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"

as_postgres() { runuser -u postgres -- "$@"; }

tls="$dir/tls"
bash "$(dirname "${BASH_SOURCE[0]}")/make-certs.sh" "$tls"
chown -R postgres:postgres "$tls"
chmod 755 "$tls"

log "initdb in $dir/data"
as_postgres "$pgbin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C \
  --no-sync >&2
log "starting on 127.0.0.1:$port"
as_postgres "$pgbin/pg_ctl" -D "$dir/data" -l "$dir/pg.log" -w -t 30 \
  -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200 -c ssl=on -c ssl_cert_file=$tls/server.pem -c ssl_key_file=$tls/server.key" \
  start >&2 || {
  log "postgresql did not start; its log:"
  cat "$dir/pg.log" >&2 || true
  exit 1
}
as_postgres "$pgbin/createdb" -h 127.0.0.1 -p "$port" -U postgres fx >&2
log "ready: database fx on 127.0.0.1:$port (stop with infra/scripts/stop-postgres.sh)"

echo "export FX_TEST_POSTGRES=postgres://postgres@127.0.0.1:$port/fx"
echo "export FX_TEST_POSTGRES_PGDATA=$dir"
echo "export FX_TEST_POSTGRES_CA=$tls/ca.pem"
echo "export FX_TEST_POSTGRES_OTHER_CA=$tls/other-ca.pem"
