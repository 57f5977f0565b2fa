#!/usr/bin/env bash
# Runs every test from a fresh checkout: installs the toolchain (scripts/setup.sh), checks format
# and lints, builds the release site (server + WASM), runs unit and integration tests, then the
# official OpenAI Python SDK against the release server and the mock upstream.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"

./scripts/setup.sh

echo "== format"
cargo fmt --all -- --check

echo "== clippy"
RUSTFLAGS="--cfg erase_components" cargo clippy --features ssr --all-targets -- -D warnings
cargo clippy --lib --features hydrate --target wasm32-unknown-unknown -- -D warnings

echo "== release build (server + WASM)"
cargo leptos build --release
cargo build --release --features ssr --bin mock-gemini

echo "== unit and integration tests"
RUSTFLAGS="--cfg erase_components" cargo nextest run --features ssr --no-fail-fast

echo "== OpenAI SDK tests"
./scripts/sdk-test.sh
