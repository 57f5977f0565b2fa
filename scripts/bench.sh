#!/usr/bin/env bash
# Builds the release gateway and mock, then runs the load benchmark (benches/gateway.rs).
# BENCH_REQUESTS (default 2000) scales every phase. Loopback only; bounded in count and time.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
./scripts/setup.sh >/dev/null
cargo leptos build --release --frontend-only
cargo leptos build --release --server-only
cargo build --release --features ssr --bin mock-gemini
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cargo bench --features ssr --bench gateway
