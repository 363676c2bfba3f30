#!/usr/bin/env python3
"""nftables `ct state established accept` beside pol's `pass ct.state == established`, on the
same traffic in ONE run: one established UDP flow on the loopback of a private network
namespace (bench/flood/ctblast.c: a primer datagram one way, then COUNT the other way),
timed as ns per packet of the whole send path. Three namespaces, set up once:
  none  no table and no pol program (the path's own cost),
  nft   table inet: input chain, policy drop, `ct state established accept` (conntrack),
  pol   `pass ct.state == established`, `default drop` on tc ingress of lo (pol's table),
blasted in turn, in a shuffled order each round (the shared machine drifts), RUNS rounds;
printed: each one's median and the median of its per-round difference to `none`. Each is
first checked to deliver every datagram of a 100-datagram blast (neither drops the flow).
  sudo bench/flood/ct_nft.py [--count 100000] [--runs 7] [--pol target/debug/pol]
Needs root, nft, iproute2, cc. Leaves nothing behind (the namespaces are deleted).
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SRC, SPORT, DST, PORT = "127.0.0.1", "40000", "127.0.0.1", "9999"
NFT = """table inet polct {
  chain input {
    type filter hook input priority 0; policy drop;
    ct state established accept
  }
}
"""
POL = """filter ctin on tc("lo", ingress) {
    pass ct.state == established
    default drop
}
"""


def nsexec(ns, *cmd, **kw):
    return subprocess.run(["ip", "netns", "exec", ns] + list(cmd), capture_output=True,
                          text=True, **kw)


def blast(ns, blaster, count):
    r = nsexec(ns, blaster, SRC, SPORT, DST, PORT, str(count), timeout=300)
    if r.returncode != 0:
        raise RuntimeError(r.stderr)
    return json.loads(r.stdout)["ns_per_packet"]


def udp_in(ns):
    rows = [l.split() for l in nsexec(ns, "cat", "/proc/net/snmp").stdout.splitlines()
            if l.startswith("Udp:")]
    d = dict(zip(rows[0][1:], map(int, rows[1][1:])))
    return d["InDatagrams"] + d["RcvbufErrors"] + d["NoPorts"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=100000)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--pol", default=os.path.join(ROOT, "target", "debug", "pol"))
    a = ap.parse_args()
    tmp = tempfile.mkdtemp()
    blaster = os.path.join(tmp, "ctblast")
    subprocess.run(["cc", "-O2", "-o", blaster, os.path.join(HERE, "ctblast.c")], check=True)
    names = ["none", "nft", "pol"]
    ns = {n: "polct%s%d" % (n, os.getpid()) for n in names}
    run = None
    try:
        for n in names:
            subprocess.run(["ip", "netns", "add", ns[n]], check=True)
            nsexec(ns[n], "ip", "link", "set", "lo", "up", check=True)
        print(nsexec(ns["nft"], "nft", "--version").stdout.strip(), "| pol:", a.pol, flush=True)
        with open(os.path.join(tmp, "ct.nft"), "w") as f:
            f.write(NFT)
        r = nsexec(ns["nft"], "nft", "-f", os.path.join(tmp, "ct.nft"))
        if r.returncode != 0:
            raise SystemExit("nft: " + r.stderr)
        with open(os.path.join(tmp, "ctin.pol"), "w") as f:
            f.write(POL)
        run = subprocess.Popen(["ip", "netns", "exec", ns["pol"], a.pol, "run",
                                os.path.join(tmp, "ctin.pol"), "--json", "--interval", "60"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        end = time.time() + 30
        while time.time() < end:
            line = run.stdout.readline()
            if not line or "attached" in line:
                break
        if run.poll() is not None:
            raise SystemExit("pol run: " + run.stderr.read())
        for n in names:
            before = udp_in(ns[n])
            blast(ns[n], blaster, 100)
            got = udp_in(ns[n]) - before
            if got < 100:
                raise SystemExit("%s delivered %d of 100 datagrams of the established flow"
                                 % (n, got))
            blast(ns[n], blaster, a.count)  # warm-up
        xs = {n: [] for n in names}
        for _ in range(a.runs):
            order = names[:]
            random.shuffle(order)
            for n in order:
                xs[n].append(blast(ns[n], blaster, a.count))
        for n in names:
            line = "%-5s %7.1f ns/packet (median of %d x %d datagrams)" % (
                n, statistics.median(xs[n]), a.runs, a.count)
            if n != "none":
                d = statistics.median([x - y for x, y in zip(xs[n], xs["none"])])
                line += ", %+.1f ns over none (median per-round difference)" % d
            print(line + "; runs " + " ".join("%.0f" % x for x in xs[n]), flush=True)
    finally:
        if run is not None:
            run.send_signal(2)
            try:
                run.wait(timeout=10)
            except subprocess.TimeoutExpired:
                run.kill()
        for n in names:
            subprocess.run(["ip", "netns", "del", ns[n]], capture_output=True)
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    sys.exit(main())
