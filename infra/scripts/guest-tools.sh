# Builds Python and JavaScript functions into components; sourced by build-examples.sh.
#
# The tools are installed by package name, only when missing, into $tools (default
# ~/.cache/ferrisfx/tools), at the versions the function pins:
#   - componentize-py from PyPI, the version of the `componentize-py==X` line of the function's
#     requirements.txt, into the venv $tools/componentize-py-X;
#   - componentize-js and jco from npm, as locked by the function's package-lock.json, into
#     $tools/js-<hash of the locked dependencies>/node_modules.
# Components are kept in $3 (a cache folder) under a hash of their inputs (sources, WIT, tool
# versions): the tools do not build byte-identical components twice, so an unchanged function is
# not rebuilt and keeps its package digest. Progress goes to stderr; the functions print the
# component's path on stdout.

: "${tools:=${FX_TOOLS_DIR:-$HOME/.cache/ferrisfx/tools}}"

# Hash of the files given (names relative to the current folder, and contents).
inputs_hash() {
  local f
  for f in "$@"; do
    printf '%s\0' "$f"
    cat "$f"
  done | sha256sum | cut -c1-16 | tr -d '\n'
}

# "-" and the hash of the .wit files of folder $1 (the second half of a component's cache name).
wit_hash() {
  printf -- '-'
  (cd "$1" && inputs_hash $(find . -name '*.wit' | LC_ALL=C sort))
}

# Path of a componentize-py at the version pinned by requirements.txt $1, installed when missing.
componentize_py() {
  local version venv
  version="$(sed -n 's/^componentize-py==\([0-9][0-9.]*\).*/\1/p' "$1" | head -n 1)"
  if [ -z "$version" ]; then
    echo "guest-tools: $1 pins no componentize-py==VERSION" >&2
    return 1
  fi
  venv="$tools/componentize-py-$version"
  if [ ! -x "$venv/bin/componentize-py" ]; then
    echo "guest-tools: installing componentize-py $version (pip) into $venv" >&2
    rm -rf "$venv"
    mkdir -p "$tools"
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check "componentize-py==$version" >&2
  fi
  echo "$venv/bin/componentize-py"
}

# Builds the Python function in folder $1 (app.py, requirements.txt) against WIT folder $2;
# prints the component's path (in cache folder $3).
build_python() {
  local dir="$1" wit="$2" cache="$3" tool hash out start
  tool="$(componentize_py "$dir/requirements.txt")" || return 1
  hash="$( (cd "$dir" && inputs_hash requirements.txt $(find . -name '*.py' -not -path './.venv/*' | LC_ALL=C sort)) \
    && wit_hash "$wit")"
  out="$cache/$(basename "$dir")-$hash.wasm"
  if [ ! -f "$out" ]; then
    echo "guest-tools: building $dir with componentize-py" >&2
    mkdir -p "$cache"
    start=$SECONDS
    (cd "$dir" && "$tool" -d "$wit" -w function componentize app -p . -o "$out.tmp") >&2 || return 1
    mv "$out.tmp" "$out"
    echo "guest-tools: built $out in $((SECONDS - start)) s" >&2
    # Earlier builds of this function are stale now.
    find "$cache" -maxdepth 1 -name "$(basename "$dir")-*.wasm" ! -name "$(basename "$out")" -delete
  fi
  echo "$out"
}

# Path of node_modules holding the dependencies locked by the package-lock.json of folder $1,
# installed (npm ci) when missing.
js_modules() {
  local dir="$1" key home
  # The lock, minus the project's own name and version: scaffolds share one install.
  key="$(cd "$dir" && node -e '
    const lock = require("./package-lock.json");
    for (const p of [lock, lock.packages[""]]) { delete p.name; delete p.version; delete p.description; delete p.license; }
    process.stdout.write(JSON.stringify(lock));' | sha256sum | cut -c1-16)" || return 1
  home="$tools/js-$key"
  if [ ! -f "$home/.installed" ]; then
    echo "guest-tools: installing componentize-js and jco (npm ci, as locked by $dir/package-lock.json) into $home" >&2
    rm -rf "$home"
    mkdir -p "$home"
    cp "$dir/package.json" "$dir/package-lock.json" "$home/"
    (cd "$home" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error) >&2 || return 1
    touch "$home/.installed"
  fi
  echo "$home/node_modules"
}

# Builds the JavaScript function in folder $1 (app.js, build.mjs, package.json,
# package-lock.json) against WIT folder $2; prints the component's path (in cache folder $3).
build_js() {
  local dir="$1" wit="$2" cache="$3" modules hash out start
  modules="$(js_modules "$dir")" || return 1
  hash="$( (cd "$dir" && inputs_hash package-lock.json build.mjs $(find . -name '*.js' -not -path './node_modules/*' | LC_ALL=C sort)) \
    && wit_hash "$wit")"
  out="$cache/$(basename "$dir")-$hash.wasm"
  if [ ! -f "$out" ]; then
    echo "guest-tools: building $dir with componentize-js" >&2
    mkdir -p "$cache"
    start=$SECONDS
    # build.mjs imports componentize-js: node resolves it through the node_modules link.
    if [ ! -e "$dir/node_modules" ] || [ -L "$dir/node_modules" ]; then
      ln -sfn "$modules" "$dir/node_modules"
    fi
    (cd "$dir" && node build.mjs "$wit" "$out.tmp") >&2 || return 1
    mv "$out.tmp" "$out"
    echo "guest-tools: built $out in $((SECONDS - start)) s" >&2
    # Earlier builds of this function are stale now.
    find "$cache" -maxdepth 1 -name "$(basename "$dir")-*.wasm" ! -name "$(basename "$out")" -delete
  fi
  echo "$out"
}
