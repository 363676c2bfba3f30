//! Differential test (issue 4): random rule lists and random packets; the verdict and the
//! per-rule statistics of the compiled program under BPF_PROG_TEST_RUN must equal a plain
//! Rust evaluation of the same rules (`differential/reference.rs`), first match wins.
//!
//! `POL_DIFF_SEED` (decimal or `0x` hex) and `POL_DIFF_CASES` (files) override the defaults;
//! `POL_DIFF_MALFORMED=0` generates well-formed packets only. Every failure prints its
//! case's own seed: `POL_DIFF_SEED=<that> POL_DIFF_CASES=1` replays that case alone.

mod common;
#[path = "differential/generate.rs"]
mod generate;
#[path = "differential/packets.rs"]
mod packets;
#[path = "differential/reference.rs"]
mod reference;
#[path = "differential/rules.rs"]
mod rules;

use pol_compiler::diag::Severity;
use pol_compiler::driver;
use pol_compiler::hir::Hook;
use pol_runtime::direct::Object as _;
use pol_runtime::testrun;
use std::collections::BTreeMap;
use std::time::Instant;

const DEFAULT_SEED: u64 = 0x0070_0142_d1ff;
const DEFAULT_CASES: u64 = 160;
/// Mismatches printed in full (the first of each kind); the rest are counted by kind.
const MAX_REPORTED: usize = 12;

#[derive(Default)]
struct Tally {
    files: usize,
    filters: usize,
    rules: usize,
    long_runs: usize,
    packets: usize,
    malformed: usize,
    /// Malformed for the full parser, not for the filter's (only in layers it skips).
    not_parsed: usize,
    by_rule: usize,
    skipped_limit: usize,
    unrunnable: usize,
    mismatches: usize,
    reports: Vec<String>,
    kinds: BTreeMap<String, usize>,
}

