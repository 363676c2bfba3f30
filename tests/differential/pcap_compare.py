#!/usr/bin/env python3
"""pol's filters beside libpcap's on the fields issue 7 added (run by hand, as root).

Builds a corpus of frames (MAC addresses, ARP, payload bytes, VLAN, MPLS, PPPoE,
GENEVE, GRE, IP-in-IP), writes it as a pcap file, and for each pair of a tcpdump
expression and its pol translation asks tcpdump which frames match (`tcpdump -r -#`)
and `pol test` whether pol's filter drops exactly those (a `test` block of raw frames
expecting `drop` for tcpdump's matches and `pass` for the rest). Prints one line per
expression and exits non-zero on any disagreement.

    sudo POL=target/debug/pol tests/differential/pcap_compare.py

Where pcap and pol mean different things by design, the corpus stays out of the
difference and the expression says so: pcap's `tcp[...]`/`udp[...]` index IPv4 only;
pcap's `mpls` keyword moves past one label per use, so its MPLS frames carry one label;
libpcap 1.10 has no VXLAN or GRE decapsulation, so those are compared through GENEVE
(tcpdump's `geneve` keyword reads the inner packet as pol's `inner.*` does).
"""
import os, re, struct, subprocess, sys, tempfile

POL = os.environ.get("POL", "target/debug/pol")

SMAC, DMAC = bytes.fromhex("020000000005"), bytes.fromhex("020000000002")
BCAST = b"\xff" * 6
MCAST = bytes.fromhex("01005e0000fb")


def eth(etype, rest, src=SMAC, dst=DMAC):
    return dst + src + struct.pack(">H", etype) + rest


def vlan(vid, etype, rest):
    return struct.pack(">HH", vid, etype) + rest


def ip4(src, dst, proto, payload):
    return (bytes([0x45, 0]) + struct.pack(">H", 20 + len(payload)) + bytes([0, 1, 0x40, 0, 64, proto, 0, 0])
            + bytes(src) + bytes(dst) + payload)


def ip6(src, dst, nh, payload):
    return bytes([0x60, 0, 0, 0]) + struct.pack(">H", len(payload)) + bytes([nh, 64]) + src + dst + payload


def tcp(dport, payload=b""):
    return struct.pack(">HH", 40000, dport) + bytes(8) + bytes([0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]) + payload


def udp(dport, payload=b""):
    return struct.pack(">HHHH", 40000, dport, 8 + len(payload), 0) + payload


def arp(op, spa, tpa, sha=SMAC, tha=bytes(6)):
    return struct.pack(">HHBBH", 1, 0x0800, 6, 4, op) + sha + bytes(spa) + tha + bytes(tpa)


def mpls(label, payload):
    return struct.pack(">I", label << 12 | 1 << 8 | 64) + payload


def pppoe(session, ppp, payload):
    return bytes([0x11, 0]) + struct.pack(">HHH", session, len(payload) + 2, ppp) + payload


def geneve(vni, proto, inner, opts=0):
    return bytes([opts, 0]) + struct.pack(">HI", proto, vni << 8) + b"\xaa" * (4 * opts) + inner


def gre(proto, inner, key=None):
    flags = 0x2000 if key is not None else 0
    return struct.pack(">HH", flags, proto) + (struct.pack(">I", key) if key is not None else b"") + inner


A, B, BAD = [192, 0, 2, 1], [192, 0, 2, 2], [192, 0, 2, 99]
IA, IB, IBAD = [10, 0, 0, 1], [10, 0, 0, 2], [10, 9, 9, 9]
V6A = bytes.fromhex("20010db8000000000000000000000001")
V6B = bytes.fromhex("20010db8000000000000000000000002")


def corpus():
    f = []
    for dport in (22, 23, 80):
        f.append(eth(0x0800, ip4(A, B, 6, tcp(dport))))
        f.append(eth(0x86dd, ip6(V6A, V6B, 6, tcp(dport))))
        f.append(eth(0x0800, ip4(A, B, 17, udp(dport, b"\x01\x00xyz"))))
    f.append(eth(0x0800, ip4(A, B, 6, tcp(80, b"GET / HTTP/1.1\r\n"))))
    f.append(eth(0x0800, ip4(A, B, 6, tcp(80, b"POST /x HTTP/1.1"))))
    f.append(eth(0x86dd, ip6(V6A, V6B, 6, tcp(80, b"GET / HTTP/1.1\r\n"))))
    f.append(eth(0x0800, ip4(A, B, 6, tcp(80, b"GE"))))
    f.append(eth(0x0800, ip4(A, B, 17, udp(53, b"\x01\x00\x00\x01"))))
    f.append(eth(0x0800, ip4(A, B, 6, tcp(23)), src=bytes.fromhex("020000000007")))
    f.append(eth(0x0800, ip4(A, B, 17, udp(5353)), dst=MCAST))
    f.append(eth(0x0806, arp(1, A, B), dst=BCAST))
    f.append(eth(0x0806, arp(2, B, A, sha=DMAC, tha=SMAC)))
    f.append(eth(0x8100, vlan(3, 0x0800, ip4(A, B, 6, tcp(23)))))
    f.append(eth(0x8100, vlan(4, 0x0800, ip4(A, B, 6, tcp(23)))))
    for label, src in ((100, A), (100, BAD), (200, BAD), (300, A)):
        f.append(eth(0x8847, mpls(label, ip4(src, B, 6, tcp(80)))))
    f.append(eth(0x8847, mpls(100, ip6(V6A, V6B, 6, tcp(22)))))
    for session, dport in ((0x1234, 22), (0x1234, 80), (0x1235, 22)):
        f.append(eth(0x8864, pppoe(session, 0x0021, ip4(A, B, 6, tcp(dport)))))
    f.append(eth(0x8864, pppoe(0x1234, 0x0057, ip6(V6A, V6B, 6, tcp(22)))))
    for vni, src, dport, opts in ((9, IA, 23, 0), (9, IBAD, 80, 2), (10, IA, 80, 1), (10, IBAD, 23, 0)):
        inner = eth(0x0800, ip4(src, IB, 6, tcp(dport)))
        f.append(eth(0x0800, ip4(A, B, 17, udp(6081, geneve(vni, 0x6558, inner, opts)))))
    f.append(eth(0x0800, ip4(A, B, 17, udp(6081, geneve(11, 0x0800, ip4(IBAD, IB, 6, tcp(23)))))))
    f.append(eth(0x86dd, ip6(V6A, V6B, 17, udp(6081, geneve(12, 0x86dd, ip6(V6A, V6B, 6, tcp(23)))))))
    f.append(eth(0x0800, ip4(A, B, 47, gre(0x0800, ip4(IA, IB, 6, tcp(23)), key=5))))
    f.append(eth(0x0800, ip4(A, B, 4, ip4(IBAD, IB, 6, tcp(80)))))
    return f


