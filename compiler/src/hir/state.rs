//! Stateful tests (issue 15): rate limits, `rate(KEY...) > N/s`. Each `rate(..)` in a
//! rule is one table of token buckets of its own (docs/stateful.md).

use super::fields::Field;
use crate::syntax::ast::Span;
use serde::Serialize;

/// Keys a rate table holds unless `size(N)` says otherwise.
pub const RATE_SIZE_DEFAULT: u32 = 65536;
/// The largest `size(N)` of a rate table (an LRU hash of 24-byte values: 64 MiB at most).
pub const RATE_SIZE_MAX: u32 = 1 << 21;

/// One `rate(KEYS) OP N/UNIT` of a rule: a GCRA token bucket per key (the "theoretical
/// arrival time" of the next packet, one u64 per key), in map `map`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RateDef {
    /// The map of buckets: an LRU hash keyed by the key fields' record bytes, or a
    /// one-slot array for `rate()`.
    pub map: String,
    pub keys: Vec<&'static Field>,
    /// Nanoseconds between two packets at the declared rate (`1s / N`).
    pub interval_ns: u64,
    /// Packets that may arrive at once after a quiet spell (`burst(B)`; default: the
    /// count `N` of `N/UNIT`).
    pub burst: u64,
    /// Keys the table holds (`size(N)`); the least recently used key is evicted.
    pub size: u32,
    pub span: Span,
}

impl RateDef {
    /// How far ahead of now a key's next arrival time may run before packets are over the
    /// rate: `(burst - 1)` intervals.
    pub fn tolerance_ns(&self) -> u64 {
        self.burst
            .saturating_sub(1)
            .saturating_mul(self.interval_ns)
    }
}

/// `ct.state` values, as bits of the per-packet tracking result.
pub const CT_NEW: u32 = 1;
pub const CT_ESTABLISHED: u32 = 2;
pub const CT_INVALID: u32 = 4;
/// Not tracked: not IP, or not TCP, UDP, ICMP/ICMPv6 echo (a later fragment included).
pub const CT_UNTRACKED: u32 = 8;
/// An ICMP or ICMPv6 error (unreachable, time exceeded, ..) whose quoted header belongs to
/// a live flow of the table; its direction is the opposite of the quoted packet's.
pub const CT_RELATED: u32 = 16;
/// `ct.direction`: the packet goes the way the flow's first packet went, or back.
pub const CT_ORIGINAL: u32 = 1 << 8;
pub const CT_REPLY: u32 = 1 << 9;

/// The connection-tracking table of a file (`const conntrack = { .. }`, or the defaults
/// when a rule tests `ct.*`). Every filter of the file tracks its packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct CtConfig {
    /// Flows the table holds; the least recently used is evicted when it is full.
    pub size: u32,
    /// What a packet of a flow the table does not know (evicted, expired, or begun before
    /// pol was loaded) is when it cannot start one (a TCP segment without a lone SYN, an
    /// echo reply): `false` (closed): `invalid`; `true` (open): the flow is taken up as
    /// `established`.
    pub open: bool,
    /// Idle timeouts in nanoseconds: a TCP flow before its first reply, after it, after a
    /// FIN or RST either way; UDP before and after a reply; ICMP echo.
    pub tcp_new: u64,
    pub tcp: u64,
    pub tcp_closing: u64,
    pub udp_new: u64,
    pub udp: u64,
    pub icmp: u64,
    /// Whether tracking reads ICMP errors' quoted headers (`related`, `invalid`): only
    /// when a rule of the file could tell the outcome apart from `untracked`
    /// ([`tells_related`]); else every ICMP error is `untracked` and the code for it is
    /// not emitted.
    pub related: bool,
}

const S: u64 = 1_000_000_000;

impl Default for CtConfig {
    fn default() -> Self {
        CtConfig {
            size: 65536,
            open: false,
            tcp_new: 60 * S,
            tcp: 3600 * S,
            tcp_closing: 10 * S,
            udp_new: 30 * S,
            udp: 180 * S,
            icmp: 30 * S,
            related: true,
        }
    }
}

