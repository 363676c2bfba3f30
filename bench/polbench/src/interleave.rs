//! `polbench --interleave CLANG_DIR`: pol's map forms against clang's map programs,
//! measured **interleaved** (docs/benchmarks.md, "Interleaved against clang's map version").
//!
//! The main benchmark measures every clang case first and pol's about five minutes later;
//! BPF_PROG_TEST_RUN figures drift ±20–50 % over minutes on these VMs, so the goal "no slower
//! than the clang-compiled map version at every size" (issue 4) cannot be judged from two
//! figures taken minutes apart. Here, for each size and pair (pol `set` / `linear` vs clang
//! `hash`, pol `lpm` / `prefix` vs clang `lpm`), both programs are loaded once and then
//! timed in alternation: every round runs each packet on both programs back to back, the
//! order flipping every round (A B, B A, A B, ...), so drift falls on both sides alike.
//!
//! pol is loaded on the direct path (`Direct::load`, as the main benchmark). clang's object
//! is the baseline's cached `KIND_N.o` (`bench/out/baseline/build/xdp/`), loaded with
//! `Loaded::from_bytes` (aya: ELF, BTF-defined maps, program) and filled the way the
//! baseline's `bpfbench fill` fills it: one update per key, value 1 (u8), keys the baseline's
//! (`hash`: the /32 address in network order; `lpm`: `{prefixlen: u32 host order, addr:
//! network order}`). Both programs get the very same packet bytes and are timed through the
//! same BPF_PROG_TEST_RUN call, whose duration (ns per run, an integer average) the kernel
//! measures — the figure `bpftool prog run` prints. Everything is released when the process
//! ends (no pins, no temporary files).

use std::time::Instant;

use pol_runtime::direct::{Direct, Object};
use pol_runtime::load::Loaded;
use serde_json::{json, Value};

use crate::{
    hash_addrs, key_saddr, lpm_prefixes, median, packet, round3, source, MISS_SADDR, PROGRAM,
    XDP_DROP, XDP_PASS,
};

/// pol form -> clang kind; the pairs the goal is judged on.
pub const PAIRS: [(&str, &str); 4] = [
    ("set", "hash"),
    ("linear", "hash"),
    ("lpm", "lpm"),
    ("prefix", "lpm"),
];
/// The program in the baseline's C (`SEC("xdp") int xdp_filter(...)`) and its map.
const CLANG_PROGRAM: &str = "xdp_filter";
const CLANG_MAP: &str = "blocklist";

pub struct Opts {
    pub clang_dir: String,
    pub sizes: Vec<usize>,
    pub rounds: usize,
    pub repeat: u32,
    pub out: String,
}

/// The baseline's keys for `kind` (bench_xdp.py `write_keys`), one byte string per key.
fn clang_keys(kind: &str, n: usize) -> Vec<Vec<u8>> {
    if kind == "lpm" {
        lpm_prefixes(n)
            .iter()
            .map(|&(plen, a)| {
                let mut k = plen.to_le_bytes().to_vec();
                k.extend_from_slice(&a.to_be_bytes());
                k
            })
            .collect()
    } else {
        hash_addrs(n).iter().map(|a| a.octets().to_vec()).collect()
    }
}

/// Loads the baseline's clang object and fills its map; returns it and the fill time (ms).
fn load_clang(dir: &str, kind: &str, n: usize) -> Result<(Loaded, f64), String> {
    let path = format!("{dir}/{kind}_{n}.o");
    let bytes = std::fs::read(&path).map_err(|e| format!("{path}: {e} (run the baseline once)"))?;
    let l = Loaded::from_bytes(&bytes).map_err(|e| {
        format!(
            "{path}: {}",
            e.to_string().chars().take(500).collect::<String>()
        )
    })?;
    let t0 = Instant::now();
    for k in clang_keys(kind, n) {
        l.map_update(CLANG_MAP, &k, &[1])
            .map_err(|e| format!("{path}: filling {CLANG_MAP}: {e}"))?;
    }
    Ok((l, t0.elapsed().as_secs_f64() * 1e3))
}

fn load_pol(form: &str, n: usize) -> Result<Direct, String> {
    let c = pol_compiler::driver::compile(&source(form, n)).map_err(|d| {
        d.first()
            .map(|d| format!("{form} N={n} refused: {} {}", d.code, d.message))
            .unwrap_or_default()
    })?;
    Direct::load(&c).map_err(|e| e.to_string().chars().take(500).collect())
}

/// One side of a pair: what is timed and how to run it.
struct Side<'a> {
    obj: &'a dyn Object,
    prog: &'a str,
}

impl Side<'_> {
    fn run(&self, data: &[u8], repeat: u32) -> Result<(u32, f64), String> {
        let r = self
            .obj
            .test_run(self.prog, data, repeat)
            .map_err(|e| format!("test run {}: {e}", self.prog))?;
        Ok((r.retval, f64::from(r.duration_ns)))
    }
}