impl Tally {
    fn fail(&mut self, kind: String, report: impl FnOnce() -> String) {
        self.mismatches += 1;
        let n = self.kinds.entry(kind).or_default();
        *n += 1;
        if *n == 1 && self.reports.len() < MAX_REPORTED {
            self.reports.push(report());
        }
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    let parsed = match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={v:?} is not a number")))
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn compiled_filters_agree_with_the_reference() {
    common::require_kernel();
    let seed = env_u64("POL_DIFF_SEED").unwrap_or(DEFAULT_SEED);
    let cases = env_u64("POL_DIFF_CASES").unwrap_or(DEFAULT_CASES);
    let malformed = std::env::var("POL_DIFF_MALFORMED").as_deref() != Ok("0");
    let start = Instant::now();
    let mut t = Tally::default();
    for i in 0..cases {
        run_case(
            seed.wrapping_add(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            malformed,
            &mut t,
        );
    }
    eprintln!(
        "differential: seed {seed:#x}: {} files, {} filters ({} rules, {} runs of 200+), \
         {} packets ({} malformed, {} malformed only in a layer the filter does not parse, \
         {} decided by a rule), {} skipped at a compile-time limit, \
         {} too short for a tc test run, {} mismatches, in {:.1?}",
        t.files,
        t.filters,
        t.rules,
        t.long_runs,
        t.packets,
        t.malformed,
        t.not_parsed,
        t.by_rule,
        t.skipped_limit,
        t.unrunnable,
        t.mismatches,
        start.elapsed()
    );
    if t.mismatches > 0 {
        let kinds: Vec<String> = t
            .kinds
            .iter()
            .map(|(k, n)| format!("  {n:6} × {k}"))
            .collect();
        panic!(
            "{} mismatches between the kernel and the reference; by kind:\n{}\n\nfirst {}:\n\n{}",
            t.mismatches,
            kinds.join("\n"),
            t.reports.len(),
            t.reports.join("\n\n")
        );
    }
}

fn run_case(seed: u64, malformed: bool, t: &mut Tally) {
    let mut rng = rules::Rng::new(seed);
    let file = generate::file(&mut rng);
    let src = generate::render(&file);
    t.files += 1;
    let compiled = match driver::compile(&src) {
        Ok(c) => c,
        Err(diags) => {
            let errors: Vec<_> = diags
                .iter()
                .filter(|d| d.severity == Severity::Error)
                .collect();
            if !errors.is_empty() && errors.iter().all(|d| d.code.starts_with("L06")) {
                t.skipped_limit += 1;
                return;
            }
            panic!(
                "generator bug (seed {seed:#x}): the file does not compile:\n{}\n{src}",
                pol_compiler::diag::render_all(&diags, "differential.pol", &src)
            );
        }
    };
    let loaded = match testrun::load(&compiled) {
        Ok(l) => l,
        Err(e) => {
            let log = e.verifier_log().unwrap_or("");
            let tail: String = log
                .lines()
                .rev()
                .take(12)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            return t.fail(
                format!("does not load: {}", first_line(&e.to_string())),
                || {
                    format!(
                        "seed {seed:#x}: the kernel refuses the program: {e}\n{tail}\n{}",
                        show(seed, &src)
                    )
                },
            );
        }
    };
    // What the test needs of the loaded file, through closures: the loader's type is not
    // named, so the test follows whichever one `testrun::load` returns.
    let runner = Runner {
        test_run: Box::new(|name, bytes| {
            loaded
                .test_run(name, bytes, 1)
                .map(|run| run.retval)
                .map_err(|e| e.to_string())
        }),
        stats: Box::new(|name| {
            loaded
                .map_entries(name)
                .map(|entries| {
                    entries
                        .iter()
                        .map(|(_, v)| {
                            u64::from_le_bytes(v.as_slice().try_into().expect("u64 values"))
                        })
                        .collect()
                })
                .map_err(|e| e.to_string())
        }),
    };
    for filter in &file.filters {
        t.filters += 1;
        t.rules += filter.rules.len();
        if filter.rules.len() >= 200 {
            t.long_runs += 1;
        }
        run_filter(
            seed, &src, &file, filter, &compiled, &runner, &mut rng, malformed, t,
        );
    }
}

/// A program's return value for one packet, by program name.
type TestRunFn<'a> = Box<dyn Fn(&str, &[u8]) -> Result<u32, String> + 'a>;
/// The values of a statistics map, by map name.
type StatsFn<'a> = Box<dyn Fn(&str) -> Result<Vec<u64>, String> + 'a>;

/// The loaded file: a test run's return value, and a filter's statistics map by name.
struct Runner<'a> {
    test_run: TestRunFn<'a>,
    stats: StatsFn<'a>,
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").chars().take(100).collect()
}

#[allow(clippy::too_many_arguments)]
fn run_filter(
    seed: u64,
    src: &str,
    file: &rules::File,
    filter: &rules::FilterDef,
    compiled: &driver::Compiled,
    runner: &Runner,
    rng: &mut rules::Rng,
    malformed: bool,
    t: &mut Tally,
) {
    let hir = compiled
        .hir
        .filters
        .iter()
        .find(|f| f.name == filter.name)
        .expect("the compiled file has the filter");
    let hook = &hir.hook;
    // The layers this filter's parser reads: only those can make a packet malformed.
    let needs = pol_compiler::hir::needs::needs(&compiled.hir, hir);
    let reads = reference::describe(&needs);
    let n = filter.rules.len();
    let mut want_stats = vec![0u64; n + 2];
    let mut clean = true;
    for _ in 0..rng.range(30, 100) {
        let pkt = packets::packet(rng, &file.hints, malformed);
        let bytes = packets::build(&pkt);
        if !matches!(hook, Hook::Xdp { .. }) && packets::tc_cannot_run(&pkt, bytes.len()) {
            t.unrunnable += 1;
            continue;
        }
        let parsed = reference::parse(&pkt, bytes.len(), &needs);
        let (slot, pass) = reference::decide(filter, &file.sets, &parsed);
        want_stats[slot] += 1;
        t.packets += 1;
        t.malformed += usize::from(parsed.is_err());
        t.not_parsed += usize::from(
            parsed.is_ok()
                && reference::parse(&pkt, bytes.len(), &pol_compiler::packet::needs::Needs::ALL)
                    .is_err(),
        );
        t.by_rule += usize::from(slot < n);
        let got = match (runner.test_run)(&filter.name, &bytes) {
            Ok(retval) => testrun::verdict_of(hook, retval)
                .map(|v| driver::verdict_word(v).to_string())
                .unwrap_or_else(|| format!("retval {retval}")),
            Err(e) => format!("test run failed ({hook:?}, {} bytes): {e}", bytes.len()),
        };
        let want = generate::verdict(pass);
        if got != want {
            clean = false;
            let why = match &parsed {
                Err(why) => format!("malformed ({why}; {}; {reads})", pkt.bad.label()),
                Ok(_) if slot < n => "decided by a rule".to_string(),
                Ok(_) => "default".to_string(),
            };
            t.fail(format!("want {want}, got {got}: {why}"), || {
                let decided = match slot {
                    s if s < n => format!(
                        "rule {s} (`{} ...`)",
                        generate::verdict(filter.rules[s].pass)
                    ),
                    s if s == n => "the default".to_string(),
                    _ => "the malformed action".to_string(),
                };
                format!(
                    "seed {seed:#x}, filter {}: the kernel says {got}, the reference {want} \
                     ({decided})\npacket: {pkt:?}\nframe ({} bytes): {}\nreference fields: \
                     {parsed:?}\n{}",
                    filter.name,
                    bytes.len(),
                    hex(&bytes),
                    show(seed, src)
                )
            });
        }
    }
    // Slot i = rule i, then default, then malformed; compared when every verdict agreed.
    let name = format!("{}_stats", filter.name);
    let got_stats: Vec<u64> = match (runner.stats)(&name) {
        Ok(stats) => stats,
        Err(e) => {
            return t.fail(format!("cannot read {name}"), || {
                format!("seed {seed:#x}: {name}: {e}")
            });
        }
    };
    if clean && got_stats != want_stats {
        let diff: Vec<String> = (0..want_stats.len().max(got_stats.len()))
            .filter(|&i| want_stats.get(i) != got_stats.get(i))
            .map(|i| {
                format!(
                    "slot {i}: kernel {:?}, reference {:?}",
                    got_stats.get(i),
                    want_stats.get(i)
                )
            })
            .collect();
        t.fail("statistics differ".to_string(), || {
            format!(
                "seed {seed:#x}, filter {}: statistics differ (slots: {n} rules, default, malformed):\n{}\n{}",
                filter.name,
                diff.join("\n"),
                show(seed, src)
            )
        });
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The source of a failing case: written to a file, and shown inline when short.
fn show(seed: u64, src: &str) -> String {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("differential");
    let path = dir.join(format!("{seed:#x}.pol"));
    let saved = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&path, src))
        .map_or_else(
            |e| format!("(not saved: {e})"),
            |()| path.display().to_string(),
        );
    let lines = src.lines().count();
    if lines <= 60 {
        format!("--- source ({saved}) ---\n{src}")
    } else {
        let head: Vec<&str> = src.lines().take(40).collect();
        format!(
            "--- source: {saved} ({lines} lines; the first 40) ---\n{}\n...",
            head.join("\n")
        )
    }
}
