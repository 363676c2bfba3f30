#!/usr/bin/env bash
# Tracing benchmark (issue 9 "Speed"; docs/benchmarks.md): pol run of probes next to
# bpftrace (Debian's package) and the hand-written libbpf C loader of ../shared/bench/trace,
# in ONE run, printed side by side: start-to-attached time and peak RSS for the same probe,
# and the cost per event on a loop of 1,000,000 getpid calls.
#
#   bench/trace/run.sh                 11 startup runs, 11 overhead rounds
#   RUNS=3 ROUNDS=3 bench/trace/run.sh smoke run
#   BASELINE_DIR=/path ...             where the peer sources are (default ../shared/bench)
#
# Needs root. Installs bpftrace, clang, libbpf-dev and gcc with apt when missing; mounts
# tracefs if it is not. Writes only bench/out/trace/ (git-ignored). A benchmark, not a test.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT=$ROOT/bench/out/trace
BASELINE_DIR=${BASELINE_DIR:-$ROOT/../shared/bench}
RUNS=${RUNS:-11}
ROUNDS=${ROUNDS:-11}
[ "$(id -u)" = 0 ] || { echo "run as root (bpf(), perf events, tracefs)" >&2; exit 1; }
[ -f "$BASELINE_DIR/trace/tploader.c" ] || {
    echo "no peer sources in $BASELINE_DIR/trace (set BASELINE_DIR)" >&2; exit 1; }

missing=()
command -v bpftrace >/dev/null || missing+=(bpftrace)
command -v clang >/dev/null || missing+=(clang)
command -v cc >/dev/null || missing+=(gcc)
[ -f /usr/include/bpf/libbpf.h ] || missing+=(libbpf-dev)
command -v taskset >/dev/null || missing+=(util-linux)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
mountpoint -q /sys/kernel/tracing || mount -t tracefs none /sys/kernel/tracing

mkdir -p "$OUT"
# The peers, built from ../shared/bench's sources as its own build.sh builds them.
cc -O2 -Wall -o "$OUT/loop" "$BASELINE_DIR/trace/loop.c"
cc -O2 -Wall -o "$OUT/tploader" "$BASELINE_DIR/trace/tploader.c" -lbpf
clang -O2 -g -target bpf -I/usr/include/x86_64-linux-gnu \
    -c "$BASELINE_DIR/trace/counters.bpf.c" -o "$OUT/counters.bpf.o"
(cd "$ROOT" && cargo build --release --quiet --bin pol)

python3 "$HERE/bench.py" --pol "$ROOT/target/release/pol" --loop "$OUT/loop" \
    --tploader "$OUT/tploader" --obj "$OUT/counters.bpf.o" \
    --runs "$RUNS" --rounds "$ROUNDS" --json-out "$OUT/trace.json"
echo "figures: $OUT/trace.json"
