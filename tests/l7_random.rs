//! Random DNS messages and ClientHellos through BPF_PROG_TEST_RUN against the reference
//! matcher in Rust (issue 13 tests): thousands per run, each verdict of the kernel's
//! filter compared with what `l7::dns::question` / `l7::tls` reading and
//! `l7::dns::matches` say it must be.

mod common;

use pol_compiler::driver::{self, Compiled};
use pol_compiler::l7::dns::{self, Pattern};
use pol_compiler::l7::tls;
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

/// Protocol names the random hellos offer and the filters test: common ones, a long one
/// (past what a pattern may be), one of exactly 31 bytes.
const PROTOCOLS: &[&[u8]] = &[
    b"h2",
    b"http/1.1",
    b"h3",
    b"spdy/3.1",
    b"acme-tls/1",
    b"imap",
    b"x",
    b"H2",
    b"0123456789012345678901234567890",
    b"a-protocol-name-longer-than-31-bytes",
];

fn grease(r: &mut Rng) -> u16 {
    let n = r.below(16) as u16;
    (n << 12) | 0x0a00 | (n << 4) | 0x0a
}

/// A host name: labels in any case, sometimes an empty label, a final dot or a label
/// over 63 bytes (all unreadable), sometimes very many labels.
fn host(r: &mut Rng) -> Vec<u8> {
    let mut labels = name(r);
    if labels.is_empty() {
        labels.push(b"x".to_vec());
    }
    if r.chance(4) {
        labels.insert(r.below(labels.len() as u64) as usize, Vec::new());
    }
    if r.chance(3) {
        labels.push(Vec::new());
    }
    if r.chance(3) {
        labels = vec![b"a".to_vec(); 100 + r.below(30) as usize];
    }
    labels.join(&b'.')
}

fn ext(ty: u16, data: &[u8]) -> Vec<u8> {
    let mut e = ty.to_be_bytes().to_vec();
    e.extend((data.len() as u16).to_be_bytes());
    e.extend(data);
    e
}

/// A ClientHello record: random SNI, ALPN list, supported versions, GREASE and padding
/// extensions in a random order, random session id and cipher suites; sometimes a broken
/// ALPN list, sometimes cut short (a hello split across segments), sometimes not TLS.
fn client_hello(r: &mut Rng) -> Vec<u8> {
    if r.chance(3) {
        return (0..r.below(80)).map(|_| r.below(256) as u8).collect();
    }
    let mut exts: Vec<Vec<u8>> = Vec::new();
    if r.chance(80) {
        let h = host(r);
        let mut d = ((h.len() + 3) as u16).to_be_bytes().to_vec();
        d.push(if r.chance(3) { 1 } else { 0 });
        d.extend((h.len() as u16).to_be_bytes());
        d.extend(&h);
        exts.push(ext(0, &d));
    }
    if r.chance(60) {
        let mut v = Vec::new();
        for _ in 0..=r.below(4) {
            let x = match r.below(4) {
                0 => grease(r),
                1 => 0x0304,
                2 => 0x0303,
                _ => 0x0300 | r.below(6) as u16,
            };
            v.extend(x.to_be_bytes());
        }
        let mut d = vec![v.len() as u8];
        d.extend(v);
        exts.push(ext(43, &d));
    }
    if r.chance(75) {
        let mut l = Vec::new();
        let n = if r.chance(5) {
            17 + r.below(4)
        } else {
            r.below(5)
        };
        for _ in 0..n {
            if r.chance(2) {
                l.push(0);
                continue;
            }
            let p = PROTOCOLS[r.below(PROTOCOLS.len() as u64) as usize];
            l.push(p.len() as u8);
            l.extend(p);
        }
        let mut len = l.len() as u16;
        if r.chance(4) {
            len = len.wrapping_add(1);
        }
        let mut d = len.to_be_bytes().to_vec();
        d.extend(l);
        exts.push(ext(16, &d));
    }
    for _ in 0..r.below(3) {
        exts.push(ext(grease(r), &[]));
    }
    if r.chance(30) {
        exts.push(ext(21, &vec![0; r.below(400) as usize]));
    }
    if r.chance(50) {
        exts.push(ext(51, &vec![0x42; 36 + r.below(60) as usize]));
    }
    // A random order (Fisher-Yates).
    for i in (1..exts.len()).rev() {
        exts.swap(i, r.below(i as u64 + 1) as usize);
    }
    let mut body = if r.chance(80) { vec![3, 3] } else { vec![3, 1] };
    body.extend((0..32).map(|_| r.below(256) as u8));
    let sid = if r.chance(50) { 32 } else { 0 };
    body.push(sid);
    body.extend(vec![0x55; usize::from(sid)]);
    let cs = 2 * (1 + r.below(20)) as u16;
    body.extend(cs.to_be_bytes());
    body.extend((0..cs).map(|i| i as u8));
    body.extend([1, 0]);
    let e: Vec<u8> = exts.concat();
    if !r.chance(2) {
        body.extend((e.len() as u16).to_be_bytes());
        body.extend(e);
    }
    let mut hs = vec![1, 0];
    hs.extend((body.len() as u16).to_be_bytes());
    hs.extend(body);
    let mut rec = vec![22, 3, 1];
    rec.extend((hs.len() as u16).to_be_bytes());
    rec.extend(hs);
    if r.chance(12) {
        let cut = 1 + r.below(rec.len() as u64 - 1) as usize;
        rec.truncate(cut);
    }
    rec
}

