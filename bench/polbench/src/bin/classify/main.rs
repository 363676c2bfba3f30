//! The classifier benchmark (issue 11): for ClassBench-shaped acl/fw/ipc sets at each
//! size, in one run: TupleMerge compile time (tables, buckets, maps, BPF object), load time
//! (maps created and filled, program verified), kernel memory of the maps, verified
//! instructions, and ns per packet from BPF_PROG_TEST_RUN over the trace headers (average
//! and worst header), beside the same rules as a linear chain of tests in BPF
//! (`classify/linear.rs`) on the same headers. A profile of where the time goes: tables
//! walked, filter bits clear, hash lookups, entries read, and two variants of the same
//! data path on the same maps: walked by `bpf_loop` (before session 8), and with every filter bit clear
//! (the walk over the descriptors alone). `--export DIR` writes each set's rules and trace
//! for the nftables peer (bench/nft/classify.py).
//!
//! `cargo run --release -p polbench --bin classify -- [--sizes 1000,10000,30000,100000]
//! [--trace 10000] [--repeat 2000] [--kernel-headers 200] [--linear-max 10000]
//! [--no-kernel] [--tables] [--export DIR] [--bucket-target 8] [--bucket-max 16]
//! [--addr-step 8] [--max-tables 64]` (`--tables`: each set's tables, what they hash)

mod classbench;
mod linear;

use std::os::fd::{AsFd, AsRawFd};
use std::time::Instant;

use aya::maps::{Array, HashMap, MapData};
use aya::programs::Xdp;
use aya::{Ebpf, EbpfLoader};
use pol_compiler::classify::datapath::{self, Sizes, BUCKETS, DESCS, ENTRIES, GEN};
use pol_compiler::classify::gen::{self, Shape};
use pol_compiler::classify::maps::{
    Maps, BUCKET_BYTES, BUCKET_KEY_BYTES, DESC_BYTES, DESC_FILTER, ENTRY_BYTES,
};
use pol_compiler::classify::tuplemerge::{self, build, Config};
use pol_compiler::classify::{reference, Header, Rule, NO_MATCH};
use pol_compiler::codegen::object::object;

struct Args {
    sizes: Vec<usize>,
    trace: usize,
    repeat: u32,
    kernel_headers: usize,
    linear_max: usize,
    kernel: bool,
    export: Option<std::path::PathBuf>,
    cfg: Config,
    tables: bool,
    classbench: Option<std::path::PathBuf>,
}

fn usage() -> ! {
    eprintln!(
        "usage: classify [--sizes 1000,10000,30000,100000] [--trace 10000] [--repeat 2000] \
         [--kernel-headers 200] [--linear-max 10000] [--no-kernel] [--tables] [--export DIR] \
         [--classbench DIR] [--bucket-target 8] [--bucket-max 16] [--addr-step 8] [--max-tables 64]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        sizes: vec![1000, 10_000, 30_000, 100_000],
        trace: 10_000,
        repeat: 2000,
        kernel_headers: 200,
        linear_max: 10_000,
        kernel: true,
        export: None,
        cfg: Config::default(),
        tables: false,
        classbench: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| usage());
        let mut num = || val().parse::<usize>().unwrap_or_else(|_| usage());
        match k.as_str() {
            "--sizes" => {
                a.sizes = val()
                    .split(',')
                    .map(|x| x.trim().parse().unwrap_or_else(|_| usage()))
                    .collect()
            }
            "--trace" => a.trace = num(),
            "--repeat" => a.repeat = num() as u32,
            "--kernel-headers" => a.kernel_headers = num(),
            "--linear-max" => a.linear_max = num(),
            "--no-kernel" => a.kernel = false,
            "--tables" => a.tables = true,
            "--export" => a.export = Some(val().into()),
            "--classbench" => a.classbench = Some(val().into()),
            "--bucket-target" => a.cfg.bucket_target = num(),
            "--bucket-max" => a.cfg.bucket_max = num(),
            "--addr-step" => a.cfg.addr_step = num() as u8,
            "--max-tables" => a.cfg.max_tables = num(),
            _ => usage(),
        }
    }
    a
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// A loaded program with the figures of its load.
struct Loaded {
    bpf: Ebpf,
    prog: &'static str,
    load_ms: f64,
    insns: u32,
    /// Kernel memory of its maps (`memlock` of their fdinfo), bytes.
    memlock: u64,
}