/// Whether any rule of `hir` could tell an ICMP error's tracking result (`related`,
/// `invalid` or `untracked`, with or without a direction) from `untracked`: a `ct.state`
/// test holding for some but not all of those three, a `ct.direction` test (an untracked
/// packet has no direction), or a `log` (events show the state). Tests of `new` and
/// `established` alone cannot, so the ICMP-error code (about 380 instructions) is left
/// out of such files.
pub fn tells_related(hir: &super::Hir) -> bool {
    use super::{Cond, Test};
    const ERR: u32 = CT_RELATED | CT_INVALID | CT_UNTRACKED;
    fn cond(c: &Cond) -> bool {
        match c {
            Cond::And(cs) | Cond::Or(cs) => cs.iter().any(cond),
            Cond::Not(c) => cond(c),
            Cond::Test(Test::Ct { mask }) => {
                let m = mask & ERR;
                (m != 0 && m != ERR) || mask & (CT_ORIGINAL | CT_REPLY) != 0
            }
            _ => false,
        }
    }
    hir.filters.iter().any(|f| {
        f.default.log || f.malformed.log || f.rules.iter().any(|r| r.action.log || cond(&r.cond))
    })
}

/// The map of the connection-tracking table.
pub const CT_MAP: &str = "pol_ct";
/// Whether a map of a stateful test holds clock times (`bpf_ktime_get_ns`) in its values,
/// which differ between two loads of one program (tests compare such maps by key only).
pub fn map_holds_clock(name: &str) -> bool {
    name.starts_with("pol_rate") || name == CT_MAP || name == FLOW_RATE_MAP
}

/// Flow events (`log`): the ring buffer they go through, the bucket that limits them to
/// `FLOW_RATE` a second (bursts of as many), and the per-CPU count of those suppressed.
pub const FLOW_RING: &str = "pol_flows";
pub const FLOW_RATE_MAP: &str = "pol_flow_rate";
pub const FLOW_LOST: &str = "pol_flow_lost";
pub const FLOW_RATE: u64 = 1000;
/// The most flow events a second a file may ask for: the ring buffer, read every 20 ms,
/// holds about 3,600 events, so more would mostly be lost to a full buffer anyway.
pub const FLOW_RATE_MAX: u64 = 100_000;

/// The flow events' limit of a file: `count` per `per_ns` nanoseconds, bursts of `burst`
/// (`const flowlog = { rate: 100/s, burst: 20 }`; default 1,000 a second, bursts of 1,000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct FlowRate {
    pub count: u64,
    pub per_ns: u64,
    pub burst: u64,
}

impl Default for FlowRate {
    fn default() -> Self {
        FlowRate {
            count: FLOW_RATE,
            per_ns: 1_000_000_000,
            burst: FLOW_RATE,
        }
    }
}

impl FlowRate {
    pub fn is_default(&self) -> bool {
        *self == FlowRate::default()
    }

    /// Nanoseconds between two events at the rate.
    pub fn interval_ns(&self) -> u64 {
        (self.per_ns / self.count.max(1)).max(1)
    }

    /// As `pol run` says it: "1000 a second", "5 per 10s".
    pub fn describe(&self) -> String {
        let s = 1_000_000_000;
        match self.per_ns {
            p if p == s => format!("{} a second", self.count),
            p if p == 60 * s => format!("{} a minute", self.count),
            p if p == 3600 * s => format!("{} an hour", self.count),
            p if p % s == 0 => format!("{} per {}s", self.count, p / s),
            p => format!("{} per {}ms", self.count, p / 1_000_000),
        }
    }
}
/// The ring buffer's size: 256 KiB (a power of two of pages).
pub const FLOW_RING_BYTES: u32 = 256 * 1024;

/// One flow event, as the program writes it (little-endian, 64 bytes): what the runtime
/// decodes (`pol_runtime::flow`).
pub mod flow_event {
    pub const SIZE: u32 = 64;
    /// u64 `bpf_ktime_get_ns()`.
    pub const TIME: i16 = 0;
    /// u32: the interface the packet arrived on (XDP, tc ingress) or leaves by (tc egress).
    pub const IFINDEX: i16 = 8;
    /// u32: the rule's index in its filter (the default is the rule count, malformed one
    /// more).
    pub const RULE: i16 = 12;
    /// u16: the filter's index in the file.
    pub const FILTER: i16 = 16;
    /// u8: 0 pass, 1 drop.
    pub const VERDICT: i16 = 18;
    /// u8: 0 XDP, 1 tc ingress, 2 tc egress.
    pub const HOOK: i16 = 19;
    /// u32: the connection-tracking result (`CT_*` bits), 0 without tracking.
    pub const CT: i16 = 20;
    /// u8 IP version (0: not IP), u8 L4 protocol, u16 source and destination ports.
    pub const VERSION: i16 = 24;
    pub const PROTO: i16 = 25;
    pub const SPORT: i16 = 26;
    pub const DPORT: i16 = 28;
    /// 16 bytes each, network order (IPv4 in the first 4).
    pub const SRC: i16 = 32;
    pub const DST: i16 = 48;
}
