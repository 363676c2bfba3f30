#!/usr/bin/env bash
# Benchmark (not a test): `pol run` load time (maps created and filled, programs loaded) for
# a set of 100,000 addresses and for 100,000 rules, direct path vs aya (POL_LOADER=aya).
# Usage: bench/startup/load100k.sh [RUNS]   (root)
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS="${1:-3}"
NS="polload$$"
cargo build --release --quiet --bin pol
DIR=$(mktemp -d)
cleanup() { ip netns del "$NS" 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT
ip netns add "$NS"
ip -n "$NS" link add v0 type veth peer name v1
ip -n "$NS" link set v0 up
ip -n "$NS" link set v1 up
python3 - "$DIR" <<'PY'
import sys
d = sys.argv[1]
ips = [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(1, 100001)]
open(f"{d}/big.txt", "w").write("\n".join(ips) + "\n")
open(f"{d}/bigset.pol", "w").write('set big: ip4 = file("big.txt")\nfilter bigset on xdp("v0") {\n    drop ip.src in big\n    default pass\n}\n')
rules = "\n".join(f"    drop ip.src == {ip}" for ip in ips)
open(f"{d}/bigrules.pol", "w").write('filter bigrules on xdp("v0") {\n' + rules + '\n    default pass\n}\n')
PY
for f in bigset bigrules; do
    for loader in direct aya; do
        for _ in $(seq "$RUNS"); do
            POL_LOADER=$loader nsenter --net=/run/netns/"$NS" target/release/pol run "$DIR/$f.pol" \
                --duration 0.05 --json 2>&1 >/dev/null | grep -o 'ready in.*)' | sed "s/^/$f $loader: /"
        done
    done
done