fn memlock(bpf: &Ebpf) -> u64 {
    bpf.maps()
        .filter_map(|(_, m)| {
            let fd = match m {
                aya::maps::Map::Array(d) | aya::maps::Map::HashMap(d) => d.fd().as_fd().as_raw_fd(),
                _ => return None,
            };
            let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?;
            info.lines()
                .find_map(|l| l.strip_prefix("memlock:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .sum()
}

/// Loads `module` (XDP program `prog`), fills the classifier's maps with `maps` (when
/// given), and verifies the program; the time covers all of it.
fn load(
    module: &pol_compiler::mir::Module,
    prog: &'static str,
    maps: Option<&Maps>,
) -> Result<Loaded, String> {
    let (bytes, _) = object(module).map_err(err)?;
    let t0 = Instant::now();
    let mut bpf = EbpfLoader::new().load(&bytes).map_err(err)?;
    if let Some(maps) = maps {
        {
            let mut descs: Array<&mut MapData, [u8; DESC_BYTES]> =
                Array::try_from(bpf.map_mut(DESCS).ok_or("no descs")?).map_err(err)?;
            for (i, d) in maps.descs.iter().enumerate() {
                descs.set(i as u32, **d, 0).map_err(err)?;
            }
        }
        {
            let mut b: HashMap<&mut MapData, [u8; BUCKET_KEY_BYTES], [u8; BUCKET_BYTES]> =
                HashMap::try_from(bpf.map_mut(BUCKETS).ok_or("no buckets")?).map_err(err)?;
            for (k, v) in &maps.buckets {
                b.insert(k, v, 0).map_err(err)?;
            }
        }
        {
            let mut e: Array<&mut MapData, [u8; ENTRY_BYTES]> =
                Array::try_from(bpf.map_mut(ENTRIES).ok_or("no entries")?).map_err(err)?;
            for (i, x) in maps.entries.iter().enumerate() {
                e.set(i as u32, x, 0).map_err(err)?;
            }
        }
        // The generation map as a freshly loaded filter has it (never written: zero).
        let _ = bpf.map(GEN).ok_or("no gen map")?;
    }
    let p: &mut Xdp = bpf
        .program_mut(prog)
        .ok_or("no program")?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| e.to_string())?;
    p.load().map_err(err)?;
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;
    let insns = p
        .info()
        .ok()
        .and_then(|i| i.verified_instruction_count())
        .unwrap_or(0);
    let memlock = memlock(&bpf);
    Ok(Loaded {
        bpf,
        prog,
        load_ms,
        insns,
        memlock,
    })
}

/// Average and worst ns per packet over `headers`, and how many answers differed from
/// `want` (None: not checked).
fn kernel_ns(
    l: &Loaded,
    headers: &[Header],
    want: Option<&[u32]>,
    repeat: u32,
) -> Result<(f64, u64, usize), String> {
    let p: &Xdp = l
        .bpf
        .program(l.prog)
        .ok_or("no program")?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| e.to_string())?;
    let fd = p.fd().map_err(err)?;
    let (mut sum, mut worst, mut wrong) = (0u64, 0u64, 0);
    for (i, h) in headers.iter().enumerate() {
        let run = pol_runtime::sys::test_run(fd.as_fd(), &tuplemerge::header_bytes(h), repeat)
            .map_err(err)?;
        let r = u32::from_le_bytes([
            run.data_out[0],
            run.data_out[1],
            run.data_out[2],
            run.data_out[3],
        ]);
        if let Some(w) = want {
            wrong += usize::from(w.get(i) != Some(&r));
        }
        sum += u64::from(run.duration_ns);
        worst = worst.max(u64::from(run.duration_ns));
    }
    Ok((sum as f64 / headers.len().max(1) as f64, worst, wrong))
}

/// A rule as the box pipapo stores: inclusive (lo, hi) per field, in the order of the
/// nftables concatenation `ip saddr . ip daddr . ip protocol . th sport . th dport`.
type NftBox = [(u32, u32); 5];

fn nft_box(r: &Rule) -> NftBox {
    let span = |p: &pol_compiler::classify::Prefix| {
        let a = u32::from_be_bytes([p.addr[0], p.addr[1], p.addr[2], p.addr[3]]);
        let m = if p.len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(p.len.min(32)))
        };
        (a & m, (a & m) | !m)
    };
    [
        span(&r.src),
        span(&r.dst),
        (r.proto.lo.into(), r.proto.hi.into()),
        (r.sport.lo.into(), r.sport.hi.into()),
        (r.dport.lo.into(), r.dport.hi.into()),
    ]
}

