#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what the tests need (only when missing),
# builds the example functions, checks formatting, lints and the dependency policy (deny.toml),
# and runs every test.
#
#   bash infra/scripts/test.sh            # everything
#   FX_SKIP_LINT=1 bash infra/scripts/test.sh   # skip fmt/clippy/cargo-deny (quicker local runs)
#
# Under CI=true a test whose backend is missing fails instead of skipping.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

step() { printf '\n==> %s\n' "$*"; }

step "toolchain"
rustc --version
cargo --version
if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  step "installing the wasm32-wasip2 target"
  rustup target add wasm32-wasip2
fi

# The shells whose completion scripts the CLI's tests check with `zsh -n` and `fish -n`.
if ! command -v zsh >/dev/null || ! command -v fish >/dev/null; then
  step "installing zsh and fish (apt), to check the completion scripts"
  if [ "$(id -u)" = "0" ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get install -y -q zsh fish || {
    $sudo apt-get update -q
    $sudo apt-get install -y -q zsh fish
  }
fi

step "building the example functions"
bash infra/scripts/build-examples.sh

if [ "${FX_SKIP_LINT:-}" != "1" ]; then
  step "cargo fmt --check"
  cargo fmt --all -- --check
  step "cargo clippy"
  cargo clippy --workspace --all-targets --locked -- -D warnings
  step "cargo deny (licences, bans, sources; deny.toml)"
  bash infra/scripts/cargo-deny.sh
fi

step "starting the real servers the tests use"
# shellcheck source=infra/scripts/servers.sh
source infra/scripts/servers.sh
start_servers

step "building the ferrisfx binary (the distributed tests run it as separate processes)"
cargo build --locked --bin ferrisfx

# Checks that are not cargo tests (deployment manifests and the like): infra/scripts/check-*.sh.
for check in infra/scripts/check-*.sh; do
  [ -f "$check" ] || continue
  step "$(basename "$check")"
  bash "$check"
done

step "cargo test"
cargo test --workspace --locked -- --test-threads=2
