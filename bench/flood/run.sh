#!/bin/sh
# Stateful filters (issue 15), side by side in ONE run:
#  1. a bounded SYN flood (20,000 SYNs in 3 s from one forged source) against a server with a
#     64-entry SYN queue and no SYN cookies, while a client connects 20 times: without pol,
#     then behind examples/stateful_synflood.pol;
#  2. ns per packet (BPF_PROG_TEST_RUN, bpftool prog run, 1e6 repeats) of the same XDP
#     filter without state, with a rate test, and with connection tracking.
#   sudo bench/flood/run.sh
#   POL=target/debug/pol sudo -E bench/flood/run.sh
# Needs root, bpftool, iproute2, python3. Namespaces polflA/polflB are removed at the end.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$(dirname "$HERE")")
# POL=path/to/pol skips the release build (the BPF code is the same either way).
if [ -z "${POL:-}" ]; then
	cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" --bin pol
	POL=$ROOT/target/release/pol
fi
OUT=$(mktemp -d)
PIN=/sys/fs/bpf/polflood_$$
cleanup() {
	ip netns del polflA 2>/dev/null || true
	ip netns del polflB 2>/dev/null || true
	[ -n "${POLPID:-}" ] && kill "$POLPID" 2>/dev/null || true
	rm -rf "$PIN" "$OUT"
}
trap cleanup EXIT
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf

# ---- 1. SYN flood
ip netns add polflA
ip netns add polflB
ip -n polflA link add va type veth peer name vb netns polflB
ip -n polflA addr add 10.99.0.1/24 dev va
ip -n polflB addr add 10.99.0.2/24 dev vb
for ns in polflA polflB; do ip -n $ns link set lo up; done
ip -n polflA link set va up
ip -n polflB link set vb up
ip netns exec polflA sysctl -qw net.ipv4.tcp_syncookies=0
flood_round() {
	# A fresh server (an empty SYN queue), the flood, and the client during it.
	ip netns exec polflA python3 "$HERE/flood.py" server &
	SERVER=$!
	sleep 0.5
	ip netns exec polflB python3 "$HERE/flood.py" flood 20000 3 >"$OUT/flood" &
	FLOOD=$!
	sleep 0.5
	ip netns exec polflB python3 "$HERE/flood.py" client 20 >"$OUT/client"
	wait $FLOOD
	kill $SERVER; wait $SERVER 2>/dev/null || true
	printf '%-28s client connected %s of 20, mean connect %s ms; flood: %s SYNs in %s s\n' \
		"$1" $(cat "$OUT/client") $(cat "$OUT/flood")
}
flood_round "no filter"
sed 's/xdp("eth0")/xdp("va")/' "$ROOT/examples/stateful_synflood.pol" >"$OUT/syn_guard.pol"
ip netns exec polflA "$POL" run "$OUT/syn_guard.pol" --json --interval 1 >"$OUT/pol.json" 2>/dev/null &
POLPID=$!
sleep 2
flood_round "syn_guard (pol, XDP)"
kill -INT $POLPID; wait $POLPID || true
POLPID=
dropped=$(grep '"final"' "$OUT/pol.json" | python3 -c 'import json,sys; v=json.loads(sys.stdin.read()); print(v["programs"][0]["rules"][0]["packets"])')
echo "syn_guard dropped $dropped SYNs over the source's rate"

# ---- 2. ns per packet
python3 "$HERE/flood.py" packet >"$OUT/syn.bin"
cost() {
	name=$1
	src=$2
	printf '%s\n' "$src" >"$OUT/$name.pol"
	"$POL" build "$OUT/$name.pol" -o "$OUT/$name.o" >/dev/null
	mkdir -p "$PIN"
	bpftool prog loadall "$OUT/$name.o" "$PIN/$name" type xdp
	d=$(bpftool prog run pinned "$PIN/$name/$name" data_in "$OUT/syn.bin" repeat 1000000 | sed -n 's/.*duration (average): \([0-9]*\)ns.*/\1/p')
	printf '%-52s %4s ns/packet\n' "$3" "$d"
}
cost plain 'filter plain on xdp("eth0") {
    drop tcp.dport == 23
    default pass
}' "no state (one port test)"
cost rated 'filter rated on xdp("eth0") {
    drop tcp.dport == 23
    drop tcp.syn and rate(ip.src, burst(10)) > 5/s
    default pass
}' "+ rate(ip.src) > 5/s (the packet is over the rate)"
cost tracked 'filter tracked on xdp("eth0") {
    drop tcp.dport == 23
    drop ct.state == invalid
    default pass
}' "+ connection tracking (a known flow, one lookup)"