/// Which rules the kernel's pipapo set takes when they are added in order: it refuses an
/// element whose first point (every field's low end) or last point (every high end) lies
/// in an element it holds (`nft_pipapo_insert`: -EEXIST when both ends are equal, else
/// -ENOTEMPTY), and one refusal fails the whole `nft -f` transaction. Boxes indexed by the
/// top byte of their destination (or source) address when that byte is fixed.
fn pipapo_takes(rules: &[Rule]) -> Vec<bool> {
    let mut by_dst: std::collections::HashMap<u32, Vec<NftBox>> = Default::default();
    let mut by_src: std::collections::HashMap<u32, Vec<NftBox>> = Default::default();
    let mut wide: Vec<NftBox> = Vec::new();
    let inside = |b: &NftBox, p: &[u32; 5]| b.iter().zip(p).all(|((lo, hi), v)| lo <= v && v <= hi);
    rules
        .iter()
        .map(|r| {
            let b = nft_box(r);
            let ends = [b.map(|f| f.0), b.map(|f| f.1)];
            let hit = ends.iter().any(|p| {
                let near = by_dst.get(&(p[1] >> 24)).into_iter().flatten();
                let near = near.chain(by_src.get(&(p[0] >> 24)).into_iter().flatten());
                near.chain(&wide).any(|x| inside(x, p))
            });
            if !hit {
                if b[1].0 >> 24 == b[1].1 >> 24 {
                    by_dst.entry(b[1].0 >> 24).or_default().push(b);
                } else if b[0].0 >> 24 == b[0].1 >> 24 {
                    by_src.entry(b[0].0 >> 24).or_default().push(b);
                } else {
                    wide.push(b);
                }
            }
            !hit
        })
        .collect()
}

/// Rules and trace in the text form bench/nft/classify.py reads, IPv4 only: one rule a
/// line `action proto_lo proto_hi src/len dst/len sport_lo sport_hi dport_lo dport_hi
/// pipapo` (action 1 drops; pipapo 1 when the pipapo set takes it in order), one header a
/// line `proto src dst sport dport verdict` (the first match's action, 0 when none).
fn export(
    dir: &std::path::Path,
    name: &str,
    rules: &[Rule],
    trace: &[Header],
    want: &[u32],
) -> Result<(), String> {
    use std::fmt::Write as _;
    std::fs::create_dir_all(dir).map_err(err)?;
    let v4 = |a: &[u8; 16]| std::net::Ipv4Addr::new(a[0], a[1], a[2], a[3]);
    let takes = pipapo_takes(rules);
    let mut r = String::new();
    for (x, t) in rules.iter().zip(&takes) {
        let _ = writeln!(
            r,
            "{} {} {} {}/{} {}/{} {} {} {} {} {}",
            x.action,
            x.proto.lo,
            x.proto.hi,
            v4(&x.src.addr),
            x.src.len,
            v4(&x.dst.addr),
            x.dst.len,
            x.sport.lo,
            x.sport.hi,
            x.dport.lo,
            x.dport.hi,
            u8::from(*t)
        );
    }
    let mut t = String::new();
    for (h, w) in trace.iter().zip(want) {
        let verdict = rules.get(*w as usize).map_or(0, |r| r.action);
        let _ = writeln!(
            t,
            "{} {} {} {} {} {verdict}",
            h.proto,
            v4(&h.src),
            v4(&h.dst),
            h.sport,
            h.dport
        );
    }
    std::fs::write(dir.join(format!("{name}.rules")), r).map_err(err)?;
    std::fs::write(dir.join(format!("{name}.trace")), t).map_err(err)
}

