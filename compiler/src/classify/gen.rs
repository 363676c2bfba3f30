//! ClassBench-shaped rule sets and header traces, deterministic by seed (pol's own
//! generator; nothing of ClassBench's code or seed files).
//!
//! The shapes follow the published statistics of ClassBench's seeds (Taylor and Turner,
//! WUCSE-2004-28, and the figures in `docs/scale.md`): protocol mix, port classes (WC
//! wildcard, HI 1024-65535, LO 0-1023, AR an arbitrary range, EM one port) as src/dst
//! pairs, prefix-length mixes, and addresses drawn from nested clusters so prefixes
//! overlap and nest as in real ACLs. `acl` follows acl1 (TCP 87%, /32-heavy, WC/EM
//! ports); `fw` is firewall-like (a quarter of sources /0, HI ranges, more UDP); `ipc`
//! mixes both with short prefixes. The trace picks a rule (skewed towards a few, as
//! ClassBench's Pareto locality does) and a header inside it; a tenth of headers are
//! random.

use super::{Header, Prefix, Range, Rule, V4};
use crate::mir::gen::Rng;

/// Which published set the rules are shaped like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Acl,
    Fw,
    Ipc,
}

impl Shape {
    pub const ALL: [Shape; 3] = [Shape::Acl, Shape::Fw, Shape::Ipc];

    pub fn name(self) -> &'static str {
        match self {
            Shape::Acl => "acl",
            Shape::Fw => "fw",
            Shape::Ipc => "ipc",
        }
    }
}

#[derive(Clone, Copy)]
enum Port {
    Wc,
    Hi,
    Lo,
    Ar,
    Em,
}

struct Params {
    /// (protocol or None for wildcard, weight).
    protos: &'static [(Option<u8>, u32)],
    /// ((sport class, dport class), weight) for TCP/UDP rules.
    ports: &'static [((Port, Port), u32)],
    /// (prefix length, weight) for sources and destinations.
    src_lens: &'static [(u8, u32)],
    dst_lens: &'static [(u8, u32)],
}

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;

fn params(s: Shape) -> Params {
    use Port::*;
    match s {
        Shape::Acl => Params {
            protos: &[
                (Some(TCP), 873),
                (None, 85),
                (Some(ICMP), 31),
                (Some(UDP), 11),
            ],
            ports: &[((Wc, Em), 65), ((Wc, Wc), 22), ((Wc, Ar), 13)],
            src_lens: &[
                (32, 55),
                (24, 15),
                (0, 8),
                (16, 6),
                (28, 6),
                (8, 3),
                (20, 4),
                (30, 3),
            ],
            dst_lens: &[(32, 70), (24, 12), (28, 6), (16, 5), (0, 3), (26, 4)],
        },
        Shape::Fw => Params {
            protos: &[
                (Some(TCP), 60),
                (Some(UDP), 25),
                (None, 12),
                (Some(ICMP), 3),
            ],
            ports: &[
                ((Wc, Wc), 25),
                ((Wc, Em), 25),
                ((Hi, Em), 15),
                ((Wc, Hi), 12),
                ((Hi, Hi), 8),
                ((Wc, Ar), 10),
                ((Em, Wc), 5),
            ],
            src_lens: &[(0, 27), (32, 30), (24, 20), (16, 10), (8, 8), (28, 5)],
            dst_lens: &[(32, 45), (24, 20), (0, 15), (16, 10), (28, 5), (8, 5)],
        },
        Shape::Ipc => Params {
            protos: &[
                (Some(TCP), 50),
                (Some(UDP), 22),
                (None, 18),
                (Some(ICMP), 10),
            ],
            ports: &[
                ((Wc, Wc), 40),
                ((Wc, Em), 30),
                ((Em, Wc), 10),
                ((Wc, Ar), 10),
                ((Wc, Lo), 5),
                ((Hi, Hi), 5),
            ],
            src_lens: &[
                (32, 30),
                (24, 20),
                (16, 15),
                (0, 10),
                (8, 10),
                (20, 8),
                (28, 7),
            ],
            dst_lens: &[
                (32, 35),
                (24, 20),
                (16, 15),
                (0, 10),
                (8, 8),
                (20, 7),
                (28, 5),
            ],
        },
    }
}

/// Ports rules name most (EM), most popular first.
const POPULAR: [u16; 16] = [
    80, 443, 53, 25, 22, 21, 23, 110, 143, 3306, 8080, 161, 123, 389, 1521, 3389,
];
/// Arbitrary ranges of the kind seeds hold (AR).
const RANGES: [(u16, u16); 8] = [
    (6000, 6063),
    (20, 21),
    (137, 139),
    (33434, 33600),
    (1024, 5000),
    (8000, 8999),
    (5060, 5061),
    (49152, 65535),
];

fn pick<T: Copy>(rng: &mut Rng, xs: &[(T, u32)]) -> T {
    let total: u64 = xs.iter().map(|(_, w)| u64::from(*w)).sum();
    let mut r = rng.below(total);
    for (x, w) in xs {
        if r < u64::from(*w) {
            return *x;
        }
        r -= u64::from(*w);
    }
    xs[0].0
}

/// A port index skewed towards the front (about half the picks land in the first eighth).
fn skewed(rng: &mut Rng, n: u64) -> u64 {
    let a = rng.below(n);
    let b = rng.below(n);
    a.min(b).min(rng.below(n))
}

