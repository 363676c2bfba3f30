#!/usr/bin/env bash
# Security rules benchmark (issue 12 "Speed"; docs/rules.md): the cost per open, exec
# and connect of 1, 10, 100 and 1,000 rules and of one rule testing a list of 10 and of
# 1,000 values, beside bpftrace running the same filter on the same tracepoint, in ONE
# run: the rule program's own ns per event (kernel bpf_stats) and the whole call's.
#
#   bench/rules/run.sh              200,000 calls a round (2,000 execs), 5 rounds (medians)
#   N=50000 EXEC_N=500 ROUNDS=3 OPS=open,exec bench/rules/run.sh
#   POL=target/debug/pol bench/rules/run.sh   skip the release build (the kernel
#                                   programs are the same; only pol's own speed differs)
#
# Needs root, cgroup2, bpftrace and a C compiler (installed with apt when missing).
# Writes only bench/out/rules/ (git-ignored). A benchmark, not a test.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT=$ROOT/bench/out/rules
[ "$(id -u)" = 0 ] || { echo "run as root (bpf(), tracepoints, cgroups)" >&2; exit 1; }
missing=()
command -v bpftrace >/dev/null || missing+=(bpftrace)
command -v cc >/dev/null || missing+=(gcc)
command -v bpftool >/dev/null || missing+=(bpftool)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
mountpoint -q /sys/kernel/tracing || mount -t tracefs none /sys/kernel/tracing
mkdir -p "$OUT"
cc -O2 -Wall -o "$OUT/loop" "$HERE/loop.c"
if [ -z "${POL:-}" ]; then
    (cd "$ROOT" && cargo build --release --quiet --bin pol)
    POL=$ROOT/target/release/pol
fi
python3 "$HERE/bench.py" --pol "$POL" --loop "$OUT/loop" \
    --n "${N:-200000}" --exec-n "${EXEC_N:-2000}" --rounds "${ROUNDS:-5}" \
    --ops "${OPS:-open,exec,connect}" --json-out "$OUT/rules.json"
echo "figures: $OUT/rules.json"
