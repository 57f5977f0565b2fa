#!/usr/bin/env bash
# Builds and runs the gateway. `--mock` also starts the bundled mock Gemini API and points the
# gateway at it, so the product runs without Google keys.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
./scripts/setup.sh
cargo leptos build --release --frontend-only
cargo leptos build --release --server-only
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
export LEPTOS_SITE_ROOT="${LEPTOS_SITE_ROOT:-$ROOT/target/site}"
if [ "${1:-}" = "--mock" ]; then
  cargo build --release --features ssr --bin mock-gemini
  MOCK_ADDR="${MOCK_ADDR:-127.0.0.1:8090}"
  "$TARGET/release/mock-gemini" "$MOCK_ADDR" &
  MOCK_PID=$!
  trap 'kill $MOCK_PID 2>/dev/null || true' EXIT
  export GEMINI_BASE_URL="http://$MOCK_ADDR"
  export GEMINI_API_KEYS="${MOCK_KEYS:-AIzaMockKeyNumberOne00001,AIzaMockKeyNumberTwo00002,AIzaMockKeyflakyThree0003}"
  echo "run: using the mock Gemini API at $GEMINI_BASE_URL"
elif [ ! -f .env ] && [ -z "${GEMINI_API_KEYS:-}" ]; then
  echo "run: no .env and no GEMINI_API_KEYS; copy .env.example to .env and add your keys, or use --mock" >&2
fi
"$TARGET/release/gemini-balance"
