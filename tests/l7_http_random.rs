//! Random HTTP request lines through BPF_PROG_TEST_RUN against a reference matcher in
//! Rust (issue 13, Tests): random filters of method, path (exact, prefix, sets) and version
//! rules on XDP and tc, and random segments (methods in any case, unknown words, paths with
//! queries, `%`, dot segments, long paths, cut-short lines, empty lines, bodies); the
//! verdict of each program must be the reference's, which follows docs/l7.md word for word.
//!
//! `POL_L7_SEED` and `POL_L7_CASES` override the defaults; a failure prints its seed.

mod common;

use pol_compiler::driver;
use pol_runtime::direct::Object as _;
use pol_runtime::testrun;

const DEFAULT_SEED: u64 = 0x0013_4177_9e00;
const DEFAULT_CASES: u64 = 8;
const PACKETS: usize = 300;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];
const SEGMENTS: [&str; 10] = [
    "admin", "api", "a", "ab", "x.y", "v1", "secret", "%61dmin", "..", ".",
];

// ---- the reference: docs/l7.md, HTTP ----

#[derive(Debug, Clone, PartialEq)]
enum Seen {
    None,
    Incomplete,
    Request {
        method: usize,
        version: u8,
        path: Vec<u8>,
    },
}

fn folded(b: u8, letter: bool) -> u8 {
    if letter {
        b | 0x20
    } else {
        b
    }
}

fn reference(payload: &[u8]) -> Seen {
    let n = payload.len().min(256);
    let b = &payload[..n];
    let at = |i: usize| b.get(i).copied().unwrap_or(0);
    let mut found = None;
    for (k, m) in METHODS.iter().enumerate() {
        let l = m.len();
        let same = (0..l).all(|i| folded(at(i), true) == m.as_bytes()[i].to_ascii_lowercase());
        if same && at(l) == b' ' && n > l {
            found = Some((k, l + 1));
            break;
        }
    }
    let Some((method, ps)) = found else {
        if at(0) == b'\r' || at(0) == b'\n' {
            return Seen::Incomplete;
        }
        if n < 8 {
            for m in METHODS {
                let l = m.len();
                let mut pat = m.to_ascii_lowercase().into_bytes();
                pat.push(b' ');
                pat.resize(8, 0);
                if (0..n).all(|i| folded(at(i), i < l) == pat[i]) {
                    return Seen::Incomplete;
                }
            }
        }
        return Seen::None;
    };
    let (mut seen, mut count, mut odd, mut slash) = (false, 0usize, false, false);
    let mut exit = None;
    for j in 0..244 {
        let i = ps + j;
        if i >= n {
            return Seen::Incomplete;
        }
        let c = b[i];
        if c <= b' ' {
            exit = Some((i, c));
            break;
        }
        seen |= c == b'?';
        if !seen {
            count += 1;
            odd |= c == b'%' || (c == b'.' && slash);
        }
        slash = c == b'/';
    }
    let Some((end, c)) = exit else {
        return Seen::Incomplete;
    };
    let version = match c {
        b' ' if end + 9 <= n => match &b[end + 1..end + 9] {
            b"HTTP/1.1" => 11,
            b"HTTP/1.0" => 10,
            _ => 0,
        },
        b' ' => 0,
        b'\r' | b'\n' => 9,
        _ => return Seen::Incomplete,
    };
    if at(ps) != b'/' || count > 127 || odd {
        return Seen::Incomplete;
    }
    Seen::Request {
        method: method + 1,
        version,
        path: b[ps..ps + count].to_vec(),
    }
}

#[derive(Debug, Clone)]
enum T {
    Method(usize),
    /// `http.method != M`: false without a request line, unlike `not`.
    MethodNe(usize),
    Version(u8),
    Exact(Vec<String>),
    Prefix(String),
}

#[derive(Debug, Clone)]
struct Rule {
    drop: bool,
    tests: Vec<(bool, T)>,
}

fn holds(t: &T, s: &Seen) -> bool {
    let Seen::Request {
        method,
        version,
        path,
    } = s
    else {
        return false;
    };
    match t {
        T::Method(m) => method == m,
        T::MethodNe(m) => method != m,
        T::Version(v) => version == v,
        T::Exact(ps) => ps.iter().any(|p| p.as_bytes() == path.as_slice()),
        T::Prefix(p) => path.starts_with(p.as_bytes()),
    }
}

