#!/usr/bin/env python3
"""Per-filter parser cost, before and after a change, in ONE run (issue 7 section 6).

For each filter below, builds it with two `pol` binaries (POL_BEFORE, POL_AFTER), counts
the program's instructions (`pol build`), loads both objects with bpftool and times them
with BPF_PROG_TEST_RUN (`bpftool prog run ... repeat N`) in alternation, ROUNDS rounds;
prints a Markdown table of instruction counts and median ns per packet. Needs root.

    POL_BEFORE=/tmp/pol-before POL_AFTER=target/debug/pol sudo -E bench/parser_cost.py

The first four filters read no field added by issue 7 (MAC addresses, payload bytes,
tunnels, MPLS, PPPoE): the claim under test is that they cost no more. The last four read
such fields (what those cost; "before" cannot build them).
"""
import os, re, statistics, subprocess, sys, tempfile

ROUNDS = int(os.environ.get("ROUNDS", "9"))
REPEAT = int(os.environ.get("REPEAT", "1000000"))

FILTERS = [
    ("tcp.dport == 23 (xdp)", 'filter f on xdp("eth0") {\n drop tcp.dport == 23\n default pass\n}\n', True),
    ("ip.src prefix + ports (xdp)", 'filter f on xdp("eth0") {\n drop ip.src in 10.0.0.0/8\n drop tcp.dport in { 22, 23, 6000..6063 }\n pass udp.dport == 53\n default pass\n}\n', True),
    ("vlan + frags + icmp6 (tc)", 'filter f on tc("eth0", ingress) {\n drop vlan.id == 7\n drop ip.fragment\n drop icmp6.type == 128\n drop tcp.syn and not tcp.ack and tcp.dport == 25\n default pass\n}\n', True),
    ("ip4 header fields (tc)", 'filter f on tc("eth0", ingress) {\n drop ip4.dscp == 46 and not vlan.id == 20\n drop ip4.ihl > 5\n drop frame.len > 1400 and udp.dport == 123\n drop l4.dport == 19\n default pass\n}\n', True),
    ("eth.src == MAC (xdp, new)", 'filter f on xdp("eth0") {\n drop eth.src == 02:00:00:00:00:05\n drop tcp.dport == 23\n default pass\n}\n', False),
    ('tcp.payload[0..4] == "GET " (xdp, new)', 'filter f on xdp("eth0") {\n drop tcp.dport == 80 and tcp.payload[0..4] == "GET "\n default pass\n}\n', False),
    ("inner.tcp.dport == 23 (xdp, new)", 'filter f on xdp("eth0") {\n drop inner.tcp.dport == 23\n drop tcp.dport == 23\n default pass\n}\n', False),
    ("mpls.label, pppoe.session (tc, new)", 'filter f on tc("eth0", ingress) {\n drop mpls.label == 100\n drop pppoe.session == 7\n drop tcp.dport == 23\n default pass\n}\n', False),
]


def frame():
    """Ethernet, IPv4, TCP SYN 40000 -> 80, 16 payload bytes "GET / HTTP/1.1\\r\\n"."""
    payload = b"GET / HTTP/1.1\r\n"
    tcp = (40000).to_bytes(2, "big") + (80).to_bytes(2, "big") + bytes(8) + bytes([0x50, 0x02]) + bytes(6)
    ip = bytes([0x45, 0]) + (20 + len(tcp) + len(payload)).to_bytes(2, "big") + bytes([0, 1, 0x40, 0, 64, 6, 0, 0, 192, 0, 2, 1, 198, 51, 100, 7])
    return bytes.fromhex("020000000002020000000001") + b"\x08\x00" + ip + tcp + payload


def sh(*args):
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def build(pol, src, out):
    text = sh(pol, "build", src, "-o", out)
    m = re.search(r"(\d+) instructions", text)
    return int(m.group(1)) if m else None


def time_ns(pin, pkt):
    out = subprocess.run(["bpftool", "prog", "run", "pinned", pin, "data_in", pkt, "repeat", str(REPEAT)],
                         check=True, capture_output=True, text=True)
    text = out.stdout + out.stderr
    return int(re.search(r"duration \(average\): (\d+)ns", text).group(1))


def main():
    pols = {"before": os.environ["POL_BEFORE"], "after": os.environ["POL_AFTER"]}
    tmp = tempfile.mkdtemp(prefix="parser_cost")
    pkt = os.path.join(tmp, "pkt.bin")
    with open(pkt, "wb") as f:
        f.write(frame())
    pins = []
    rows = []
    try:
        for i, (name, src, old) in enumerate(FILTERS):
            path = os.path.join(tmp, f"f{i}.pol")
            with open(path, "w") as f:
                f.write(src)
            row = {"name": name}
            for side, pol in pols.items():
                if side == "before" and not old:
                    continue
                obj = os.path.join(tmp, f"f{i}_{side}.o")
                row[side + "_insns"] = build(pol, path, obj)
                pin = f"/sys/fs/bpf/parser_cost_{os.getpid()}_{i}_{side}"
                sh("bpftool", "prog", "load", obj, pin)
                pins.append(pin)
                row[side + "_pin"] = pin
                row[side + "_ns"] = []
            rows.append(row)
        for _ in range(ROUNDS):
            for row in rows:
                for side in ("before", "after"):
                    if side + "_pin" in row:
                        row[side + "_ns"].append(time_ns(row[side + "_pin"], pkt))
    finally:
        for p in pins:
            os.unlink(p)
    print(f"{ROUNDS} rounds x {REPEAT} runs, median ns per packet (IPv4 TCP SYN to port 80 with 16 payload bytes)\n")
    print("| filter | insns before | insns after | ns before | ns after |")
    print("|---|---|---|---|---|")
    for row in rows:
        med = lambda k: f"{statistics.median(row[k]):.0f}" if k in row else "—"
        print(f"| {row['name']} | {row.get('before_insns', '—')} | {row['after_insns']} | {med('before_ns')} | {med('after_ns')} |")


if __name__ == "__main__":
    sys.exit(main())
