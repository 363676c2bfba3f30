#!/bin/sh
# SYN cookies from XDP (issue 15), beside the rate-limit guard, in ONE run: a bounded SYN
# flood (20,000 SYNs in 3 s from 241 forged sources, 10.99.0.10-250) against a server with
# a 64-entry SYN queue, while a real client in the other namespace connects 20 times (1 s
# timeout each). Four rounds on the same namespaces, each with a fresh server:
#   1. no filter, net.ipv4.tcp_syncookies=0 (the queue alone);
#   2. examples/stateful_synflood.pol (pol: per-source and total SYN rate limits), cookies 0;
#   3. no filter, tcp_syncookies=1 (the kernel's own cookies once its queue overflows);
#   4. bench/flood/syncookie.bpf.c: SYN-ACK cookies from XDP (XDP_TX) and the ACK handed to
#      the listener on tc ingress with bpf_sk_assign_tcp_reqsk; tcp_syncookies=1 (needed
#      for the ACK path), the kernel's SYN queue never sees a SYN.
# Printed per round: the client's connections and mean connect time, the kernel's
# SyncookiesSent/ListenOverflows, and for round 4 the XDP and tc programs' counts.
#   sudo bench/flood/syncookie.sh            (POL=target/debug/pol skips the release build)
# Needs root, clang, bpftool, iproute2 (tc, ip with libbpf), ethtool, nstat, python3.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$(dirname "$HERE")")
if [ -z "${POL:-}" ]; then
	cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" --bin pol
	POL=$ROOT/target/release/pol
fi
OUT=$(mktemp -d)
A=polscA$$
B=polscB$$
cleanup() {
	ip netns del $A 2>/dev/null || true
	ip netns del $B 2>/dev/null || true
	[ -n "${POLPID:-}" ] && kill "$POLPID" 2>/dev/null || true
	rm -rf "$OUT"
}
trap cleanup EXIT

bpftool btf dump file /sys/kernel/btf/vmlinux format c >"$OUT/vmlinux.h"
clang -O2 -g -target bpf -I"$OUT" -I/usr/include/x86_64-linux-gnu -c "$HERE/syncookie.bpf.c" -o "$OUT/sc.o"

ip netns add $A
ip netns add $B
ip -n $A link add va type veth peer name vb netns $B
ip -n $A addr add 10.99.0.1/24 dev va
ip -n $B addr add 10.99.0.2/24 dev vb
for ns in $A $B; do ip -n $ns link set lo up; done
ip -n $A link set va up
ip -n $B link set vb up
# Full checksums on the wire: the XDP program rewrites the SYN whole.
ip netns exec $A ethtool -K va tx off >/dev/null
ip netns exec $B ethtool -K vb tx off >/dev/null

# The kernel's SYN-cookie and SYN-queue counters in A (absolute; rounds print the change).
kstat() {
	ip netns exec $A nstat -az TcpExtSyncookiesSent TcpExtSyncookiesRecv TcpExtListenOverflows \
		TcpExtTCPReqQFullDrop 2>/dev/null | awk 'NR > 1 { print $1, $2 }'
}

round() {
	ip netns exec $A sysctl -qw net.ipv4.tcp_syncookies="$2"
	kstat >"$OUT/before"
	ip netns exec $A python3 "$HERE/flood.py" server &
	SERVER=$!
	sleep 0.5
	ip netns exec $B python3 "$HERE/flood.py" floodmany 20000 3 >"$OUT/flood" &
	FLOOD=$!
	sleep 0.5
	ip netns exec $B python3 "$HERE/flood.py" client 20 >"$OUT/client"
	wait $FLOOD
	kill $SERVER
	wait $SERVER 2>/dev/null || true
	kstat >"$OUT/after"
	ns=$(awk 'NR == FNR { b[$1] = $2; next } $2 - b[$1] > 0 { printf "%s +%d ", $1, $2 - b[$1] }' \
		"$OUT/before" "$OUT/after" | sed 's/TcpExt//g')
	printf '%-44s client %s of 20, mean connect %s ms; flood %s SYNs in %s s; kernel: %s\n' \
		"$1" $(cat "$OUT/client") $(cat "$OUT/flood") "${ns:-nothing counted}"
	sleep 3 # half-open connections of this round expire
}

round "1. no filter, tcp_syncookies=0" 0

sed 's/xdp("eth0")/xdp("va")/' "$ROOT/examples/stateful_synflood.pol" >"$OUT/syn_guard.pol"
ip netns exec $A "$POL" run "$OUT/syn_guard.pol" --json --interval 1 >"$OUT/pol.json" 2>/dev/null &
POLPID=$!
sleep 2
round "2. pol syn_guard (rate limits), cookies=0" 0
kill -INT $POLPID
wait $POLPID || true
POLPID=
dropped=$(grep '"final"' "$OUT/pol.json" | python3 -c 'import json,sys; v=json.loads(sys.stdin.read()); r=v["programs"][0]["rules"]; print(r[0]["packets"], "per source,", r[1]["packets"], "total")')
echo "   syn_guard dropped $dropped over their rate"

round "3. no filter, tcp_syncookies=1 (kernel)" 1

ip -n $B link set dev vb xdp obj "$OUT/sc.o" program xdp_pass
ip -n $A link set dev va xdp obj "$OUT/sc.o" program syn_xdp
ip netns exec $A tc qdisc add dev va clsact
ip netns exec $A tc filter add dev va ingress bpf da obj "$OUT/sc.o" sec tc
round "4. XDP cookies + tc reqsk assign, cookies=1" 1
for P in $(ip -n $A link show va | sed -n 's/.*prog\/xdp id \([0-9]*\).*/\1/p') \
	$(ip netns exec $A tc filter show dev va ingress | sed -n 's/.* id \([0-9]*\) .*/\1/p'); do
	for M in $(bpftool prog show id "$P" | sed -n 's/.*map_ids \([0-9,]*\).*/\1/p' | tr , ' '); do
		bpftool map dump id "$M" 2>/dev/null | python3 -c '
import json, sys
try:
    v = json.load(sys.stdin)[0]["value"][".bss"]
except (ValueError, KeyError, IndexError, TypeError):
    sys.exit(0)
print("   " + ", ".join("%s %s" % kv for d in v for kv in d.items() if kv[1]))'
	done
done
