#!/usr/bin/env bash
# Starts a throwaway S3 server for the tests: `s3s-fs`, which serves a directory through the S3 API
# and checks request signatures. Installs it first (several minutes, once) when it is missing.
#
#   eval "$(bash infra/scripts/start-s3.sh)"    # sets FX_TEST_S3_{ENDPOINT,ACCESS_KEY,SECRET_KEY,PID}
#   kill "$FX_TEST_S3_PID"                      # stops it
#
# Only the `export` lines go to stdout; everything else goes to stderr. Idempotent: when the
# FX_TEST_S3_* variables already point at a server that answers, it prints them again and starts
# nothing. FX_TEST_S3_ACCESS_KEY / FX_TEST_S3_SECRET_KEY, when set, choose the credentials.
set -euo pipefail

S3S_FS_VERSION=0.14.1

log() { printf 'start-s3: %s\n' "$*" >&2; }

# Whether something accepts TCP connections on 127.0.0.1:$1.
port_answers() {
  python3 - "$1" <<'EOF'
import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
except OSError:
    sys.exit(1)
EOF
}

print_exports() {
  printf 'export FX_TEST_S3_ENDPOINT=%q\n' "$1"
  printf 'export FX_TEST_S3_ACCESS_KEY=%q\n' "$2"
  printf 'export FX_TEST_S3_SECRET_KEY=%q\n' "$3"
  printf 'export FX_TEST_S3_PID=%q\n' "$4"
}

# Already running (a second call in the same shell): reuse it.
if [ -n "${FX_TEST_S3_ENDPOINT:-}" ] && [ -n "${FX_TEST_S3_ACCESS_KEY:-}" ] \
  && [ -n "${FX_TEST_S3_SECRET_KEY:-}" ]; then
  existing_port="${FX_TEST_S3_ENDPOINT##*:}"
  existing_port="${existing_port%%/*}"
  if [[ "$existing_port" =~ ^[0-9]+$ ]] && port_answers "$existing_port"; then
    log "reusing the server at $FX_TEST_S3_ENDPOINT"
    print_exports "$FX_TEST_S3_ENDPOINT" "$FX_TEST_S3_ACCESS_KEY" "$FX_TEST_S3_SECRET_KEY" \
      "${FX_TEST_S3_PID:-}"
    exit 0
  fi
fi

cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
if ! command -v s3s-fs >/dev/null 2>&1 && [ -x "$cargo_bin/s3s-fs" ]; then
  PATH="$cargo_bin:$PATH"
fi
if ! command -v s3s-fs >/dev/null 2>&1; then
  log "installing s3s-fs $S3S_FS_VERSION (takes several minutes the first time)"
  cargo install s3s-fs --version "$S3S_FS_VERSION" --features binary --locked >&2
  PATH="$cargo_bin:$PATH"
fi

access_key="${FX_TEST_S3_ACCESS_KEY:-fxtest}"
secret_key="${FX_TEST_S3_SECRET_KEY:-$(python3 -c 'import secrets; print(secrets.token_hex(20))')}"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
work="$(mktemp -d "${TMPDIR:-/tmp}/fx-s3.XXXXXX")"
mkdir -p "$work/data"

# Its own session, no terminal, output to the log: it outlives this script and does not hold
# the caller's `$(...)` open.
setsid s3s-fs --host 127.0.0.1 --port "$port" --access-key "$access_key" \
  --secret-key "$secret_key" "$work/data" </dev/null >"$work/s3s-fs.log" 2>&1 &
pid=$!

deadline=$((SECONDS + 30))
until port_answers "$port"; do
  if ! kill -0 "$pid" 2>/dev/null; then
    log "s3s-fs exited; its log ($work/s3s-fs.log):"
    cat "$work/s3s-fs.log" >&2
    exit 1
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    log "s3s-fs did not answer on port $port within 30 s; its log ($work/s3s-fs.log):"
    cat "$work/s3s-fs.log" >&2
    kill "$pid" 2>/dev/null || true
    exit 1
  fi
  sleep 0.1
done

log "s3s-fs (pid $pid) serving $work/data on http://127.0.0.1:$port, log in $work/s3s-fs.log"
print_exports "http://127.0.0.1:$port" "$access_key" "$secret_key" "$pid"
