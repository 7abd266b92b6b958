#!/usr/bin/env bash
# Reruns the tests whose names contain FILTER N times against the real servers, and prints the
# pass rate: the way to chase a flaky test.
#
#   bash infra/scripts/repeat-tests.sh 20 a_trapping_function_is_retried
#   bash infra/scripts/repeat-tests.sh 5 distributed:: -p fx-tests
#
# Arguments after FILTER go to `cargo test` before `--` (e.g. `-p fx-tests` to build one test
# crate only). Builds the examples and the tests once, starts the servers once (as the test
# command does), then runs `cargo test ... -- FILTER` N times. CI=true is set, so a test whose
# server is missing fails instead of skipping. Each run's output is kept in
# target/repeat-tests/<run>.log; the logs of failed runs are named at the end.
set -euo pipefail

if [ $# -lt 2 ] || ! [[ "$1" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 N FILTER [cargo test options...]" >&2
  exit 2
fi
runs="$1"
filter="$2"
shift 2

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
export CI=true

echo "==> building the example functions" >&2
bash infra/scripts/build-examples.sh >/dev/null
echo "==> building the ferrisfx binary and the tests" >&2
cargo build --locked --bin ferrisfx
cargo test --workspace --locked --no-run "$@" 2>&1 | tail -n 3 >&2

echo "==> starting the real servers" >&2
# shellcheck source=infra/scripts/servers.sh
source infra/scripts/servers.sh
start_servers >&2

logs="$root/target/repeat-tests"
rm -rf "$logs"
mkdir -p "$logs"
passed=0
failed_runs=()
for run in $(seq 1 "$runs"); do
  log="$logs/$run.log"
  started=$(date +%s)
  if cargo test --workspace --locked "$@" -- "$filter" --test-threads=2 >"$log" 2>&1; then
    outcome=passed
    passed=$((passed + 1))
  else
    outcome=FAILED
    failed_runs+=("$log")
  fi
  tests=$(grep -E '^test result:' "$log" | awk '{ran += $4 + $6} END {print ran + 0}')
  printf 'run %d/%d: %s (%d tests, %d s)\n' "$run" "$runs" "$outcome" "$tests" "$(($(date +%s) - started))"
  if [ "$tests" -eq 0 ]; then
    echo "no test matched '$filter': check the filter" >&2
    exit 2
  fi
done

printf '\n%s: passed %d of %d runs (%d%%)\n' "$filter" "$passed" "$runs" $((passed * 100 / runs))
for log in "${failed_runs[@]}"; do
  printf 'failed: %s\n' "$log"
  grep -E '^(test .* FAILED|---- .* stdout ----|thread .* panicked)' "$log" | head -n 6 | sed 's/^/  /'
done
[ "$passed" -eq "$runs" ]
