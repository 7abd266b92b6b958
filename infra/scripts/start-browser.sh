#!/usr/bin/env bash
# Makes sure the web UI's browser tests have a headless browser and the library that drives it,
# installing each only when missing, and prints where they are (nothing is started: each test
# launches its own browser):
#
#   eval "$(bash infra/scripts/start-browser.sh)"
#   cargo test -p fx-tests --test e2e ui
#
# Installs, by package name only:
#   - Debian's `chromium` (apt) when no chromium is on the PATH;
#   - the npm package `playwright-core` (pinned) into ~/.cache/ferrisfx/tools/playwright-<version>
#     (`npx playwright install` downloads browsers from a CDN, which is not reachable here: the
#     tests drive the Debian chromium through `executablePath`).
#
# stdout:
#   export FX_TEST_CHROMIUM=/usr/bin/chromium
#   export FX_TEST_PLAYWRIGHT=/path/to/dir   (holds node_modules/playwright-core)
set -euo pipefail

log() { printf 'start-browser: %s\n' "$*" >&2; }

playwright_version="1.56.1"
tools="${FX_TOOLS_DIR:-$HOME/.cache/ferrisfx/tools}"

chromium="$(command -v chromium || true)"
if [ -z "$chromium" ]; then
  log "installing chromium (apt)"
  if [ "$(id -u)" = "0" ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get install -y -q chromium >&2 || {
    $sudo apt-get update -q >&2
    $sudo apt-get install -y -q chromium >&2
  }
  chromium="$(command -v chromium)"
fi

if ! command -v node >/dev/null 2>&1; then
  log "node is missing: install Debian's nodejs and npm"
  exit 1
fi

pw="$tools/playwright-$playwright_version"
if [ ! -f "$pw/node_modules/playwright-core/package.json" ]; then
  log "installing playwright-core@$playwright_version (npm) into $pw"
  mkdir -p "$pw"
  (cd "$pw" && npm install --silent --no-audit --no-fund --prefix "$pw" "playwright-core@$playwright_version" >&2)
fi

printf 'export FX_TEST_CHROMIUM=%s\n' "$chromium"
printf 'export FX_TEST_PLAYWRIGHT=%s\n' "$pw"
