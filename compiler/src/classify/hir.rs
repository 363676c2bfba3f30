//! A filter rule's condition as classifier rules: a conjunction of tests on the fields a
//! [`Header`](super::Header) holds becomes one [`Rule`] per packet kind it can match.
//!
//! Every test is false when its layer is absent, so each test also restricts the packet
//! kind: the family value (with [`L4`] when the L4 header was parsed) and the protocol.
//! `tcp.dport == 22` matches IPv4 and IPv6 TCP packets, two kinds that no one range of
//! family values holds without the IPv6 packets lacking an L4 header; such a rule becomes
//! two classifier rules with the same index (an IPv4 and an IPv6 variant).

use super::{Prefix, Range, Rule, L4, V4, V6};
use crate::hir::fields::{Field, Slot};
use crate::hir::{CmpOp, Cond, Test, Value};
use crate::packet::record::{
    F_ICMP, F_ICMP6, F_IP4, F_IP6, F_SCTP, F_TCP, F_UDP, F_VLAN, OFF_DPORT, OFF_DST, OFF_IP_PROTO,
    OFF_SPORT, OFF_SRC, OFF_VLAN_OUTER,
};

/// Variants a rule may split into before it is left to code.
pub const MAX_VARIANTS: usize = 6;

/// The VLAN value of a [`Header`](super::Header) for an untagged packet: VLAN ids have 12
/// bits, so no `vlan.id` test holds on it.
pub const NO_VLAN: u16 = 0xffff;

/// Layer bits that make a packet's `L4` flag: those whose header carries the fields the
/// classifier reads after the addresses.
pub const L4_LAYERS: u32 = F_TCP | F_UDP | F_SCTP | F_ICMP | F_ICMP6;

/// One packet kind: inclusive ranges of family value and protocol.
type Kind = (Range<u8>, Range<u8>);

const ANY_KIND: Kind = (Range::<u8>::ANY, Range::<u8>::ANY);

/// The conjunction collected so far.
struct Conj {
    kinds: Vec<Kind>,
    vlan: Range<u16>,
    sport: Range<u16>,
    dport: Range<u16>,
    src: Prefix,
    dst: Prefix,
}

/// Why a condition does not become classifier rules (said by `pol build --explain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotClassified {
    /// It can never hold (an empty range, disjoint prefixes): code says so for free.
    Never,
    /// Something the classifier does not hold, in words.
    Unsupported(String),
}

impl std::fmt::Display for NotClassified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotClassified::Never => f.write_str("its condition can never hold"),
            NotClassified::Unsupported(why) => f.write_str(why),
        }
    }
}

fn unsupported<T>(why: impl Into<String>) -> Result<T, NotClassified> {
    Err(NotClassified::Unsupported(why.into()))
}

/// The classifier rules of `cond` (all with action `action`), or why there are none.
pub fn rules(cond: &Cond, action: u32) -> Result<Vec<Rule>, NotClassified> {
    let mut c = Conj {
        kinds: vec![ANY_KIND],
        vlan: Range::<u16>::ANY,
        sport: Range::<u16>::ANY,
        dport: Range::<u16>::ANY,
        src: Prefix::ANY,
        dst: Prefix::ANY,
    };
    add(&mut c, cond)?;
    let kinds = merge(c.kinds);
    if kinds.is_empty() {
        return Err(NotClassified::Never);
    }
    if kinds.len() > MAX_VARIANTS {
        return unsupported(format!(
            "it matches {} kinds of packet (families and protocols), more than the \
             classifier splits a rule into ({MAX_VARIANTS})",
            kinds.len()
        ));
    }
    Ok(kinds
        .into_iter()
        .map(|(family, proto)| Rule {
            family,
            proto,
            vlan: c.vlan,
            sport: c.sport,
            dport: c.dport,
            src: c.src,
            dst: c.dst,
            action,
        })
        .collect())
}

fn add(c: &mut Conj, cond: &Cond) -> Result<(), NotClassified> {
    match cond {
        Cond::And(cs) => cs.iter().try_for_each(|x| add(c, x)),
        Cond::Or(cs) if cs.len() == 1 => add(c, &cs[0]),
        Cond::Or(_) => unsupported("it combines tests with `or`"),
        Cond::Not(_) => unsupported("it is negated (`not`, `!=`)"),
        Cond::Const(true) => Ok(()),
        Cond::Const(false) => Err(NotClassified::Never),
        Cond::Test(t) => test(c, t),
    }
}

