//! What a filter's packet parser must do: which layers it parses and which record bytes it
//! zeroes and stores, derived from the rules' conditions and count keys.
//!
//! # The rule
//!
//! Leaving a layer (or the store of a field) out of the parser changes the record of some
//! *class* of packets: without IPv6 an IPv6 packet looks like a non-IP frame, without TCP a
//! TCP segment has no `F_TCP` and no ports, without a store a field reads 0. A layer or store
//! is needed exactly when some rule condition or count key could then see a difference:
//!
//! - a **test depends** on a class when it reads a layer bit the class changes, or reads a
//!   record byte the class writes while its layer check lets packets of the class through;
//! - a condition is **guarded** against a class when it implies a layer no packet of the
//!   class has (`ip4 and tcp.dport == 23`, `ip4.src in S` and `ip.src in 10.0.0.0/8` imply
//!   IPv4, so they are false for every IPv6 packet, parsed or not); only `and` of a guarded
//!   part, `or` of guarded parts and the tests themselves guard — `not` never does;
//! - a condition **is unaffected** by a class when it is guarded against it, or when every
//!   part of it is unaffected (whatever the polarity: `not tcp` depends on TCP parsing
//!   exactly as `tcp` does, on every path through `and`, `or` and `not`);
//! - a class is **needed** when some rule's condition is affected, when a count key of a rule
//!   whose condition is not guarded against the class reads a byte the class writes, or when
//!   a count key of the default action does.
//!
//! Classes: IPv4, IPv6, TCP, UDP (each per address family), ICMP, ICMPv6, IPv4 and IPv6
//! fragments (the `ip.fragment`/`ip.later_fragment` bits), and one per stored field and
//! family. Skipping classes one by one is sound together: a guard holds in any reduced
//! record (reductions only clear layer bits), and unaffected parts stay unaffected.
//!
//! Tunnels, MPLS and PPPoE are simpler: they are parsed, as far as read, whenever any test
//! or key names them (`ext_uses`); the second record window they fill has its own byte mask.
//! The bits they set (`CARRIED`) are in every IP class's compatible set, so no test of
//! them makes an IP or L4 layer look unneeded.
//!
//! Every byte any test or key may read is zeroed up front unless every path writes it:
//! the verifier rejects reads of uninitialised stack even where the layer bits make the
//! read unreachable at run time. VLAN tags are always looked through (evasion); only their
//! stores follow the reads.

use super::fields::{Field, Slot};
use super::{Action, Cond, Filter, Hir, Test, Ty, Value};
use crate::packet::needs::{span, ByteMask, Needs};
use crate::packet::record::*;

use super::INLINE_SET_MAX;

const FRAGS: u32 = F_FRAG | F_FRAG_LATER;

/// A class of packets whose record changes when one part of the parser is left out.
#[derive(Clone, Copy)]
struct Class {
    /// Layer bits a packet of the class can carry (in the full record).
    compat: u32,
    /// Layer bits the left-out part would set.
    bits: u32,
    /// Record bytes the left-out part would write.
    bytes: ByteMask,
}

/// Bits an IP packet may carry besides its own layers: the tunnel and inner layers its
/// parse sets, the MPLS or PPPoE header it was found behind.
const CARRIED: u32 = F_TUNNEL | F_INNER_ALL | F_MPLS | F_PPPOE;
const V4: u32 = F_VLAN | F_IP4 | F_TCP | F_UDP | F_SCTP | F_ICMP | FRAGS | CARRIED;
const V6: u32 = F_VLAN | F_IP6 | F_TCP | F_UDP | F_SCTP | F_ICMP6 | FRAGS | CARRIED;
/// Every record byte the IP layers and L4 write (all from `ip.proto` on but the link
/// layer's).
const IP_BYTES: ByteMask = !0u128 << OFF_IP_PROTO & !LINK_BYTES & !ARP_BYTES;
/// Record bytes the ARP code writes.
const ARP_BYTES: ByteMask = span(
    OFF_ARP_SPA_PREFIXLEN,
    OFF_ARP_THA + MAC_SIZE as i16 - OFF_ARP_SPA_PREFIXLEN,
);
const ARP: Class = class(F_VLAN | F_ARP, F_ARP, ARP_BYTES);
const ARP_PIECES: [(i16, i16); 7] = [
    (OFF_ARP_SHA, MAC_SIZE as i16),
    (OFF_ARP_THA, MAC_SIZE as i16),
    (OFF_ARP_OP, 2),
    (OFF_ARP_SPA_PREFIXLEN, 4),
    (OFF_ARP_SPA, 4),
    (OFF_ARP_TPA_PREFIXLEN, 4),
    (OFF_ARP_TPA, 4),
];
/// Record bytes the Ethernet/VLAN code writes.
const LINK_BYTES: ByteMask = span(OFF_ETH_TYPE, OFF_IP_PROTO - OFF_ETH_TYPE)
    | span(OFF_VLAN_TPID, 2)
    | span(OFF_FRAME_LEN, 4)
    | span(OFF_ETH_DST, MAC_SIZE as i16)
    | span(OFF_ETH_SRC, MAC_SIZE as i16);

