# Sourced by the scripts: puts the project's tools on PATH (npm binaryen's wasm-opt first, never
# Debian's) and keeps cargo's binaries reachable.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$ROOT/.tools/node_modules/.bin:${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