fn port(rng: &mut Rng, class: Port) -> Range<u16> {
    match class {
        Port::Wc => Range::<u16>::ANY,
        Port::Hi => Range::new(1024, 65535),
        Port::Lo => Range::new(0, 1023),
        Port::Ar => {
            if rng.chance(70) {
                let (lo, hi) = RANGES[rng.below(RANGES.len() as u64) as usize];
                Range::new(lo, hi)
            } else {
                let lo = rng.below(60000) as u16;
                Range::new(lo, lo + 1 + rng.below(2000) as u16)
            }
        }
        Port::Em => {
            if rng.chance(75) {
                Range::exact(POPULAR[skewed(rng, POPULAR.len() as u64) as usize])
            } else {
                Range::exact(1 + rng.below(65534) as u16)
            }
        }
    }
}

/// Address clusters: a rule's address extends one of a few base networks, so prefixes
/// nest and overlap (many rules per network, a few networks per set).
struct Clusters(Vec<u32>);

impl Clusters {
    fn new(rng: &mut Rng, n: usize) -> Clusters {
        let k = ((n as f64).sqrt() as usize / 2).max(4);
        Clusters((0..k).map(|_| rng.next_u64() as u32).collect())
    }

    fn prefix(&self, rng: &mut Rng, len: u8) -> Prefix {
        let base = self.0[skewed(rng, self.0.len() as u64) as usize];
        // The cluster fixes the top 8-16 bits; the rest is the rule's own.
        let fixed = 8 + rng.below(9) as u32;
        let keep = if fixed >= 32 {
            u32::MAX
        } else {
            !(u32::MAX >> fixed)
        };
        let a = (base & keep) | (rng.next_u64() as u32 & !keep);
        Prefix::v4(a.to_be_bytes(), len)
    }
}

/// `n` rules shaped like `shape`, from `seed`.
pub fn rules(shape: Shape, n: usize, seed: u64) -> Vec<Rule> {
    let mut rng = Rng::new(seed ^ (shape as u64).wrapping_mul(0x1000_0001));
    let p = params(shape);
    let src_clusters = Clusters::new(&mut rng, n);
    let dst_clusters = Clusters::new(&mut rng, n);
    (0..n)
        .map(|i| {
            let proto = pick(&mut rng, p.protos);
            let (sc, dc) = match proto {
                Some(TCP) | Some(UDP) => pick(&mut rng, p.ports),
                _ => (Port::Wc, Port::Wc),
            };
            let (sl, dl) = (pick(&mut rng, p.src_lens), pick(&mut rng, p.dst_lens));
            Rule {
                family: Range::exact(V4),
                proto: proto.map_or(Range::<u8>::ANY, Range::exact),
                vlan: Range::<u16>::ANY,
                sport: port(&mut rng, sc),
                dport: port(&mut rng, dc),
                src: src_clusters.prefix(&mut rng, sl),
                dst: dst_clusters.prefix(&mut rng, dl),
                action: (i % 2) as u32,
            }
        })
        .collect()
}

fn in_range(rng: &mut Rng, r: Range<u16>) -> u16 {
    // Ends are where off-by-one bugs live: pick them a quarter of the time.
    match rng.below(8) {
        0 => r.lo,
        1 => r.hi,
        _ => (u64::from(r.lo) + rng.below(u64::from(r.hi - r.lo) + 1)) as u16,
    }
}

fn in_prefix(rng: &mut Rng, p: &Prefix, bytes: usize) -> [u8; 16] {
    let mut a = [0u8; 16];
    for b in a.iter_mut().take(bytes) {
        *b = rng.next_u64() as u8;
    }
    let m = super::mask16(p.len);
    std::array::from_fn(|i| (p.addr[i] & m[i]) | (a[i] & !m[i]))
}

/// A header the rule matches (its fields drawn inside the rule's).
pub fn header_in(rng: &mut Rng, r: &Rule) -> Header {
    let family = if r.family.lo == r.family.hi {
        r.family.lo
    } else if rng.chance(80) {
        V4
    } else {
        super::V6
    };
    let proto = if r.proto.lo == r.proto.hi {
        r.proto.lo
    } else {
        match rng.below(4) {
            0 => TCP,
            1 => UDP,
            2 => ICMP,
            _ => (u64::from(r.proto.lo) + rng.below(u64::from(r.proto.hi - r.proto.lo) + 1)) as u8,
        }
    };
    let bytes = if family == V4 { 4 } else { 16 };
    Header {
        family,
        proto: if r.proto.contains(proto) {
            proto
        } else {
            r.proto.lo
        },
        vlan: in_range(rng, r.vlan),
        sport: in_range(rng, r.sport),
        dport: in_range(rng, r.dport),
        src: in_prefix(rng, &r.src, bytes),
        dst: in_prefix(rng, &r.dst, bytes),
    }
}

/// `n` headers for `rules`: most inside a rule picked with a skew towards a few (so the
/// trace has locality), a tenth uniformly random IPv4 TCP/UDP headers.
pub fn trace(rules: &[Rule], n: usize, seed: u64) -> Vec<Header> {
    let mut rng = Rng::new(seed.wrapping_add(0x7ace));
    (0..n)
        .map(|_| {
            if rules.is_empty() || rng.chance(10) {
                let mut src = [0u8; 16];
                let mut dst = [0u8; 16];
                src[..4].copy_from_slice(&(rng.next_u64() as u32).to_be_bytes());
                dst[..4].copy_from_slice(&(rng.next_u64() as u32).to_be_bytes());
                Header {
                    family: V4,
                    proto: if rng.chance(50) { TCP } else { UDP },
                    vlan: 0,
                    sport: rng.next_u64() as u16,
                    dport: rng.next_u64() as u16,
                    src,
                    dst,
                }
            } else {
                let i = if rng.chance(50) {
                    skewed(&mut rng, rules.len() as u64)
                } else {
                    rng.below(rules.len() as u64)
                };
                header_in(&mut rng, &rules[i as usize])
            }
        })
        .collect()
}