const fn class(compat: u32, bits: u32, bytes: ByteMask) -> Class {
    Class {
        compat,
        bits,
        bytes,
    }
}

const IP4: Class = class(V4, V4 & !(F_VLAN | F_MPLS | F_PPPOE), IP_BYTES);
const IP6: Class = class(V6, V6 & !(F_VLAN | F_MPLS | F_PPPOE), IP_BYTES);
const FRAG4: Class = class(V4, FRAGS, 0);
const FRAG6: Class = class(V6, FRAGS, 0);
const fn l4(fam: u32, layer: u32, bytes: ByteMask) -> Class {
    class(F_VLAN | fam | layer | F_FRAG | CARRIED, layer, bytes)
}
const PORTS: ByteMask = span(OFF_SPORT, 4);
const ICMP_BYTES: ByteMask = span(OFF_ICMP_TYPE, 2);
const TCP_BYTES: ByteMask = PORTS | span(OFF_TCP_FLAGS, 1);

/// The pieces the IPv4/IPv6 header code stores, as (offset, length): each field, and the
/// addresses in the 4-byte pieces the IPv6 code copies (IPv4 writes the first only).
const IP_PIECES: [(i16, i16); 21] = [
    (OFF_IP_PROTO, 1),
    (OFF_IP6_NEXTHDR, 1),
    (OFF_IP4_DSCP, 1),
    (OFF_IP4_ECN, 1),
    (OFF_IP4_ID, 2),
    (OFF_IP4_FRAG, 2),
    (OFF_IP4_FRAG_OFFSET, 2),
    (OFF_IP4_IHL, 1),
    (OFF_IP_TTL, 1),
    (OFF_IP_VERSION, 1),
    (OFF_IP_LEN, 4),
    (OFF_SRC_PREFIXLEN, 4),
    (OFF_SRC, 4),
    (OFF_SRC + 4, 4),
    (OFF_SRC + 8, 4),
    (OFF_SRC + 12, 4),
    (OFF_DST_PREFIXLEN, 4),
    (OFF_DST, 4),
    (OFF_DST + 4, 4),
    (OFF_DST + 8, 4),
    (OFF_DST + 12, 4),
];

/// What one test looks at: the layer bits it checks before reading (`None`: always
/// evaluated, no layer check; `Some(0)`: never true) and the record bytes it reads.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Look {
    guard: Option<u32>,
    reads: ByteMask,
}

/// A condition with `in SET` expanded the way lowering expands it, so every leaf is a
/// test with one guard.
#[derive(PartialEq, Eq, Hash)]
enum Tree {
    Const(bool),
    And(Vec<Tree>),
    Or(Vec<Tree>),
    Not(Box<Tree>),
    Leaf(Look),
}

/// `ir::groups` moves prefix tests of an address slot into one map (keyed by the whole
/// `{prefixlen, address}`) once a filter has this many keys for the slot.
const GROUP_MIN: usize = 8;

