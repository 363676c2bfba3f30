//! The classifier benchmark (issue 11): for ClassBench-shaped acl/fw/ipc sets at each
//! size, TupleMerge build time, tables, probes per header (average and worst), map bytes,
//! and userspace ns per lookup side by side with a linear first-match scan of the same
//! rules over the same trace; then, as root, the kernel data path's ns per packet from
//! BPF_PROG_TEST_RUN beside an empty classifier (the harness's own cost) in the same run.
//!
//! `cargo run --release -p polbench --bin classify -- [--sizes 1000,10000,30000,100000]
//! [--trace 10000] [--repeat 2000] [--kernel-headers 200] [--no-kernel]`

use std::os::fd::AsFd;
use std::time::Instant;

use aya::maps::{Array, HashMap, MapData};
use aya::programs::Xdp;
use aya::{Ebpf, EbpfLoader};
use pol_compiler::classify::datapath::{self, Sizes, BUCKETS, DESCS, ENTRIES};
use pol_compiler::classify::gen::{self, Shape};
use pol_compiler::classify::maps::{Maps, BUCKET_BYTES, DESC_BYTES, ENTRY_BYTES, KEY_BYTES};
use pol_compiler::classify::tuplemerge::{self, build, Config};
use pol_compiler::classify::{reference, Header, Rule};
use pol_compiler::codegen::object::object;

struct Args {
    sizes: Vec<usize>,
    trace: usize,
    repeat: u32,
    kernel_headers: usize,
    kernel: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: classify [--sizes 1000,10000,30000,100000] [--trace 10000] [--repeat 2000] \
         [--kernel-headers 200] [--no-kernel]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        sizes: vec![1000, 10_000, 30_000, 100_000],
        trace: 10_000,
        repeat: 2000,
        kernel_headers: 200,
        kernel: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| usage());
        match k.as_str() {
            "--sizes" => {
                a.sizes = val()
                    .split(',')
                    .map(|x| x.trim().parse().unwrap_or_else(|_| usage()))
                    .collect()
            }
            "--trace" => a.trace = val().parse().unwrap_or_else(|_| usage()),
            "--repeat" => a.repeat = val().parse().unwrap_or_else(|_| usage()),
            "--kernel-headers" => a.kernel_headers = val().parse().unwrap_or_else(|_| usage()),
            "--no-kernel" => a.kernel = false,
            _ => usage(),
        }
    }
    a
}

fn load(maps: &Maps, cfg: &Config) -> Result<(Ebpf, u32), String> {
    let sizes = Sizes {
        buckets: maps.buckets.len(),
        entries: maps.entries.len(),
    };
    let m = datapath::module(cfg, sizes).map_err(|e| e.to_string())?;
    let (bytes, _) = object(&m).map_err(|e| e.to_string())?;
    let mut bpf = EbpfLoader::new().load(&bytes).map_err(|e| e.to_string())?;
    {
        let mut descs: Array<&mut MapData, [u8; DESC_BYTES]> =
            Array::try_from(bpf.map_mut(DESCS).ok_or("no descs")?).map_err(|e| e.to_string())?;
        for (i, d) in maps.descs.iter().enumerate() {
            descs.set(i as u32, **d, 0).map_err(|e| e.to_string())?;
        }
    }
    {
        let mut b: HashMap<&mut MapData, [u8; KEY_BYTES], [u8; BUCKET_BYTES]> =
            HashMap::try_from(bpf.map_mut(BUCKETS).ok_or("no buckets")?)
                .map_err(|e| e.to_string())?;
        for (k, v) in &maps.buckets {
            b.insert(k, v, 0).map_err(|e| e.to_string())?;
        }
    }
    {
        let mut e: Array<&mut MapData, [u8; ENTRY_BYTES]> =
            Array::try_from(bpf.map_mut(ENTRIES).ok_or("no entries")?)
                .map_err(|e| e.to_string())?;
        for (i, x) in maps.entries.iter().enumerate() {
            e.set(i as u32, x, 0).map_err(|e| e.to_string())?;
        }
    }
    let p: &mut Xdp = bpf
        .program_mut("classify_xdp")
        .ok_or("no program")?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| e.to_string())?;
    p.load().map_err(|e| e.to_string())?;
    let insns = p
        .info()
        .ok()
        .and_then(|i| i.verified_instruction_count())
        .unwrap_or(0);
    Ok((bpf, insns))
}

/// Average and worst ns per packet over `headers`, and how many answers differed from
/// the reference.
fn kernel_ns(
    bpf: &Ebpf,
    rules: &[Rule],
    headers: &[Header],
    repeat: u32,
) -> Result<(f64, u64, usize), String> {
    let p: &Xdp = bpf
        .program("classify_xdp")
        .ok_or("no program")?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| e.to_string())?;
    let fd = p.fd().map_err(|e| e.to_string())?;
    let (mut sum, mut worst, mut wrong) = (0u64, 0u64, 0);
    for h in headers {
        let run = pol_runtime::sys::test_run(fd.as_fd(), &tuplemerge::header_bytes(h), repeat)
            .map_err(|e| e.to_string())?;
        let r = u32::from_le_bytes([
            run.data_out[0],
            run.data_out[1],
            run.data_out[2],
            run.data_out[3],
        ]);
        let want = reference(rules, h).map_or(u32::MAX, |i| i as u32);
        wrong += usize::from(r != want);
        sum += u64::from(run.duration_ns);
        worst = worst.max(u64::from(run.duration_ns));
    }
    Ok((sum as f64 / headers.len().max(1) as f64, worst, wrong))
}

