#!/usr/bin/env bash
# Drives the release gateway with the official `openai`, `google-genai` and `anthropic` Python
# SDKs, against the mock upstream.
# Expects `cargo leptos build --release` and the release mock-gemini binary (scripts/test.sh builds both).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"

VENV="$ROOT/.tools/venv"
if [ ! -x "$VENV/bin/pytest" ] || ! "$VENV/bin/python" -c "import openai, google.genai, anthropic" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check openai google-genai anthropic pytest
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
MOCK_PORT=$(free_port)
GW_PORT=$(free_port)
WORK=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

MOCK_CHUNK_DELAY_MS=20 "$TARGET/release/mock-gemini" "127.0.0.1:$MOCK_PORT" >"$WORK/mock.log" 2>&1 &
pids+=($!)
(
  cd "$WORK"
  GEMINI_API_KEYS="AIzaSdkGoodKey000000000001,AIzaSdkInvalidKey0000000002,AIzaSdkGoodKey000000000003" \
  GEMINI_BASE_URL="http://127.0.0.1:$MOCK_PORT" \
  ALLOWED_TOKENS="sdk-token" \
  MODEL_ALIASES="claude-*=gemini-2.5-flash,gpt-*=gemini-2.5-flash,dall-e-*=imagen-4.0-generate-001,tts-*=gemini-2.5-flash-preview-tts" \
  LEPTOS_SITE_ADDR="127.0.0.1:$GW_PORT" \
  LEPTOS_SITE_ROOT="$ROOT/target/site" \
  exec "$TARGET/release/gemini-balance"
) >"$WORK/gateway.log" 2>&1 &
pids+=($!)

for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$GW_PORT/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done

status=0
GATEWAY_URL="http://127.0.0.1:$GW_PORT" GATEWAY_TOKEN="sdk-token" MOCK_URL="http://127.0.0.1:$MOCK_PORT" \
  "$VENV/bin/pytest" -q tests/sdk || status=$?
if [ $status -ne 0 ]; then
  echo "--- gateway log"; tail -50 "$WORK/gateway.log"
fi
if grep -q "AIzaSdk" "$WORK/gateway.log"; then
  echo "FAIL: a full key appeared in the gateway log"; status=1
fi
exit $status
