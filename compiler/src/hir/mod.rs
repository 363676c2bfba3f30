//! Name resolution and type checking: the AST becomes the typed HIR that lowering reads.
//!
//! The HIR keeps only what code generation needs: filters with their hook, rules as
//! boolean trees of typed tests over packet fields, sets as value lists, counters.

pub mod check;
pub mod fields;
pub mod needs;
pub mod print;
pub mod state;
pub mod stdlib;
pub mod types;
pub mod values;

use crate::syntax::ast::{Span, Verdict};
use fields::Field;
use serde::Serialize;

/// Sets with more values than this become maps (a language rule: it decides which sets
/// `pol set` can change while a filter runs).
pub const INLINE_SET_MAX: usize = 8;

pub use types::Ty;

#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Hir {
    pub filters: Vec<Filter>,
    pub sets: Vec<SetDef>,
    /// Counter maps, in order of first use.
    pub counters: Vec<CounterDef>,
    /// Tracing probes and their aggregation maps.
    pub probes: crate::probe::hir::Probes,
    /// Runtime security rules.
    pub security: crate::rule::hir::RuleSet,
    /// Rate limits (`rate(..)` tests), each a table of its own.
    pub rates: Vec<state::RateDef>,
    /// Connection tracking, when a rule tests `ct.*` or the file configures it.
    pub ct: Option<state::CtConfig>,
    /// L7 definitions: DNS name sets (issue 13).
    pub l7: crate::l7::Defs,
    /// How many flow events (`log`) a second the file sends (`const flowlog = { .. }`).
    #[serde(skip_serializing_if = "state::FlowRate::is_default")]
    pub flow_rate: state::FlowRate,
}

/// A value of a set or a literal: an integer range or a network prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Value {
    /// Inclusive range; a single integer is `lo == hi`.
    Int { lo: u64, hi: u64 },
    /// An address prefix; a plain address has the full length (32 or 128).
    Net {
        v6: bool,
        addr: [u8; 16],
        prefix: u8,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SetDef {
    pub name: String,
    pub elem: Ty,
    pub values: Vec<Value>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CounterDef {
    pub name: String,
    /// `None` for a plain counter, else the field whose value keys it.
    pub key: Option<&'static Field>,
    /// Keyed by an HTTP field instead (`count by_path[http.path]`; `key` is `None`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub l7: Option<crate::l7::http::CountKey>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Hook {
    Xdp { iface: String },
    Tc { iface: String, ingress: bool },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Action {
    pub verdict: Verdict,
    /// Indices into `Hir::counters`.
    pub counts: Vec<usize>,
    /// `log`: a flow event per packet the action decides (rate-limited; docs/stateful.md).
    pub log: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Filter {
    pub name: String,
    pub hook: Hook,
    pub rules: Vec<Rule>,
    pub default: Action,
    pub malformed: Action,
    pub span: Span,
    /// `l7 incomplete pass|drop`: what a segment whose request pol cannot read whole gets
    /// (`None`: per protocol, drop when a `drop` rule tests a field of it; docs/l7.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incomplete: Option<Verdict>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rule {
    pub index: u32,
    pub cond: Cond,
    pub action: Action,
    pub span: Span,
    /// 1-based source line and the rule's text, for listings and layout.json.
    pub line: u32,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Cond {
    Const(bool),
    And(Vec<Cond>),
    Or(Vec<Cond>),
    Not(Box<Cond>),
    Test(Test),
}

use crate::packet::record::PAYLOAD_TEST_MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// One test of a packet field. Every test is false when the field's layer is absent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Test {
    /// Any of these layer bits is set.
    Layer(u32),
    /// `field OP value` over an integer field.
    Int {
        field: &'static Field,
        op: CmpOp,
        value: u64,
    },
    /// Any bit of `mask` is set in the field (TCP flags).
    Bits { field: &'static Field, mask: u32 },
    /// `field & mask OP value` over an integer field.
    Masked {
        field: &'static Field,
        mask: u32,
        op: CmpOp,
        value: u64,
    },
    /// The address field lies in the prefix (both of the prefix's family).
    Net { field: &'static Field, net: Value },
    /// The field's value is in the named set (`Hir::sets[set]`).
    InSet { field: &'static Field, set: usize },
    /// `payload[start..start + len] == bytes` (`!=` when `!eq`): bytes of the TCP or UDP
    /// payload of a packet with a layer bit of `layer`. False, `!=` too, when the payload
    /// is shorter than `start + len` (the bytes are absent).
    Payload {
        layer: u32,
        start: u8,
        len: u8,
        bytes: [u8; PAYLOAD_TEST_MAX],
        eq: bool,
    },
    /// `rate(..) > N/s` (`over`) or `<= N/s` (`!over`) of `Hir::rates[rate]`: takes a
    /// token from the key's bucket when there is one; over the rate when there is none.
    /// False (both ways) when a key field's layer is absent.
    Rate { rate: usize, over: bool },
    /// The packet's connection-tracking result (`hir::state::CT_*` bits) has any bit of
    /// `mask`: `ct.state in {..}`, `ct.direction == reply`.
    Ct { mask: u32 },
    /// An L7 field (`http.path`, `dns.qname`, `tls.sni`, ...): false when the packet does
    /// not carry the protocol, or carries a message pol could not read whole.
    L7(crate::l7::L7Test),
}
