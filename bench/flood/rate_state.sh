#!/bin/sh
# Per-CPU against shared rate-limit state, in ONE run (BPF_PROG_TEST_RUN through bpftool
# prog run, REPEAT (default 10^6) repeats, one IPv4 packet whose source takes a token each time: the
# write path, TAT ahead of now but within the tolerance):
#  - pol: `rate(ip.src, burst(1000000000)) > 1000000/s` as pol compiles it (shared LRU hash,
#    atomic add);
#  - C peers (bench/flood/rate_peer.bpf.c, clang -O2): the same GCRA bucket in a shared LRU
#    hash with an atomic add, and in an LRU per-CPU hash with a plain add;
# each alone on CPU 0, then two copies at once on CPUs 0 and 1 hitting the same key (the
# case where a shared bucket's cache line moves between CPUs).
#   sudo bench/flood/rate_state.sh            POL=target/debug/pol sudo -E bench/flood/rate_state.sh
# Needs root, clang, bpftool, python3 (and cargo unless POL is given).
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$(dirname "$HERE")")
if [ -z "${POL:-}" ]; then
	cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" --bin pol
	POL=$ROOT/target/release/pol
fi
OUT=$(mktemp -d)
PIN=/sys/fs/bpf/polrate_$$
cleanup() { rm -rf "$PIN" "$OUT"; }
trap cleanup EXIT
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
bpftool btf dump file /sys/kernel/btf/vmlinux format c >"$OUT/vmlinux.h"
clang -O2 -g -target bpf -DINTERVAL=1000 -DTOLERANCE=1000000000000ULL -I"$OUT" \
	-I/usr/include/x86_64-linux-gnu -c "$HERE/rate_peer.bpf.c" -o "$OUT/peer.o"
python3 "$HERE/flood.py" packet >"$OUT/pkt.bin"
printf 'filter rated on xdp("eth0") {\n    drop rate(ip.src, burst(1000000000)) > 1000000/s\n    default pass\n}\n' >"$OUT/rated.pol"
"$POL" build "$OUT/rated.pol" -o "$OUT/rated.o" >/dev/null
mkdir -p "$PIN"
bpftool prog loadall "$OUT/peer.o" "$PIN/peer" type xdp
bpftool prog loadall "$OUT/rated.o" "$PIN/pol" type xdp
run() { # CPU PROG -> average ns
	taskset -c "$1" bpftool prog run pinned "$2" data_in "$OUT/pkt.bin" repeat "${REPEAT:-1000000}" |
		sed -n 's/.*duration (average): \([0-9]*\)ns.*/\1/p'
}
for name in pol/rated peer/rate_shared peer/rate_percpu; do
	run 0 "$PIN/$name" >/dev/null # warm
	one=$(run 0 "$PIN/$name")
	run 0 "$PIN/$name" >"$OUT/c0" &
	a=$!
	run 1 "$PIN/$name" >"$OUT/c1" &
	b=$!
	wait $a $b
	printf '%-20s alone %4s ns/packet; two CPUs at once, same key: %4s and %4s ns/packet\n' \
		"$name" "$one" "$(cat "$OUT/c0")" "$(cat "$OUT/c1")"
done
