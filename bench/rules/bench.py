#!/usr/bin/env python3
"""bench/rules: cost per event of security rules (issue 12 "Speed"), pol beside
bpftrace running an equivalent filter, in one run.

For `open`: a loop of openat() calls on a path no rule names, timed alone, then with
pol rules loaded (K rules `path == "/nonexistent/xI"`, or one rule testing a list of K
paths), then with bpftrace on the same tracepoint with a predicate of K string compares.
For `connect`: a loop of refused TCP connects in a cgroup, alone and with K pol rules
`port == P` on that cgroup (bpftrace has no cgroup hooks: no peer). Nothing matches, so
the figures are the cost of testing every rule on every event. Medians of ROUNDS.
"""
import argparse, json, os, signal, statistics, subprocess, sys, tempfile, time

def run_loop(loop, op, n, cgroup=None):
    cmd = [loop, op, str(n)]
    if cgroup:
        cmd = ["sh", "-c", f"echo $$ > {cgroup}/cgroup.procs && exec {loop} {op} {n}"]
    return float(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)

def median_loop(loop, op, n, rounds, cgroup=None):
    return statistics.median(run_loop(loop, op, n, cgroup) for _ in range(rounds))

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

def pol_rules(op, k, shape):
    if op == "open":
        if shape == "list":
            vals = ", ".join(f'"/nonexistent/x{i}"' for i in range(k))
            return f"list paths = {{ {vals} }}\nrule r on open {{\n    when path in paths\n    action alert(info, \"x\")\n}}\n"
        return "".join(f'rule r{i} on open {{\n    when path == "/nonexistent/x{i}"\n    action alert(info, "x")\n}}\n' for i in range(k))
    if shape == "list":
        vals = ", ".join(str(10000 + i) for i in range(k))
        return f"list ports = {{ {vals} }}\nrule r on connect {{\n    when port in ports\n    action alert(info, \"x\")\n}}\n"
    return "".join(f'rule r{i} on connect {{\n    when port == {10000 + i}\n    action alert(info, "x")\n}}\n' for i in range(k))

def bpftrace_prog(k):
    pred = " || ".join(f'str(args->filename) == "/nonexistent/x{i}"' for i in range(k))
    return f'tracepoint:syscalls:sys_enter_openat /{pred}/ {{ printf("x\\n"); }}'

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pol", required=True)
    ap.add_argument("--loop", required=True)
    ap.add_argument("--n", type=int, default=200000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json-out")
    ap.add_argument("--compile-timeout", type=int, default=120)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="pol_bench_rules_")
    root = next(l.split()[4] for l in open("/proc/self/mountinfo") if l.split(" - ")[1].startswith("cgroup2 "))
    cg = os.path.join(root, f"pol_bench_rules_{os.getpid()}")
    os.makedirs(cg, exist_ok=True)
    rows = []
    try:
        for op in ("open", "connect"):
            cgroup = cg if op == "connect" else None
            base = median_loop(a.loop, op, a.n, a.rounds, cgroup)
            rows.append({"op": op, "tool": "none", "rules": 0, "ns": base, "added": 0.0})
            print(f"{op:8} {'no tracing':28} {base:8.1f} ns/call", flush=True)
            for k, shape in [(1, "rules"), (10, "rules"), (100, "rules"), (300, "rules"), (1000, "rules"), (1000, "list")]:
                f = os.path.join(tmp, f"{op}_{shape}_{k}.pol")
                open(f, "w").write(pol_rules(op, k, shape))
                label = f"pol {k} rule{'s' if k > 1 else ''}" if shape == "rules" else f"pol 1 rule, list of {k}"
                args = [a.pol, "run", "--duration", "600"]
                if cgroup:
                    args += ["--cgroup", cgroup]
                t0 = time.time()
                try:
                    built = subprocess.run([a.pol, "build", f, "-o", os.path.join(tmp, "x.o")],
                                           capture_output=True, text=True, timeout=a.compile_timeout)
                except subprocess.TimeoutExpired:
                    print(f"{op:8} {label:28} {'':8} compile took over {a.compile_timeout} s", flush=True)
                    rows.append({"op": op, "tool": "pol", "shape": shape, "rules": k, "error": "compile timeout"})
                    continue
                compile_s = time.time() - t0
                if built.returncode != 0:
                    code = next((w for w in built.stderr.split() if w.startswith("[L")), "error")
                    print(f"{op:8} {label:28} {'':8} does not compile: {code.strip('[]')}", flush=True)
                    rows.append({"op": op, "tool": "pol", "shape": shape, "rules": k, "error": code.strip("[]")})
                    continue
                p = start(args + [f], lambda l: l.startswith("attached"))
                try:
                    ns = median_loop(a.loop, op, a.n, a.rounds, cgroup)
                finally:
                    stop(p)
                rows.append({"op": op, "tool": "pol", "shape": shape, "rules": k, "ns": ns, "added": ns - base, "compile_s": compile_s})
                print(f"{op:8} {label:28} {ns:8.1f} ns/call  (+{ns - base:.1f}; compiled in {compile_s:.1f} s)", flush=True)
                if op == "open" and shape == "rules" and k <= 100:
                    p = start(["bpftrace", "-e", bpftrace_prog(k)], lambda l: "Attaching" in l, stdout=True)
                    # bpftrace prints "Attaching N probes..." before it has attached.
                    time.sleep(1.0)
                    try:
                        ns = median_loop(a.loop, op, a.n, a.rounds)
                    finally:
                        stop(p)
                    rows.append({"op": op, "tool": "bpftrace", "rules": k, "ns": ns, "added": ns - base})
                    print(f"{op:8} {'bpftrace ' + str(k) + ' compares':28} {ns:8.1f} ns/call  (+{ns - base:.1f})", flush=True)
    finally:
        try:
            os.rmdir(cg)
        except OSError as e:
            print(f"warning: {cg}: {e}", file=sys.stderr)
    if a.json_out:
        json.dump(rows, open(a.json_out, "w"), indent=1)

if __name__ == "__main__":
    main()
