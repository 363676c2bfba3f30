//! L7 matching in the kernel (issue 13): what the HTTP, DNS and TLS passes share.
//!
//! A filter that tests an L7 field gets a *pass* before its rules (an IR instruction put
//! in front of them, as connection tracking is): it copies the start of the L4 payload
//! with `skb_load_bytes` / `xdp_load_bytes` into a per-CPU buffer, so bytes in the pages of
//! a non-linear socket buffer or in the later buffers of a multi-buffer XDP frame are read
//! like any other; it parses the protocol with bounded code, looks its strings up in maps
//! built at compile time (one lookup whatever the number of patterns), and leaves its
//! results in the record's L7 window (`packet::record::OFF_L7`), where rules test them as
//! record fields. The parser stores where the payload is (`OFF_L7_PAY_OFF`/`_LEN`) when
//! `Needs::l7` is set.

pub mod dns;
pub mod http;
pub mod tls;

use crate::diag::Diagnostic;
use crate::hir::{Cond, Filter, Test};
use crate::mir::build::Builder;
use crate::mir::{
    helpers, BinOp, Block, BlockCall, Cond as MCond, ExtOp, IntTy, Op, Operand, PtrKind, Slot,
    Term, Type, Value,
};
use crate::packet::record::{OFF_L7_PAY_LEN, OFF_L7_PAY_OFF};
use serde::Serialize;

/// A string pattern of an L7 test, as bytes after the field's normalisation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum StrPat {
    /// The whole string.
    Exact(Vec<u8>),
    /// The string starts with these bytes.
    Prefix(Vec<u8>),
}

impl StrPat {
    pub fn bytes(&self) -> &[u8] {
        match self {
            StrPat::Exact(b) | StrPat::Prefix(b) => b,
        }
    }
}

/// At most this many distinct L7 string tests in one filter: each is a bit of the u32 at
/// `OFF_L7_BITS`. Many strings with one action are one test (`http.path in { .. }`).
pub const BITS_MAX: usize = 32;

/// The L7 string tests of one filter, numbered: test `i` is bit `i` of `OFF_L7_BITS`.
/// Each is `(field, pattern)`: the field names the key space (`"http.path"`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bits {
    pub tests: Vec<(&'static str, Vec<StrPat>)>,
}

impl Bits {
    /// Numbers the string tests of `filter`'s rules in order of appearance.
    pub fn of_filter(filter: &Filter) -> Bits {
        let mut bits = Bits::default();
        for r in &filter.rules {
            bits.walk(&r.cond);
        }
        bits
    }

    /// Numbers the string tests of `c` not numbered yet.
    pub fn walk(&mut self, c: &Cond) {
        match c {
            Cond::And(cs) | Cond::Or(cs) => cs.iter().for_each(|c| self.walk(c)),
            Cond::Not(c) => self.walk(c),
            Cond::Test(Test::L7(L7Test::Http(t))) => {
                if let Some((field, pats)) = t.string() {
                    if self.bit(field, pats).is_none() {
                        self.tests.push((field, pats.to_vec()));
                    }
                }
            }
            _ => {}
        }
    }

    /// The bit of the test `field` against `pat`.
    pub fn bit(&self, field: &str, pats: &[StrPat]) -> Option<u32> {
        self.tests
            .iter()
            .position(|(f, p)| *f == field && p == pats)
            .map(|i| i as u32)
    }

    /// Whether `filter` reads any L7 field (HTTP, DNS or TLS): the parser then records where
    /// the payload is.
    pub fn uses_l7(filter: &Filter) -> bool {
        filter.rules.iter().any(|r| cond_uses_l7(&r.cond))
    }

    /// The entries of an LPM trie over `field`'s strings: the key is `{u32 prefix length in
    /// bits, data[data_len]}`, an exact pattern ending in a 0 byte (strings hold none), a
    /// prefix pattern not; the value (u32) is every bit whose pattern is a prefix of the
    /// entry's, so the longest match says at once which tests hold.
    pub fn lpm_entries(&self, field: &str, data_len: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        use std::collections::BTreeMap;
        let mut own: BTreeMap<Vec<u8>, u32> = BTreeMap::new();
        for (i, (f, pats)) in self.tests.iter().enumerate() {
            if *f != field {
                continue;
            }
            for p in pats {
                let mut k = p.bytes().to_vec();
                if let StrPat::Exact(_) = p {
                    k.push(0);
                }
                *own.entry(k).or_default() |= 1u32 << i;
            }
        }
        // Each entry also carries the bits of the patterns that are its prefixes: one
        // lookup per prefix length of the entry (not per pattern), so 100,000 patterns
        // build in well under a second.
        own.keys()
            .map(|k| {
                let bits = (0..=k.len())
                    .filter_map(|n| own.get(&k[..n]))
                    .fold(0u32, |acc, b| acc | b);
                let mut key = ((k.len() * 8) as u32).to_le_bytes().to_vec();
                key.extend_from_slice(k);
                key.resize(4 + data_len, 0);
                (key, bits.to_le_bytes().to_vec())
            })
            .collect()
    }
}

