#!/usr/bin/env bash
# Builds the example functions and packs each into examples/dist/<name>.fxpkg: a gzipped tar
# holding exactly fx.toml and function.wasm. Rust examples (examples/, their own cargo workspace)
# are built for wasm32-wasip2; examples/hello-python with componentize-py and examples/hello-js
# with componentize-js, at the versions pinned in their requirements.txt and package-lock.json,
# installed when missing into ${FX_TOOLS_DIR:-~/.cache/ferrisfx/tools}.
#
#   bash infra/scripts/build-examples.sh                    # build and pack every example
#   bash infra/scripts/build-examples.sh --update-prebuilt  # also refresh examples/prebuilt/hello.fxpkg,
#                                                           # the package `ferrisfx dev` embeds
#
# Runs from any directory. Always builds into examples/target, never the host workspace's target.
# Also scaffolds a function in each language with `ferrisfx new` and builds and packs it
# (examples/dist/scaffold-<lang>.fxpkg), to check the templates.
#
# Archives are reproducible (fixed owner, mode and mtime, no gzip timestamp), so an unchanged
# function keeps its package digest. componentize-py and componentize-js do not produce
# byte-identical components from identical inputs (their pre-initialised heap snapshot varies),
# so their components are kept in examples/target/guests under a hash of their inputs (sources,
# WIT, tool versions) and rebuilt only when an input changes.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
examples="$root/examples"
target_dir="$examples/target"
dist="$examples/dist"
prebuilt="$examples/prebuilt"
triple=wasm32-wasip2

tools="${FX_TOOLS_DIR:-$HOME/.cache/ferrisfx/tools}"
guests="$target_dir/guests"
# shellcheck source=infra/scripts/guest-tools.sh
. "$root/infra/scripts/guest-tools.sh"

update_prebuilt=0
for arg in "$@"; do
  case "$arg" in
    --update-prebuilt) update_prebuilt=1 ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | grep '^#' | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "build-examples: unknown argument: $arg" >&2
      exit 2
      ;;
  esac
done

if ! rustup target list --installed | grep -qx "$triple"; then
  echo "installing the $triple target" >&2
  rustup target add "$triple"
fi

cargo build --manifest-path "$examples/Cargo.toml" --target "$triple" --release \
  --target-dir "$target_dir"

# Reads a top-level string key (`name = "..."`) from an fx.toml.
manifest_string() {
  sed -n "s/^[[:space:]]*$2[[:space:]]*=[[:space:]]*\"\([^\"]*\)\".*/\1/p" "$1" | head -n 1
}

staging="$(mktemp -d)"
trap 'rm -rf "$staging"' EXIT
mkdir -p "$dist"

# Packs component $2 with manifest $1 into examples/dist/<name>.fxpkg, reproducibly.
pack() {
  local manifest="$1" wasm="$2" name package size digest
  name="$(manifest_string "$manifest" name)"
  if [ -z "$name" ]; then
    echo "build-examples: no package name in $manifest" >&2
    exit 1
  fi
  if [ "$(head -c 8 "$wasm" | od -An -tx1 | tr -d ' \n')" != "0061736d0d000100" ]; then
    echo "build-examples: $wasm is not a WebAssembly component" >&2
    exit 1
  fi
  rm -f "$staging/fx.toml" "$staging/function.wasm"
  cp "$manifest" "$staging/fx.toml"
  cp "$wasm" "$staging/function.wasm"
  touch -d @0 "$staging/fx.toml" "$staging/function.wasm"
  package="$dist/$name.fxpkg"
  tar --format=ustar --owner=0 --group=0 --numeric-owner --mode=0644 \
    -cf - -C "$staging" fx.toml function.wasm | gzip -n -9 >"$package.tmp"
  mv "$package.tmp" "$package"

  size="$(wc -c <"$package" | tr -d ' ')"
  digest="$(sha256sum "$package" | cut -d' ' -f1)"
  printf '%-34s %8d bytes  sha256:%s  (component %d bytes)\n' \
    "${package#"$root"/}" "$size" "$digest" "$(wc -c <"$wasm")"
  packed=$((packed + 1))
}

