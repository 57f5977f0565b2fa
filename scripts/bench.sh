#!/usr/bin/env bash
# Builds the release gateway and mock, then runs the load benchmark (benches/gateway.rs).
# BENCH_REQUESTS (default 2000) scales every phase. Loopback only; bounded in count and time.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
./scripts/setup.sh >/dev/null
cargo leptos build --release
cargo build --release --features ssr --bin mock-gemini
ulimit -n 65536 2>/dev/null || ulimit -n 8192
cargo bench --features ssr --bench gateway
