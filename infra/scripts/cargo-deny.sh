#!/usr/bin/env bash
# Checks the dependency policy in deny.toml with cargo-deny: licences, banned and duplicated
# crates, crate sources. Installs the pinned cargo-deny first (a few minutes, once) when
# `cargo deny --version` reports another version or none.
#
#   bash infra/scripts/cargo-deny.sh
#
# The check itself runs with --offline: it reaches nothing, not crates.io, not the advisory
# database on GitHub (advisories are not checked here; see deny.toml). The crates it reads
# are fetched from crates.io just before, as a build would.
set -euo pipefail

CARGO_DENY_VERSION=0.20.2

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

log() { printf 'cargo-deny: %s\n' "$*" >&2; }

# cargo finds `cargo-deny` on PATH or in $CARGO_HOME/bin, where cargo install puts it.
if [ "$(cargo deny --version 2>/dev/null || true)" != "cargo-deny $CARGO_DENY_VERSION" ]; then
  log "installing cargo-deny $CARGO_DENY_VERSION (takes a few minutes the first time)"
  # --force: replace a cargo-deny of another version, also one cargo install did not put there.
  cargo install cargo-deny --version "$CARGO_DENY_VERSION" --locked --force
fi

# cargo-deny reads the manifest and licence files of every crate in Cargo.lock, for every
# platform (it runs `cargo metadata` without a platform filter when deny.toml names two
# targets); a build downloads only the host's. Fetch them all from crates.io first, so that
# the check can run offline.
cargo fetch --locked
cargo deny --offline --locked check licenses bans sources