# (tcpdump expression, pol condition)
PAIRS = [
    ("ether src 02:00:00:00:00:05", "eth.src == 02:00:00:00:00:05"),
    ("ether dst 02:00:00:00:00:02", "eth.dst == 02:00:00:00:00:02"),
    ("ether broadcast", "eth.broadcast"),
    ("ether multicast", "eth.multicast"),
    ("arp", "arp"),
    ("arp[6:2] = 1", "arp.op == 1"),
    ("arp and arp[8:4] = 0x02000000 and arp[12:2] = 0x0002", "arp.sha == 02:00:00:00:00:02"),
    ("ip and tcp[((tcp[12:1] & 0xf0) >> 2):4] = 0x47455420", 'ip4 and tcp.payload[0..4] == "GET "'),
    ("ip and udp[8:2] = 0x0100", "ip4 and udp.payload[0..2] == 0x0100"),
    ("vlan 3 and tcp dst port 23", "vlan.id == 3 and tcp.dport == 23"),
    ("ether proto 0x8847", "eth.type == 0x8847"),
    ("mpls 100", "mpls.label == 100"),
    ("mpls and ip src 192.0.2.99", "mpls and ip4.src == 192.0.2.99"),
    ("mpls and tcp dst port 22", "mpls and tcp.dport == 22"),
    ("pppoes 0x1234", "pppoe.session == 0x1234"),
    ("pppoes and tcp dst port 22", "pppoe and tcp.dport == 22"),
    ("pppoes 0x1234 and ip6", "pppoe.session == 0x1234 and ip6"),
    ("geneve", "udp.dport == 6081 and tunnel"),
    ("geneve 9", "udp.dport == 6081 and tunnel.id == 9"),
    ("geneve and tcp dst port 23", "udp.dport == 6081 and inner.tcp.dport == 23"),
    ("geneve and ip src 10.9.9.9", "udp.dport == 6081 and inner.ip4.src == 10.9.9.9"),
    ("geneve and ip6", "udp.dport == 6081 and inner.ip6"),
    ("ip proto 47", "ip4 and ip.proto == 47"),
    ("ip proto 4", "ip4 and ip.proto == 4"),
]


def write_pcap(path, frames):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i, fr in enumerate(frames):
            f.write(struct.pack("<IIII", i, 0, len(fr), len(fr)) + fr)


def tcpdump_matches(pcap, expr):
    # Frame i carries the timestamp i seconds (see write_pcap): tcpdump prints it first.
    out = subprocess.run(["tcpdump", "-nn", "-tt", "-r", pcap, expr], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"tcpdump refused {expr!r}: {out.stderr}")
    return {int(m.group(1)) for m in re.finditer(r"^(\d+)\.000000 ", out.stdout, re.M)}


def pol_agrees(tmp, cond, frames, matched):
    cases = "".join(
        f'    packet raw {{ bytes: "{fr.hex()}" }} => {"drop" if i in matched else "pass"}\n'
        for i, fr in enumerate(frames))
    src = (f'filter f on xdp("eth0") {{\n    drop {cond}\n    default pass\n    malformed pass\n}}\n'
           f'test "pcap" on f {{\n{cases}}}\n')
    path = os.path.join(tmp, "cmp.pol")
    with open(path, "w") as f:
        f.write(src)
    out = subprocess.run([POL, "test", path], capture_output=True, text=True)
    m = re.search(r"(\d+) passed, (\d+) failed", out.stdout)
    if not m:
        sys.exit(f"pol test failed on {cond!r}:\n{out.stdout}{out.stderr}")
    failed = [int(x) - 1 for x in re.findall(r"^test pcap #(\d+): .* FAILED", out.stdout, re.M)]
    return int(m.group(2)), sorted(set(failed))


def main():
    frames = corpus()
    tmp = tempfile.mkdtemp(prefix="pcap_compare")
    pcap = os.path.join(tmp, "corpus.pcap")
    write_pcap(pcap, frames)
    version = subprocess.run(["tcpdump", "--version"], capture_output=True, text=True).stdout.splitlines()
    print(f"{len(frames)} frames, {len(PAIRS)} expressions; {'; '.join(version[:2])}\n")
    print("| tcpdump | pol | frames matched | disagreements |")
    print("|---|---|---|---|")
    bad = 0
    for expr, cond in PAIRS:
        matched = tcpdump_matches(pcap, expr)
        n_failed, which = pol_agrees(tmp, cond, frames, matched)
        bad += n_failed
        where = f"{n_failed} (frames {which})" if n_failed else "0"
        print(f"| `{expr}` | `{cond}` | {len(matched)} | {where} |")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
