#!/usr/bin/env python3
"""Side-by-side table of pol's figures (polbench JSON) and the clang peer baselines
(bench_xdp.py JSON files) from the same run; prints it and writes results.md + .json.

Pairs: pol `set` <-> clang `hash`, pol `lpm` <-> clang `lpm`, pol `linear` <-> clang
`linear` (and `rawlinear`, `linear_chunked`, `ifchain` when present), pol `base` <-> clang
`base`. Ratios are pol / clang (below 1 = pol smaller or faster).
"""
import argparse
import json
import platform
import subprocess

PAIRS = [  # the first four are the primary pairs
    ("base", "base"),
    ("set", "hash"),
    ("lpm", "lpm"),
    ("linear", "linear"),
    ("linear", "linear_chunked"),
    ("linear", "rawlinear"),
    ("linear", "ifchain"),
    ("linear", "hash"),  # pol may turn a rule list into a hash map: same strategy as `hash`
]
INSN_GOAL = 1.2
COMPILE_GOAL_MS = 100.0


def sh(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def fmt(x, nd=1):
    if x is None:
        return "–"
    if isinstance(x, float):
        if abs(x) >= 100:
            return "%.0f" % x
        return ("%." + str(nd) + "f") % x
    return str(x)


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def rfmt(r):
    return "–" if r is None else "%.2f×" % r


def run_ns(case, pkt):
    """(median ns, mark) of a packet's runs; mark is ' ✗' for a wrong verdict."""
    e = (case or {}).get("runs", {}).get(pkt)
    if not e:
        return None, ""
    if "error" in e:
        return None, " ✗"
    return e.get("ns_median"), "" if e.get("correct") else " ✗"


def verdicts_ok(case):
    runs = (case or {}).get("runs", {})
    if not runs:
        return None
    return all(e.get("correct") for e in runs.values())


def pol_maps(p):
    """The set maps pol made (not the per-rule statistics array): 'hash', 'lpm' or ''."""
    kinds = [m["type"] for m in (p or {}).get("maps", []) if m.get("entries")]
    return ",".join("lpm" if k == "LpmTrie" else k.lower() for k in kinds)


def same_strategy(form, kind, p):
    """Does pol's program do what the clang peer does (a map lookup vs a compare chain)?"""
    m = pol_maps(p)
    if kind in ("hash", "lpm"):
        return m == kind
    if kind == "base":
        return True
    return m == "" and kind == "linear"


def pol_status(p):
    if p is None:
        return "not run"
    if not p.get("compiled"):
        d = (p.get("diagnostics") or [{}])[0]
        return "refused %s: %s" % (d.get("code"), d.get("message"))
    if p.get("loaded") is False:
        return "load failed: %s" % (p.get("load_error") or "").splitlines()[0][:200]
    v = verdicts_ok(p)
    return "ok" if v else ("verdict ✗" if v is False else "ok (not loaded)")


def bl_status(b):
    if b is None:
        return "not run"
    if not b.get("ok"):
        return "failed: %s" % (b.get("error") or "").strip().splitlines()[-1][:200] \
            if b.get("error") else "failed"
    v = verdicts_ok(b)
    return "ok" if v else ("verdict ✗" if v is False else "ok")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pol", required=True)
    ap.add_argument("--md", required=True)
    ap.add_argument("--json", required=True)
    ap.add_argument("--mode", default="full")
    ap.add_argument("--started", default="")
    ap.add_argument("--wall-s", type=int, default=None)
    ap.add_argument("baseline", nargs="*", help="bench_xdp.py output files")
    a = ap.parse_args()

    with open(a.pol) as f:
        pol_doc = json.load(f)
    pol = {(c["form"], c["n"]): c for c in pol_doc["cases"]}
    bl = {}
    for path in a.baseline:
        with open(path) as f:
            for c in json.load(f):
                bl[(c["kind"], c["n"])] = c
    base_pol = pol.get(("base", 0))
    base_bl = bl.get(("base", 0))

    rows = []
    for form, kind in PAIRS:
        ns = sorted({n for (f, n) in pol if f == form} | {n for (k, n) in bl if k == kind})
        for n in ns:
            p, b = pol.get((form, n)), bl.get((kind, n))
            primary = (form, kind) in PAIRS[:4]
            if not primary and (p is None or b is None):
                continue  # secondary peers only where both ran
            if p is None and b is None:
                continue
            pi, bi = (p or {}).get("insns"), (b or {}).get("insns")
            by = (p or {}).get("insns_by_source") or {}
            d_pol = pi - base_pol["insns"] if pi is not None and base_pol and base_pol.get("insns") else None
            d_bl = bi - base_bl["insns"] if bi is not None and base_bl and base_bl.get("insns") else None
            pm, pmk = run_ns(p, "miss")
            ph, phk = run_ns(p, "hit")
            bm, bmk = run_ns(b, "miss")
            bh, bhk = run_ns(b, "hit")
            cs = (b or {}).get("compile_s_median")
            rows.append({
                "pol_maps": pol_maps(p), "same_strategy": same_strategy(form, kind, p),
                "pol_form": form, "clang_kind": kind, "n": n,
                "pol_status": pol_status(p), "clang_status": bl_status(b),
                "pol_compile_ms": (p or {}).get("compile_ms_median"),
                "clang_compile_ms": cs * 1e3 if cs is not None else None,
                "clang_compile_cached": bool((b or {}).get("compile_cached")),
                "pol_insns": pi, "pol_parser_insns": by.get("parser"),
                "pol_rule_insns": (by.get("rules") or 0) + (by.get("default_malformed") or 0) if by else None,
                "clang_insns": bi, "insns_ratio": ratio(pi, bi),
                "pol_insns_over_base": d_pol, "clang_insns_over_base": d_bl,
                "pol_verified": (p or {}).get("verified_insns"),
                "clang_verified": (b or {}).get("processed_insns"),
                "pol_load_ms": (p or {}).get("load_ms_median"),
                "clang_load_ms": (b or {}).get("lib_load_ms_median"),
                "pol_fill_ms": ((p or {}).get("fill") or {}).get("ms"),
                "clang_fill_ms": ((b or {}).get("fill") or {}).get("fill_ms") if isinstance((b or {}).get("fill"), dict) else None,
                "pol_miss_ns": pm, "clang_miss_ns": bm, "miss_ratio": ratio(pm, bm),
                "pol_hit_ns": ph, "clang_hit_ns": bh, "hit_ratio": ratio(ph, bh),
                "pol_object_bytes": (p or {}).get("object_bytes"),
                "clang_object_bytes": (b or {}).get("object_bytes"),
                "marks": {"pol_miss": pmk, "pol_hit": phk, "clang_miss": bmk, "clang_hit": bhk},
            })

    kernel = platform.release()
    clang = sh(["clang", "--version"]).splitlines()[:1]
    commit = sh(["git", "-C", __file__.rsplit("/", 2)[0], "rev-parse", "--short", "HEAD"])
    L = []
    L.append("# pol compiler benchmark (%s run, started %s)" % (a.mode, a.started))
    L.append("")
    L.append("kernel %s, %s, pol commit %s%s; %d runs per figure (medians), %s test-run repeats."
             % (kernel, clang[0] if clang else "clang ?", commit or "?",
                " (+ uncommitted changes)" if sh(["git", "-C", __file__.rsplit("/", 2)[0], "status", "--porcelain"]) else "",
                pol_doc.get("runs", 0), pol_doc.get("repeat")))
    if a.wall_s is not None:
        L.append("Whole run: %d s. Figures are only comparable within one run (±20–50 %% noise on test-run ns on this VM)." % a.wall_s)
    L.append("")
    L.append("## Side by side (ratio = pol / clang)")
    L.append("")
    L.append("| pol form | clang kind | N | compile pol ms | compile clang ms | insns pol (parser+rules) | insns clang | insns ratio | Δinsns over base pol / clang | verified pol / clang | load ms pol / clang | miss ns pol / clang (ratio) | hit ns pol / clang (ratio) | status pol / clang |")
    L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        m = r["marks"]
        L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s / %s | %s / %s | %s / %s | %s%s / %s%s (%s) | %s%s / %s%s (%s) | %s / %s |" % (
            r["pol_form"] + (" → %s map" % r["pol_maps"] if r["pol_maps"] and r["pol_form"] == "linear" else ""),
            r["clang_kind"], r["n"],
            fmt(r["pol_compile_ms"], 2),
            fmt(r["clang_compile_ms"], 0) + (" (cached)" if r["clang_compile_cached"] else ""),
            "%s (%s+%s)" % (r["pol_insns"], r["pol_parser_insns"], r["pol_rule_insns"]) if r["pol_insns"] is not None else "–",
            fmt(r["clang_insns"]), rfmt(r["insns_ratio"]),
            fmt(r["pol_insns_over_base"]), fmt(r["clang_insns_over_base"]),
            fmt(r["pol_verified"]), fmt(r["clang_verified"]),
            fmt(r["pol_load_ms"]), fmt(r["clang_load_ms"]),
            fmt(r["pol_miss_ns"]), m["pol_miss"], fmt(r["clang_miss_ns"]), m["clang_miss"], rfmt(r["miss_ratio"]),
            fmt(r["pol_hit_ns"]), m["pol_hit"], fmt(r["clang_hit_ns"]), m["clang_hit"], rfmt(r["hit_ratio"]),
            r["pol_status"], r["clang_status"]))
    L.append("")
    L.append("## Goals")
    L.append("")
    for (form, n), p in sorted(pol.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        if n == 10000 and form in ("set", "lpm", "linear"):
            c = p.get("compile_ms_median")
            ok = p.get("compiled") and c is not None and c < COMPILE_GOAL_MS
            L.append("- compile %s N=10000 in < %d ms: %s (%s ms%s)" % (
                form, COMPILE_GOAL_MS, "met" if ok else "NOT met", fmt(c, 1),
                "" if p.get("compiled") else ", then refused: " + pol_status(p)))
    for r in rows:
        if r["same_strategy"] and r["insns_ratio"] is not None:
            L.append("- insns within %.1f× of clang -O2, %s N=%s vs %s: %s (%.2f×; rules part %s vs %s)" % (
                INSN_GOAL, r["pol_form"], r["n"], r["clang_kind"],
                "met" if r["insns_ratio"] <= INSN_GOAL else "NOT met", r["insns_ratio"],
                r["pol_insns_over_base"], r["clang_insns_over_base"]))
    for r in rows:
        if r["pol_form"] == "linear" and r["clang_kind"] == "linear" and not r["same_strategy"] \
                and r["pol_insns"] is not None:
            L.append("- linear N=%s: pol compiled the %s rules into a %s map lookup (%s insns) where "
                     "clang keeps a %s-insn compare chain: compared with clang `hash` above, not here"
                     % (r["n"], r["n"], r["pol_maps"], r["pol_insns"], fmt(r["clang_insns"])))
    L.append("")
    L.append("## pol alone")
    L.append("")
    L.append("| form | N | source bytes | compile ms (runs) | insns | parser | rules | default+malformed | object bytes | verified | xlated | jited B | load ms | fill ms | miss ns | hit ns | port23 | status |")
    L.append("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for (form, n), p in pol.items():
        by = p.get("insns_by_source") or {}
        pm, pmk = run_ns(p, "miss")
        ph, phk = run_ns(p, "hit")
        p23 = p.get("runs", {}).get("port23")
        L.append("| %s | %s | %s | %s (%s) | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s%s | %s%s | %s | %s |" % (
            form, n, p.get("source_bytes"), fmt(p.get("compile_ms_median"), 2),
            ", ".join(fmt(x, 2) for x in p.get("compile_ms_runs", [])),
            fmt(p.get("insns")), fmt(by.get("parser")), fmt(by.get("rules")), fmt(by.get("default_malformed")),
            fmt(p.get("object_bytes")), fmt(p.get("verified_insns")), fmt(p.get("xlated_insns")),
            fmt(p.get("jited_bytes")), fmt(p.get("load_ms_median")), fmt((p.get("fill") or {}).get("ms")),
            fmt(pm), pmk, fmt(ph), phk,
            "–" if not p23 else ("ok" if p23.get("correct") else "✗ (%s)" % p23.get("retval")),
            pol_status(p)))
    L.append("")
    L.append("compile = `pol_compiler::driver::compile` in-process (parse → ELF bytes), median; "
             "clang = `clang -O2 -g -target bpf -c` wall time. insns = instruction slots "
             "(ld_imm64 = 2) for both. load = pol: aya `Ebpf::load` + program load (maps, BTF, "
             "verify, JIT); clang: `bpf_object__load()` — both in-process, map contents filled "
             "afterwards (fill). ns = BPF_PROG_TEST_RUN average per packet, median of runs; "
             "✗ = wrong verdict.")
    text = "\n".join(L) + "\n"
    print(text)
    with open(a.md, "w") as f:
        f.write(text)
    with open(a.json, "w") as f:
        json.dump({"mode": a.mode, "started": a.started, "wall_s": a.wall_s, "kernel": kernel,
                   "clang": clang[0] if clang else None, "pol_commit": commit,
                   "rows": rows, "pol": pol_doc, "baseline": list(bl.values())}, f, indent=1)


if __name__ == "__main__":
    main()
