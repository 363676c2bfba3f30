#!/usr/bin/env python3
"""Tracing benchmark (issue 9, "Speed"): pol run of probes next to bpftrace and the
hand-written libbpf C loader of ../shared/bench/trace, measured in one run, side by side.

A. Start to attached, and peak RSS, for the same probe in each tool:
   pol       `pol run -e 'probe ...'`: spawn to its stderr line `attached N probe(s) ...`
             (written once every probe is attached), then SIGINT;
   bpftrace  `bpftrace -B none -e '... BEGIN { printf("READY\\n"); }'`: spawn to READY
             (BEGIN fires after every probe is attached), then SIGINT;
   libbpf    `tploader counters.bpf.o PROG`: spawn to its `READY` line, then a line on stdin.
   Peak RSS is the tracer's VmHWM once attached. Runs interleave the tools; medians.

B. Overhead per event: `loop getpid N` (raw syscall(SYS_getpid), median of 10 timed
   batches, pinned to the last CPU) with no tracer, under bpftrace (`@ = count()` and
   `@[comm] = count()`), under the libbpf program (per-CPU array ++), and under pol
   (`count` and `count by comm`). Conditions interleave round by round so drift hits all
   alike; figures are the median ns per call, the added ns over no tracer, and each
   tracer's own count (it must have seen the N calls).

C. Events through the ring buffer: the same loop, every call of the loop process sent to
   user space as a line (pol `print("{}", pid)`, bpftrace `printf("%d\\n", pid)`), output
   read as fast as the pipe allows. Figures: the rate the loop offered events at, the
   lines each tracer printed per second of loop, and what it reported lost (pol's
   `{"type":"lost"}`, bpftrace's `Lost N events`): delivered + lost must be the calls.

D. The programs' own cost: pol's and the libbpf program attached to the same tracepoint
   at once (two passes, each attached first once: the first to run pays more), kernel.bpf_stats_enabled on during the loop (restored after), ns per run from
   each program's run_time_ns / run_cnt: the code the kernel runs, compared without the
   loop's run-to-run drift that B's differences carry.

A benchmark, not a test. Prints the tables; --json-out writes every figure.
"""
import argparse
import json
import os
import random
import re
import signal
import statistics
import subprocess
import threading
import time

SETTLE_S = 0.2  # let a tracer finish its own start-up work before the timed loop


class Tracer:
    """A tracer process: timestamped output lines of both streams, stopped on demand,
    reaped with wait4 for its peak RSS."""

    def __init__(self, cmd, ready, stop_by_stdin=False):
        self.cmd, self.ready, self.stop_by_stdin = cmd, ready, stop_by_stdin
        self.t0 = time.perf_counter()
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, bufsize=1)
        self.out, self.err = [], []
        self.t_ready = None
        self.cv = threading.Condition()
        self.threads = [threading.Thread(target=self._read, args=(s, buf), daemon=True)
                        for s, buf in ((self.p.stdout, self.out), (self.p.stderr, self.err))]
        for t in self.threads:
            t.start()

    def _read(self, stream, buf):
        for line in stream:
            t = time.perf_counter() - self.t0
            with self.cv:
                buf.append(line.rstrip("\n"))
                if self.t_ready is None and self.ready(line):
                    self.t_ready = t
                self.cv.notify_all()
        with self.cv:
            self.cv.notify_all()

    def wait_ready(self, timeout=60):
        end = time.time() + timeout
        with self.cv:
            while self.t_ready is None and self.p.poll() is None and time.time() < end:
                self.cv.wait(0.05)
        return self.t_ready

    def peak_rss_kib(self):
        """VmHWM of the running tracer: the peak RSS of its own image (wait4's ru_maxrss
        would also count the forked Python before exec)."""
        try:
            with open(f"/proc/{self.p.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return None

    def stop(self):
        """Stops the tracer; returns (peak RSS in KiB, stdout lines, stderr lines)."""
        rss = self.peak_rss_kib()
        try:
            if self.stop_by_stdin:
                self.p.stdin.write("\n")
                self.p.stdin.flush()
            elif self.p.poll() is None:
                self.p.send_signal(signal.SIGINT)
        except (BrokenPipeError, OSError):
            pass
        # bpftrace sometimes loses a SIGINT that arrives right after READY: ask again
        # every half second, and kill it after 15 s.
        deadline = time.time() + 15
        while True:
            try:
                pid, status, _ = os.wait4(self.p.pid, os.WNOHANG)
            except ChildProcessError:
                self.p.wait()
                break
            if pid:
                self.p.returncode = status
                break
            time.sleep(0.05)
            if time.time() > deadline:
                self.p.kill()
            elif not self.stop_by_stdin and int(time.time() * 20) % 10 == 0:
                self.p.send_signal(signal.SIGINT)
        for t in self.threads:
            t.join(5)
        return rss, self.out, self.err


def first_line(lines):
    return next((l for l in lines if l.strip()), "no output")


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, unit="", digits=1):
    return "—" if x is None else f"{x:.{digits}f}{unit}"


