//! Multi-field first-match classification (issue 11): conjunctive rules to TupleMerge tables.
//!
//! A [`Rule`] is a conjunction of tests on the fixed-width fields of a [`Header`]: address
//! prefixes (v4 or v6) on source and destination, and inclusive ranges on family,
//! protocol, VLAN id and the two ports (an exact value is a one-value range, a wildcard the
//! full range). Its priority is its position in the list: the first rule that matches wins.
//!
//! [`tuplemerge::build`] turns a rule list into tables (Daly et al., TupleMerge): each table
//! hashes a masked header, each bucket keeps at most a few rules, each rule keeps its own
//! prefixes and ranges (no range expansion), and tables are probed in the order of their
//! best rule so the search stops early. [`maps`] writes the result as the bytes of three
//! BPF maps; [`datapath`] is the search as MIR; [`reference`] is the plain first-match scan
//! every result is checked against; [`gen`] makes ClassBench-shaped rule sets and traces.

pub mod datapath;
pub mod edit;
pub mod gen;
pub mod head;
pub mod hir;
pub mod maps;
pub mod tuplemerge;

/// Rule index meaning "no rule matched" (what the data path returns then).
pub const NO_MATCH: u32 = u32::MAX;

/// A filter's classifier knows rule `i` of the filter by the id `i << PRIO_SHIFT`: the ids
/// between two rules' are free for rules added without reload ([`edit`]), so first match
/// stays exact without renumbering. The filter shifts the classifier's answer back.
pub const PRIO_SHIFT: u32 = 8;

/// Address family values of [`Header::family`] and [`Rule::family`].
pub const V4: u8 = 4;
pub const V6: u8 = 6;
/// Added to the family value when the packet's L4 header (TCP, UDP, SCTP, ICMP, ICMPv6)
/// was parsed: a later fragment has a protocol but no ports, and a port test must be
/// false on it. So `V4..=V4 | L4` is "any IPv4", `V4 | L4` "IPv4 with its L4 header",
/// and `V4..=V6 | L4` "any IP".
pub const L4: u8 = 1;

/// A header as the classifier sees it: the fields every rule can test, parsed.
/// IPv4 addresses sit in the first 4 bytes of `src`/`dst` (network order), the rest zero;
/// `vlan` is the outer VLAN id, 0 when untagged; ports are 0 for protocols without them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Header {
    pub family: u8,
    pub proto: u8,
    pub vlan: u16,
    pub sport: u16,
    pub dport: u16,
    pub src: [u8; 16],
    pub dst: [u8; 16],
}

/// An address prefix in the 128-bit address space of a [`Header`] (IPv4 prefixes use the
/// first 32 bits). Bits of `addr` past `len` are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Prefix {
    pub addr: [u8; 16],
    pub len: u8,
}

impl Prefix {
    /// Matches everything.
    pub const ANY: Prefix = Prefix {
        addr: [0; 16],
        len: 0,
    };

    pub fn v4(addr: [u8; 4], len: u8) -> Prefix {
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&addr);
        Prefix { addr: a, len }.canonical()
    }

    pub fn v6(addr: [u8; 16], len: u8) -> Prefix {
        Prefix { addr, len }.canonical()
    }

    /// The prefix with the bits past `len` cleared.
    pub fn canonical(self) -> Prefix {
        Prefix {
            addr: and16(self.addr, mask16(self.len)),
            len: self.len,
        }
    }

    pub fn contains(&self, a: &[u8; 16]) -> bool {
        and16(*a, mask16(self.len)) == and16(self.addr, mask16(self.len))
    }
}

/// The first `len` bits set (of 128), network order.
pub fn mask16(len: u8) -> [u8; 16] {
    let mut m = [0u8; 16];
    for (i, b) in m.iter_mut().enumerate() {
        let bits = usize::from(len).saturating_sub(i * 8).min(8);
        *b = if bits == 0 { 0 } else { 0xffu8 << (8 - bits) };
    }
    m
}

fn and16(a: [u8; 16], m: [u8; 16]) -> [u8; 16] {
    std::array::from_fn(|i| a[i] & m[i])
}

