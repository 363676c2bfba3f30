#!/usr/bin/env python3
"""bench/rules: cost per event of security rules (issue 12 "Speed"), pol beside
bpftrace running an equivalent filter, in one run.

Each configuration loads its rules, runs a loop of one system call (`loop open`: openat
of a path no rule names; `loop exec`: fork + exec /bin/true; `loop connect`: a refused
TCP connect from a cgroup), and reports two figures:
  - prog ns/event: the rule program's own run time per run, from the kernel's
    bpf_stats (run_time_ns / run_cnt of the programs the tool loaded, over the loop):
    this is what the rules add to each event, and it is steady on a loaded machine;
  - loop ns/call: the whole call timed from user space (noisy here: other agents share
    the two cores), beside the same loop with nothing attached.
Nothing matches, so every rule (or every list lookup) runs on every event.

pol configurations: K rules `path == "/nonexistent/xI"` (K separate compares), and one
rule testing a list of K values (`path in LIST`: a hash map lookup from 8 strings on).
bpftrace's peer: the same tracepoint with a predicate of K string compares (bpftrace has
no sets of strings). Medians of ROUNDS. The machine's load average is printed beside.
"""
import argparse, json, os, signal, statistics, subprocess, sys, tempfile, time

def run_loop(loop, op, n, cgroup=None):
    cmd = [loop, op, str(n)]
    if cgroup:
        cmd = ["sh", "-c", f"echo $$ > {cgroup}/cgroup.procs && exec {loop} {op} {n}"]
    return float(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)

def prog_ids(pid):
    """The BPF program ids process `pid` holds fds of (its /proc fdinfo `prog_id:` lines;
    this bpftool lists no owning pids)."""
    ids = set()
    d = f"/proc/{pid}/fdinfo"
    for fd in os.listdir(d):
        try:
            for line in open(os.path.join(d, fd)):
                if line.startswith("prog_id:"):
                    ids.add(int(line.split()[1]))
        except OSError:
            pass
    return ids

def prog_stats(owner, prefix):
    """(run_time_ns, run_cnt) summed over the programs process `owner` holds whose name
    starts with `prefix` (bpftool's names are cut to 15 bytes)."""
    ids = prog_ids(owner)
    out = subprocess.run(["bpftool", "-j", "prog", "show"], check=True, capture_output=True, text=True).stdout
    t = c = 0
    for p in json.loads(out):
        if p.get("id") not in ids or not p.get("name", "").startswith(prefix[:15]):
            continue
        t += p.get("run_time_ns", 0)
        c += p.get("run_cnt", 0)
    return t, c

def measure(loop, op, n, rounds, cgroup=None, owner=None, prefix=""):
    """Median loop ns per call, and median program ns per run (None without `owner`)."""
    loops, progs = [], []
    for _ in range(rounds):
        before = prog_stats(owner, prefix) if owner else None
        loops.append(run_loop(loop, op, n, cgroup))
        if owner:
            after = prog_stats(owner, prefix)
            runs = after[1] - before[1]
            if runs > 0:
                progs.append((after[0] - before[0]) / runs)
    return statistics.median(loops), (statistics.median(progs) if progs else None)

def start(cmd, ready, stdout=False):
    """Starts `cmd` and waits for a line `ready` accepts, on stderr (pol) or stdout
    (bpftrace); the other stream is discarded."""
    if stdout:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        stream = p.stdout
    else:
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        stream = p.stderr
    seen = []
    deadline = time.time() + 120
    while time.time() < deadline:
        line = stream.readline()
        if not line:
            raise RuntimeError(f"{cmd[0]} ended: {''.join(seen)}")
        seen.append(line)
        if ready(line):
            return p
    p.kill()
    raise RuntimeError(f"{cmd[0]} did not attach: {''.join(seen)}")

def stop(p):
    p.send_signal(signal.SIGINT)
    try:
        p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()

KIND = {"open": "open", "exec": "exec", "connect": "connect"}
FIELD = {"open": "path", "exec": "path", "connect": "port"}
# The program names whose stats count (bpftool shows 15 bytes of each).
PROG = {"open": "rule_open_openat", "exec": "rule_exec", "connect": "rule_connect4"}

def value(op, i):
    return str(10000 + i) if op == "connect" else f'"/nonexistent/x{i}"'

def pol_rules(op, k, shape):
    kind, field = KIND[op], FIELD[op]
    if shape == "list":
        vals = ", ".join(value(op, i) for i in range(k))
        return f"list l = {{ {vals} }}\nrule r on {kind} {{\n    when {field} in l\n    action alert(info, \"x\")\n}}\n"
    return "".join(f'rule r{i} on {kind} {{\n    when {field} == {value(op, i)}\n    action alert(info, "x")\n}}\n' for i in range(k))

def bpftrace_prog(op, k):
    if op == "exec":
        pred = " || ".join(f'str(args->filename) == "/nonexistent/x{i}"' for i in range(k))
        return f'tracepoint:sched:sched_process_exec /{pred}/ {{ printf("x\\n"); }}'
    pred = " || ".join(f'str(args->filename) == "/nonexistent/x{i}"' for i in range(k))
    return f'tracepoint:syscalls:sys_enter_openat /{pred}/ {{ printf("x\\n"); }}'