/// The parser a filter needs (see the module comment for the rule).
pub fn needs(hir: &Hir, filter: &Filter) -> Needs {
    // Address slots with enough prefix tests to become a rule map: there every such test
    // reads the whole LPM key (counted over all tests, a superset of the grouped ones).
    let mut tests = Vec::new();
    for r in &filter.rules {
        net_tests(&r.cond, &mut tests);
    }
    let mut per_slot: std::collections::HashMap<(i16, bool), usize> = Default::default();
    for t in &tests {
        *per_slot.entry(*t).or_default() += 1;
    }
    let wide: Vec<(i16, bool)> = per_slot
        .into_iter()
        .filter(|&(_, n)| n >= GROUP_MIN)
        .map(|(k, _)| k)
        .collect();
    let cx = Cx { hir, wide: &wide };
    // Every question below is "does any rule ...": rules alike in shape ask it once (a
    // file of 100,000 `ip.src == A` rules has one shape; asking each cost a third of its
    // compile time).
    let rules: std::collections::HashSet<(Tree, ByteMask)> = filter
        .rules
        .iter()
        .map(|r| (cx.tree(&r.cond), keys(hir, &r.action)))
        .collect();
    let default_keys = keys(hir, &filter.default);
    let needed = |c: Class| {
        default_keys & c.bytes != 0
            || rules
                .iter()
                .any(|(t, k)| !same(t, c) || (!excl(t, c.compat) && k & c.bytes != 0))
    };
    let store = |compat: u32, bytes: ByteMask| needed(class(compat, 0, bytes));
    let mut reads = default_keys | keys(hir, &filter.malformed);
    let mut vlan_flag = false;
    for (t, k) in &rules {
        reads |= k;
        walk(t, &mut |l| {
            reads |= l.reads;
            vlan_flag |= l.guard.unwrap_or(0) & F_VLAN != 0;
        });
    }
    let fam_stores = |compat: u32| {
        IP_PIECES
            .iter()
            .map(|&(off, len)| span(off, len))
            .filter(|&b| store(compat, b))
            .fold(0, |acc, b| acc | b)
    };
    let l4_stores = |compat: u32, bytes: ByteMask| {
        (OFF_SPORT..OFF_ICMP_CODE + 1)
            .map(|b| span(b, 1))
            .filter(|&b| b & bytes != 0 && store(compat, b))
            .fold(0, |acc, b| acc | b)
    };
    let tcp = F_VLAN | F_IP4 | F_IP6 | F_TCP | F_FRAG | CARRIED;
    let udp = F_VLAN | F_IP4 | F_IP6 | F_UDP | F_FRAG | CARRIED;
    let sctp = F_VLAN | F_IP4 | F_IP6 | F_SCTP | F_FRAG | CARRIED;
    let icmp = F_VLAN | F_IP4 | F_IP6 | F_ICMP | F_ICMP6 | F_FRAG | CARRIED;
    let (payload, payload_layers) = payload_window(&filter.rules);
    // A count keyed by an HTTP field runs the HTTP pass, which reads TCP payloads.
    let http_counts = crate::l7::http::counts_by(hir, filter).iter().any(|&c| c);
    let (tcp4, tcp6) = (
        http_counts || needed(l4(F_IP4, F_TCP, TCP_BYTES)),
        http_counts || needed(l4(F_IP6, F_TCP, TCP_BYTES)),
    );
    let (udp4, udp6) = (
        needed(l4(F_IP4, F_UDP, PORTS)),
        needed(l4(F_IP6, F_UDP, PORTS)),
    );
    let ext = ext_uses(hir, filter);
    let inner = |l: u32| ext.bits & (l << INNER_SHIFT) != 0;
    Needs {
        ext_reads: ext.reads,
        tunnel: ext.bits & (F_TUNNEL | F_INNER_ALL) != 0,
        inner: crate::packet::needs::Inner {
            ip: ext.bits & F_INNER_ALL != 0,
            frag: inner(FRAGS),
            tcp: inner(F_TCP),
            udp: inner(F_UDP),
            sctp: inner(F_SCTP),
            icmp: inner(F_ICMP),
            icmp6: inner(F_ICMP6),
        },
        mpls: ext.bits & F_MPLS != 0,
        pppoe: ext.bits & F_PPPOE != 0,
        l7: crate::l7::Bits::uses_l7(filter) || http_counts,
        payload,
        payload_tcp: payload_layers & F_TCP != 0 && (tcp4 || tcp6),
        payload_udp: payload_layers & F_UDP != 0 && (udp4 || udp6),
        payload_icmp: false,
        ip4: needed(IP4),
        ip6: needed(IP6),
        frag4: needed(FRAG4),
        frag6: needed(FRAG6),
        tcp4,
        tcp6,
        udp4,
        udp6,
        sctp4: needed(l4(F_IP4, F_SCTP, PORTS)),
        sctp6: needed(l4(F_IP6, F_SCTP, PORTS)),
        icmp: needed(l4(F_IP4, F_ICMP, ICMP_BYTES)),
        icmp6: needed(l4(F_IP6, F_ICMP6, ICMP_BYTES)),
        arp: needed(ARP),
        store_arp: ARP_PIECES
            .iter()
            .map(|&(off, len)| span(off, len))
            .filter(|&b| store(F_VLAN | F_ARP, b))
            .fold(0, |acc, b| acc | b),
        vlan_flag,
        reads: reads | span(OFF_FLAGS, 4),
        // Ethernet and VLAN fields are the same for every packet class: stored when read.
        store_link: reads & LINK_BYTES,
        // IPv4 writes the first 4 bytes of each address only.
        store4: fam_stores(V4) & !span(OFF_SRC + 4, 12) & !span(OFF_DST + 4, 12),
        store6: fam_stores(V6),
        store_tcp: l4_stores(tcp, TCP_BYTES),
        store_udp: l4_stores(udp, PORTS),
        store_sctp: l4_stores(sctp, PORTS),
        store_icmp: l4_stores(icmp, ICMP_BYTES),
    }
}

