#!/usr/bin/env bash
# Counts the gateway's user-space instructions per request under valgrind's callgrind: one whole
# answer and one stream of the benchmark's kind (chat completion, the mock answering 21 events).
# Unlike CPU seconds, the count repeats exactly for the same binary, whatever else the machine
# is doing, so it shows a change of a few percent that the noisy timings of bench.sh hide.
# Kernel time (sockets, scheduling) is not counted: bench.sh measures that.
#   ./scripts/instructions.sh                 # builds the release binaries, then counts
#   BENCH_BIN_DIR=dir ./scripts/instructions.sh   # counts the binaries in dir instead
#   INSTR_REQUESTS=400 (per kind)
# Loopback only; two free ports.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
command -v valgrind >/dev/null || { echo "instructions: needs valgrind (apt-get install valgrind)"; exit 1; }
if [ -z "${BENCH_BIN_DIR:-}" ]; then
  source scripts/release-bins.sh
fi
N="${INSTR_REQUESTS:-400}"
WORK="$(mktemp -d)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
MOCK_PORT="$(free_port)"
GW_PORT="$(free_port)"
MOCK_CHUNK_DELAY_MS=0 "$BENCH_BIN_DIR/mock-gemini" "127.0.0.1:$MOCK_PORT" >/dev/null 2>&1 &
MOCK_PID=$!
(
  cd "$WORK"
  GEMINI_API_KEYS=AIzaSyBenchKey000000000000000000000001,AIzaSyBenchKey000000000000000000000002 \
    GEMINI_BASE_URL="http://127.0.0.1:$MOCK_PORT" LEPTOS_SITE_ADDR="127.0.0.1:$GW_PORT" RUST_LOG=info \
    exec valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out" \
    "$BENCH_BIN_DIR/gemini-balance" >/dev/null 2>"$WORK/valgrind.log"
) &
GW_PID=$!
trap 'kill $GW_PID $MOCK_PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
python3 - "$GW_PORT" "$N" "$WORK/callgrind.out" "$GW_PID" <<'PY'
import glob, http.client, json, os, subprocess, sys, time
port, n, out, pid = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
prompt = " ".join(["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
                   "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
                   "eighteen", "nineteen", "twenty"])
for _ in range(120):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("GET", "/healthz"); c.getresponse().read(); break
    except OSError:
        time.sleep(0.5)
else:
    sys.exit("instructions: the gateway did not start under valgrind")

def run(stream, count):
    body = json.dumps({"model": "gemini-2.5-flash", "stream": stream,
                       "messages": [{"role": "user", "content": prompt}]})
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for _ in range(count):
        c.request("POST", "/v1/chat/completions", body, {"content-type": "application/json"})
        r = c.getresponse(); r.read()
        if r.status != 200:
            sys.exit(f"instructions: the gateway answered {r.status}")

def total():
    # Dumps the counts so far into a new numbered file and reads its total.
    subprocess.run(["callgrind_control", "--dump", pid], check=True, capture_output=True)
    time.sleep(0.5)
    newest = max(glob.glob(out + "*"), key=os.path.getmtime)
    for line in open(newest):
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    sys.exit("instructions: no total in " + newest)

for stream, name in [(False, "whole answer"), (True, "stream (21 events)")]:
    run(stream, 50)  # warm: pools, caches, first allocations
    subprocess.run(["callgrind_control", "--zero", pid], check=True, capture_output=True)
    run(stream, n)
    time.sleep(0.7)  # the request log's writer batches its rows
    print(f"{name:22} {total() // n:>10,} instructions per request ({n} requests)")
PY