fn main() {
    let a = parse_args();
    let cfg = Config::default();
    let root = pol_runtime::sys::bpf_available().is_ok();
    let kernel = a.kernel && root;
    if a.kernel && !root {
        eprintln!("not root or no bpf(): kernel columns skipped");
    }
    let baseline = if kernel {
        let empty = Maps::of(&build(&[], cfg).unwrap_or_else(|e| panic!("{e}")));
        let h = gen::trace(&[], 50, 1);
        match load(&empty, &cfg).and_then(|(b, _)| kernel_ns(&b, &[], &h, a.repeat)) {
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
        "{:<4} {:>7} {:>7} {:>9} {:>6} {:>7} {:>7} {:>6} {:>6} {:>9} | {:>9} {:>9} {:>11} | {:>8} {:>8} {:>8}",
        "set",
        "rules",
        "kept",
        "build ms",
        "tables",
        "skipped",
        "avg prb",
        "worst",
        "hits",
        "map KiB",
        "TM ns",
        "linear ns",
        "linear scan",
        "bpf ns",
        "worst",
        "insns"
    );
    for shape in Shape::ALL {
        for &n in &a.sizes {
            let rules = gen::rules(shape, n, 1);
            let trace = gen::trace(&rules, a.trace, 1);
            let t0 = Instant::now();
            let built = build(&rules, cfg);
            let c = match built {
                Ok(c) => c,
                Err(e) => {
                    println!("{:<4} {n:>7} refused: {e}", shape.name());
                    continue;
                }
            };
            let maps = Maps::of(&c);
            let build_ms = t0.elapsed().as_secs_f64() * 1e3;
            let index = maps.index(cfg.bucket_max);
            // Userspace lookups over the trace, then the linear scan over the same trace.
            let t1 = Instant::now();
            let (mut probes, mut worst, mut hits, mut skipped) = (0usize, 0usize, 0usize, 0usize);
            let mut answers = Vec::with_capacity(trace.len());
            for h in &trace {
                let l = maps.lookup(&index, h);
                probes += l.probes;
                hits += l.hits;
                skipped += l.filtered;
                worst = worst.max(l.probes);
                answers.push(l.rule);
            }
            let tm_ns = t1.elapsed().as_nanos() as f64 / trace.len() as f64;
            let t2 = Instant::now();
            let mut scanned = 0usize;
            let mut wrong = 0;
            for (h, got) in trace.iter().zip(&answers) {
                let r = reference(&rules, h);
                scanned += r.map_or(rules.len(), |i| i + 1);
                wrong += usize::from(r != *got);
            }
            let lin_ns = t2.elapsed().as_nanos() as f64 / trace.len() as f64;
            assert_eq!(wrong, 0, "classifier and reference differ");
            let (bpf_avg, bpf_worst, insns) = if kernel {
                let sample: Vec<Header> = trace.iter().take(a.kernel_headers).copied().collect();
                match load(&maps, &cfg).and_then(|(b, insns)| {
                    kernel_ns(&b, &rules, &sample, a.repeat).map(|r| (r, insns))
                }) {
                    Ok(((avg, w, bad), insns)) => {
                        assert_eq!(bad, 0, "kernel and reference differ");
                        (format!("{avg:.0}"), format!("{w}"), format!("{insns}"))
                    }
                    Err(e) => (format!("error: {e}"), String::new(), String::new()),
                }
            } else {
                ("-".into(), "-".into(), "-".into())
            };
            println!(
                "{:<4} {n:>7} {:>7} {build_ms:>9.1} {:>6} {:>7.2} {:>7.2} {worst:>6} {:>6.2} {:>9.0} | {tm_ns:>9.0} {lin_ns:>9.0} {:>11.0} | {bpf_avg:>8} {bpf_worst:>8} {insns:>8}",
                shape.name(),
                maps.entries.len(),
                c.tables.len(),
                skipped as f64 / trace.len() as f64,
                probes as f64 / trace.len() as f64,
                hits as f64 / trace.len() as f64,
                maps.bytes() as f64 / 1024.0,
                scanned as f64 / trace.len() as f64,
            );
        }
    }
    if let Some(b) = baseline {
        println!("empty classifier (XDP test-run harness alone): {b:.0} ns per packet");
    }
    println!(
        "columns: kept = rules in the maps (the rest are covered by an earlier rule in their \
         bucket); skipped = tables per header whose filter bit said \"no bucket\"; avg prb/worst = hash lookups per header; hits = lookups that found a bucket; linear scan = rules a first-match \
         scan tests per header; TM/linear ns = userspace per header over the same trace; \
         bpf ns = BPF_PROG_TEST_RUN per packet (average and worst header, {} repeats each)",
        a.repeat
    );
}