packed=0
for manifest in "$examples"/*/Cargo.toml; do
  crate_dir="$(dirname "$manifest")"
  manifest="$crate_dir/fx.toml"
  [ -f "$manifest" ] || continue
  crate="$(manifest_string "$crate_dir/Cargo.toml" name)"
  if [ -z "$crate" ]; then
    echo "build-examples: no package name in $crate_dir/Cargo.toml" >&2
    exit 1
  fi
  wasm="$target_dir/$triple/release/${crate//-/_}.wasm"
  if [ ! -f "$wasm" ]; then
    echo "build-examples: $wasm was not built (is $crate a cdylib?)" >&2
    exit 1
  fi
  pack "$manifest" "$wasm"
done

python_wasm="$(build_python "$examples/hello-python" "$root/sdk/wit" "$guests")"
pack "$examples/hello-python/fx.toml" "$python_wasm"
js_wasm="$(build_js "$examples/hello-js" "$root/sdk/wit" "$guests")"
pack "$examples/hello-js/fx.toml" "$js_wasm"

# What `ferrisfx new --lang rust|python|js` scaffolds builds as its README says: each language's
# project, scaffolded into a temporary folder, built (Rust with the examples' lock file and
# target folder, so only the function itself compiles) and packed as
# examples/dist/scaffold-<lang>.fxpkg, which the end-to-end tests run.
scaffolds="$staging/scaffolds"
mkdir -p "$scaffolds"
for lang in rust python js; do
  cargo run --quiet --locked --manifest-path "$root/Cargo.toml" --bin ferrisfx -- \
    new --lang "$lang" "scaffold-$lang" --dir "$scaffolds/scaffold-$lang" >/dev/null
done
cp "$examples/Cargo.lock" "$scaffolds/scaffold-rust/Cargo.lock"
cargo build --quiet --manifest-path "$scaffolds/scaffold-rust/Cargo.toml" --target "$triple" --release \
  --target-dir "$target_dir"
# The scaffold (its vendored guest SDK included) built with the examples' pinned versions: every
# package in its lock but itself is in examples/Cargo.lock.
lock_packages() {
  awk '/^name = /{name=$3} /^version = /{print name, $3}' "$1" | tr -d '"' | sort -u
}
unpinned="$(comm -13 <(lock_packages "$examples/Cargo.lock") \
  <(lock_packages "$scaffolds/scaffold-rust/Cargo.lock") | grep -v '^scaffold-rust ' || true)"
if [ -n "$unpinned" ]; then
  echo "build-examples: the Rust scaffold resolved packages examples/Cargo.lock does not pin:" >&2
  echo "$unpinned" >&2
  exit 1
fi
pack "$scaffolds/scaffold-rust/fx.toml" "$target_dir/$triple/release/scaffold_rust.wasm"
python_wasm="$(build_python "$scaffolds/scaffold-python" "$scaffolds/scaffold-python/wit" "$guests")"
pack "$scaffolds/scaffold-python/fx.toml" "$python_wasm"
js_wasm="$(build_js "$scaffolds/scaffold-js" "$scaffolds/scaffold-js/wit" "$guests")"
pack "$scaffolds/scaffold-js/fx.toml" "$js_wasm"

if [ "$packed" -eq 0 ]; then
  echo "build-examples: no examples/*/fx.toml found" >&2
  exit 1
fi

if [ "$update_prebuilt" -eq 1 ]; then
  mkdir -p "$prebuilt"
  cp "$dist/hello.fxpkg" "$prebuilt/hello.fxpkg"
  echo "updated ${prebuilt#"$root"/}/hello.fxpkg"
fi
