//! Random DNS messages and ClientHellos through BPF_PROG_TEST_RUN against the reference
//! matcher in Rust (issue 13 tests): thousands per run, each verdict of the kernel's
//! filter compared with what `l7::dns::question` / `l7::tls` reading and
//! `l7::dns::matches` say it must be.

mod common;

use pol_compiler::driver::{self, Compiled};
use pol_compiler::l7::dns::{self, Pattern};
use pol_runtime::direct::Object as _;
use pol_runtime::packet::Packet;
use pol_runtime::testrun;

/// xorshift64*: a fixed seed per run of the test, printed on failure.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Labels from a small alphabet in any case, so that names often share suffixes.
fn label(r: &mut Rng) -> Vec<u8> {
    const WORDS: &[&[u8]] = &[b"a", b"b", b"ex", b"test", b"www", b"cdn", b"Zz", b"m-1"];
    if r.chance(5) {
        return vec![b'q'; 1 + r.below(63) as usize];
    }
    let w = WORDS[r.below(WORDS.len() as u64) as usize];
    if r.chance(30) {
        w.to_ascii_uppercase()
    } else {
        w.to_vec()
    }
}

fn name(r: &mut Rng) -> Vec<Vec<u8>> {
    let n = r.below(5) as usize + usize::from(!r.chance(3));
    (0..n).map(|_| label(r)).collect()
}

fn patterns(r: &mut Rng) -> Vec<Pattern> {
    let mut v: Vec<Pattern> = Vec::new();
    while v.len() < 12 {
        let labels: Vec<Vec<u8>> = name(r)
            .into_iter()
            .map(|l| l.to_ascii_lowercase())
            .collect();
        if labels.is_empty() {
            continue;
        }
        let p = Pattern {
            wildcard: r.chance(50),
            labels,
        };
        if !v.contains(&p) {
            v.push(p);
        }
    }
    v
}

/// A query for `labels`, sometimes with a compression pointer, sometimes cut short or
/// otherwise unreadable.
fn message(r: &mut Rng, labels: &[Vec<u8>]) -> Vec<u8> {
    let mut m = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    if r.chance(5) {
        m[5] = 2; // two questions
    }
    for l in labels {
        m.push(l.len() as u8);
        m.extend(l);
    }
    if r.chance(10) {
        // A pointer back to the header (refused) or to a label earlier in the name.
        let to = if r.chance(50) { 4 } else { 12 };
        m.extend([0xc0, to]);
    } else {
        m.push(0);
    }
    m.extend([0, 1, 0, 1]);
    if r.chance(10) {
        let cut = r.below(m.len() as u64) as usize;
        m.truncate(cut);
    }
    m
}

fn compile(src: &str) -> Compiled {
    match driver::compile(src) {
        Ok(c) => c,
        Err(d) => panic!(
            "does not compile:\n{}",
            pol_compiler::diag::render_all(&d, "random.pol", src)
        ),
    }
}

fn quoted(ps: &[Pattern]) -> String {
    ps.iter()
        .map(|p| format!("\"{p}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

fn show(labels: &[Vec<u8>]) -> String {
    labels
        .iter()
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect::<Vec<_>>()
        .join(".")
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn random_dns_queries_match_the_reference() {
    common::require_kernel();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    let mut r = Rng(seed);
    let mut runs = 0;
    for round in 0..4 {
        let pats = patterns(&mut r);
        let hook = if round % 2 == 0 {
            "xdp(\"eth0\")"
        } else {
            "tc(\"eth0\", ingress)"
        };
        let src = format!(
            "filter rnd on {hook} {{\n    drop dns.qname in {{ {} }}\n    default pass\n}}\n",
            quoted(&pats)
        );
        let c = compile(&src);
        let l = testrun::load(&c).unwrap_or_else(|e| panic!("load: {e}\n{src}"));
        for _ in 0..800 {
            let labels = name(&mut r);
            let msg = message(&mut r, &labels);
            // Unreadable messages are malformed, which drops (the filter drops on DNS).
            let want = match dns::question(&msg) {
                None => "drop",
                Some(q) if pats.iter().any(|p| dns::matches(p, &q)) => "drop",
                Some(_) => "pass",
            };
            let sport = 1024 + r.below(60000) as u16;
            let pkt = if r.chance(50) {
                Packet::udp().sport(sport).dport(53).payload(&msg)
            } else {
                Packet::udp().sport(53).dport(sport).payload(&msg)
            };
            let bytes = pkt.build().expect("valid packet");
            let run = l
                .test_run("rnd", &bytes, 1)
                .unwrap_or_else(|e| panic!("test run: {e}"));
            let got = testrun::verdict_of(&c.hir.filters[0].hook, run.retval)
                .map_or("?", driver::verdict_word);
            assert_eq!(
                got,
                want,
                "seed {seed:#x}: {} ({} bytes) against {{{}}}",
                show(&labels),
                msg.len(),
                quoted(&pats)
            );
            runs += 1;
        }
    }
    assert_eq!(runs, 3200);
}