/// The protocols pol reads in the kernel. Each has a pass (HTTP) or stage (DNS, TLS)
/// before the rules, and each may find a message it cannot read whole: *incomplete*.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Proto {
    Http,
    Dns,
    Tls,
}

impl Proto {
    pub const ALL: [Proto; 3] = [Proto::Http, Proto::Dns, Proto::Tls];

    pub fn name(self) -> &'static str {
        match self {
            Proto::Http => "HTTP",
            Proto::Dns => "DNS",
            Proto::Tls => "TLS",
        }
    }
}

/// Whether the condition tests an L7 field of `proto` (any protocol when `None`).
pub fn cond_uses(c: &Cond, proto: Option<Proto>) -> bool {
    match c {
        Cond::And(cs) | Cond::Or(cs) => cs.iter().any(|c| cond_uses(c, proto)),
        Cond::Not(c) => cond_uses(c, proto),
        Cond::Test(Test::L7(t)) => proto.is_none_or(|p| t.proto() == p),
        Cond::Test(_) | Cond::Const(_) => false,
    }
}

/// Whether the condition tests an L7 field.
pub fn cond_uses_l7(c: &Cond) -> bool {
    cond_uses(c, None)
}

/// Whether a rule of `filter` tests a field of `proto`: only then does the filter run that
/// protocol's pass (and pay for it, or fail closed on what it cannot read).
pub fn uses(filter: &Filter, proto: Proto) -> bool {
    filter.rules.iter().any(|r| cond_uses(&r.cond, Some(proto)))
}

/// The one rule for incomplete messages, the same for HTTP, DNS and TLS (docs/l7.md):
/// whether a message of `proto` that the filter's pass cannot read whole is dropped
/// before the rules (and counted in the malformed slot, whatever `malformed` says). The
/// filter's `l7 incomplete pass|drop` line decides; without it, it is dropped when a
/// `drop` rule tests a field of `proto` (fail-closed), else the rules see no message.
pub fn incomplete_drops(filter: &Filter, proto: Proto) -> bool {
    use crate::syntax::ast::Verdict;
    if !uses(filter, proto) {
        return false;
    }
    match filter.incomplete {
        Some(v) => v == Verdict::Drop,
        None => filter
            .rules
            .iter()
            .any(|r| r.action.verdict == Verdict::Drop && cond_uses(&r.cond, Some(proto))),
    }
}

/// Whether `name` names an L7 field (`http.path`, `dns.qname`, `tls`, ...).
pub fn is_field(name: &str) -> bool {
    let head = name.split('.').next().unwrap_or("");
    matches!(head, "http" | "dns" | "tls")
}

/// E0557: an L7 field where nothing reads the protocol (a security rule, a probe): a
/// span error naming where it can be seen, instead of "no such field". `what` says where
/// it was written ("`exec` events", "probes").
pub fn unseen(name: &str, span: crate::syntax::ast::Span, what: &str) -> Option<Diagnostic> {
    if !is_field(name) {
        return None;
    }
    Some(
        Diagnostic::error(
            "E0557",
            format!("`{name}` is an L7 field: {what} cannot see it"),
            span,
        )
        .with_label("read from packets by network filters only")
        .with_help(
            "L7 fields are tested in a `filter NAME on xdp(\"IFACE\")` or `on tc(\"IFACE\", ingress|egress)` (docs/l7.md)",
        ),
    )
}

/// What the payload copy needs from the program being built.
pub struct PayloadCopy {
    /// XDP (`xdp_load_bytes`) or tc (`skb_load_bytes`).
    pub xdp: bool,
    pub ctx: Value,
    /// The packet record (`OFF_L7_PAY_OFF`/`_LEN` are read from it).
    pub rec: Slot,
    /// A non-null pointer to a map value of at least `2 * max` bytes.
    pub buf: Value,
    /// At most this many bytes are copied: a power of two, at most 1024.
    pub max: u32,
}

