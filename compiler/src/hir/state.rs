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

/// Whether a map of a stateful test holds clock times (`bpf_ktime_get_ns`) in its values,
/// which differ between two loads of one program (tests compare such maps by key only).
pub fn map_holds_clock(name: &str) -> bool {
    name.starts_with("pol_rate")
}
