#!/bin/sh
# Issue 11's benchmark in one run: pol's classifier (BPF_PROG_TEST_RUN), the same rules as
# a linear BPF chain, then nftables (linear chain and pipapo set) on the same rules and
# trace headers. Root. Writes bench/out/classify/{pol.txt,nft.jsonl}.
#   bench/nft/classify_run.sh [--sizes 1000,10000,30000,100000] [polbench options...]
set -e
cd "$(dirname "$0")/../.."
out=bench/out/classify
mkdir -p "$out"
echo "start: $(date -u +%H:%M:%S) load average $(cut -d' ' -f1-3 /proc/loadavg)"
cargo run --quiet --release -p polbench --bin classify -- --export "$out" --linear-max 30000 "$@" \
    | tee "$out/pol.txt"
python3 bench/nft/classify.py --dir "$out" | tee "$out/nft.jsonl"
echo "end: $(date -u +%H:%M:%S) load average $(cut -d' ' -f1-3 /proc/loadavg)"