/// Copies the first `min(payload length, max)` bytes of the L4 payload to `buf` and
/// returns the block that continues and that count (u64). Two reads of a constant size
/// (the verifier wants one): for a count in `[2^k, 2^(k+1))`, `2^k` bytes at 0 and `2^k`
/// ending at the count, so every byte is read once or twice and none past the payload.
/// A failed read (the payload shorter than the parser said: never) goes to `fail`.
pub fn copy_payload(b: &mut Builder, cur: Block, c: &PayloadCopy, fail: Block) -> (Block, Value) {
    let stack = Type::Ptr(PtrKind::Stack);
    let rec = b.f.push(cur, Op::SlotAddr(c.rec), stack);
    let len = b.f.push(
        cur,
        Op::Load {
            ptr: rec,
            off: OFF_L7_PAY_LEN,
        },
        Type::Int(IntTy::U16),
    );
    let len = b.f.push(cur, Op::Ext(ExtOp::Zext, len), Type::U64);
    let off = b.f.push(
        cur,
        Op::Load {
            ptr: rec,
            off: OFF_L7_PAY_OFF,
        },
        Type::Int(IntTy::U16),
    );
    let off = b.f.push(cur, Op::Ext(ExtOp::Zext, off), Type::U64);
    let done = b.add_block();
    let n = b.f.add_block_param(done, Type::U64);
    let helper = if c.xdp {
        helpers::by_name("xdp_load_bytes").map_or(189, |h| h.id)
    } else {
        helpers::by_name("skb_load_bytes").map_or(26, |h| h.id)
    };
    // The ladder: whole `max` first, then each power of two below it.
    let mut at = cur;
    let mut size = c.max;
    let zero = b.f.iconst(at, IntTy::U64, 0);
    let none = b.add_block();
    b.set_term(none, Term::Jump(BlockCall::new(done, vec![zero])));
    while size >= 1 {
        let this = b.add_block();
        let next = b.add_block();
        b.set_term(
            at,
            Term::Br {
                cond: MCond::Uge,
                a: len,
                b: Operand::Imm(i64::from(size)),
                then: BlockCall::new(this, vec![]),
                els: BlockCall::new(next, vec![]),
            },
        );
        let ok = read(b, this, c, helper, off, None, size, fail);
        let count = if size == c.max {
            b.f.iconst(ok, IntTy::U64, i64::from(size))
        } else {
            // The second read ends at the count: at `len - size`, masked so that both
            // verifiers see it below `size` (it is, since len < 2 * size here).
            let d = b.f.push(
                ok,
                Op::Binary(BinOp::Sub, len, Operand::Imm(i64::from(size))),
                Type::U64,
            );
            let d = b.f.push(
                ok,
                Op::Binary(BinOp::And, d, Operand::Imm(i64::from(size - 1))),
                Type::U64,
            );
            let ok2 = read(b, ok, c, helper, off, Some(d), size, fail);
            let cnt = b.f.push(
                ok2,
                Op::Binary(BinOp::Add, d, Operand::Imm(i64::from(size))),
                Type::U64,
            );
            b.set_term(ok2, Term::Jump(BlockCall::new(done, vec![cnt])));
            at = next;
            size /= 2;
            continue;
        };
        b.set_term(ok, Term::Jump(BlockCall::new(done, vec![count])));
        at = next;
        size /= 2;
    }
    b.set_term(at, Term::Jump(BlockCall::new(none, vec![])));
    (done, n)
}

/// One `size`-byte read of the payload at `d` (0 when `None`) into `buf + d`; continues in
/// the returned block when it succeeded, else in `fail`.
#[allow(clippy::too_many_arguments)]
fn read(
    b: &mut Builder,
    at: Block,
    c: &PayloadCopy,
    helper: u32,
    off: Value,
    d: Option<Value>,
    size: u32,
    fail: Block,
) -> Block {
    let (from, dst) = match d {
        None => (off, c.buf),
        Some(d) => {
            let from =
                b.f.push(at, Op::Binary(BinOp::Add, off, d.into()), Type::U64);
            let dst = b.f.push(at, Op::PtrAdd(c.buf, d.into()), b.f.ty(c.buf));
            (from, dst)
        }
    };
    let n = b.f.iconst(at, IntTy::U64, i64::from(size));
    let r =
        b.f.push(at, Op::Call(helper, vec![c.ctx, from, dst, n]), Type::I64);
    let ok = b.add_block();
    b.set_term(
        at,
        Term::Br {
            cond: MCond::Eq,
            a: r,
            b: Operand::Imm(0),
            then: BlockCall::new(ok, vec![]),
            els: BlockCall::new(fail, vec![]),
        },
    );
    ok
}

