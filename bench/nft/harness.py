#!/usr/bin/env python3
"""pol's nftables harness: rulesets loaded into a private network namespace, Ethernet
frames sent on its loopback with frameblast (AF_PACKET), ns per frame for each ruleset
beside the same frames with no ruleset, in one run.

A frame sent on lo is received within the same send call, so a prerouting or ingress
chain's cost is inside the time frameblast measures; the figure worth reading is the
delta over the empty run ("none"). Bounded by construction: COUNT frames per run.

As a library (bench/nft/classify.py uses it):
    with Netns() as ns:
        ns.nft_load(text)               # seconds taken by `nft -f`
        ns.blast(frames_path, count)    # ns per frame
    frame_v4(proto, src, dst, sport, dport) -> bytes; write_frames(path, frames)
As a command (a ruleset file per case; frames from write_frames):
    harness.py --frames F.bin --ruleset A.nft [--ruleset B.nft ...] [--count N] [--runs R]
prints one JSON line per case: {"ruleset", "load_s", "ns_per_packet", "delta_ns", ...}.
"""
import argparse
import json
import os
import socket
import statistics
import struct
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(os.path.dirname(HERE), "out", "nft")
BLAST = os.path.join(OUT, "frameblast")


def build():
    """Compiles frameblast into bench/out/nft (once)."""
    src = os.path.join(HERE, "frameblast.c")
    if not os.path.exists(BLAST) or os.path.getmtime(BLAST) < os.path.getmtime(src):
        os.makedirs(OUT, exist_ok=True)
        subprocess.run(["cc", "-O2", "-Wall", "-o", BLAST, src], check=True)
    return BLAST


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def frame_v4(proto, src, dst, sport, dport, tos=0):
    """An Ethernet + IPv4 frame (header checksum right: ip_rcv drops a bad one before any
    hook) with an L4 header: TCP 20 bytes, else 8 bytes whose first four hold the ports.
    `tos`: the TOS byte (a baseline run can mark its frames, see classify.py)."""
    if proto == 6:
        l4 = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, 0x02, 1024, 0, 0)
    else:
        l4 = struct.pack("!HHHH", sport, dport, 8, 0)
    total = 20 + len(l4)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, tos, total, 1, 0, 64, proto, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    eth = b"\0" * 12 + struct.pack("!H", 0x0800)
    return eth + ip + l4


def write_frames(path, frames):
    with open(path, "wb") as f:
        for fr in frames:
            f.write(struct.pack("<H", len(fr)) + fr)


class Netns:
    """A network namespace of this process's own (removed on exit) with lo up."""

    def __init__(self, name=None):
        self.name = name or "polnft%d" % os.getpid()

    def __enter__(self):
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.run("ip", "link", "set", "lo", "up", check=True)
        return self

    def __exit__(self, *exc):
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)

    def run(self, *cmd, **kw):
        return subprocess.run(["ip", "netns", "exec", self.name] + list(cmd),
                              capture_output=True, text=True, **kw)

    def nft(self, *args, check=True):
        r = self.run("nft", *args)
        if check and r.returncode != 0:
            raise RuntimeError("nft %s: %s" % (" ".join(args), r.stderr.strip()[-500:]))
        return r.stdout

    def flush(self):
        self.nft("flush", "ruleset")

    def nft_load(self, text, path=None):
        """Loads a ruleset (flushing the one before); returns the seconds `nft -f` took."""
        self.flush()
        path = path or os.path.join(OUT, "%s.nft" % self.name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        t0 = time.perf_counter()
        r = self.run("nft", "-f", path, timeout=1800)
        dt = time.perf_counter() - t0
        if r.returncode != 0:
            raise RuntimeError(r.stderr.strip()[-800:])
        return dt

    def blast(self, frames, count):
        r = self.run(build(), frames, str(count), timeout=600)
        if r.returncode != 0:
            raise RuntimeError(r.stderr)
        out = json.loads(r.stdout)
        if out["send_failures"]:
            raise RuntimeError("%d sends failed" % out["send_failures"])
        return out["ns_per_packet"]


def median_ns(ns, frames, count, runs):
    ns.blast(frames, count)  # warm-up
    return statistics.median(ns.blast(frames, count) for _ in range(runs))


def paired_delta(ns, frames, base_frames, count, runs):
    """Runs of `base_frames` and `frames` alternated under one ruleset (so drift in the
    machine's load hits both alike): the median of the per-pair differences, and the
    medians of each."""
    ns.blast(base_frames, count)
    ns.blast(frames, count)
    pairs = [(ns.blast(base_frames, count), ns.blast(frames, count)) for _ in range(runs)]
    return (statistics.median(x - b for b, x in pairs),
            statistics.median(b for b, _ in pairs), statistics.median(x for _, x in pairs))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", required=True)
    ap.add_argument("--ruleset", action="append", default=[])
    ap.add_argument("--count", type=int, default=100000)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    with Netns() as ns:
        ns.flush()
        none = median_ns(ns, a.frames, a.count, a.runs)
        print(json.dumps({"ruleset": None, "ns_per_packet": none}), flush=True)
        for path in a.ruleset:
            with open(path) as f:
                load_s = ns.nft_load(f.read())
            x = median_ns(ns, a.frames, a.count, a.runs)
            print(json.dumps({"ruleset": path, "load_s": load_s, "ns_per_packet": x,
                              "delta_ns": x - none, "none_ns_per_packet": none}), flush=True)


if __name__ == "__main__":
    main()