/// A test packet: its name, its bytes, the verdict both programs must give.
type Pkt = (&'static str, Vec<u8>, u32);

/// Packets of a pair: miss, hit = entry N/2 (the baseline's hit), last = entry N−1.
fn packets(form: &str, n: usize) -> Result<Vec<Pkt>, String> {
    Ok(vec![
        ("miss", packet(MISS_SADDR, 80)?, XDP_PASS),
        ("hit", packet(key_saddr(form, n, n / 2), 80)?, XDP_DROP),
        ("last", packet(key_saddr(form, n, n - 1), 80)?, XDP_DROP),
    ])
}

fn pair(o: &Opts, form: &str, kind: &str, n: usize) -> Value {
    let mut res = serde_json::Map::new();
    res.insert("pol_form".into(), json!(form));
    res.insert("clang_kind".into(), json!(kind));
    res.insert("n".into(), json!(n));
    let t0 = Instant::now();
    let outcome = (|| -> Result<(), String> {
        let pol = load_pol(form, n)?;
        let (clang, fill_ms) = load_clang(&o.clang_dir, kind, n)?;
        res.insert("clang_fill_ms".into(), json!(round3(fill_ms)));
        let a = Side {
            obj: &pol,
            prog: PROGRAM,
        };
        let b = Side {
            obj: &clang,
            prog: CLANG_PROGRAM,
        };
        let pkts = packets(form, n)?;
        // verdicts first, and one discarded warm-up run of each program per packet
        let mut ok = Vec::new();
        for (_, data, expect) in &pkts {
            let (ra, _) = a.run(data, 1)?;
            let (rb, _) = b.run(data, 1)?;
            a.run(data, o.repeat.min(100_000))?;
            b.run(data, o.repeat.min(100_000))?;
            ok.push((ra, rb, ra == *expect, rb == *expect));
        }
        let mut ns: Vec<[Vec<f64>; 2]> = pkts.iter().map(|_| [Vec::new(), Vec::new()]).collect();
        for round in 0..o.rounds {
            for (i, (_, data, _)) in pkts.iter().enumerate() {
                // A B in even rounds, B A in odd ones
                let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
                for side in order {
                    let s = if side == 0 { &a } else { &b };
                    ns[i][side].push(s.run(data, o.repeat)?.1);
                }
            }
        }
        let mut out = serde_json::Map::new();
        for (i, (name, _, _)) in pkts.iter().enumerate() {
            let [p, c] = &ns[i];
            let (pm, cm) = (median(p), median(c));
            let paired: Vec<f64> = p.iter().zip(c).map(|(x, y)| x / y.max(1.0)).collect();
            let (ra, rb, oka, okb) = ok[i];
            out.insert(
                (*name).into(),
                json!({
                    "pol_ns_median": pm, "clang_ns_median": cm,
                    "ratio": pm.zip(cm).map(|(x, y)| round3(x / y.max(1.0))),
                    "paired_ratio_median": median(&paired).map(round3),
                    "pol_faster_or_equal_rounds": p.iter().zip(c).filter(|(x, y)| x <= y).count(),
                    "pol_ns_runs": p, "clang_ns_runs": c,
                    "pol_retval": ra, "clang_retval": rb,
                    "pol_correct": oka, "clang_correct": okb,
                }),
            );
        }
        res.insert("packets".into(), Value::Object(out));
        Ok(())
    })();
    if let Err(e) = outcome {
        res.insert("error".into(), json!(e));
    }
    res.insert(
        "pair_wall_s".into(),
        json!(round3(t0.elapsed().as_secs_f64())),
    );
    Value::Object(res)
}

fn summary(r: &Value) -> String {
    let mut s = format!(
        "interleaved {:<6} vs clang {:<4} N={:<6}",
        r["pol_form"].as_str().unwrap_or(""),
        r["clang_kind"].as_str().unwrap_or(""),
        r["n"]
    );
    if let Some(e) = r.get("error") {
        s.push_str(&format!(" ERROR: {}", e.as_str().unwrap_or("")));
        return s;
    }
    for pkt in ["miss", "hit", "last"] {
        let p = &r["packets"][pkt];
        let mark = if p["pol_correct"] == json!(true) && p["clang_correct"] == json!(true) {
            ""
        } else {
            " ✗"
        };
        s.push_str(&format!(
            " {pkt} {}/{} ns ({}×){mark}",
            p["pol_ns_median"], p["clang_ns_median"], p["ratio"]
        ));
    }
    s.push_str(&format!(" ({}s)", r["pair_wall_s"]));
    s
}

pub fn run(o: &Opts) {
    let t0 = Instant::now();
    let mut results = Vec::new();
    for &n in &o.sizes {
        for (form, kind) in PAIRS {
            let r = pair(o, form, kind, n);
            println!("{}", summary(&r));
            results.push(r);
            let doc = json!({
                "tool": "polbench --interleave", "rounds": o.rounds, "repeat": o.repeat,
                "order": "per round and packet: pol then clang in even rounds, clang then pol in odd ones",
                "pol_loader": "pol_runtime::direct::Direct::load",
                "clang_loader": "pol_runtime::load::Loaded::from_bytes + one map update per key (value 1)",
                "clang_dir": o.clang_dir, "wall_s": round3(t0.elapsed().as_secs_f64()),
                "pairs": results,
            });
            let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
            if let Err(e) = std::fs::write(&o.out, text) {
                eprintln!("cannot write {}: {e}", o.out);
                std::process::exit(1);
            }
        }
    }
}