class Tools:
    def __init__(self, a):
        self.a = a

    def pol(self, probe):
        return Tracer([self.a.pol, "run", "--json", "-e", probe],
                      lambda l: re.match(r"attached \d+ probes?", l) is not None)

    def bpftrace(self, prog):
        return Tracer(["bpftrace", "-B", "none", "-e", prog + ' BEGIN { printf("READY\\n"); }'],
                      lambda l: l.startswith("READY"))

    def libbpf(self, prog):
        return Tracer([self.a.tploader, self.a.obj, prog], lambda l: l.startswith("READY"),
                      stop_by_stdin=True)


def pol_count(out, comm=None):
    """The count pol printed (--json maps), for `comm` or summed over every key."""
    total = 0
    for line in out:
        try:
            m = json.loads(line)
        except ValueError:
            continue
        if m.get("type") != "map":
            continue
        for e in m.get("entries", []):
            if comm is None or e.get("key", {}).get("comm") == comm:
                v = e.get("value")
                total += v if isinstance(v, int) else 0
    return total


def bpftrace_count(out, comm=None):
    total = 0
    for line in out:
        m = re.match(r"@(?:\[(.*)\])?: (\d+)$", line.strip())
        if m and (comm is None or m.group(1) == comm):
            total += int(m.group(2))
    return total


def libbpf_count(out):
    for line in out:
        if line.startswith("COUNT "):
            return int(line.split()[1])
    return 0


# Part A: the same probe in each tool (libbpf program of counters.bpf.c where one exists).
STARTUP = [
    ("sys_enter_openat count by comm",
     "probe tracepoint(syscalls.sys_enter_openat) { count by comm }",
     "tracepoint:syscalls:sys_enter_openat { @[comm] = count(); }",
     "tp_openat_comm"),
    ("sys_enter_getpid count",
     "probe tracepoint(syscalls.sys_enter_getpid) { count }",
     "tracepoint:syscalls:sys_enter_getpid { @ = count(); }",
     "tp_getpid"),
    # Typed from vmlinux BTF: pol reads its raw tracepoint index (made once per boot).
    ("raw_tracepoint sys_enter count",
     "probe raw_tracepoint(sys_enter) { count }",
     "rawtracepoint:sys_enter { @ = count(); }",
     "raw_getpid"),
]

# Part B: name -> (tool, program, how to read its count of the loop's calls).
GETPID = "tracepoint(syscalls.sys_enter_getpid)"
OVERHEAD = [
    ("none", None, None, None),
    ("bpftrace @ = count()", "bpftrace",
     "tracepoint:syscalls:sys_enter_getpid { @ = count(); }", lambda o: bpftrace_count(o)),
    ("bpftrace @[comm] = count()", "bpftrace",
     "tracepoint:syscalls:sys_enter_getpid { @[comm] = count(); }",
     lambda o: bpftrace_count(o, "loop")),
    ("libbpf C (percpu array ++)", "libbpf", "tp_getpid", libbpf_count),
    ("pol count", "pol", f"probe {GETPID} {{ count }}", lambda o: pol_count(o)),
    ("pol count by comm", "pol", f"probe {GETPID} {{ count by comm }}",
     lambda o: pol_count(o, "loop")),
]


