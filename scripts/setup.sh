#!/usr/bin/env bash
# Installs everything building and testing need, skipping what is already there:
# the wasm target, cargo-leptos 0.3.10 + wasm-bindgen 0.2.130 (prebuilt cache when available,
# else `cargo install`), wasm-opt from npm's binaryen 132, cargo-nextest, Debian's Chromium and
# Playwright for the browser tests, Debian's redis-server for the replica tests and tinyproxy for
# the egress proxy tests.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"

rustup target add wasm32-unknown-unknown >/dev/null

have() { [ "$("$1" --version 2>/dev/null | head -1)" = "$2" ]; }
if ! have cargo-leptos "cargo-leptos 0.3.10" || ! have wasm-bindgen "wasm-bindgen 0.2.130"; then
  for cache in "$ROOT/../shared/tools/install-cached" "$ROOT/../../shared/tools/install-cached"; do
    if [ -x "$cache" ] || [ -f "$cache" ]; then bash "$cache" || true; break; fi
  done
fi
if ! have cargo-leptos "cargo-leptos 0.3.10"; then
  echo "setup: building cargo-leptos 0.3.10 from crates.io (slow: ~35 min on 2 cores)"
  CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 cargo install --locked cargo-leptos@0.3.10
fi
if ! have wasm-bindgen "wasm-bindgen 0.2.130"; then
  cargo install wasm-bindgen-cli@0.2.130
fi
if [ ! -x "$ROOT/.tools/node_modules/.bin/wasm-opt" ]; then
  mkdir -p "$ROOT/.tools"
  (cd "$ROOT/.tools" && [ -f package.json ] || echo '{"private":true}' > package.json)
  (cd "$ROOT/.tools" && npm install --no-audit --no-fund --loglevel=error binaryen@132.0.0)
fi
if ! command -v cargo-nextest >/dev/null; then
  cargo install --locked cargo-nextest
fi
# Browser tests: Debian's Chromium (Playwright's own browser download is not used) and the
# end2end npm packages. Replica tests: Debian's redis-server. Proxy tests: Debian's tinyproxy.
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v tinyproxy >/dev/null || [ -x /usr/bin/tinyproxy ] || missing+=(tinyproxy)
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ ! -d "$ROOT/end2end/node_modules/@playwright/test" ]; then
  (cd "$ROOT/end2end" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi
echo "setup: toolchain ready"
