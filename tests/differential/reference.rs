//! The reference: what docs/packet-parsing.md says a packet's fields are, computed from the
//! packet description, and the generated rules evaluated on them in plain Rust, first
//! match wins. Nothing here comes from the compiler.

use crate::packets::{ext_number, Bad, Body, Pkt, L4};
use crate::rules::*;
use pol_runtime::packet::Ext;
use std::net::IpAddr;

/// The fields of a well-formed packet; `None` is an absent header.
#[derive(Debug, Clone, Default)]
pub struct Rec {
    /// Outer and inner VLAN id (inner 0 with one tag).
    pub vlan: Option<(u16, u16)>,
    pub depth: u8,
    pub ip: Option<IpRec>,
    pub frag: bool,
    pub later: bool,
    pub l4: Option<L4Rec>,
}

#[derive(Debug, Clone)]
pub struct IpRec {
    pub v6: bool,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub ttl: u8,
}

#[derive(Debug, Clone, Copy)]
pub enum L4Rec {
    Tcp { sport: u16, dport: u16, flags: u8 },
    Udp { sport: u16, dport: u16 },
    Icmp { ty: u8 },
    Icmp6 { ty: u8 },
}

/// The fields, or why the packet is malformed. `frame` is the length of the built frame.
pub fn parse(p: &Pkt, frame: usize) -> Result<Rec, &'static str> {
    if p.tags.len() > 2 {
        return Err("a third VLAN tag");
    }
    let l3 = p.l3_off();
    if frame < l3 {
        return Err("a VLAN tag cut short");
    }
    let mut r = Rec {
        vlan: p
            .tags
            .first()
            .map(|t| (t.1 & 0xfff, p.tags.get(1).map_or(0, |t| t.1 & 0xfff))),
        depth: p.tags.len() as u8,
        ..Rec::default()
    };
    let Body::Ip(ip) = &p.body else {
        return Ok(r);
    };
    let len = ip.len_field(p.bad);
    let mut proto = ip.proto();
    // Bytes of the L4 header and payload inside the IP packet.
    let l4_bytes;
    if !ip.v6() {
        if frame < l3 + 20 {
            return Err("IPv4 header cut short");
        }
        let ihl = if p.bad == Bad::Ihl4 {
            4
        } else {
            ip.hdr_len() / 4
        };
        if ihl < 5 {
            return Err("IPv4 IHL < 5");
        }
        if len < ihl * 4 {
            return Err("IPv4 total length shorter than the header");
        }
        if l3 + len > frame {
            return Err("IPv4 total length past the frame");
        }
        if let Some((offset, more)) = ip.frag4 {
            r.frag = offset != 0 || more;
            r.later = offset != 0;
        }
        l4_bytes = len - ihl * 4;
    } else {
        if frame < l3 + 40 {
            return Err("IPv6 header cut short");
        }
        if l3 + 40 + len > frame {
            return Err("IPv6 payload length past the frame");
        }
        for (i, e) in ip.exts.iter().enumerate() {
            if i == 6 {
                return Err("a seventh IPv6 extension header");
            }
            if let Ext::Fragment { offset, .. } = e {
                r.frag = true;
                if *offset != 0 {
                    // Nothing after a later fragment's header is read.
                    r.later = true;
                    proto = ip.exts.get(i + 1).map_or(ip.proto(), ext_number);
                    break;
                }
            }
        }
        l4_bytes = len - ip.ext_len();
    }
    r.ip = Some(IpRec {
        v6: ip.v6(),
        src: ip.src,
        dst: ip.dst,
        proto,
        ttl: ip.ttl,
    });
    if r.later {
        return Ok(r);
    }
    r.l4 = match ip.l4 {
        L4::Tcp {
            sport,
            dport,
            flags,
        } => {
            if l4_bytes < 20 {
                return Err("TCP header cut short");
            }
            if p.bad == Bad::TcpDoff4 {
                return Err("TCP data offset < 5");
            }
            Some(L4Rec::Tcp {
                sport,
                dport,
                flags,
            })
        }
        L4::Udp { sport, dport } => {
            if l4_bytes < 8 {
                return Err("UDP header cut short");
            }
            Some(L4Rec::Udp { sport, dport })
        }
        L4::Icmp { ty, .. } => {
            if l4_bytes < 4 {
                return Err("ICMP header cut short");
            }
            Some(if ip.v6() {
                L4Rec::Icmp6 { ty }
            } else {
                L4Rec::Icmp { ty }
            })
        }
        L4::Raw(_) => None,
    };
    Ok(r)
}

/// The decision: the statistics slot (rule index, then default, then malformed) and
/// whether the packet passes.
pub fn decide(
    f: &FilterDef,
    sets: &[SetDecl],
    parsed: &Result<Rec, &'static str>,
) -> (usize, bool) {
    let n = f.rules.len();
    match parsed {
        Err(_) => (n + 1, f.malformed.unwrap_or(false)),
        Ok(r) => f
            .rules
            .iter()
            .position(|rule| eval(&rule.cond, r, sets))
            .map_or((n, f.default_pass), |i| (i, f.rules[i].pass)),
    }
}

