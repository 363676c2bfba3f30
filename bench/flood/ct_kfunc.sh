#!/bin/sh
# pol's own connection-tracking table beside the kernel's conntrack through the kfuncs
# (bpf_xdp_ct_lookup), in ONE run: ns per packet (BPF_PROG_TEST_RUN, 10^6 repeats) of an
# XDP program judging an ACK of a known established flow, and of an unknown flow, with
# 1,000 and 1,000,000 flows in the table.
#  - pol: runtime/examples/ct_lookup.rs (pol's code, pol's loader, the pol_ct LRU hash filled
#    through bpf(), sized flows*1.25);
#  - kernel: bench/flood/ct_kfunc.bpf.c (clang -O2, loaded by bpftool/libbpf, which resolves
#    the kfuncs against vmlinux BTF); the table filled by the same program's ct_fill
#    (bpf_xdp_ct_alloc + bpf_ct_insert_entry, one flow per run) in a fresh network
#    namespace per size.
#   sudo bench/flood/ct_kfunc.sh
# Host state: net.netfilter.nf_conntrack_max is raised to 1,100,000 for the run (restored
# after); with HASHSIZE=N the conntrack hash (/sys/module/nf_conntrack/parameters/hashsize,
# host-wide) is resized to N buckets for the run and restored. Needs root, clang, bpftool,
# iproute2, python3, cargo.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$(dirname "$HERE")")
OUT=$(mktemp -d)
NS=polctk$$
OLD_MAX=$(cat /proc/sys/net/netfilter/nf_conntrack_max)
OLD_HASH=$(cat /sys/module/nf_conntrack/parameters/hashsize)
cleanup() {
	ip netns del $NS 2>/dev/null || true
	echo "$OLD_MAX" >/proc/sys/net/netfilter/nf_conntrack_max
	[ "$(cat /sys/module/nf_conntrack/parameters/hashsize)" = "$OLD_HASH" ] ||
		echo "$OLD_HASH" >/sys/module/nf_conntrack/parameters/hashsize
	rm -rf "$OUT"
}
trap cleanup EXIT

bpftool btf dump file /sys/kernel/btf/vmlinux format c >"$OUT/vmlinux.h"
clang -O2 -g -target bpf -I"$OUT" -I/usr/include/x86_64-linux-gnu -c "$HERE/ct_kfunc.bpf.c" -o "$OUT/ct_kfunc.o"
python3 - "$OUT" <<'PY'
import struct, sys
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b)); s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
def ack(src, sport):
    eth = bytes.fromhex("020000000002020000000001") + b"\x08\x00"
    tcp = struct.pack("!HHIIBBHHH", sport, 80, 1, 1, 0x50, 0x10, 65535, 0, 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0x4000, 64, 6, 0, bytes(src), bytes([192, 0, 2, 1]))
    return eth + ip[:10] + struct.pack("!H", csum(ip)) + ip[12:] + tcp + bytes(6)
# Flow i is 10.(i>>16).(i>>8).i:1024+i%50000 -> 192.0.2.1:80; 777 is in both tables.
open(sys.argv[1] + "/known.bin", "wb").write(ack([10, 0, 777 >> 8, 777 & 255], 1024 + 777))
open(sys.argv[1] + "/unknown.bin", "wb").write(ack([198, 51, 100, 7], 40000))
PY
[ -n "${HASHSIZE:-}" ] && echo "$HASHSIZE" >/sys/module/nf_conntrack/parameters/hashsize
echo 1100000 >/proc/sys/net/netfilter/nf_conntrack_max

echo "== pol's own table (LRU hash pol_ct), runtime/examples/ct_lookup.rs"
cargo run --quiet --manifest-path "$ROOT/Cargo.toml" -p pol-runtime --example ct_lookup

echo "== the kernel's conntrack through bpf_xdp_ct_lookup (C, clang -O2; hash buckets: $(cat /sys/module/nf_conntrack/parameters/hashsize))"
for flows in 1000 1000000; do
	ip netns add $NS
	ip netns exec $NS sh -c '
		set -eu
		mount -t bpf bpf /sys/fs/bpf
		P=/sys/fs/bpf/ctk; mkdir -p $P
		bpftool prog loadall "$1/ct_kfunc.o" $P type xdp
		bpftool prog run pinned $P/ct_fill data_in "$1/known.bin" repeat "$2" >/dev/null
		n=$(cat /proc/sys/net/netfilter/nf_conntrack_count)
		[ "$n" -ge "$2" ] || { echo "only $n of $2 flows inserted"; exit 1; }
		for kind in known unknown; do
			bpftool prog run pinned $P/ct_lookup data_in "$1/$kind.bin" repeat 1000 >/dev/null
			r=$(bpftool prog run pinned $P/ct_lookup data_in "$1/$kind.bin" repeat 1000000)
			d=$(echo "$r" | sed -n "s/.*duration (average): \([0-9]*\)ns.*/\1/p")
			v=$(echo "$r" | sed -n "s/.*Return value: \([0-9]*\).*/\1/p")
			printf "%-48s %4s ns/packet (%s)\n" "kfunc, $2 flows, $kind flow" "$d" "$([ "$v" = 2 ] && echo pass || echo drop)"
		done
	' sh "$OUT" $flows
	ip netns del $NS
done
