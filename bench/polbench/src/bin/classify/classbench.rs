//! Rule sets and traces of the public ClassBench generator (jafingerhut/classbench:
//! `db_generator` with the published seeds acl1/fw1/ipc1, `trace_generator`), as
//! `bench/classbench/gen.sh` writes them, read into the classifier's rules and headers.
//!
//! A filter line: `@SA/LEN\tDA/LEN\tSPLO : SPHI\tDPLO : DPHI\t0xPP/0xMM\t0xFFFF/0xFFFF`
//! (protocol mask 0xFF: exact, 0x00: any; the flags field is not a field pol's classifier
//! sees, and ClassBench's acl1/fw1/ipc1 sets leave it wildcard). A trace line: `SA DA SP DP
//! PROTO FLAGS FILTER` in decimal (the filter it was drawn from, which need not be the first
//! match).

use pol_compiler::classify::{Header, Prefix, Range, Rule, V4};

fn v4(s: &str) -> Option<[u8; 16]> {
    let a: std::net::Ipv4Addr = s.parse().ok()?;
    let mut b = [0u8; 16];
    b[..4].copy_from_slice(&a.octets());
    Some(b)
}

fn prefix(s: &str) -> Option<Prefix> {
    let (a, l) = s.split_once('/')?;
    let len: u8 = l.parse().ok()?;
    (len <= 32).then_some(())?;
    Some(Prefix { addr: v4(a)?, len }.canonical())
}

fn ports(s: &str) -> Option<Range<u16>> {
    let (lo, hi) = s.split_once(':')?;
    let (lo, hi) = (lo.trim().parse().ok()?, hi.trim().parse().ok()?);
    (lo <= hi).then_some(Range { lo, hi })
}

fn hex8(s: &str) -> Option<u8> {
    u8::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok()
}

/// One filter line, rule `i` (its action alternates, as pol's own sets do).
fn rule(line: &str, i: usize) -> Option<Rule> {
    let f: Vec<&str> = line.trim_start_matches('@').split('\t').collect();
    let (p, m) = f.get(4)?.split_once('/')?;
    let (p, m) = (hex8(p)?, hex8(m)?);
    Some(Rule {
        family: Range::exact(V4),
        proto: if m == 0 {
            Range::<u8>::ANY
        } else {
            Range::exact(p)
        },
        vlan: Range::<u16>::ANY,
        sport: ports(f.get(2)?)?,
        dport: ports(f.get(3)?)?,
        src: prefix(f.first()?)?,
        dst: prefix(f.get(1)?)?,
        action: (i % 2) as u32,
    })
}

/// The rules of a ClassBench filter file.
pub fn rules(path: &std::path::Path) -> Result<Vec<Rule>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .filter(|l| l.starts_with('@'))
        .enumerate()
        .map(|(i, l)| {
            rule(l, i)
                .ok_or_else(|| format!("{}: filter {}: cannot read `{l}`", path.display(), i + 1))
        })
        .collect()
}

/// The headers of a ClassBench trace file.
pub fn trace(path: &std::path::Path) -> Result<Vec<Header>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            let f: Vec<u64> = l
                .split_whitespace()
                .map(|x| x.parse::<u64>())
                .collect::<Result<_, _>>()
                .map_err(|e| format!("{}: header {}: {e}", path.display(), i + 1))?;
            let [sa, da, sp, dp, proto, ..] = f[..] else {
                return Err(format!(
                    "{}: header {}: too few fields",
                    path.display(),
                    i + 1
                ));
            };
            let addr = |x: u64| {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&(x as u32).to_be_bytes());
                b
            };
            Ok(Header {
                family: V4,
                proto: proto as u8,
                vlan: 0,
                sport: sp as u16,
                dport: dp as u16,
                src: addr(sa),
                dst: addr(da),
            })
        })
        .collect()
}