/// An inclusive range of a small field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Range<T> {
    pub lo: T,
    pub hi: T,
}

impl<T: Copy + PartialOrd> Range<T> {
    pub fn new(lo: T, hi: T) -> Range<T> {
        Range { lo, hi }
    }
    pub fn exact(v: T) -> Range<T> {
        Range { lo: v, hi: v }
    }
    pub fn contains(&self, v: T) -> bool {
        self.lo <= v && v <= self.hi
    }
}

impl Range<u8> {
    pub const ANY: Range<u8> = Range { lo: 0, hi: u8::MAX };
}

impl Range<u16> {
    pub const ANY: Range<u16> = Range {
        lo: 0,
        hi: u16::MAX,
    };
}

/// A conjunction of field tests. `action` is carried to the data path untouched (the
/// filter's verdict id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rule {
    pub family: Range<u8>,
    pub proto: Range<u8>,
    pub vlan: Range<u16>,
    pub sport: Range<u16>,
    pub dport: Range<u16>,
    pub src: Prefix,
    pub dst: Prefix,
    pub action: u32,
}

impl Default for Rule {
    /// Matches every header.
    fn default() -> Rule {
        Rule {
            family: Range::<u8>::ANY,
            proto: Range::<u8>::ANY,
            vlan: Range::<u16>::ANY,
            sport: Range::<u16>::ANY,
            dport: Range::<u16>::ANY,
            src: Prefix::ANY,
            dst: Prefix::ANY,
            action: 0,
        }
    }
}

impl Rule {
    pub fn matches(&self, h: &Header) -> bool {
        self.family.contains(h.family)
            && self.proto.contains(h.proto)
            && self.vlan.contains(h.vlan)
            && self.sport.contains(h.sport)
            && self.dport.contains(h.dport)
            && self.src.contains(&h.src)
            && self.dst.contains(&h.dst)
    }

    /// Why this rule cannot be classified, if it cannot.
    fn check(&self) -> Result<(), RuleProblem> {
        let ranges = [
            (u16::from(self.family.lo), u16::from(self.family.hi)),
            (u16::from(self.proto.lo), u16::from(self.proto.hi)),
            (self.vlan.lo, self.vlan.hi),
            (self.sport.lo, self.sport.hi),
            (self.dport.lo, self.dport.hi),
        ];
        if ranges.iter().any(|(lo, hi)| lo > hi) {
            return Err(RuleProblem::EmptyRange);
        }
        let addressed = self.src.len > 0 || self.dst.len > 0;
        let within = |base: u8| self.family.lo >= base && self.family.hi <= base | L4;
        let max = if within(V4) {
            32
        } else if within(V6) {
            128
        } else if addressed {
            return Err(RuleProblem::PrefixWithoutFamily);
        } else {
            0
        };
        if self.src.len > max || self.dst.len > max {
            return Err(RuleProblem::PrefixTooLong);
        }
        Ok(())
    }
}

/// What is wrong with one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RuleProblem {
    #[error("a range's low end is above its high end")]
    EmptyRange,
    #[error("it tests an address prefix without fixing the address family to 4 or 6")]
    PrefixWithoutFamily,
    #[error("a prefix is longer than its family's addresses")]
    PrefixTooLong,
}

/// Why a rule list cannot become classifier tables.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClassifyError {
    #[error("rule {rule}: {problem}")]
    BadRule { rule: usize, problem: RuleProblem },
    #[error("{rules} rules: the classifier holds at most {max} (rule indices are 32-bit, one is reserved)")]
    TooManyRules { rules: usize, max: usize },
    #[error("rule {rule} needs table {tables}, beyond the data path's {max} tables")]
    TooManyTables {
        rule: usize,
        tables: usize,
        max: usize,
    },
    #[error(
        "rule {rule} shares its hashed fields with {max} other rules, more than a bucket holds"
    )]
    BucketFull { rule: usize, max: usize },
}

/// The plain first-match reference: the index of the first rule that matches.
pub fn reference(rules: &[Rule], h: &Header) -> Option<usize> {
    rules.iter().position(|r| r.matches(h))
}

#[cfg(test)]
mod tests;