fn test(c: &mut Conj, t: &Test) -> Result<(), NotClassified> {
    match *t {
        Test::Layer(mask) => layer(c, mask),
        Test::Int { field, op, value } => {
            let Slot::Int { off, .. } = field.slot else {
                return unsupported(format!(
                    "`{}` is not a field the classifier holds",
                    field.name
                ));
            };
            layer(c, field.layer)?;
            let max = |bits: u32| (1u64 << bits) - 1;
            let (lo, hi) = match op {
                CmpOp::Eq => (value, value),
                CmpOp::Lt if value == 0 => return Err(NotClassified::Never),
                CmpOp::Lt => (0, value - 1),
                CmpOp::Le => (0, value),
                CmpOp::Gt => (value.saturating_add(1), u64::MAX),
                CmpOp::Ge => (value, u64::MAX),
                CmpOp::Ne => return unsupported("it is negated (`not`, `!=`)"),
            };
            match off {
                OFF_SPORT | OFF_DPORT => {
                    let r = narrow16(lo, hi, max(16))?;
                    let port = if off == OFF_SPORT {
                        &mut c.sport
                    } else {
                        &mut c.dport
                    };
                    *port = meet16(*port, r)?;
                }
                // VLAN ids have 12 bits; an untagged packet reads NO_VLAN.
                OFF_VLAN_OUTER => c.vlan = meet16(c.vlan, narrow16(lo, hi, max(12))?)?,
                OFF_IP_PROTO => {
                    let r = narrow16(lo, hi, max(8))?;
                    let p = Range::new(r.lo as u8, r.hi as u8);
                    meet_kinds(c, &[(Range::<u8>::ANY, p)]);
                }
                _ => {
                    return unsupported(format!(
                        "`{}` is not a field the classifier holds (addresses, ports, protocol, \
                         VLAN id)",
                        field.name
                    ))
                }
            }
            Ok(())
        }
        Test::Net { field, net } => {
            let (Slot::Addr { off }, Value::Net { v6, addr, prefix }) = (field.slot, net) else {
                return unsupported(format!("`{}` is not an address field", field.name));
            };
            let Some(fam) = field.family_layer(v6) else {
                return Err(NotClassified::Never);
            };
            layer(c, fam)?;
            let p = if v6 {
                Prefix::v6(addr, prefix)
            } else {
                let mut a = [0u8; 4];
                a.copy_from_slice(&addr[..4]);
                Prefix::v4(a, prefix)
            };
            let slot = match off {
                OFF_SRC => &mut c.src,
                OFF_DST => &mut c.dst,
                _ => {
                    return unsupported(format!(
                        "`{}` is not a source or destination IP address",
                        field.name
                    ))
                }
            };
            // Two prefixes on one address hold together only when one contains the other.
            *slot = if slot.len <= p.len && slot.contains(&p.addr) {
                p
            } else if p.len <= slot.len && p.contains(&slot.addr) {
                *slot
            } else {
                return Err(NotClassified::Never);
            };
            Ok(())
        }
        Test::InSet { field, .. } => unsupported(format!(
            "`{}` is tested against a named set, which has a map of its own",
            field.name
        )),
        Test::Bits { field, .. } => unsupported(format!("`{}` is a flag", field.name)),
        Test::Masked { field, .. } => unsupported(format!("`{}` is masked (`&`)", field.name)),
        Test::Payload { .. } => unsupported("it reads payload bytes"),
        Test::Rate { .. } => unsupported("it tests a rate limit, which keeps state"),
        Test::Ct { .. } => unsupported("it tests connection tracking, which keeps state"),
        Test::L7(_) => unsupported("it tests an L7 field"),
    }
}

fn narrow16(lo: u64, hi: u64, max: u64) -> Result<Range<u16>, NotClassified> {
    let hi = hi.min(max);
    if lo > hi {
        return Err(NotClassified::Never);
    }
    Ok(Range::new(lo as u16, hi as u16))
}

fn meet16(a: Range<u16>, b: Range<u16>) -> Result<Range<u16>, NotClassified> {
    let r = Range::new(a.lo.max(b.lo), a.hi.min(b.hi));
    if r.lo > r.hi {
        return Err(NotClassified::Never);
    }
    Ok(r)
}

/// The packet kinds a layer mask (any of its bits) allows.
fn layer(c: &mut Conj, mask: u32) -> Result<(), NotClassified> {
    // The ethernet "layer": always present.
    if mask == u32::MAX {
        return Ok(());
    }
    if mask == F_VLAN {
        c.vlan = meet16(c.vlan, Range::new(0, 0xfff))?;
        return Ok(());
    }
    let fam = |f: u8, l4: bool| {
        if l4 {
            Range::exact(f | L4)
        } else {
            Range::new(f, f | L4)
        }
    };
    let proto = Range::<u8>::exact;
    let mut kinds: Vec<Kind> = Vec::new();
    for bit in (0..32).map(|b| 1u32 << b).filter(|b| mask & b != 0) {
        match bit {
            F_IP4 => kinds.push((fam(V4, false), Range::<u8>::ANY)),
            F_IP6 => kinds.push((fam(V6, false), Range::<u8>::ANY)),
            F_TCP | F_UDP | F_SCTP => {
                let p = match bit {
                    F_TCP => 6,
                    F_UDP => 17,
                    _ => 132,
                };
                kinds.push((fam(V4, true), proto(p)));
                kinds.push((fam(V6, true), proto(p)));
            }
            F_ICMP => kinds.push((fam(V4, true), proto(1))),
            F_ICMP6 => kinds.push((fam(V6, true), proto(58))),
            _ => {
                return unsupported(
                    "it needs a layer the classifier does not tell apart (VLAN together with \
                     others, ARP, fragments)",
                )
            }
        }
    }
    meet_kinds(c, &kinds);
    Ok(())
}