def startup(a, tools, results):
    rows = {}
    for name, pol_p, bt_p, lb_p in STARTUP:
        r = rows[name] = {"pol": [], "bpftrace": [], "libbpf": [], "errors": {}}
        for _ in range(a.runs):
            for tool, prog in (("pol", pol_p), ("bpftrace", bt_p), ("libbpf", lb_p)):
                if tool in r["errors"]:
                    continue
                tr = getattr(tools, tool)(prog)
                t = tr.wait_ready()
                rss, out, err = tr.stop()
                if t is None:
                    r["errors"][tool] = first_line(err or out)
                    continue
                r[tool].append((t * 1000, rss / 1024 if rss else None))
    print(f"\nA. start -> attached and peak RSS, median of {a.runs} interleaved runs")
    head = f"  {'probe':<32} {'pol':>20} {'bpftrace':>20} {'libbpf C':>20}"
    print(head)
    for name, r in rows.items():
        cells = []
        for tool in ("pol", "bpftrace", "libbpf"):
            if tool in r["errors"]:
                cells.append(f"{'failed':>20}")
                continue
            t = med([x[0] for x in r[tool]])
            m = med([x[1] for x in r[tool]])
            cells.append(f"{fmt(t, ' ms'):>10} {fmt(m, ' MB'):>9}")
        print(f"  {name:<32} {' '.join(cells)}")
        pt, bt = med([x[0] for x in r["pol"]]), med([x[0] for x in r["bpftrace"]])
        pm, bm = med([x[1] for x in r["pol"]]), med([x[1] for x in r["bpftrace"]])
        if pt and bt and pm and bm:
            print(f"  {'':<32} bpftrace / pol: time {bt / pt:.1f}x (goal >= 10x), "
                  f"memory {bm / pm:.1f}x (goal >= 4x)")
        for tool, e in r["errors"].items():
            print(f"  {'':<32} {tool} failed: {e}")
        r["median"] = {tool: {"ms": med([x[0] for x in r[tool]]), "mb": med([x[1] for x in r[tool]])}
                       for tool in ("pol", "bpftrace", "libbpf")}
    results["startup"] = rows


