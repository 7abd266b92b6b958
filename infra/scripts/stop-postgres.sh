#!/usr/bin/env bash
# Stops the throwaway PostgreSQL that start-postgres.sh started and removes its directory.
#
#   bash infra/scripts/stop-postgres.sh            # uses $FX_TEST_POSTGRES_PGDATA
#   bash infra/scripts/stop-postgres.sh DIR
set -euo pipefail

log() { printf 'stop-postgres: %s\n' "$*" >&2; }

dir="${1:-${FX_TEST_POSTGRES_PGDATA:-}}"
if [ -z "$dir" ]; then
  log "no directory: pass it or set FX_TEST_POSTGRES_PGDATA"
  exit 2
fi
if [ ! -d "$dir/data" ]; then
  log "$dir/data does not exist: nothing to stop"
  exit 0
fi

initdb="$(ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 || true)"
if [ -z "$initdb" ]; then
  log "postgresql is not installed"
  exit 1
fi
pgbin="$(dirname "$initdb")"

if [ -f "$dir/data/postmaster.pid" ]; then
  runuser -u postgres -- "$pgbin/pg_ctl" -D "$dir/data" -m immediate -w stop >&2
fi
case "$dir" in
  /tmp/fx-postgres.*) rm -rf "$dir" ;;
  *) log "leaving $dir in place (not made by start-postgres.sh)" ;;
esac
log "stopped"