/// The reference verdict (true: drop) of `rules` then `default_drop` for `s`;
/// `incomplete` is the filter's `l7 incomplete` line (`None`: none).
fn decide(rules: &[Rule], default_drop: bool, incomplete: Option<bool>, s: &Seen) -> bool {
    let fails_closed = incomplete.unwrap_or_else(|| rules.iter().any(|r| r.drop));
    if *s == Seen::Incomplete && fails_closed {
        return true;
    }
    for r in rules {
        if r.tests
            .iter()
            .all(|(neg, t)| if *neg { !holds(t, s) } else { holds(t, s) })
        {
            return r.drop;
        }
    }
    default_drop
}

// ---- generators ----

fn path(rng: &mut Rng) -> String {
    let mut p = String::new();
    for _ in 0..rng.below(4) + 1 {
        p.push('/');
        p.push_str(SEGMENTS[rng.below(SEGMENTS.len())]);
    }
    if rng.chance(10) {
        p.push('/');
    }
    p
}

/// A pattern: only what a rule may hold (no `%`, no `?`).
fn pattern(rng: &mut Rng) -> String {
    loop {
        let p = path(rng);
        if !p.contains('%') {
            return p;
        }
    }
}

fn rule(rng: &mut Rng) -> Rule {
    let mut tests = Vec::new();
    for _ in 0..rng.below(2) + 1 {
        let t = match rng.below(6) {
            0 => T::Method(rng.below(METHODS.len()) + 1),
            5 => T::MethodNe(rng.below(METHODS.len()) + 1),
            1 => T::Version(*rng.pick(&[10u8, 11, 9])),
            2 => T::Exact(vec![pattern(rng)]),
            3 => T::Exact((0..rng.below(4) + 2).map(|_| pattern(rng)).collect()),
            _ => {
                let mut p = pattern(rng);
                if rng.chance(30) {
                    p.truncate(rng.below(p.len()) + 1);
                }
                T::Prefix(p)
            }
        };
        tests.push((rng.chance(20), t));
    }
    Rule {
        drop: rng.chance(50),
        tests,
    }
}

fn render_test((neg, t): &(bool, T)) -> String {
    let s = match t {
        T::Method(m) => format!("http.method == \"{}\"", METHODS[m - 1]),
        T::MethodNe(m) => format!("http.method != \"{}\"", METHODS[m - 1]),
        T::Version(v) => format!("http.version == \"{}.{}\"", v / 10, v % 10),
        T::Exact(ps) if ps.len() == 1 => format!("http.path == \"{}\"", ps[0]),
        T::Exact(ps) => {
            let each: Vec<String> = ps.iter().map(|p| format!("\"{p}\"")).collect();
            format!("http.path in {{ {} }}", each.join(", "))
        }
        T::Prefix(p) => format!("starts_with(http.path, \"{p}\")"),
    };
    if *neg {
        format!("not {s}")
    } else {
        s
    }
}

fn render(rules: &[Rule], default_drop: bool, incomplete: Option<bool>) -> String {
    let mut body = match incomplete {
        Some(true) => "    l7 incomplete drop\n".to_string(),
        Some(false) => "    l7 incomplete pass\n".to_string(),
        None => String::new(),
    };
    for r in rules {
        let tests: Vec<String> = r.tests.iter().map(render_test).collect();
        body.push_str(&format!(
            "    {} {}\n",
            if r.drop { "drop" } else { "pass" },
            tests.join(" and ")
        ));
    }
    let default = if default_drop { "drop" } else { "pass" };
    format!(
        "filter fx on xdp(\"eth0\") {{\n{body}    default {default}\n}}\n\
         filter ft on tc(\"eth0\", ingress) {{\n{body}    default {default}\n}}\n"
    )
}

