#!/bin/sh
# Creates an empty source file for every target the workspace's manifests declare (and
# src/lib.rs for each member), so that `cargo build` can compile only the dependencies in a
# layer of its own (infra/docker/Dockerfile): that layer is reused until a Cargo.toml or
# Cargo.lock changes. Run from the workspace root with only the manifests copied in.
set -eu
for manifest in $(find . -name Cargo.toml -not -path './target/*'); do
  dir=$(dirname "$manifest")
  # Every declared target: `path = "..."`, or the default path of a named bench/test/bin.
  awk -v dir="$dir" '
    function flush() {
      if (kind == "") return
      if (path == "" && name != "") {
        if (kind == "bench") path = "benches/" name ".rs"
        else if (kind == "test") path = "tests/" name ".rs"
        else if (kind == "bin") path = "src/bin/" name ".rs"
        else if (kind == "example") path = "examples/" name ".rs"
      }
      if (kind == "lib" && path == "") path = "src/lib.rs"
      if (path != "") print dir "/" path
      kind = ""; name = ""; path = ""
    }
    /^\[\[(bench|test|bin|example)\]\]/ { flush(); kind = $0; gsub(/[\[\]]/, "", kind); next }
    /^\[lib\]/ { flush(); kind = "lib"; next }
    /^\[/ { flush(); next }
    kind != "" && /^[ \t]*name[ \t]*=/ { v = $0; sub(/^[^=]*=[ \t]*"/, "", v); sub(/".*/, "", v); name = v }
    kind != "" && /^[ \t]*path[ \t]*=/ { v = $0; sub(/^[^=]*=[ \t]*"/, "", v); sub(/".*/, "", v); path = v }
    END { flush() }
  ' "$manifest"
  # A package without a declared [lib] still gets one, so that it compiles as a library.
  if grep -q '^\[package\]' "$manifest"; then echo "$dir/src/lib.rs"; fi
done | sort -u | while read -r file; do
  mkdir -p "$(dirname "$file")"
  [ -f "$file" ] || echo 'fn main() {}' > "$file"
done