pub fn eval(c: &Cond, r: &Rec, sets: &[SetDecl]) -> bool {
    match c {
        Cond::Not(a) => !eval(a, r, sets),
        Cond::And(a, b) => eval(a, r, sets) && eval(b, r, sets),
        Cond::Or(a, b) => eval(a, r, sets) || eval(b, r, sets),
        Cond::Paren(a) => eval(a, r, sets),
        // A test of an absent field is false, whatever the operator.
        Cond::Int(f, t) => int_value(*f, r).is_some_and(|v| {
            let within = |&(lo, hi): &(u64, u64)| lo <= v && v <= hi;
            match t {
                IntTest::Cmp(op, x) => match op {
                    Op::Eq => v == *x,
                    Op::Ne => v != *x,
                    Op::Lt => v < *x,
                    Op::Le => v <= *x,
                    Op::Gt => v > *x,
                    Op::Ge => v >= *x,
                },
                IntTest::Range(lo, hi) => within(&(*lo, *hi)),
                IntTest::Lit(es) => es.iter().any(within),
                IntTest::Set(i) => sets[*i].ints.iter().any(within),
            }
        }),
        Cond::Addr(f, t) => addr_value(*f, r).is_some_and(|a| match t {
            AddrTest::Eq(n) | AddrTest::In(n) => n.contains(a),
            AddrTest::Ne(n) => !n.contains(a),
            AddrTest::Lit(ns) => ns.iter().any(|n| n.contains(a)),
            AddrTest::Set(i) => sets[*i].nets.iter().any(|n| n.contains(a)),
        }),
        Cond::Flag(f, form) => flag_value(*f, r).is_some_and(|v| match form.cmp {
            None => v,
            Some((eq, b)) => (v == b) == eq,
        }),
    }
}

fn int_value(f: IntField, r: &Rec) -> Option<u64> {
    use IntField::*;
    let ip = r.ip.as_ref();
    let v = match (f, r.l4) {
        (TcpSport | L4Sport, Some(L4Rec::Tcp { sport, .. })) => sport,
        (TcpDport | L4Dport, Some(L4Rec::Tcp { dport, .. })) => dport,
        (UdpSport | L4Sport, Some(L4Rec::Udp { sport, .. })) => sport,
        (UdpDport | L4Dport, Some(L4Rec::Udp { dport, .. })) => dport,
        (IcmpType, Some(L4Rec::Icmp { ty })) | (Icmp6Type, Some(L4Rec::Icmp6 { ty })) => {
            u16::from(ty)
        }
        (IpProto, _) => u16::from(ip?.proto),
        (Ip4Proto, _) => u16::from(ip.filter(|i| !i.v6)?.proto),
        (Ip6Next, _) => u16::from(ip.filter(|i| i.v6)?.proto),
        (IpTtl, _) => u16::from(ip?.ttl),
        (Ip4Ttl, _) => u16::from(ip.filter(|i| !i.v6)?.ttl),
        (Ip6Hoplimit, _) => u16::from(ip.filter(|i| i.v6)?.ttl),
        (VlanId, _) => r.vlan?.0,
        (VlanInner, _) => r.vlan?.1,
        (VlanDepth, _) => u16::from(r.depth),
        _ => return None,
    };
    Some(u64::from(v))
}

fn addr_value(f: AddrField, r: &Rec) -> Option<IpAddr> {
    let ip = r.ip.as_ref()?;
    let fits = match f.fam() {
        Fam::Any => true,
        Fam::V4 => !ip.v6,
        Fam::V6 => ip.v6,
    };
    fits.then_some(if f.is_src() { ip.src } else { ip.dst })
}

fn flag_value(f: Flag, r: &Rec) -> Option<bool> {
    use Flag::*;
    let tcp = |bit: u8| match r.l4 {
        Some(L4Rec::Tcp { flags, .. }) => Some(flags & bit != 0),
        _ => None,
    };
    let ip = r.ip.as_ref();
    Some(match f {
        TcpFin => return tcp(0x01),
        TcpSyn => return tcp(0x02),
        TcpRst => return tcp(0x04),
        TcpAck => return tcp(0x10),
        Fragment => ip.map(|_| r.frag)?,
        LaterFragment => ip.map(|_| r.later)?,
        Tcp => matches!(r.l4, Some(L4Rec::Tcp { .. })),
        Udp => matches!(r.l4, Some(L4Rec::Udp { .. })),
        Icmp => matches!(r.l4, Some(L4Rec::Icmp { .. })),
        Icmp6 => matches!(r.l4, Some(L4Rec::Icmp6 { .. })),
        Ip4 => ip.is_some_and(|i| !i.v6),
        Ip6 => ip.is_some_and(|i| i.v6),
        Vlan => r.vlan.is_some(),
    })
}
