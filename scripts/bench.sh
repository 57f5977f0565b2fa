#!/usr/bin/env bash
# Builds the release gateway and mock, then runs the load benchmark (benches/gateway.rs) against
# Debian's nginx as the bare-hop baseline and the mock called directly, in one run.
#   ./scripts/bench.sh          # the comparison table (BENCH_REQUESTS=2000, BENCH_ROUNDS=3)
#   ./scripts/bench.sh hold     # memory per stream with BENCH_HOLD_STREAMS=8000 held at once
#   ./scripts/bench.sh redis    # the table with the gateway sharing its pool through redis-server
# Loopback only; bounded in count and time.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
./scripts/setup.sh >/dev/null
cargo leptos build --release --frontend-only
cargo leptos build --release --server-only
cargo build --release --features ssr --bin mock-gemini
# `cargo bench` rebuilds the package's binaries into target/release with the bench profile
# (unoptimized): run copies of the release builds instead.
target="${CARGO_TARGET_DIR:-$ROOT/target}"
export BENCH_BIN_DIR="$target/bench-bin"
mkdir -p "$BENCH_BIN_DIR"
cp "$target/release/gemini-balance" "$target/release/mock-gemini" "$BENCH_BIN_DIR/"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { echo "bench: needs nginx (apt-get install nginx-light)"; exit 1; }
cargo bench --features ssr --bench gateway -- "$@"