/// What a filter reads of the second record window, and the layer bits its tests and keys
/// check (over all of them: the tunnel, inner, MPLS and PPPoE parts are parsed whenever any
/// rule or key names them).
struct ExtUses {
    /// Bytes of the second window, relative to `OFF_EXT`.
    reads: ByteMask,
    bits: u32,
}

fn ext_uses(hir: &Hir, filter: &Filter) -> ExtUses {
    fn field(f: &Field, u: &mut ExtUses) {
        if !f.always_present() {
            u.bits |= f.layer;
        }
        if let Slot::Flag(b) = f.slot {
            u.bits |= b;
        }
        if super::fields::in_ext(f) {
            u.reads |= match f.slot {
                // The whole LPM key: a prefix test or a rule map may read any of it.
                Slot::Addr { off } => span(off - 4 - OFF_EXT, 20),
                Slot::Int { off, size }
                | Slot::Bits { off, size, .. }
                | Slot::Eq { off, size, .. } => span(off - OFF_EXT, size as i16),
                Slot::Flag(_) => 0,
            };
        }
    }
    fn cond(hir: &Hir, c: &Cond, u: &mut ExtUses) {
        match c {
            Cond::And(cs) | Cond::Or(cs) => cs.iter().for_each(|c| cond(hir, c, u)),
            Cond::Not(c) => cond(hir, c, u),
            Cond::Test(Test::Rate { rate, .. }) => {
                for f in hir.rates.get(*rate).map_or(&[][..], |r| r.keys.as_slice()) {
                    field(f, u);
                }
            }
            Cond::Test(Test::Layer(mask)) => u.bits |= mask,
            Cond::Test(
                Test::Int { field: f, .. }
                | Test::Masked { field: f, .. }
                | Test::Bits { field: f, .. }
                | Test::Net { field: f, .. }
                | Test::InSet { field: f, .. },
            ) => field(f, u),
            Cond::Test(Test::Payload { .. } | Test::Ct { .. } | Test::L7(_)) | Cond::Const(_) => {}
        }
    }
    let mut u = ExtUses { reads: 0, bits: 0 };
    let actions = filter
        .rules
        .iter()
        .map(|r| &r.action)
        .chain([&filter.default, &filter.malformed]);
    for a in actions {
        for f in a.counts.iter().filter_map(|&c| hir.counters[c].key) {
            field(f, &mut u);
        }
    }
    for r in &filter.rules {
        cond(hir, &r.cond, &mut u);
    }
    u
}

/// How many payload bytes the rules read (the end of the furthest slice) and the layers
/// whose payload they read.
fn payload_window(rules: &[super::Rule]) -> (u8, u32) {
    fn walk(c: &Cond, acc: &mut (u8, u32)) {
        match c {
            Cond::And(cs) | Cond::Or(cs) => cs.iter().for_each(|c| walk(c, acc)),
            Cond::Not(c) => walk(c, acc),
            Cond::Test(Test::Payload {
                layer, start, len, ..
            }) => {
                acc.0 = acc.0.max(start.saturating_add(*len));
                acc.1 |= layer;
            }
            _ => {}
        }
    }
    let mut acc = (0, 0);
    for r in rules {
        walk(&r.cond, &mut acc);
    }
    acc
}