fn meet_kinds(c: &mut Conj, with: &[Kind]) {
    let meet8 = |a: Range<u8>, b: Range<u8>| {
        let r = Range::new(a.lo.max(b.lo), a.hi.min(b.hi));
        (r.lo <= r.hi).then_some(r)
    };
    let mut out = Vec::new();
    for &(f, p) in &c.kinds {
        for &(g, q) in with {
            if let (Some(fam), Some(proto)) = (meet8(f, g), meet8(p, q)) {
                if !out.contains(&(fam, proto)) {
                    out.push((fam, proto));
                }
            }
        }
    }
    c.kinds = out;
}

/// Kinds with the same protocols whose family ranges touch become one
/// (`V4..=V4|L4` and `V6..=V6|L4`: any IP).
fn merge(mut kinds: Vec<Kind>) -> Vec<Kind> {
    kinds.sort_by_key(|(f, p)| (p.lo, p.hi, f.lo, f.hi));
    let mut out: Vec<Kind> = Vec::new();
    for (f, p) in kinds {
        match out.last_mut() {
            Some((g, q)) if *q == p && u16::from(f.lo) <= u16::from(g.hi) + 1 => {
                g.hi = g.hi.max(f.hi);
            }
            _ => out.push((f, p)),
        }
    }
    out
}

/// Whether `f` is a field [`rules`] can hold (for messages elsewhere).
pub fn holds_field(f: &Field) -> bool {
    match f.slot {
        Slot::Int { off, .. } => {
            matches!(off, OFF_SPORT | OFF_DPORT | OFF_VLAN_OUTER | OFF_IP_PROTO)
        }
        Slot::Addr { off } => matches!(off, OFF_SRC | OFF_DST),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver;

    /// The classifier rules of the first rule of a one-filter file.
    fn of(cond: &str) -> Result<Vec<Rule>, NotClassified> {
        let src = format!("filter f on xdp(\"eth0\") {{\n    drop {cond}\n    default pass\n}}\n");
        let (_, hir, diags) = driver::front(&src);
        assert!(diags.is_empty(), "{diags:?}");
        let f = hir.expect("checks").filters.remove(0);
        rules(&f.rules[0].cond, 7)
    }

    #[test]
    fn a_port_test_needs_the_l4_header_and_splits_by_family() {
        let r = of("tcp.dport == 22 and ip.proto == 6").expect("classified");
        assert_eq!(r.len(), 2, "{r:?}");
        assert!(r
            .iter()
            .all(|r| r.proto == Range::exact(6) && r.dport == Range::exact(22)));
        let fams: Vec<_> = r.iter().map(|r| r.family).collect();
        assert!(fams.contains(&Range::exact(V4 | L4)) && fams.contains(&Range::exact(V6 | L4)));
        assert!(r.iter().all(|r| r.action == 7));
    }

    #[test]
    fn an_address_fixes_the_family_and_ranges_meet() {
        let r = of("ip.src in 10.0.0.0/8 and ip.src in 10.1.0.0/16 and tcp.dport >= 1000 and tcp.dport < 2000")
            .expect("classified");
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(r[0].family, Range::exact(V4 | L4));
        assert_eq!(r[0].src, Prefix::v4([10, 1, 0, 0], 16));
        assert_eq!(r[0].dport, Range::new(1000, 1999));
        assert_eq!(r[0].dst, Prefix::ANY);
    }

    #[test]
    fn a_protocol_alone_matches_fragments_too() {
        let r = of("ip.proto == 17 and vlan.id == 5").expect("classified");
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(
            r[0].family,
            Range::new(V4, V6 | L4),
            "any IP, L4 header or not"
        );
        assert_eq!(r[0].vlan, Range::exact(5));
    }

    #[test]
    fn what_the_classifier_does_not_hold_says_why() {
        assert!(
            matches!(of("tcp.dport == 1 or tcp.dport == 2"), Err(NotClassified::Unsupported(w)) if w.contains("or"))
        );
        assert!(matches!(
            of("tcp.dport != 22 and udp"),
            Err(NotClassified::Unsupported(_))
        ));
        assert_eq!(
            of("tcp.dport == 22 and udp.dport == 53"),
            Err(NotClassified::Never)
        );
        assert_eq!(
            of("ip.src in 10.0.0.0/8 and ip.src in 192.168.0.0/16"),
            Err(NotClassified::Never)
        );
        assert!(matches!(
            of("tcp.syn and tcp.dport == 22"),
            Err(NotClassified::Unsupported(_))
        ));
    }
}
