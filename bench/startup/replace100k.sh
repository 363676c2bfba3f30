#!/usr/bin/env bash
# Benchmark (not a test): replacing a loaded 100,000-rule policy in place (carried,
# --no-carry, with `pol set` changes replayed), the agent's file-change-to-attached time,
# and nftables replacing the same addresses atomically, printed side by side in one run.
# Usage: bench/startup/replace100k.sh [RUNS]   (root)
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS="${1:-3}"
NS="polrepl$$"
command -v nft >/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nftables
} || echo "(could not install nftables: no peer figures)"
cargo build --release --quiet --bin pol
cleanup() { ip netns del "$NS" 2>/dev/null || true; }
trap cleanup EXIT
ip netns add "$NS"
ip -n "$NS" link add v0 type veth peer name v1
ip -n "$NS" link set v0 up
ip -n "$NS" link set v1 up
python3 bench/startup/replace100k.py target/release/pol "$NS" "$RUNS"