/// Whether `t` evaluates the same on the full and on the reduced record of every packet
/// of class `c`.
fn same(t: &Tree, c: Class) -> bool {
    excl(t, c.compat)
        || match t {
            Tree::Const(_) => true,
            Tree::And(ts) | Tree::Or(ts) => ts.iter().all(|t| same(t, c)),
            Tree::Not(t) => same(t, c),
            Tree::Leaf(l) => !depends(*l, c),
        }
}

fn depends(l: Look, c: Class) -> bool {
    let guard = l.guard.unwrap_or(0);
    let evaluated = l.guard.is_none_or(|g| g & c.compat != 0);
    guard & c.bits != 0 || (evaluated && l.reads & c.bytes != 0)
}

/// Whether `t` is false for every packet whose layer bits lie within `compat`.
fn excl(t: &Tree, compat: u32) -> bool {
    match t {
        Tree::Const(v) => !v,
        Tree::And(ts) => ts.iter().any(|t| excl(t, compat)),
        Tree::Or(ts) => ts.iter().all(|t| excl(t, compat)),
        Tree::Not(_) => false,
        Tree::Leaf(l) => l.guard.is_some_and(|g| g & compat == 0),
    }
}

fn walk(t: &Tree, f: &mut impl FnMut(Look)) {
    match t {
        Tree::Const(_) => {}
        Tree::And(ts) | Tree::Or(ts) => ts.iter().for_each(|t| walk(t, f)),
        Tree::Not(t) => walk(t, f),
        Tree::Leaf(l) => f(*l),
    }
}

/// The record bytes the count keys of an action read (whatever the packet).
fn keys(hir: &Hir, a: &Action) -> ByteMask {
    a.counts
        .iter()
        .filter_map(|&c| hir.counters[c].key)
        .map(key_bytes)
        .fold(0, |acc, b| acc | b)
}

/// As `ir::lower::maps::count_key_off` and `count_key_ty`.
fn key_bytes(f: &Field) -> ByteMask {
    match (f.slot, f.ty) {
        (Slot::Addr { off }, Ty::Ip) => span(off - 4, 20),
        (Slot::Addr { off }, Ty::Ip6) => span(off, 16),
        (Slot::Addr { off }, _) => span(off, 4),
        (
            Slot::Int { off, size } | Slot::Bits { off, size, .. } | Slot::Eq { off, size, .. },
            _,
        ) => span(off, size as i16),
        (Slot::Flag(_), _) => span(OFF_FLAGS, 4),
    }
}

fn guard(f: &Field) -> Option<u32> {
    (!f.always_present()).then_some(f.layer)
}

fn slot_bytes(f: &Field) -> ByteMask {
    match f.slot {
        Slot::Int { off, size } | Slot::Bits { off, size, .. } | Slot::Eq { off, size, .. } => {
            span(off, size as i16)
        }
        Slot::Addr { .. } | Slot::Flag(_) => 0,
    }
}

fn leaf(guard: Option<u32>, reads: ByteMask) -> Tree {
    Tree::Leaf(Look { guard, reads })
}

/// The `(slot, v6)` of every address-prefix test.
fn net_tests(c: &Cond, out: &mut Vec<(i16, bool)>) {
    match c {
        Cond::And(cs) | Cond::Or(cs) => cs.iter().for_each(|c| net_tests(c, out)),
        Cond::Not(c) => net_tests(c, out),
        Cond::Test(Test::Net {
            field,
            net: Value::Net { v6, .. },
        }) => {
            if let Slot::Addr { off } = field.slot {
                out.push((off, *v6));
            }
        }
        _ => {}
    }
}

struct Cx<'a> {
    hir: &'a Hir,
    /// Address slots whose prefix tests may become one LPM lookup.
    wide: &'a [(i16, bool)],
}