/// One rule of a random TLS filter, and whether it holds for a hello the reference read.
#[derive(Debug)]
enum TlsRule {
    AlpnIn(bool, Vec<&'static [u8]>),
    AlpnNe(bool, &'static [u8]),
    SniIn(bool, Vec<Pattern>),
    Version13(bool),
    Any(bool),
}

impl TlsRule {
    fn drops(&self) -> bool {
        match self {
            TlsRule::AlpnIn(d, _)
            | TlsRule::AlpnNe(d, _)
            | TlsRule::SniIn(d, _)
            | TlsRule::Version13(d)
            | TlsRule::Any(d) => *d,
        }
    }

    fn text(&self) -> String {
        let act = if self.drops() { "drop" } else { "pass" };
        let s = |p: &[u8]| format!("\"{}\"", String::from_utf8_lossy(p));
        match self {
            TlsRule::AlpnIn(_, ps) => format!(
                "{act} tls.alpn in {{ {} }}",
                ps.iter().map(|p| s(p)).collect::<Vec<_>>().join(", ")
            ),
            TlsRule::AlpnNe(_, p) => format!("{act} tls.alpn != {}", s(p)),
            TlsRule::SniIn(_, ps) => format!("{act} tls.sni in {{ {} }}", quoted(ps)),
            TlsRule::Version13(_) => format!("{act} tls.version >= TLS13"),
            TlsRule::Any(_) => format!("{act} tls"),
        }
    }

    fn holds(&self, h: &tls::Hello) -> bool {
        let tls::Hello::Read { version, sni, alpn } = h else {
            return false;
        };
        match self {
            TlsRule::AlpnIn(_, ps) => alpn.iter().any(|a| ps.contains(&a.as_slice())),
            TlsRule::AlpnNe(_, p) => !alpn.iter().any(|a| a.as_slice() == *p),
            TlsRule::SniIn(_, ps) => sni
                .as_ref()
                .is_some_and(|q| ps.iter().any(|p| dns::matches(p, q))),
            TlsRule::Version13(_) => *version >= 0x0304,
            TlsRule::Any(_) => true,
        }
    }
}

fn tls_rules(r: &mut Rng) -> Vec<TlsRule> {
    let short: Vec<&'static [u8]> = PROTOCOLS
        .iter()
        .copied()
        .filter(|p| p.len() <= 31)
        .collect();
    let mut rules = Vec::new();
    for _ in 0..2 + r.below(3) {
        let d = r.chance(60);
        rules.push(match r.below(5) {
            0 | 1 => {
                let n = 1 + r.below(3) as usize;
                let ps = (0..n)
                    .map(|_| short[r.below(short.len() as u64) as usize])
                    .collect();
                TlsRule::AlpnIn(d, ps)
            }
            2 => TlsRule::AlpnNe(d, short[r.below(short.len() as u64) as usize]),
            3 => TlsRule::SniIn(d, patterns(r)),
            _ => TlsRule::Version13(d),
        });
    }
    if r.chance(50) {
        rules.push(TlsRule::Any(true));
    }
    rules
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn random_client_hellos_match_the_reference() {
    common::require_kernel();
    let seed = std::env::var("POL_L7_SEED")
        .ok()
        .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    let mut r = Rng(seed);
    let mut runs = 0;
    let mut seen = [0usize; 3];
    for round in 0..8 {
        let rules = tls_rules(&mut r);
        let option = match r.below(4) {
            0 => Some("pass"),
            1 => Some("drop"),
            _ => None,
        };
        let hook = if round % 2 == 0 {
            "xdp(\"eth0\")"
        } else {
            "tc(\"eth0\", egress)"
        };
        let mut src = format!("filter rnd on {hook} {{\n");
        if let Some(o) = option {
            src.push_str(&format!("    l7 incomplete {o}\n"));
        }
        for rule in &rules {
            src.push_str(&format!("    {}\n", rule.text()));
        }
        src.push_str("    default pass\n}\n");
        let alpn = src.contains("tls.alpn");
        let closed = match option {
            Some(o) => o == "drop",
            None => rules.iter().any(TlsRule::drops),
        };
        let c = compile(&src);
        let l = testrun::load(&c).unwrap_or_else(|e| panic!("load: {e}\n{src}"));
        for _ in 0..400 {
            let hello = client_hello(&mut r);
            let h = tls::hello(&hello, alpn);
            let want = match &h {
                tls::Hello::Incomplete if closed => "drop",
                h => rules
                    .iter()
                    .find(|rule| rule.holds(h))
                    .map_or("pass", |rule| if rule.drops() { "drop" } else { "pass" }),
            };
            seen[match h {
                tls::Hello::None => 0,
                tls::Hello::Incomplete => 1,
                tls::Hello::Read { .. } => 2,
            }] += 1;
            let bytes = Packet::tcp()
                .flags(0x18)
                .sport(40000 + r.below(2000) as u16)
                .dport(443)
                .payload(&hello)
                .build()
                .expect("valid packet");
            let run = l
                .test_run("rnd", &bytes, 1)
                .unwrap_or_else(|e| panic!("test run: {e}"));
            let got = testrun::verdict_of(&c.hir.filters[0].hook, run.retval)
                .map_or("?", driver::verdict_word);
            assert_eq!(
                got, want,
                "seed {seed:#x}: hello {:02x?} read as {h:?} by\n{src}",
                hello
            );
            runs += 1;
        }
    }
    assert_eq!(runs, 3200);
    // The generator reaches every kind of reading (not TLS: about 3 % of the hellos).
    assert!(seen.iter().all(|&n| n >= 30), "{seen:?}");
}
