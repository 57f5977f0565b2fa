#!/usr/bin/env bash
# Times each request-log filter query of the admin log view on a large log: fills a temporary
# database with LOGBENCH_ROWS rows (default 1,000,000) and prints each query's mean time.
# Usage: scripts/logbench.sh [rows]   (PROFILE=release for an optimized build; default: test)
set -euo pipefail
cd "$(dirname "$0")/.."
export LOGBENCH_ROWS="${1:-${LOGBENCH_ROWS:-1000000}}"
profile=()
if [[ "${PROFILE:-}" == "release" ]]; then profile=(--release); fi
cargo test "${profile[@]}" --features ssr --lib gateway::store::tests::logbench -- --ignored --exact --nocapture