fn main() {
    let a = parse_args();
    let cfg = a.cfg;
    let root = pol_runtime::sys::bpf_available().is_ok();
    let kernel = a.kernel && root;
    if a.kernel && !root {
        eprintln!("not root or no bpf(): kernel columns skipped");
    }
    let load_avg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "classifier benchmark, config {cfg:?}, load average {}",
        load_avg
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let baseline = if kernel {
        let empty = Maps::of(&build(&[], cfg).unwrap_or_else(|e| panic!("{e}")));
        let h = gen::trace(&[], 50, 1);
        let sizes = Sizes {
            buckets: 1,
            entries: 1,
        };
        match datapath::module(&cfg, sizes)
            .map_err(err)
            .and_then(|m| load(&m, "classify_xdp", Some(&empty)))
            .and_then(|l| kernel_ns(&l, &h, None, a.repeat))
        {
            Ok((avg, _, _)) => Some(avg),
            Err(e) => {
                eprintln!("empty classifier: {e}");
                None
            }
        }
    } else {
        None
    };
    println!(
        "{:<4} {:>7} {:>7} {:>8} {:>8} {:>9} {:>6} {:>6} | {:>5} {:>5} {:>5} {:>5} {:>5} | {:>6} {:>6} {:>4} {:>6} {:>6} {:>6} {:>6} | {:>8} {:>8} {:>7} {:>7} {:>7}",
        "set", "rules", "kept", "comp ms", "load ms", "mem KiB", "insns", "tables",
        "walk", "skip", "probe", "worst", "read",
        "ns", "worst", "head", "nohead", "loop", "walk", "x1k",
        "lin comp", "lin load", "insns", "lin ns", "worst"
    );
    for shape in Shape::ALL {
        let mut at_1k: Option<f64> = None;
        for &n in &a.sizes {
            let (rules, trace) = match &a.classbench {
                None => {
                    let rules = gen::rules(shape, n, 1);
                    let trace = gen::trace(&rules, a.trace, 1);
                    (rules, trace)
                }
                Some(dir) => {
                    let f = dir.join(format!("{}1_{n}", shape.name()));
                    let t = dir.join(format!("{}1_{n}_trace", shape.name()));
                    match classbench::rules(&f).and_then(|r| Ok((r, classbench::trace(&t)?))) {
                        Ok((r, mut t)) => {
                            t.truncate(a.trace);
                            (r, t)
                        }
                        Err(e) => {
                            println!("{}1 {n}: {e}", shape.name());
                            continue;
                        }
                    }
                }
            };
            let n = rules.len();
            let name = format!("{}-{n}", shape.name());
            // Compile: tables, maps, and the BPF object of the data path.
            let t0 = Instant::now();
            let c = match tuplemerge::build_with_head(&rules, cfg) {
                Ok(c) => c,
                Err(e) => {
                    println!("{name:<12} refused: {e}");
                    continue;
                }
            };
            if a.tables {
                print!("{name}:\n{}", c.describe_tables());
            }
            let maps = Maps::of(&c);
            let sizes = Sizes {
                buckets: maps.buckets.len(),
                entries: maps.entries.len(),
            };
            let module = datapath::module_with_head(&cfg, sizes, &maps.head);
            let obj = module
                .as_ref()
                .map_err(err)
                .and_then(|m| object(m).map_err(err));
            let comp_ms = t0.elapsed().as_secs_f64() * 1e3;
            if let Err(e) = obj {
                println!("{name:<12} data path: {e}");
                continue;
            }
            // The walk in userspace (profile) and the reference's answers.
            let index = maps.index(cfg.bucket_max);
            let (mut probes, mut worst, mut skipped, mut read) = (0usize, 0usize, 0usize, 0usize);
            let mut want = Vec::with_capacity(trace.len());
            for h in &trace {
                let l = maps.lookup(&index, h);
                probes += l.probes;
                skipped += l.filtered;
                read += l.scanned;
                worst = worst.max(l.probes);
                let r = reference(&rules, h);
                assert_eq!(l.rule, r, "classifier and reference differ");
                want.push(r.map_or(NO_MATCH, |i| i as u32));
            }
            let per = |x: usize| x as f64 / trace.len() as f64;
            let mut cols = format!(
                "{:<4} {n:>7} {:>7} {comp_ms:>8.1}",
                shape.name(),
                maps.entries.len()
            );
            // ClassBench's trace repeats a header in bursts: its kernel sample is spread
            // over the whole trace; pol's own, the first headers (as in session 7).
            let step = if a.classbench.is_some() {
                (trace.len() / a.kernel_headers.max(1)).max(1)
            } else {
                1
            };
            let picked: Vec<usize> = (0..trace.len())
                .step_by(step)
                .take(a.kernel_headers)
                .collect();
            let sample: Vec<Header> = picked.iter().map(|&i| trace[i]).collect();
            let want: Vec<u32> = picked.iter().map(|&i| want[i]).collect();
            let want = &want[..];
            if let Some(dir) = &a.export {
                if let Err(e) = export(dir, &name, &rules, &sample, want) {
                    eprintln!("export {name}: {e}");
                }
            }
            let mut kernel_cols = String::new();
            if kernel {
                let run = module.as_ref().map_err(err).and_then(|m| {
                    let l = load(m, "classify_xdp", Some(&maps))?;
                    let (avg, w, bad) = kernel_ns(&l, &sample, Some(want), a.repeat)?;
                    assert_eq!(bad, 0, "kernel and reference differ");
                    Ok((l, avg, w))
                });
                // Without a head (every rule in the tables): the unrolled walk, the
                // bpf_loop walk (before session 8), and the walk alone.
                let plain = build(&rules, cfg).map_err(err).map(|c| Maps::of(&c));
                let plain_sizes = |m: &Maps| Sizes {
                    buckets: m.buckets.len(),
                    entries: m.entries.len(),
                };
                let nohead = plain.clone().and_then(|m0| {
                    if c.head == 0 {
                        return Err("-".to_string());
                    }
                    let m = datapath::module(&cfg, plain_sizes(&m0)).map_err(err)?;
                    let l = load(&m, "classify_xdp", Some(&m0))?;
                    kernel_ns(&l, &sample, Some(want), a.repeat)
                });
                let looped = plain.clone().and_then(|m0| {
                    let m = datapath::module_walking(&cfg, plain_sizes(&m0), datapath::Walk::Loop)
                        .map_err(err)?;
                    let l = load(&m, "classify_xdp", Some(&m0))?;
                    kernel_ns(&l, &sample, Some(want), a.repeat)
                });
                let walk = plain.and_then(|mut m0| {
                    for d in m0.descs.iter_mut() {
                        d[DESC_FILTER..].fill(0);
                    }
                    let m = datapath::module(&cfg, plain_sizes(&m0)).map_err(err)?;
                    let l = load(&m, "classify_xdp", Some(&m0))?;
                    kernel_ns(&l, &sample, None, a.repeat)
                });
                match run {
                    Ok((l, avg, w)) => {
                        if at_1k.is_none() {
                            at_1k = Some(avg);
                        }
                        cols += &format!(
                            " {:>8.1} {:>9.0} {:>6} {:>6}",
                            l.load_ms,
                            l.memlock as f64 / 1024.0,
                            l.insns,
                            c.tables.len()
                        );
                        let ng = looped.map(|(x, _, bad)| {
                            assert_eq!(bad, 0, "kernel (bpf_loop walk) and reference differ");
                            format!("{x:.0}")
                        });
                        let nh = nohead.map(|(x, _, bad)| {
                            assert_eq!(bad, 0, "kernel (no head) and reference differ");
                            format!("{x:.0}")
                        });
                        kernel_cols = format!(
                            " | {avg:>6.0} {w:>6} {:>4} {:>6} {:>6} {:>6} {:>6}",
                            c.head,
                            nh.unwrap_or_else(|e| e),
                            ng.unwrap_or_else(|e| e),
                            walk.map(|(x, _, _)| format!("{x:.0}"))
                                .unwrap_or_else(|e| e),
                            at_1k.map_or("-".into(), |b| format!("{:.2}", avg / b)),
                        );
                    }
                    Err(e) => kernel_cols = format!(" | error: {e}"),
                }
            } else {
                cols += &format!(" {:>8} {:>9} {:>6} {:>6}", "-", "-", "-", c.tables.len());
            }
            cols += &format!(
                " | {:>5.1} {:>5.1} {:>5.2} {worst:>5} {:>5.1}",
                per(skipped + probes),
                per(skipped),
                per(probes),
                per(read)
            );
            cols += &kernel_cols;
            // The linear chain on the same headers.
            let lin = if !kernel {
                " | -".to_string()
            } else if n > a.linear_max {
                format!(" | not tried (over --linear-max {})", a.linear_max)
            } else {
                let t1 = Instant::now();
                let m = pol_compiler::mir::parse_module(&linear::text(&rules)).map_err(err);
                let comp = t1.elapsed().as_secs_f64() * 1e3;
                match m
                    .and_then(|m| {
                        let t = Instant::now();
                        object(&m).map_err(err)?;
                        let comp = comp + t.elapsed().as_secs_f64() * 1e3;
                        Ok((m, comp))
                    })
                    .and_then(|(m, comp)| {
                        let l = load(&m, "linear_xdp", None)?;
                        let (avg, w, bad) = kernel_ns(&l, &sample, Some(want), a.repeat)?;
                        assert_eq!(bad, 0, "linear chain and reference differ");
                        Ok((comp, l, avg, w))
                    }) {
                    Ok((comp, l, avg, w)) => format!(
                        " | {comp:>8.0} {:>8.1} {:>7} {avg:>7.0} {w:>7}",
                        l.load_ms, l.insns
                    ),
                    Err(e) => {
                        let e: String = e.lines().last().unwrap_or("").chars().take(80).collect();
                        format!(" | refused: {e}")
                    }
                }
            };
            println!("{cols}{lin}");
        }
    }
    if let Some(b) = baseline {
        println!("empty classifier (XDP test-run harness alone): {b:.0} ns per packet");
    }
    let load_avg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "load average at the end: {}",
        load_avg
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "columns: kept = rules in the maps (the rest are covered by an earlier rule in their \
         bucket); comp = tables + maps + BPF object; load = maps created and filled + program \
         verified; mem = kernel memory of the maps (fdinfo memlock); walk = tables visited per \
         header, skip = of them whose filter bit was clear, probe/worst = hash lookups, read = \
         entries read; ns/worst = BPF_PROG_TEST_RUN per packet, average and worst header ({} \
         repeats each, first {} trace headers); loop = the same maps walked by bpf_loop, one callback a table (the walk before session 8), no head; head = rules tested as code ahead of the tables (the compiler's choice, classify::head), nohead = the unrolled walk with every rule in the tables; \
         walk = every filter bit cleared (the descriptor walk alone); x1k = ns over the 1k set's; \
         lin = the same rules as a linear chain of tests",
        a.repeat, a.kernel_headers
    );
}
