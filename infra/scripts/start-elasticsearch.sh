#!/usr/bin/env bash
# Starts a throwaway server speaking the Elasticsearch REST API (osmem-server, in memory) for the
# tests, on a spare port of 127.0.0.1. Installs the `osmem-server` wheel (which ships the binary)
# only when it is missing. Prints the exports on stdout, everything else on stderr, so that the
# caller can:
#
#   eval "$(bash infra/scripts/start-elasticsearch.sh)"
#   cargo test -p fx-core elasticsearch
#   kill "$FX_TEST_ELASTICSEARCH_PID"
#
# stdout:
#   export FX_TEST_ELASTICSEARCH=http://127.0.0.1:PORT
#   export FX_TEST_ELASTICSEARCH_PID=PID
#   export FX_TEST_ELASTICSEARCH_BIN=/path/to/osmem-server   (tests start their own servers too)
#
# Idempotent: when FX_TEST_ELASTICSEARCH and FX_TEST_ELASTICSEARCH_PID already name a running
# server that answers, it prints them again and starts nothing. The server keeps everything in
# memory, so a restart loses it.
set -euo pipefail

log() { printf 'start-elasticsearch: %s\n' "$*" >&2; }

# Whether the server at $1 answers GET /.
answers() {
  python3 - "$1" <<'PY' 2>/dev/null
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1] + "/", timeout=1) as r:
        sys.exit(0 if r.status == 200 else 1)
except Exception:
    sys.exit(1)
PY
}

binary() {
  python3 -c 'import osmem_server; print(osmem_server.resolve_binary())'
}

print_exports() {
  printf 'export FX_TEST_ELASTICSEARCH=%s\n' "$1"
  printf 'export FX_TEST_ELASTICSEARCH_PID=%s\n' "$2"
  printf 'export FX_TEST_ELASTICSEARCH_BIN=%s\n' "$3"
}

if ! python3 -c 'import osmem_server' 2>/dev/null; then
  log "installing osmem-server (an in-memory server speaking the Elasticsearch API)"
  python3 -m pip install --quiet osmem-server >&2
fi
bin="$(binary)"
if [ ! -x "$bin" ]; then
  log "no osmem-server binary at $bin"
  exit 1
fi

if [ -n "${FX_TEST_ELASTICSEARCH:-}" ] && [ -n "${FX_TEST_ELASTICSEARCH_PID:-}" ] \
  && kill -0 "$FX_TEST_ELASTICSEARCH_PID" 2>/dev/null && answers "$FX_TEST_ELASTICSEARCH"; then
  log "reusing the server already running at $FX_TEST_ELASTICSEARCH (pid $FX_TEST_ELASTICSEARCH_PID)"
  print_exports "$FX_TEST_ELASTICSEARCH" "$FX_TEST_ELASTICSEARCH_PID" "$bin"
  exit 0
fi

dir="$(mktemp -d /tmp/fx-elasticsearch.XXXXXX)"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
url="http://127.0.0.1:$port"

log "starting osmem-server on 127.0.0.1:$port (log: $dir/osmem.log)"
nohup "$bin" -addr "127.0.0.1:$port" -no-stdin-watch >"$dir/osmem.log" 2>&1 </dev/null &
pid=$!

for _ in $(seq 1 100); do
  if answers "$url"; then
    log "ready: $url (pid $pid; stop with: kill \$FX_TEST_ELASTICSEARCH_PID)"
    print_exports "$url" "$pid" "$bin"
    exit 0
  fi
  if ! kill -0 "$pid" 2>/dev/null; then
    log "osmem-server exited before answering; its log:"
    cat "$dir/osmem.log" >&2 || true
    exit 1
  fi
  sleep 0.1
done

log "osmem-server did not answer on $url within 10 s; its log:"
cat "$dir/osmem.log" >&2 || true
kill "$pid" 2>/dev/null || true
exit 1