def loop_once(a):
    cpu = str(os.cpu_count() - 1)
    out = subprocess.run(["taskset", "-c", cpu, a.loop, "getpid", str(a.n)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["ns_per_call_batch_median"]


def overhead(a, tools, results):
    per = {name: [] for name, *_ in OVERHEAD}
    counts = {name: [] for name, *_ in OVERHEAD}
    errors = {}
    rng = random.Random(9)
    for _ in range(a.rounds):
        # A new order each round: drift within a round favours no tracer.
        order = list(OVERHEAD)
        rng.shuffle(order)
        for name, tool, prog, count in order:
            if name in errors:
                continue
            tr = getattr(tools, tool)(prog) if tool else None
            if tr and tr.wait_ready() is None:
                _, out, err = tr.stop()
                errors[name] = first_line(err or out)
                continue
            time.sleep(SETTLE_S if tr else 0)
            ns = loop_once(a)
            if tr:
                _, out, _ = tr.stop()
                counts[name].append(count(out))
            per[name].append(ns)
    none = med(per["none"])
    print(f"\nB. overhead per event: loop of {a.n:,} getpid, median of {a.rounds} interleaved rounds")
    print(f"  {'tracer':<30} {'ns/call':>9} {'added ns':>9} {'x none':>7} {'counted (median)':>17}")
    rows = {}
    for name, *_ in OVERHEAD:
        if name in errors:
            print(f"  {name:<30} failed: {errors[name]}")
            continue
        m = med(per[name])
        added = m - none if (m is not None and none is not None) else None
        c = med(counts[name]) if counts[name] else None
        print(f"  {name:<30} {fmt(m):>9} {fmt(added):>9} {fmt(m / none if none else None, 'x', 2):>7}"
              f" {('' if c is None else f'{int(c):,}'):>17}")
        rows[name] = {"ns_per_call": per[name], "median": m, "added_ns": added, "counts": counts[name]}
    # Paired by round: each round ran every tracer once, so their differences drift less.
    pairs = [(p, l) for p, l in zip(per.get("pol count", []), per.get("libbpf C (percpu array ++)", []))]
    if pairs and "pol count" not in errors:
        diffs = [p - l for p, l in pairs]
        print(f"  pol count - libbpf, per round: median {fmt(med(diffs))} ns "
              f"(rounds: {', '.join(f'{d:+.0f}' for d in diffs)})")
        rows["pol_minus_libbpf"] = {"per_round": diffs, "median": med(diffs)}
    if errors:
        rows["errors"] = errors
    results["overhead"] = rows


# Part C: name -> (tool, program).
RINGBUF = [
    ("bpftrace printf", "bpftrace",
     'tracepoint:syscalls:sys_enter_getpid /comm == "loop"/ { printf("%d\\n", pid); }'),
    ("pol print", "pol",
     f'probe {GETPID} {{ where comm == "loop" print("{{}}", pid) }}'),
]


def ringbuf(a, tools, results):
    rows = {name: [] for name, *_ in RINGBUF}
    errors = {}
    cpu = str(os.cpu_count() - 1)
    for _ in range(a.rounds):
        for name, tool, prog in RINGBUF:
            if name in errors:
                continue
            tr = getattr(tools, tool)(prog)
            if tr.wait_ready() is None:
                _, out, err = tr.stop()
                errors[name] = first_line(err or out)
                continue
            time.sleep(SETTLE_S)
            res = json.loads(subprocess.run(
                ["taskset", "-c", cpu, a.loop, "getpid", str(a.n_ring), "1"],
                capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
            time.sleep(0.5)  # let the tracer print what is still buffered
            _, out, err = tr.stop()
            if tool == "pol":
                got = sum(1 for l in out if l.startswith('{"probe"') or '"type":"print"' in l)
                lost = sum(json.loads(l).get("count", 0) for l in out if '"type":"lost"' in l)
            else:
                got = sum(1 for l in out if l.strip().isdigit())
                lost = sum(int(m.group(1)) for l in out + err
                           for m in [re.search(r"Lost (\d+) events", l)] if m)
            secs = res["ns_total"] / 1e9
            rows[name].append({"offered_per_s": a.n_ring / secs, "delivered_per_s": got / secs,
                               "delivered": got, "lost": lost})
    print(f"\nC. ring buffer: loop of {a.n_ring:,} getpid, each call printed, "
          f"median of {a.rounds} interleaved rounds")
    print(f"  {'tracer':<18} {'offered/s':>11} {'delivered/s':>12} {'delivered':>10} {'lost':>9} {'sum':>9}")
    for name, *_ in RINGBUF:
        if name in errors:
            print(f"  {name:<18} failed: {errors[name]}")
            continue
        r = rows[name]
        m = {k: med([x[k] for x in r]) for k in ("offered_per_s", "delivered_per_s", "delivered", "lost")}
        print(f"  {name:<18} {m['offered_per_s']:>11,.0f} {m['delivered_per_s']:>12,.0f} "
              f"{int(m['delivered']):>10,} {int(m['lost']):>9,} {int(m['delivered'] + m['lost']):>9,}")
    if errors:
        rows["errors"] = errors
    results["ringbuf"] = rows


# Part D: the programs' own cost, both tracers attached to the same tracepoint at once.
PROGCOST = [
    ("sys_enter_getpid count", "getpid", 1_000_000,
     "probe tracepoint(syscalls.sys_enter_getpid) { count }", "tp_getpid"),
    ("sys_enter_openat count by comm", "openat", 200_000,
     "probe tracepoint(syscalls.sys_enter_openat) { count by comm }", "tp_openat_comm"),
]


def prog_ids(pid):
    """The BPF program ids a process holds fds of (its /proc fdinfo `prog_id:` lines)."""
    ids = set()
    d = f"/proc/{pid}/fdinfo"
    for fd in os.listdir(d):
        try:
            with open(os.path.join(d, fd)) as f:
                for line in f:
                    if line.startswith("prog_id:"):
                        ids.add(int(line.split()[1]))
        except OSError:
            pass
    return ids


def run_stats(ids):
    """(run_time_ns, run_cnt) summed over programs `ids` (bpftool prog show)."""
    t = c = 0
    for i in ids:
        out = subprocess.run(["bpftool", "-j", "prog", "show", "id", str(i)],
                             capture_output=True, text=True).stdout
        try:
            info = json.loads(out)
        except ValueError:
            continue
        t += info.get("run_time_ns", 0)
        c += info.get("run_cnt", 0)
    return t, c


def progcost(a, tools, results):
    """kernel.bpf_stats_enabled counts each program's runs and time: with pol's and the
    libbpf program on the same tracepoint in the same loop, the ns per run compare the
    code the kernel runs, free of the loop's drift. The sysctl is restored after."""
    with open("/proc/sys/kernel/bpf_stats_enabled") as f:
        old = f.read().strip()
    rows = {}
    print(f"\nD. ns per program run (kernel.bpf_stats_enabled), pol and libbpf attached together")
    print(f"  {'probe':<32} {'pol':>9} {'libbpf C':>9} {'runs':>12}")
    try:
        for name, syscall, n, pol_p, lb_p in PROGCOST:
            # Two passes, each tracer attached first once: the program that runs first on
            # the tracepoint pays ~45 ns more (cold task and stack lines), whoever it is.
            sums = {"pol": [0, 0], "libbpf": [0, 0]}
            failed = False
            for first in ("pol", "libbpf"):
                order = [first, "libbpf" if first == "pol" else "pol"]
                tr = {}
                for tool in order:
                    tr[tool] = tools.pol(pol_p) if tool == "pol" else tools.libbpf(lb_p)
                    if tr[tool].wait_ready() is None:
                        failed = True
                if failed:
                    for t in tr.values():
                        t.stop()
                    break
                ids = {k: prog_ids(t.p.pid) for k, t in tr.items()}
                before = {k: run_stats(v) for k, v in ids.items()}
                with open("/proc/sys/kernel/bpf_stats_enabled", "w") as f:
                    f.write("1")
                for _ in range(3):
                    subprocess.run(["taskset", "-c", str(os.cpu_count() - 1), a.loop, syscall,
                                    str(n)], capture_output=True, check=True)
                with open("/proc/sys/kernel/bpf_stats_enabled", "w") as f:
                    f.write(old)
                after = {k: run_stats(v) for k, v in ids.items()}
                for t in tr.values():
                    t.stop()
                for k in ids:
                    sums[k][0] += after[k][0] - before[k][0]
                    sums[k][1] += after[k][1] - before[k][1]
            if failed:
                print(f"  {name:<32} failed to attach")
                continue
            per = {k: {"ns_per_run": t / c if c else None, "runs": c} for k, (t, c) in sums.items()}
            rows[name] = per
            print(f"  {name:<32} {fmt(per['pol']['ns_per_run']):>9} "
                  f"{fmt(per['libbpf']['ns_per_run']):>9} {per['pol']['runs']:>12,}")
    finally:
        with open("/proc/sys/kernel/bpf_stats_enabled", "w") as f:
            f.write(old)
    results["progcost"] = rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pol", required=True)
    ap.add_argument("--loop", required=True)
    ap.add_argument("--tploader", required=True)
    ap.add_argument("--obj", required=True, help="counters.bpf.o (libbpf programs)")
    ap.add_argument("--runs", type=int, default=11)
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--n-ring", type=int, default=200_000)
    ap.add_argument("--json-out")
    ap.add_argument("--parts", default="ABCD", help="which parts to run (default ABCD)")
    a = ap.parse_args()
    tools = Tools(a)
    results = {"n": a.n, "runs": a.runs, "rounds": a.rounds}
    bt = subprocess.run(["bpftrace", "--version"], capture_output=True, text=True).stdout.strip()
    print(f"pol {a.pol}; {bt}; libbpf C loader {a.tploader}; kernel {os.uname().release}, "
          f"{os.cpu_count()} CPUs")
    for part, run in (("A", startup), ("B", overhead), ("C", ringbuf), ("D", progcost)):
        if part in a.parts:
            run(a, tools, results)
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
