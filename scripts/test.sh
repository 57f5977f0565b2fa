#!/usr/bin/env bash
# Runs every test from a fresh checkout: installs the toolchain (scripts/setup.sh), checks format
# and lints, builds the release binary with the site embedded (front end first, then the server),
# runs unit and integration tests, the official OpenAI and google-genai Python SDKs against the
# release binary and the mock upstream, then the browser tests (end2end/, Playwright + Chromium).
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
cargo leptos build --release --frontend-only
cargo leptos build --release --server-only
cargo build --release --features ssr --bin mock-gemini

echo "== unit and integration tests"
RUSTFLAGS="--cfg erase_components" cargo nextest run --features ssr --no-fail-fast

echo "== SDK tests (openai, google-genai)"
./scripts/sdk-test.sh

echo "== browser tests (Playwright in Chromium)"
(cd end2end && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npx playwright test)
