# Sourced by bench.sh and chaos.sh: builds the release gateway (site embedded) and mock as users
# run them, and stages copies in BENCH_BIN_DIR. The copies are what the runs start, because
# `cargo bench` rebuilds the package's binaries into target/release with the bench profile
# (this package unoptimized). Also raises the open-file limit to the hard limit.
./scripts/setup.sh >/dev/null
cargo leptos build --release --frontend-only
cargo leptos build --release --server-only
cargo build --release --features ssr --bin mock-gemini
target="${CARGO_TARGET_DIR:-$ROOT/target}"
export BENCH_BIN_DIR="$target/bench-bin"
mkdir -p "$BENCH_BIN_DIR"
cp "$target/release/gemini-balance" "$target/release/mock-gemini" "$BENCH_BIN_DIR/"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