fn segment(rng: &mut Rng) -> Vec<u8> {
    let mut s = Vec::new();
    match rng.below(20) {
        0 => return b"\r\nGET /admin HTTP/1.1\r\n\r\n".to_vec(),
        1 => return b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec(),
        2 => {
            return (0..rng.below(600) + 1)
                .map(|_| rng.below(256) as u8)
                .collect()
        }
        3 => return b"FETCH /admin HTTP/1.1\r\n\r\n".to_vec(),
        _ => {}
    }
    let m = rng.pick(&METHODS);
    let m: String = m
        .chars()
        .map(|c| {
            if rng.chance(30) {
                c.to_ascii_lowercase()
            } else {
                c
            }
        })
        .collect();
    s.extend_from_slice(m.as_bytes());
    s.push(b' ');
    if rng.chance(5) {
        s.extend_from_slice(b"http://h");
    }
    let mut p = path(rng);
    if rng.chance(5) {
        p = "/".to_string() + &"a".repeat(rng.below(200) + 100);
    }
    s.extend_from_slice(p.as_bytes());
    if rng.chance(20) {
        s.extend_from_slice(b"?q=");
        s.extend_from_slice(path(rng).as_bytes());
    }
    match rng.below(10) {
        0 => s.extend_from_slice(b"\r\n"),
        1 => s.extend_from_slice(b" HTTP/1.0\r\nHost: h\r\n\r\n"),
        2 => s.extend_from_slice(b" HTTP/2.0\r\n\r\n"),
        3 => s.push(b'\t'),
        _ => s.extend_from_slice(b" HTTP/1.1\r\nHost: h\r\n\r\n"),
    }
    if rng.chance(15) {
        s.truncate(rng.below(s.len()) + 1);
    }
    if rng.chance(5) {
        s.extend((0..400).map(|_| b'b'));
    }
    s
}

/// Ethernet, IPv4 and TCP (to port 80) around `payload`.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 20 + 20];
    f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip_len = (20 + 20 + payload.len()) as u16;
    f[14] = 0x45;
    f[16..18].copy_from_slice(&ip_len.to_be_bytes());
    f[22] = 64;
    f[23] = 6;
    f[26..30].copy_from_slice(&[10, 0, 0, 1]);
    f[30..34].copy_from_slice(&[10, 0, 0, 2]);
    f[34..36].copy_from_slice(&40000u16.to_be_bytes());
    f[36..38].copy_from_slice(&80u16.to_be_bytes());
    f[46] = 0x50;
    f[47] = 0x18;
    f.extend_from_slice(payload);
    f
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    match v.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => v.parse().ok(),
    }
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn random_request_lines_match_the_reference() {
    common::require_kernel();
    let seed = env_u64("POL_L7_SEED").unwrap_or(DEFAULT_SEED);
    let cases = env_u64("POL_L7_CASES").unwrap_or(DEFAULT_CASES);
    let mut runs = 0;
    let mut kinds = [0usize; 3];
    for case in 0..cases {
        let case_seed = seed.wrapping_add(case.wrapping_mul(0x1000_0001));
        let mut rng = Rng(case_seed);
        let rules: Vec<Rule> = (0..rng.below(6) + 1).map(|_| rule(&mut rng)).collect();
        let default_drop = rng.chance(50);
        let incomplete = *rng.pick(&[None, Some(true), Some(false)]);
        let src = render(&rules, default_drop, incomplete);
        let compiled = driver::compile(&src).unwrap_or_else(|d| {
            panic!(
                "seed {case_seed:#x}: does not compile:\n{}",
                pol_compiler::diag::render_all(&d, "random.pol", &src)
            )
        });
        let loaded = testrun::load(&compiled)
            .unwrap_or_else(|e| panic!("seed {case_seed:#x}: does not load: {e}\n{src}"));
        for _ in 0..PACKETS {
            let payload = segment(&mut rng);
            let seen = reference(&payload);
            kinds[match seen {
                Seen::None => 0,
                Seen::Incomplete => 1,
                Seen::Request { .. } => 2,
            }] += 1;
            let want = decide(&rules, default_drop, incomplete, &seen);
            let bytes = frame(&payload);
            for (prog, drop_code) in [("fx", 1), ("ft", 2)] {
                let got = loaded
                    .test_run(prog, &bytes, 1)
                    .unwrap_or_else(|e| panic!("seed {case_seed:#x}: test run: {e}"))
                    .retval;
                runs += 1;
                assert_eq!(
                    got == drop_code,
                    want,
                    "seed {case_seed:#x} ({prog}): segment {:?} is {seen:?}; the reference says {}\n{src}",
                    String::from_utf8_lossy(&payload),
                    if want { "drop" } else { "pass" }
                );
            }
        }
    }
    // The generator reaches every kind of segment.
    assert!(kinds.iter().all(|&k| k > 50), "segment kinds: {kinds:?}");
    println!("{runs} test runs agree with the reference (none/incomplete/request: {kinds:?})");
}