/// A DNS or TLS test of a rule (`hir::Test::L7`). False when the packet does not carry the
/// protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum L7Test {
    /// A test of the segment's HTTP request (`l7::http`).
    Http(http::HttpTest),
    /// The packet is a DNS message (UDP port 53) whose question the stage read: `dns`.
    Dns,
    /// `dns.qname` matches a pattern of `Hir::l7.names[set]`.
    DnsName { set: usize },
    /// `dns.qtype`, `dns.rcode`, `dns.response` compared with a value.
    DnsInt {
        field: dns::Field,
        op: crate::hir::CmpOp,
        value: u64,
    },
    /// The packet is a TCP segment that starts a ClientHello pol read: `tls`.
    Tls,
    /// `tls.sni` (the ClientHello's host name) matches a pattern of `Hir::l7.names[set]`;
    /// false for a hello without one.
    TlsName { set: usize },
    /// `tls.version` (the highest version the client offers) compared with a value.
    TlsVersion { op: crate::hir::CmpOp, value: u64 },
    /// The client offers a protocol of `Hir::l7.alpn[set]` (`tls.alpn`); the set's index is
    /// its bit in the stage's ALPN bits.
    TlsAlpn { set: usize },
}

impl L7Test {
    /// The protocol whose pass or stage the test reads.
    pub fn proto(&self) -> Proto {
        match self {
            L7Test::Http(_) => Proto::Http,
            L7Test::Dns | L7Test::DnsName { .. } | L7Test::DnsInt { .. } => Proto::Dns,
            L7Test::Tls
            | L7Test::TlsName { .. }
            | L7Test::TlsVersion { .. }
            | L7Test::TlsAlpn { .. } => Proto::Tls,
        }
    }

    /// Whether the test reads the DNS stage's result.
    pub fn is_dns(&self) -> bool {
        self.proto() == Proto::Dns
    }
}

/// The L7 definitions of a file.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Defs {
    /// Sets of DNS name patterns, each an LPM-trie map.
    pub names: Vec<dns::NameSet>,
    /// The `tls.alpn` tests of the file, one bit each, all in one hash map.
    pub alpn: Vec<tls::AlpnSet>,
}

/// Whether a rule of `filter` tests `tls.alpn` (its TLS stage then reads the ALPN list).
pub fn uses_alpn(filter: &crate::hir::Filter) -> bool {
    fn walk(c: &Cond) -> bool {
        match c {
            Cond::Test(crate::hir::Test::L7(L7Test::TlsAlpn { .. })) => true,
            Cond::And(cs) | Cond::Or(cs) => cs.iter().any(walk),
            Cond::Not(c) => walk(c),
            Cond::Test(_) | Cond::Const(_) => false,
        }
    }
    filter.rules.iter().any(|r| walk(&r.cond))
}

/// Which of the DNS and TLS stages the rules of `filter` need: (DNS, TLS).
pub fn protocols(filter: &Filter) -> (bool, bool) {
    (uses(filter, Proto::Dns), uses(filter, Proto::Tls))
}

/// The HIR text of a test (golden files).
pub fn print(hir: &crate::hir::Hir, t: &L7Test) -> String {
    match t {
        L7Test::Http(h) => http::print(h),
        L7Test::Dns => "dns".into(),
        L7Test::Tls => "tls".into(),
        L7Test::TlsVersion { op, value } => format!("tls.version {op:?} {value:#x}"),
        L7Test::TlsAlpn { set } => {
            let names: Vec<String> = hir
                .l7
                .alpn
                .get(*set)
                .map(|s| {
                    s.protocols
                        .iter()
                        .map(|p| format!("{:?}", String::from_utf8_lossy(p)))
                        .collect()
                })
                .unwrap_or_default();
            format!("tls.alpn in {{{}}}", names.join(", "))
        }
        L7Test::TlsName { set } => {
            let pats: Vec<String> = hir
                .l7
                .names
                .get(*set)
                .map(|s| s.patterns.iter().map(|p| p.to_string()).collect())
                .unwrap_or_default();
            format!("tls.sni in {{{}}}", pats.join(", "))
        }
        L7Test::DnsInt { field, op, value } => format!("{} {op:?} {value}", field.name()),
        L7Test::DnsName { set } => {
            let pats: Vec<String> = hir
                .l7
                .names
                .get(*set)
                .map(|s| s.patterns.iter().map(|p| p.to_string()).collect())
                .unwrap_or_default();
            format!("dns.qname in {{{}}}", pats.join(", "))
        }
    }
}