impl Cx<'_> {
    fn tree(&self, c: &Cond) -> Tree {
        let all = |cs: &[Cond]| cs.iter().map(|c| self.tree(c)).collect();
        match c {
            Cond::Const(v) => Tree::Const(*v),
            Cond::And(cs) => Tree::And(all(cs)),
            Cond::Or(cs) => Tree::Or(all(cs)),
            Cond::Not(c) => Tree::Not(Box::new(self.tree(c))),
            Cond::Test(Test::Net { field, net }) => {
                let t = net_test(field, net);
                match (t, field.slot, net) {
                    (Tree::Leaf(l), Slot::Addr { off }, Value::Net { v6, .. })
                        if self.wide.contains(&(off, *v6)) =>
                    {
                        let len = if *v6 { 16 } else { 4 };
                        leaf(l.guard, span(off - 4, len + 4))
                    }
                    (t, ..) => t,
                }
            }
            Cond::Test(t) => test(self.hir, t),
        }
    }
}

/// One test as `ir::lower` reads it: the layer bits it checks and the bytes behind them.
fn test(hir: &Hir, t: &Test) -> Tree {
    match *t {
        Test::Layer(mask) => leaf(Some(mask), 0),
        Test::Int { field, .. } | Test::Masked { field, .. } | Test::Bits { field, .. } => {
            leaf(guard(field), slot_bytes(field))
        }
        Test::Net { field, net } => net_test(field, &net),
        // The copied length says whether the bytes are there; the bytes themselves lie
        // past the record (the window `payload_window` sizes).
        Test::Payload { layer, .. } => leaf(Some(layer), span(OFF_PAYLOAD_LEN, 2)),
        // A rate reads its key fields, each behind its own layer check; `rate()` reads
        // nothing and is always evaluated.
        Test::Rate { rate, .. } => match hir.rates.get(rate).map(|r| r.keys.as_slice()) {
            Some(keys) if !keys.is_empty() => {
                Tree::And(keys.iter().map(|&f| leaf(guard(f), key_bytes(f))).collect())
            }
            _ => leaf(None, 0),
        },
        // The tracking result is no record byte: `ir::to_mir` makes every filter of a file
        // with connection tracking parse what the tracking reads.
        Test::Ct { .. } => leaf(None, 0),
        // The HTTP pass reads the TCP payload; its results lie past the record.
        Test::L7(crate::l7::L7Test::Http(_)) => leaf(Some(F_TCP), 0),
        // DNS and TLS tests read the stage's scratch map, not the record: `ir::to_mir` makes a
        // filter with one parse what its stage reads.
        Test::L7(_) => leaf(None, 0),
        Test::InSet { field, set } => {
            let def = &hir.sets[set];
            if def.values.len() <= INLINE_SET_MAX {
                return Tree::Or(
                    def.values
                        .iter()
                        .map(|v| match v {
                            Value::Int { .. } => leaf(guard(field), slot_bytes(field)),
                            net => net_test(field, net),
                        })
                        .collect(),
                );
            }
            match field.slot {
                // One lookup per family the set holds: exact keys are the address, prefix
                // keys `{prefixlen, address}`.
                Slot::Addr { off } => Tree::Or(
                    [false, true]
                        .into_iter()
                        .filter_map(|v6| {
                            let fam = field.family_layer(v6)?;
                            let (full, len) = if v6 { (128, 16) } else { (32, 4) };
                            let mut prefixes = def.values.iter().filter_map(|v| match v {
                                Value::Net { v6: w, prefix, .. } if *w == v6 => Some(*prefix),
                                _ => None,
                            });
                            let first = prefixes.next()?;
                            let exact = first == full && prefixes.all(|p| p == full);
                            let reads = if exact {
                                span(off, len)
                            } else {
                                span(off - 4, len + 4)
                            };
                            Some(leaf(Some(fam), reads))
                        })
                        .collect(),
                ),
                Slot::Int { .. } => leaf(guard(field), slot_bytes(field)),
                _ => Tree::Const(false),
            }
        }
    }
}

/// `field in PREFIX`: checks the prefix's family bit, then reads one 4-byte chunk per 32
/// bits of prefix (lowering's `net`).
fn net_test(field: &Field, net: &Value) -> Tree {
    let (Value::Net { v6, prefix, .. }, Slot::Addr { off }) = (*net, field.slot) else {
        return Tree::Const(false);
    };
    let Some(fam) = field.family_layer(v6) else {
        return Tree::Const(false);
    };
    let chunks = (prefix as i16 + 31) / 32;
    leaf(Some(fam), span(off, 4 * chunks))
}
