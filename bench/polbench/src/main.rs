//! pol's side of the compiler benchmark (docs/benchmarks.md, driven by bench/run.sh).
//!
//! For each form (`base`, `set`, `lpm`, `linear`, `prefix`) and size N it generates a pol
//! source equivalent to the peer baselines in ../shared/bench/xdp ("drop if the IPv4 source
//! is in the set, else drop IPv4 TCP dport 23, else pass"), compiles it in-process with
//! `pol_compiler::driver::compile` (median of several runs), counts instructions (split into
//! packet parser / rules / default+malformed), loads it into the kernel on the direct path
//! (`pol_runtime::direct::Direct::load`, what `pol run` uses: maps created, filled with
//! BPF_MAP_UPDATE_BATCH, programs loaded raw; `--aya` loads through aya instead) and times
//! the baseline's packets with BPF_PROG_TEST_RUN. Everything goes to a JSON file; a
//! one-line summary per case goes to stdout. Needs root for the load and test-run part
//! (`--no-load` skips it).
//!
//! `--interleave CLANG_DIR` instead times pol's map forms against the baseline's clang
//! objects in alternation (module `interleave`): the figure issue 4's "no slower than
//! clang's map version" goal is judged on.

mod interleave;

use std::net::Ipv4Addr;
use std::time::Instant;

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use pol_compiler::diag::Severity;
use pol_compiler::driver::{self, Compiled, LICENSE};
use pol_compiler::ir::{SRC_DEFAULT, SRC_MALFORMED, SRC_PARSER};
use pol_compiler::obj::{AttachSpec, MapKind};
use pol_runtime::direct::Object as _;
use pol_runtime::direct::{AnyLoaded, Direct};
use pol_runtime::load::Loaded;
use pol_runtime::packet::Packet;
use pol_runtime::sys::{self, ProgInfo, ProgType};
use serde_json::{json, Value};

const PROGRAM: &str = "bench";
const MISS_SADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const DST: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
/// A compile slower than this is not repeated (like the baseline's 20 s rule for clang).
const SLOW_COMPILE_S: f64 = 5.0;

struct Args {
    forms: Vec<String>,
    sizes: Vec<usize>,
    /// Sizes only for the set forms (`set`, `lpm`), e.g. 100000.
    set_sizes: Vec<usize>,
    runs: usize,
    repeat: u32,
    out: String,
    load: bool,
    /// Load through aya (`Loaded`, ELF + BTF) instead of the direct path.
    aya: bool,
    write_sources: Option<String>,
    /// `--interleave DIR`: the interleaved comparison against the clang objects in DIR.
    interleave: Option<String>,
    /// Rounds of the interleaved comparison.
    rounds: usize,
}

fn usage() -> ! {
    eprintln!(
        "usage: polbench [--forms base,set,lpm,linear,prefix] [--sizes 10,1000,10000,100000] \
         [--set-sizes N,..] [--runs 5] [--repeat 1000000] [--out FILE.json] [--no-load] \
         [--aya] [--write-sources DIR]\n       \
         polbench --interleave CLANG_XDP_DIR [--sizes 10,1000,10000,100000] [--rounds 9] \
         [--repeat 1000000] [--out FILE.json]"
    );
    std::process::exit(2)
}

fn list<T: std::str::FromStr>(s: &str) -> Vec<T> {
    s.split(',')
        .filter(|x| !x.is_empty())
        .map(|x| x.trim().parse().unwrap_or_else(|_| usage()))
        .collect()
}

