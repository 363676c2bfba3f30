#!/usr/bin/env bash
# Benchmark (not a test): time from `pol run` start to programs attached, for
# examples/edge.pol on a veth in a private netns, next to bpftrace start-to-READY for a probe
# of similar size. Usage: bench/startup/run.sh [RUNS]   (root; installs bpftrace if missing)
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS="${1:-11}"
NS="polstartup$$"
command -v bpftrace >/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bpftrace
}
mountpoint -q /sys/kernel/tracing || mount -t tracefs none /sys/kernel/tracing || true
cargo build --release --quiet --bin pol
cleanup() { ip netns del "$NS" 2>/dev/null || true; }
trap cleanup EXIT
ip netns add "$NS"
ip -n "$NS" link add v0 type veth peer name v1
ip -n "$NS" link set v0 up
ip -n "$NS" link set v1 up
mkdir -p target/bench
python3 bench/startup/measure.py --pol target/release/pol --file examples/edge.pol \
    --netns "$NS" --iface v0 --runs "$RUNS" --json-out target/bench/startup.json
# The same with the aya loader (ELF + BTF parsing, one map update per key), for comparison
# with the direct path `pol run` uses by default.
echo "--- with POL_LOADER=aya (the former load path) ---"
POL_LOADER=aya python3 bench/startup/measure.py --pol target/release/pol --file examples/edge.pol \
    --netns "$NS" --iface v0 --runs "$RUNS" --json-out target/bench/startup_aya.json
