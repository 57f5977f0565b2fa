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
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { echo "bench: needs nginx (apt-get install nginx-light)"; exit 1; }
source scripts/release-bins.sh
cargo bench --features ssr --bench gateway -- "$@"