fn parse_args() -> Args {
    let mut a = Args {
        forms: list("base,set,lpm,linear,prefix"),
        sizes: list("10,1000,10000,100000"),
        set_sizes: Vec::new(),
        runs: 5,
        repeat: 1_000_000,
        out: "bench/out/pol.json".into(),
        load: true,
        aya: false,
        write_sources: None,
        interleave: None,
        rounds: 9,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--forms" => a.forms = list(&val()),
            "--sizes" => a.sizes = list(&val()),
            "--set-sizes" => a.set_sizes = list(&val()),
            "--runs" => a.runs = val().parse().unwrap_or_else(|_| usage()),
            "--repeat" => a.repeat = val().parse().unwrap_or_else(|_| usage()),
            "--out" => a.out = val(),
            "--no-load" => a.load = false,
            "--aya" => a.aya = true,
            "--write-sources" => a.write_sources = Some(val()),
            "--interleave" => a.interleave = Some(val()),
            "--rounds" => a.rounds = val().parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    a.runs = a.runs.max(1);
    a.rounds = a.rounds.max(1);
    a
}

// ------------------------------------------------------------------ key sets (as bench_xdp.py)

/// N distinct /32 addresses 10.0.0.1, 10.0.0.8, ... (stride 7).
fn hash_addrs(n: usize) -> Vec<Ipv4Addr> {
    (0..n as u32)
        .map(|i| Ipv4Addr::from(0x0A00_0000 + i * 7 + 1))
        .collect()
}

/// N distinct prefixes, lengths cycling 24, 32, 16, 28, 20 at pseudo-random bases: the
/// same sequence as `lpm_prefixes` in bench_xdp.py.
fn lpm_prefixes(n: usize) -> Vec<(u32, u32)> {
    let lens = [24u32, 32, 16, 28, 20];
    let mut out = Vec::with_capacity(n);
    let mut seen = std::collections::HashSet::new();
    let (mut i, mut j) = (0usize, 0u64);
    while out.len() < n {
        let plen = lens[i % 5];
        let mut a = (((j + 1) * 2_654_435_761) & 0xFFFF_FFFF) as u32;
        j += 1;
        let mask = ((0xFFFF_FFFFu64 << (32 - plen)) & 0xFFFF_FFFF) as u32;
        a &= mask;
        let top = a >> 24;
        if matches!(top, 0 | 127 | 192 | 198 | 224 | 255) || top >= 224 {
            continue;
        }
        if !seen.insert((plen, a)) {
            continue;
        }
        out.push((plen, a));
        i += 1;
    }
    out
}

// ------------------------------------------------------------------ sources

fn braces(items: &[String]) -> String {
    let mut s = String::from("{\n");
    for chunk in items.chunks(8) {
        s.push_str("    ");
        s.push_str(&chunk.join(", "));
        s.push_str(",\n");
    }
    s.push('}');
    s
}

/// The rule the baseline's C has after the address test. `drop tcp.dport == 23` would also
/// drop IPv6 telnet (and make pol parse IPv6); clang's C only looks at IPv4, so the same
/// filter is the ip4-guarded one.
const PORT_RULE: &str = "    drop ip4 and tcp.dport == 23\n";

fn prefix_strings(n: usize) -> Vec<String> {
    lpm_prefixes(n)
        .iter()
        .map(|(l, a)| format!("{}/{l}", Ipv4Addr::from(*a)))
        .collect()
}

fn source(form: &str, n: usize) -> String {
    let head = format!("# generated by polbench: form={form} N={n}\n");
    let tail = format!("{PORT_RULE}    default pass\n}}\n");
    let filter = format!("filter {PROGRAM} on xdp(\"eth0\") {{\n");
    match form {
        "base" => format!("{head}{filter}{tail}"),
        "set" => {
            let items: Vec<String> = hash_addrs(n).iter().map(|a| a.to_string()).collect();
            format!(
                "{head}set blocked: ip4 = {}\n\n{filter}    drop ip4.src in blocked\n{tail}",
                braces(&items)
            )
        }
        "lpm" => format!(
            "{head}set blocked: cidr = {}\n\n{filter}    drop ip4.src in blocked\n{tail}",
            braces(&prefix_strings(n))
        ),
        "linear" | "prefix" => {
            let keys: Vec<String> = if form == "linear" {
                hash_addrs(n).iter().map(|a| a.to_string()).collect()
            } else {
                prefix_strings(n)
            };
            let field = if form == "linear" {
                "ip4.src"
            } else {
                "ip.src"
            };
            let mut s = format!("{head}{filter}");
            for k in keys {
                s.push_str(&format!("    drop {field} == {k}\n"));
            }
            s.push_str(&tail);
            s
        }
        _ => {
            eprintln!("unknown form {form}");
            usage()
        }
    }
}

/// The source address that hits entry `i` of the form's keys.
fn key_saddr(form: &str, n: usize, i: usize) -> Ipv4Addr {
    if form == "lpm" || form == "prefix" {
        let (plen, a) = lpm_prefixes(n)[i];
        Ipv4Addr::from(a | u32::from(plen < 32))
    } else {
        hash_addrs(n)[i]
    }
}

/// The first key (rule) a source address matches.
fn first_match(form: &str, n: usize, addr: Ipv4Addr) -> Option<usize> {
    let x = u32::from(addr);
    if form == "lpm" || form == "prefix" {
        lpm_prefixes(n).iter().position(|&(plen, a)| {
            let mask = ((0xFFFF_FFFFu64 << (32 - plen)) & 0xFFFF_FFFF) as u32;
            x & mask == a
        })
    } else {
        hash_addrs(n).iter().position(|&a| a == addr)
    }
}

/// Packets that hit: `hit` = entry N/2 (the baseline's hit), `hit_last` = the last entry
/// (for the rule forms: the last rule, issue 4's case).
fn hits(form: &str, n: usize) -> Vec<(&'static str, Ipv4Addr)> {
    if form == "base" || n == 0 {
        return Vec::new();
    }
    vec![
        ("hit", key_saddr(form, n, n / 2)),
        ("hit_last", key_saddr(form, n, n - 1)),
    ]
}

/// A 64-byte Ethernet/IPv4/TCP SYN frame, as the baseline's (zero Ethernet padding).
fn packet(src: Ipv4Addr, dport: u16) -> Result<Vec<u8>, String> {
    let mut p = Packet::tcp()
        .src(src)
        .dst(DST)
        .sport(40000)
        .dport(dport)
        .build()
        .map_err(|e| e.to_string())?;
    if p.len() < 64 {
        p.resize(64, 0);
    }
    Ok(p)
}

// ------------------------------------------------------------------ figures

fn median(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Instructions per source: packet parser, rules, default + malformed exits.
fn breakdown(c: &Compiled) -> Value {
    let p = &c.programs[0];
    let (mut parser, mut rules, mut exits) = (0usize, 0usize, 0usize);
    for (k, &(start, src)) in p.marks.iter().enumerate() {
        let end = p.marks.get(k + 1).map_or(p.insns.len(), |m| m.0);
        let len = end.saturating_sub(start);
        match src {
            SRC_PARSER => parser += len,
            SRC_DEFAULT | SRC_MALFORMED => exits += len,
            _ => rules += len,
        }
    }
    let unmarked = p.marks.first().map_or(p.insns.len(), |m| m.0);
    json!({ "parser": parser + unmarked, "rules": rules, "default_malformed": exits })
}

fn compile_case(
    src: &str,
    runs: usize,
    res: &mut serde_json::Map<String, Value>,
) -> Option<Compiled> {
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..runs {
        let t0 = Instant::now();
        let r = driver::compile(src);
        let dt = t0.elapsed().as_secs_f64() * 1e3;
        times.push(dt);
        let slow = dt > SLOW_COMPILE_S * 1e3;
        last = Some(r);
        if slow {
            break;
        }
    }
    res.insert(
        "compile_ms_median".into(),
        json!(median(&times).map(round3)),
    );
    res.insert(
        "compile_ms_runs".into(),
        json!(times.iter().map(|x| round3(*x)).collect::<Vec<_>>()),
    );
    match last? {
        Ok(c) => {
            res.insert("compiled".into(), json!(true));
            res.insert("warnings".into(), json!(c.warnings.len()));
            Some(c)
        }
        Err(diags) => {
            let errs: Vec<Value> = diags
                .iter()
                .filter(|d| d.severity == Severity::Error)
                .map(|d| json!({ "code": d.code, "message": d.message, "help": d.help }))
                .collect();
            res.insert("compiled".into(), json!(false));
            res.insert("diagnostics".into(), json!(errs));
            None
        }
    }
}

/// The benchmarked program's info, on either load path.
fn prog_info(o: &AnyLoaded) -> Result<ProgInfo, String> {
    o.object().prog_info(PROGRAM).map_err(|e| e.to_string())
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// Maps with at least this many entries are filled in one BPF_MAP_UPDATE_BATCH, as
/// `Direct::load` does (runtime/src/direct.rs, BATCH_MIN).
const BATCH_MIN: usize = 32;

/// The direct load again, step by step, to time its parts: (map creation, map fill,
/// program load + verify + JIT) in ms. The same syscalls as `Direct::load`, which is the
/// figure `load_total` stands for; this only splits it.
fn direct_phases(c: &Compiled) -> Result<[f64; 3], String> {
    let t0 = Instant::now();
    let mut maps: Vec<(String, OwnedFd, usize, usize)> = Vec::new();
    for spec in &c.spec.maps {
        let (ks, vs, flags) = match spec.kind {
            MapKind::RingBuf => (0, 0, spec.flags),
            MapKind::LpmTrie => (spec.key.size(), spec.value.size(), spec.flags | 1),
            _ => (spec.key.size(), spec.value.size(), spec.flags),
        };
        let fd = sys::create::map_create_named(
            &spec.name,
            spec.kind.bpf_type(),
            ks,
            vs,
            spec.max_entries,
            flags,
        )
        .map_err(|e| format!("map {}: {e}", spec.name))?;
        maps.push((spec.name.clone(), fd, ks as usize, vs as usize));
    }
    let t1 = Instant::now();
    for def in &c.maps {
        if def.entries.is_empty() {
            continue;
        }
        let (_, fd, ks, vs) = maps
            .iter()
            .find(|m| m.0 == def.spec.name)
            .ok_or_else(|| format!("no map {}", def.spec.name))?;
        let mut start = 0;
        if def.entries.len() >= BATCH_MIN {
            let keys: Vec<u8> = def.entries.iter().flat_map(|(k, _)| k.clone()).collect();
            let values: Vec<u8> = def.entries.iter().flat_map(|(_, v)| v.clone()).collect();
            start = sys::batch::map_update_batch(fd.as_fd(), &keys, *ks, &values, *vs)
                .map_err(|(e, _)| format!("batch fill {}: {e}", def.spec.name))?;
        }
        for (k, v) in def.entries.iter().skip(start) {
            sys::create::map_update_sized(fd.as_fd(), k, v, 0)
                .map_err(|e| format!("fill {}: {e}", def.spec.name))?;
        }
    }
    let t2 = Instant::now();
    let mut progs = Vec::new();
    for p in &c.spec.programs {
        let (prog_type, expected) = match &p.attach {
            AttachSpec::Xdp { .. } => (ProgType::Xdp, 37),
            AttachSpec::Tc { .. } => (ProgType::SchedCls, 0),
            AttachSpec::Tracepoint { .. } => (ProgType::TracePoint, 0),
        };
        let mut insns = p.insns.clone();
        for r in &p.map_relocs {
            let fd = maps
                .iter()
                .find(|m| m.0 == r.map)
                .ok_or_else(|| format!("no map {}", r.map))?;
            insns[r.insn_index].src = 1; // BPF_PSEUDO_MAP_FD
            insns[r.insn_index].imm = fd.1.as_raw_fd();
        }
        let bytes = pol_compiler::bpf::insn::encode(&insns);
        let flags = if p.section == "xdp.frags" {
            sys::BPF_F_XDP_HAS_FRAGS
        } else {
            0
        };
        let fd = sys::create::prog_load_named(&p.name, prog_type, expected, flags, &bytes, LICENSE)
            .map_err(|e| format!("program {}: {e}", p.name))?;
        progs.push(fd);
    }
    let t3 = Instant::now();
    let d = |x: Instant, y: Instant| y.duration_since(x).as_secs_f64() * 1e3;
    Ok([d(t0, t1), d(t1, t2), d(t2, t3)])
}

fn med_ms(xs: &[f64]) -> Value {
    json!(median(xs).map(round3))
}

fn runs_ms(xs: &[f64]) -> Value {
    json!(xs.iter().map(|x| round3(*x)).collect::<Vec<_>>())
}

/// Loads `c` `a.runs` times; returns the last load. Direct path: `Direct::load` (maps
/// created, filled in batches, program loaded) is the total; `direct_phases` splits it.
/// aya: `Loaded::from_bytes` (ELF, maps, program) then one `map_update` per entry.
fn load_runs(
    c: &Compiled,
    a: &Args,
    res: &mut serde_json::Map<String, Value>,
) -> Result<AnyLoaded, String> {
    let entries: usize = c.maps.iter().map(|m| m.entries.len()).sum();
    let mut total = Vec::new();
    let (mut maps_ms, mut fill_ms, mut prog_ms) = (Vec::new(), Vec::new(), Vec::new());
    let mut last = None;
    for _ in 0..a.runs {
        drop(last.take());
        if a.aya {
            let t0 = Instant::now();
            let l = Loaded::from_bytes(&c.object)
                .map_err(|e| e.to_string().chars().take(2000).collect::<String>())?;
            let t1 = Instant::now();
            for m in &c.maps {
                for (k, v) in &m.entries {
                    l.map_update(&m.spec.name, k, v)
                        .map_err(|e| format!("filling map {}: {e}", m.spec.name))?;
                }
            }
            prog_ms.push(t1.duration_since(t0).as_secs_f64() * 1e3);
            fill_ms.push(ms_since(t1));
            total.push(ms_since(t0));
            last = Some(AnyLoaded::Aya(l));
        } else {
            let t0 = Instant::now();
            let d = Direct::load(c)
                .map_err(|e| e.to_string().chars().take(2000).collect::<String>())?;
            total.push(ms_since(t0));
            last = Some(AnyLoaded::Direct(d));
        }
    }
    if !a.aya {
        // the phases after the timed loads, with the last load's objects freed
        drop(last.take());
        for _ in 0..a.runs {
            let [m, f, p] = direct_phases(c)?;
            maps_ms.push(m);
            fill_ms.push(f);
            prog_ms.push(p);
        }
        last = Some(AnyLoaded::Direct(
            Direct::load(c).map_err(|e| e.to_string())?,
        ));
    }
    res.insert("loaded".into(), json!(true));
    res.insert(
        "loader".into(),
        json!(if a.aya {
            "aya Loaded::from_bytes + map_update per entry"
        } else {
            "pol_runtime::direct::Direct::load (BPF_MAP_UPDATE_BATCH)"
        }),
    );
    res.insert("load_total_ms_median".into(), med_ms(&total));
    res.insert("load_total_ms_runs".into(), runs_ms(&total));
    res.insert(
        "load_phases_ms".into(),
        json!({
            "maps": median(&maps_ms).map(round3),
            "fill": median(&fill_ms).map(round3),
            "prog": median(&prog_ms).map(round3),
            "maps_runs": runs_ms(&maps_ms),
            "fill_runs": runs_ms(&fill_ms),
            "prog_runs": runs_ms(&prog_ms),
        }),
    );
    let fill = median(&fill_ms).unwrap_or(0.0);
    res.insert(
        "fill".into(),
        json!({ "entries": entries, "ms": round3(fill),
                "method": if a.aya { "map_update per entry" } else { "BPF_MAP_UPDATE_BATCH" },
                "ns_per_update": (entries > 0).then(|| (fill * 1e6 / entries as f64).round()) }),
    );
    last.ok_or_else(|| "no load run".into())
}

fn load_case(
    c: &Compiled,
    form: &str,
    n: usize,
    a: &Args,
    res: &mut serde_json::Map<String, Value>,
) -> Result<(), String> {
    let loaded = load_runs(c, a, res)?;
    let info = prog_info(&loaded)?;
    res.insert("verified_insns".into(), json!(info.verified_insns));
    res.insert("xlated_insns".into(), json!(info.xlated_insns));
    res.insert("jited_bytes".into(), json!(info.jited_len));

    let mut pkts = vec![("miss", packet(MISS_SADDR, 80)?, XDP_PASS, None)];
    for (name, h) in hits(form, n) {
        pkts.push((name, packet(h, 80)?, XDP_DROP, first_match(form, n, h)));
    }
    pkts.push(("port23", packet(MISS_SADDR, 23)?, XDP_DROP, None));
    // as the baseline lowers R for long chains: keep one run near 2 s for big programs
    let insns = c.programs[0].insns.len().max(1);
    let rep = a.repeat.min((4e9 / insns as f64).max(10_000.0) as u32);
    let obj = loaded.object();
    let mut runs = serde_json::Map::new();
    for (name, data, expect, rule) in pkts {
        let first = obj
            .test_run(PROGRAM, &data, 1)
            .map_err(|e| format!("test run {name}: {e}"))?;
        let mut entry = serde_json::Map::new();
        entry.insert("retval".into(), json!(first.retval));
        entry.insert("correct".into(), json!(first.retval == expect));
        if let Some(r) = rule {
            entry.insert("first_matching_key".into(), json!(r));
        }
        if name != "port23" {
            let mut ns = Vec::new();
            for _ in 0..a.runs {
                let r = obj
                    .test_run(PROGRAM, &data, rep)
                    .map_err(|e| format!("test run {name}: {e}"))?;
                ns.push(f64::from(r.duration_ns));
            }
            entry.insert("ns_median".into(), json!(median(&ns)));
            entry.insert("ns_runs".into(), json!(ns));
            entry.insert("repeat".into(), json!(rep));
        }
        runs.insert(name.into(), Value::Object(entry));
    }
    res.insert("runs".into(), Value::Object(runs));
    Ok(())
}

fn bench_case(form: &str, n: usize, a: &Args) -> Value {
    let t_case = Instant::now();
    let mut res = serde_json::Map::new();
    res.insert("form".into(), json!(form));
    res.insert("n".into(), json!(n));
    let src = source(form, n);
    res.insert("source_bytes".into(), json!(src.len()));
    if let Some(dir) = &a.write_sources {
        let path = format!("{dir}/{form}_{n}.pol");
        if let Err(e) = std::fs::write(&path, &src) {
            eprintln!("cannot write {path}: {e}");
        }
    }
    if let Some(c) = compile_case(&src, a.runs, &mut res) {
        let p = &c.programs[0];
        res.insert("insns".into(), json!(p.insns.len()));
        res.insert("insns_by_source".into(), breakdown(&c));
        res.insert("object_bytes".into(), json!(c.object.len()));
        let maps: Vec<Value> = c
            .maps
            .iter()
            .map(|m| json!({ "name": m.spec.name, "type": format!("{:?}", m.spec.kind), "entries": m.entries.len() }))
            .collect();
        res.insert("maps".into(), json!(maps));
        if a.load {
            if let Err(e) = load_case(&c, form, n, a, &mut res) {
                res.insert("loaded".into(), json!(false));
                res.insert("load_error".into(), json!(e));
            }
        }
    }
    res.insert(
        "case_wall_s".into(),
        json!(round3(t_case.elapsed().as_secs_f64())),
    );
    Value::Object(res)
}

fn summary(r: &Value) -> String {
    let g = |k: &str| r.get(k).cloned().unwrap_or(Value::Null);
    let ns = |p: &str| {
        r.get("runs")
            .and_then(|x| x.get(p))
            .map(|x| {
                let mark = if x["correct"].as_bool() == Some(true) {
                    ""
                } else {
                    " ✗"
                };
                format!("{}{mark}", x["ns_median"])
            })
            .unwrap_or_else(|| "-".into())
    };
    let mut s = format!(
        "{:<6} N={:<6} compile={}ms insns={} ({}) verified={} load={}ms {} miss={}ns hit={}ns last={}ns port23={} ({}s)",
        g("form").as_str().unwrap_or(""),
        g("n"),
        g("compile_ms_median"),
        g("insns"),
        g("insns_by_source"),
        g("verified_insns"),
        g("load_total_ms_median"),
        g("load_phases_ms")
            .get("maps")
            .map(|_| format!(
                "(maps {} fill {} prog {})",
                g("load_phases_ms")["maps"],
                g("load_phases_ms")["fill"],
                g("load_phases_ms")["prog"]
            ))
            .unwrap_or_default(),
        ns("miss"),
        ns("hit"),
        ns("hit_last"),
        r.get("runs")
            .and_then(|x| x.get("port23"))
            .map(|x| if x["correct"].as_bool() == Some(true) { "ok" } else { "✗" })
            .unwrap_or("-"),
        g("case_wall_s"),
    );
    if let Some(d) = r.get("diagnostics").and_then(|d| d.get(0)) {
        s.push_str(&format!("  REFUSED {}: {}", d["code"], d["message"]));
    }
    if let Some(e) = r.get("load_error") {
        let e = e.as_str().unwrap_or("");
        s.push_str(&format!(
            "  LOAD FAILED: {}",
            e.lines().next().unwrap_or("")
        ));
    }
    s
}

fn main() {
    let a = parse_args();
    if let Some(dir) = &a.interleave {
        interleave::run(&interleave::Opts {
            clang_dir: dir.clone(),
            sizes: a.sizes.clone(),
            rounds: a.rounds,
            repeat: a.repeat,
            out: a.out.clone(),
        });
        return;
    }
    let mut results = Vec::new();
    for form in &a.forms {
        let mut sizes = if form == "base" {
            vec![0]
        } else {
            a.sizes.clone()
        };
        if (form == "set" || form == "lpm") && !a.set_sizes.is_empty() {
            sizes.extend(a.set_sizes.iter().copied());
        }
        for n in sizes {
            let r = bench_case(form, n, &a);
            println!("{}", summary(&r));
            results.push(r);
            let doc = json!({ "tool": "polbench", "runs": a.runs, "repeat": a.repeat,
                        "loader": if a.aya { "aya" } else { "direct" }, "cases": results });
            let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
            if let Err(e) = std::fs::write(&a.out, text) {
                eprintln!("cannot write {}: {e}", a.out);
                std::process::exit(1);
            }
        }
    }
}
