#!/usr/bin/env python3
"""nftables beside pol's classifier (issue 11): the rules and trace headers polbench
exports (`classify --export DIR`) as an nftables linear chain and as a pipapo set
(concatenated ranges, a verdict map), timed on the same headers with harness.py.

    cargo run --release -p polbench --bin classify -- --export bench/out/classify ...
    python3 bench/nft/classify.py --dir bench/out/classify [--sets acl-1000,fw-1000]
        [--modes linear,pipapo] [--count 20000] [--runs 5] [--linear-max 100000]

Each case prints: load seconds (`nft -f`), ns per frame over the trace minus the same
frames marked DSCP 63, which the chain's first rule accepts before any rule ("none": the
same path, hook and table; runs of both alternate under the one ruleset, and the figure is
the median of the pairs' differences), the passes seen
against the first-match reference's, and for pipapo how many rules it took and on how
many headers its verdict differs from first match (checked one frame at a time).

The pipapo set holds the rules the kernel takes in rule order: it refuses an element whose
first or last point lies in an element already there (-EEXIST/-ENOTEMPTY, and one refusal
fails the whole load), so those rules are left out (polbench marks them). It takes an
element that contains an earlier one without its ends inside it; where elements overlap,
pipapo returns one of them, not the first rule: a set has no order.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

TABLE_HEAD = """table ip polcls {
  counter passed {
  }
"""
AFTER = """  chain after {
    type filter hook prerouting priority -290; policy accept;
    counter name passed
  }
}
"""


def read_rules(path):
    rules = []
    with open(path) as f:
        for line in f:
            a = line.split()
            rules.append({
                "drop": a[0] == "1", "proto": (int(a[1]), int(a[2])), "src": a[3],
                "dst": a[4], "sport": (int(a[5]), int(a[6])), "dport": (int(a[7]), int(a[8])),
                "pipapo": a[9] == "1"})
    return rules


def read_trace(path):
    with open(path) as f:
        return [(int(p), s, d, int(sp), int(dp), v == "1")
                for p, s, d, sp, dp, v in (l.split() for l in f)]


def span(lo_hi, full):
    lo, hi = lo_hi
    if (lo, hi) == full:
        return None
    return str(lo) if lo == hi else "%d-%d" % (lo, hi)


PRE = ("  chain pre {\n    type filter hook prerouting priority -300; policy accept;\n"
       "    ip dscp 63 accept\n")


def linear(rules):
    out = [TABLE_HEAD, PRE]
    for r in rules:
        t = []
        p = span(r["proto"], (0, 255))
        if p:
            t.append("ip protocol " + p)
        for key, name in (("src", "saddr"), ("dst", "daddr")):
            if not r[key].endswith("/0"):
                t.append("ip %s %s" % (name, r[key]))
        for key in ("sport", "dport"):
            s = span(r[key], (0, 65535))
            if s:
                t.append("th %s %s" % (key, s))
        t.append("drop" if r["drop"] else "accept")
        out.append("    " + " ".join(t) + "\n")
    out.append("  }\n")
    out.append(AFTER)
    return "".join(out)


def pipapo(rules):
    elems = []
    for r in rules:
        if not r["pipapo"]:
            continue
        f = [r["src"], r["dst"]]
        for key, full in (("proto", (0, 255)), ("sport", (0, 65535)), ("dport", (0, 65535))):
            f.append(span(r[key], full) or "%d-%d" % full)
        elems.append(" . ".join(f) + (" : drop" if r["drop"] else " : accept"))
    return "".join([
        TABLE_HEAD,
        "  map rules {\n    type ipv4_addr . ipv4_addr . inet_proto . inet_service . inet_service"
        " : verdict; flags interval;\n",
        "    elements = {\n      " + ",\n      ".join(elems) + "\n    }\n  }\n" if elems else "",
        PRE,
        "    ip saddr . ip daddr . ip protocol . th sport . th dport vmap @rules\n  }\n",
        AFTER,
    ])


def passed(ns):
    out = json.loads(ns.nft("-j", "list", "counter", "ip", "polcls", "passed"))
    for o in out["nftables"]:
        if "counter" in o:
            return o["counter"]["packets"]
    raise RuntimeError("no counter in nft's answer")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", required=True)
    ap.add_argument("--sets", default=None, help="e.g. acl-1000,fw-1000 (default: every exported set)")
    ap.add_argument("--modes", default="linear,pipapo")
    ap.add_argument("--count", type=int, default=20000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--linear-max", type=int, default=100000)
    ap.add_argument("--budget", type=float, default=2e7,
                    help="rule tests per run at most (count is cut for long chains)")
    a = ap.parse_args()
    sets = a.sets.split(",") if a.sets else sorted(
        f[:-6] for f in os.listdir(a.dir) if f.endswith(".rules"))
    print("load average %s; nft %s" % (" ".join(open("/proc/loadavg").read().split()[:3]),
                                       os.popen("nft --version").read().strip()), flush=True)
    with harness.Netns() as ns:
        ns.run("ip", "route", "add", "blackhole", "default", check=True)
        for name in sets:
            rules = read_rules(os.path.join(a.dir, name + ".rules"))
            trace = read_trace(os.path.join(a.dir, name + ".trace"))
            frames = os.path.join(harness.OUT, "%s.frames" % name)
            harness.write_frames(frames, [harness.frame_v4(p, s, d, sp, dp)
                                          for p, s, d, sp, dp, _ in trace])
            base_frames = os.path.join(harness.OUT, "%s.base.frames" % name)
            harness.write_frames(base_frames, [harness.frame_v4(p, s, d, sp, dp, tos=63 << 2)
                                               for p, s, d, sp, dp, _ in trace])
            want_pass = sum(1 for t in trace if not t[5])
            for mode in a.modes.split(","):
                case = {"set": name, "rules": len(rules), "mode": mode}
                if mode == "linear" and len(rules) > a.linear_max:
                    case["skipped"] = "over --linear-max %d" % a.linear_max
                    print(json.dumps(case), flush=True)
                    continue
                count = a.count
                if mode == "linear":
                    count = int(max(len(trace), min(a.count, a.budget / len(rules))))
                text = linear(rules) if mode == "linear" else pipapo(rules)
                try:
                    case["load_s"] = round(ns.nft_load(text), 3)
                except RuntimeError as e:
                    case["error"] = str(e)[-300:]
                    print(json.dumps(case), flush=True)
                    continue
                if mode == "pipapo":
                    case["taken"] = sum(r["pipapo"] for r in rules)
                    wrong = 0
                    for i, t in enumerate(trace):
                        one = os.path.join(harness.OUT, "one.frames")
                        harness.write_frames(one, [harness.frame_v4(*t[:5])])
                        before = passed(ns)
                        ns.blast(one, 1)
                        wrong += (passed(ns) - before == 1) != (not t[5])
                    case["differs_from_first_match"] = wrong
                before = passed(ns)
                ns.blast(frames, len(trace))
                case["passed"] = passed(ns) - before
                case["first_match_passes"] = want_pass
                d, base, x = harness.paired_delta(ns, frames, base_frames, count, a.runs)
                case.update({"count": count, "ns_per_frame": round(x, 1),
                             "none_ns_per_frame": round(base, 1), "delta_ns": round(d, 1)})
                print(json.dumps(case), flush=True)


if __name__ == "__main__":
    main()
