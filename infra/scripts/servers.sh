# Sourced, not run: starts the real servers the tests use and stops them when the caller exits.
#
#   source infra/scripts/servers.sh
#   start_servers        # exports FX_TEST_* for every server; stops them all on exit
#
# Every infra/scripts/start-<server>.sh installs its server when missing, starts it on a spare
# port and prints `export FX_TEST_...=...` lines: the address the tests read, and a
# FX_TEST_<SERVER>_PID that is killed on exit (or a stop-<server>.sh that is run on exit).

stop_servers() {
  local var stop
  for var in $(compgen -v | grep -E '^FX_TEST_[A-Z0-9_]+_PID$' || true); do
    kill "${!var}" 2>/dev/null || true
  done
  for stop in infra/scripts/stop-*.sh; do
    [ -f "$stop" ] && bash "$stop" >/dev/null 2>&1 || true
  done
}

start_servers() {
  local start
  trap stop_servers EXIT
  for start in infra/scripts/start-*.sh; do
    eval "$(bash "$start")"
  done
  env | grep '^FX_TEST_' | grep -v -i -E 'secret|key=' | sort || true
}
