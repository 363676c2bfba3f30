#!/usr/bin/env python3
"""pol run start-to-attached vs bpftrace start-to-READY, median of N interleaved runs.

pol: `nsenter --net=/run/netns/NS pol run FILE --iface IF --json --interval 60`; the time is
from spawn to its first stdout line (`{"event":"attached",...}`, written once every program
is attached), plus pol's own `ready in ... (compile, load, attach)` breakdown from stderr.
bpftrace: `bpftrace -B none -e 'PROBE BEGIN { printf("READY\\n"); }'`; BEGIN fires after every
probe is attached (see /work/shared/bench/README.md), so READY marks it ready.
Both are stopped with SIGINT after each run. A benchmark, not a test.
"""
import argparse, json, os, re, signal, statistics, subprocess, threading, time

BPFTRACE_PROG = 'tracepoint:syscalls:sys_enter_getpid { @ = count(); } BEGIN { printf("READY\\n"); }'


def timed_start(cmd, pred, timeout=60):
    """Spawns cmd; returns (seconds to the first stdout line matching pred, stderr text)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    hit, err = [None], []
    te = threading.Thread(target=lambda: err.extend(p.stderr), daemon=True)
    te.start()

    def rd():
        for line in p.stdout:
            if hit[0] is None and pred(line):
                hit[0] = time.perf_counter() - t0
    th = threading.Thread(target=rd, daemon=True)
    th.start()
    end = time.time() + timeout
    while hit[0] is None and p.poll() is None and time.time() < end:
        time.sleep(0.0005)
    p.send_signal(signal.SIGINT)
    try:
        p.wait(timeout=20)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    th.join(2)
    te.join(2)
    return hit[0], "".join(err)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pol", required=True)
    ap.add_argument("--file", required=True)
    ap.add_argument("--netns", required=True)
    ap.add_argument("--iface", default="v0")
    ap.add_argument("--runs", type=int, default=11)
    ap.add_argument("--json-out")
    a = ap.parse_args()
    pol_cmd = ["nsenter", f"--net=/run/netns/{a.netns}", a.pol, "run", a.file,
               "--iface", a.iface, "--json", "--interval", "60"]
    bt_cmd = ["bpftrace", "-B", "none", "-e", BPFTRACE_PROG]
    pol_t, bt_t, parts = [], [], {"compile": [], "load": [], "attach": [], "self": []}
    for i in range(a.runs):
        t, err = timed_start(pol_cmd, lambda l: '"attached"' in l)
        if t is None:
            raise SystemExit(f"pol run did not attach:\n{err}")
        pol_t.append(t)
        m = re.search(r"ready in ([\d.]+) ms \(compile ([\d.]+) ms, load ([\d.]+) ms, attach ([\d.]+) ms\)", err)
        if m:
            for k, v in zip(["self", "compile", "load", "attach"], m.groups()):
                parts[k].append(float(v))
        t, err = timed_start(bt_cmd, lambda l: "READY" in l)
        if t is None:
            raise SystemExit(f"bpftrace did not get ready:\n{err}")
        bt_t.append(t)
    med = lambda xs: statistics.median(xs) if xs else float("nan")
    pm, bm = med(pol_t) * 1000, med(bt_t) * 1000
    print(f"start -> attached, median of {a.runs} runs (ms)")
    print(f"  {'pol run ' + os.path.basename(a.file):<40} {pm:8.1f}   (min {min(pol_t)*1000:.1f}, max {max(pol_t)*1000:.1f})")
    print(f"  {'bpftrace getpid count + BEGIN READY':<40} {bm:8.1f}   (min {min(bt_t)*1000:.1f}, max {max(bt_t)*1000:.1f})")
    print(f"  ratio bpftrace / pol: {bm / pm:.1f}x (goal: >= 10x)")
    print(f"  pol's own view (median): ready {med(parts['self']):.1f} ms = compile {med(parts['compile']):.1f}"
          f" + load {med(parts['load']):.1f} + attach {med(parts['attach']):.1f} (+ process start)")
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump({"pol_ms": [x * 1000 for x in pol_t], "bpftrace_ms": [x * 1000 for x in bt_t],
                       "pol_parts_ms": parts, "pol_median_ms": pm, "bpftrace_median_ms": bm,
                       "ratio": bm / pm}, f, indent=1)


if __name__ == "__main__":
    main()