def loadavg():
    return open("/proc/loadavg").read().split()[0]

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pol", required=True)
    ap.add_argument("--loop", required=True)
    ap.add_argument("--n", type=int, default=200000)
    ap.add_argument("--exec-n", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--ops", default="open,exec,connect")
    ap.add_argument("--json-out")
    ap.add_argument("--compile-timeout", type=int, default=120)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="pol_bench_rules_")
    root = next(l.split()[4] for l in open("/proc/self/mountinfo") if l.split(" - ")[1].startswith("cgroup2 "))
    cg = os.path.join(root, f"pol_bench_rules_{os.getpid()}")
    os.makedirs(cg, exist_ok=True)
    stats_file = "/proc/sys/kernel/bpf_stats_enabled"
    stats_was = open(stats_file).read().strip()
    open(stats_file, "w").write("1")
    rows = []
    print(f"load average at start: {loadavg()}", flush=True)
    print(f"{'op':8} {'configuration':30} {'prog ns/event':>14} {'loop ns/call':>13}  load", flush=True)
    def row(op, label, r, prog, ns, base, extra=""):
        rows.append(dict(r, op=op, prog_ns=prog, ns=ns, added=None if base is None else ns - base, load=loadavg()))
        p = f"{prog:14.1f}" if prog is not None else f"{'-':>14}"
        print(f"{op:8} {label:30} {p} {ns:13.1f}  {loadavg()}{extra}", flush=True)
    try:
        for op in a.ops.split(","):
            n = a.exec_n if op == "exec" else a.n
            cgroup = cg if op == "connect" else None
            base, _ = measure(a.loop, op, n, a.rounds, cgroup)
            row(op, "nothing attached", {"tool": "none", "rules": 0}, None, base, None)
            configs = [(1, "rules"), (10, "rules"), (100, "rules"), (1000, "rules"), (10, "list"), (1000, "list")]
            for k, shape in configs:
                f = os.path.join(tmp, f"{op}_{shape}_{k}.pol")
                open(f, "w").write(pol_rules(op, k, shape))
                label = f"pol {k} rule{'s' if k > 1 else ''}" if shape == "rules" else f"pol 1 rule, list of {k}"
                t0 = time.time()
                try:
                    built = subprocess.run([a.pol, "build", f, "-o", os.path.join(tmp, "x.o")],
                                           capture_output=True, text=True, timeout=a.compile_timeout)
                except subprocess.TimeoutExpired:
                    print(f"{op:8} {label:30} compile took over {a.compile_timeout} s", flush=True)
                    rows.append({"op": op, "tool": "pol", "shape": shape, "rules": k, "error": "compile timeout"})
                    continue
                compile_s = time.time() - t0
                if built.returncode != 0:
                    code = next((w for w in built.stderr.split() if w.startswith("[L")), "error")
                    print(f"{op:8} {label:30} does not compile: {code.strip('[]')}", flush=True)
                    rows.append({"op": op, "tool": "pol", "shape": shape, "rules": k, "error": code.strip("[]")})
                    continue
                args = [a.pol, "run", "--duration", "900"]
                if cgroup:
                    args += ["--cgroup", cgroup]
                p = start(args + [f], lambda l: l.startswith("attached"))
                try:
                    ns, prog = measure(a.loop, op, n, a.rounds, cgroup, p.pid, PROG[op])
                finally:
                    stop(p)
                row(op, label, {"tool": "pol", "shape": shape, "rules": k, "compile_s": compile_s},
                    prog, ns, base, f"  (compiled in {compile_s:.2f} s)")
                if op != "connect" and shape == "rules":
                    try:
                        p = start(["bpftrace", "-e", bpftrace_prog(op, k)], lambda l: "Attaching" in l, stdout=True)
                    except RuntimeError as e:
                        print(f"{op:8} bpftrace {k} compares: did not start: {str(e)[-200:]!r}", flush=True)
                        rows.append({"op": op, "tool": "bpftrace", "rules": k, "error": str(e)[-200:]})
                        continue
                    # bpftrace prints "Attaching N probes..." before it has attached.
                    time.sleep(1.0)
                    try:
                        ns, prog = measure(a.loop, op, n, a.rounds, None, p.pid, "")
                    finally:
                        stop(p)
                    row(op, f"bpftrace {k} compare{'s' if k > 1 else ''}", {"tool": "bpftrace", "rules": k}, prog, ns, base)
    finally:
        open(stats_file, "w").write(stats_was)
        # The loop's last processes may take a moment to leave the cgroup.
        for attempt in range(50):
            try:
                os.rmdir(cg)
                break
            except OSError as e:
                if attempt == 49:
                    print(f"warning: {cg}: {e}", file=sys.stderr)
                time.sleep(0.1)
    print(f"load average at end: {loadavg()}", flush=True)
    if a.json_out:
        json.dump(rows, open(a.json_out, "w"), indent=1)

if __name__ == "__main__":
    main()
