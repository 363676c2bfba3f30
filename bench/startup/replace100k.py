#!/usr/bin/env python3
"""Benchmark (not a test): replacing a loaded 100,000-rule policy in place.

Prints, side by side in one run: the first `pol load`, a replacement carrying counters and
per-rule statistics, one with `--no-carry`, one replaying 1,000 `pol set` changes, the
`pol agent`'s time from a file change to the new version attached, and the peer: nftables
replacing a table of the same 100,000 addresses in one atomic transaction (`nft -f`).

Usage (root): bench/startup/replace100k.sh [RUNS]
"""

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

POL = sys.argv[1]
NS = sys.argv[2]
RUNS = int(sys.argv[3]) if len(sys.argv) > 3 else 3
NAME = f"bench_replace_{os.getpid()}"


def ns(*cmd, check=True):
    r = subprocess.run(["nsenter", f"--net=/run/netns/{NS}", *cmd],
                       capture_output=True, text=True)
    if check and r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{r.stderr}")
    return r


def pol(*args, check=True):
    return ns(POL, *args, check=check)


def ms(pattern, text):
    m = re.search(pattern, text)
    if not m:
        sys.exit(f"no `{pattern}` in:\n{text}")
    return float(m.group(1))


def generation():
    # The policy's record, not `pol status` (which compiles the 100,000 rules again on
    # every call and would compete with the agent for the CPU).
    try:
        with open(f"/run/pol/policies/{NAME}.json") as f:
            return json.load(f)["generation"]
    except (OSError, ValueError, KeyError):
        return None


def row(label, xs):
    xs = sorted(xs)
    print(f"{label:<58} {statistics.median(xs):9.1f} ms   (min {xs[0]:.1f}, max {xs[-1]:.1f}, n={len(xs)})")


def main():
    d = tempfile.mkdtemp()
    ips = [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(1, 100001)]
    with open(f"{d}/big.txt", "w") as f:
        f.write("\n".join(ips) + "\n")
    rules = "\n".join(f"    drop ip.src == {ip}" for ip in ips)
    # 100,000 exact-address rules (one rule map), a counted rule, and a set `pol set` edits.
    src = ('set extra: ip4 = file("big.txt")\n\n'
           'filter bigp on xdp("v0") {\n' + rules +
           '\n    drop ip.dst in extra   count hits\n    default pass\n}\n')
    with open(f"{d}/bigp.pol", "w") as f:
        f.write(src)
    try:
        out = {}
        r = pol("load", f"{d}/bigp.pol", "--name", NAME)
        out["first `pol load` (compile, load, fill, attach)"] = [ms(r"in ([0-9.]+) ms", r.stderr)]
        for label, extra in [("replace, counters and statistics carried", []),
                             ("replace, --no-carry", ["--no-carry"])]:
            tot, sw = [], []
            for _ in range(RUNS):
                r = pol("load", f"{d}/bigp.pol", "--name", NAME, *extra)
                tot.append(ms(r"\) in ([0-9.]+) ms", r.stderr))
                sw.append(ms(r"switch ([0-9.]+) ms", r.stderr))
            out[label] = tot
            out[f"  of which the link switch ({extra[0] if extra else 'carried'})"] = sw
        # 1,000 run-time changes, replayed on every replacement.
        adds = [f"172.16.{i >> 8}.{i & 255}" for i in range(1000)]
        for i in range(0, 1000, 250):
            pol("set", "add", NAME, "extra", *adds[i:i + 250])
        tot = []
        for _ in range(RUNS):
            r = pol("load", f"{d}/bigp.pol", "--name", NAME)
            if "changes replayed: extra (1000 added" not in r.stderr:
                sys.exit(f"set changes not replayed:\n{r.stderr}")
            tot.append(ms(r"\) in ([0-9.]+) ms", r.stderr))
        out["replace, 1,000 `pol set` changes replayed"] = tot
        # The agent: a file change to the new version attached (polled through pol status).
        pol("unload", NAME)
        agent_dir = f"{d}/agent"
        os.mkdir(agent_dir)
        shutil.copy(f"{d}/big.txt", agent_dir)
        shutil.copy(f"{d}/bigp.pol", f"{agent_dir}/{NAME}.pol")
        agent = subprocess.Popen(["nsenter", f"--net=/run/netns/{NS}", POL, "agent",
                                  "--policies", agent_dir, "--interval", "60"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            t = time.time()
            while generation() is None and time.time() - t < 120:
                time.sleep(0.05)
            lat = []
            for n in range(RUNS):
                g = generation()
                t0 = time.time()
                with open(f"{agent_dir}/{NAME}.pol", "a") as f:
                    f.write(f"# change {n}\n")
                while generation() == g and time.time() - t0 < 120:
                    time.sleep(0.01)
                lat.append((time.time() - t0) * 1000)
            out["agent: file change to the new version attached"] = lat
        finally:
            agent.terminate()
            agent.wait()
        # The peer: nftables, one atomic transaction replacing a table of the same addresses.
        if shutil.which("nft"):
            elems = ",\n".join(ips)
            with open(f"{d}/t.nft", "w") as f:
                f.write("table inet benchrep\ndelete table inet benchrep\n"
                        "table inet benchrep {\n  set big { type ipv4_addr; elements = {\n"
                        + elems + "\n  } }\n  chain in { type filter hook ingress device v0 "
                        "priority 0; ip saddr @big drop; }\n}\n")
            ns("nft", "add", "table", "inet", "benchrep")
            xs = []
            for _ in range(RUNS):
                t0 = time.time()
                ns("nft", "-f", f"{d}/t.nft")
                xs.append((time.time() - t0) * 1000)
            out["peer: nft -f replacing a 100,000-address table"] = xs
            ns("nft", "delete", "table", "inet", "benchrep", check=False)
        else:
            print("(nft not installed: no nftables peer)")
        print(f"100,000-rule policy on a veth (XDP), {RUNS} runs each, one run of this script:")
        for k, v in out.items():
            row(k, v)
    finally:
        pol("unload", NAME, check=False)
        shutil.rmtree(d, ignore_errors=True)


main()
