#!/usr/bin/env bash
# Chaos soak (benches/chaos.rs): the release gateway (API only) in front of the release mock,
# 1,000 concurrent streams plus whole-answer loops through 8 keys, 4 of them failing in rotating
# ways. Fails when a client got an error status before its first byte, a stream ended without
# [DONE] or an error event, a stream's first event was an error, a connection broke or timed out,
# a 200 whole answer was unusable, resident memory grew (median of the last 10 s above 1.2 × the
# median of the 10 s after the warm-up), or a healthy key is left disabled. Never run by CI.
#
# CHAOS_SECS (default 60) sets the length of the run; CHAOS_STREAMS (1000), CHAOS_PLAIN (32),
# CHAOS_PHASE_SECS (5), CHAOS_FIRST_EVENT_MS (300), CHAOS_BETWEEN_MS (50), CHAOS_RECOVERY_SECS (15),
# CHAOS_RSS_WARMUP_SECS (10) and CHAOS_GATEWAY_LOG (RUST_LOG of the gateway, default warn) tune
# it. Loopback only; bounded in count and time.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
source scripts/release-bins.sh
cargo bench --features ssr --bench chaos
