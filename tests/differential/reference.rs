//! The reference: what docs/packet-parsing.md says a packet's fields are, computed from the
//! packet description, and the generated rules evaluated on them in plain Rust, first
//! match wins. Nothing here comes from the compiler but which layers each filter's parser
//! reads (`hir::needs`): the documented malformed rule depends on it (a layer that is not
//! parsed cannot be malformed). Whether leaving those layers out is sound is still tested:
//! a packet well-formed in every layer gets all its fields here, parsed or not.

use crate::packets::{ext_number, Bad, Body, Ip, Pkt, L4};
use crate::rules::*;
use pol_compiler::packet::needs::Needs;
use pol_runtime::packet::Ext;
use std::net::IpAddr;

/// The fields of a well-formed packet; `None` is an absent header.
#[derive(Debug, Clone, Default)]
pub struct Rec {
    /// Outer and inner VLAN id (inner 0 with one tag).
    pub vlan: Option<(u16, u16)>,
    /// The outer tag's TPID.
    pub tpid: Option<u16>,
    pub depth: u8,
    /// The frame's length in bytes.
    pub frame_len: u32,
    /// Ethernet source and destination (48-bit values); ARP's sender and target hardware
    /// addresses (ARP over Ethernet/IPv4 only).
    pub smac: u64,
    pub dmac: u64,
    pub arp: Option<(u64, u64)>,
    /// The TCP or UDP payload's length (its bytes are 0xab).
    pub payload: usize,
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
    /// IPv4 total length; IPv6 payload length + 40.
    pub len: u32,
    /// The next header of the IPv6 header itself (IPv6 only).
    pub first_next: u8,
    /// IPv4 only: header length in words, TOS, identification, DF, MF, fragment offset.
    pub ihl: u8,
    pub tos: u8,
    pub id: u16,
    pub df: bool,
    pub mf: bool,
    pub frag_offset: u16,
}

#[derive(Debug, Clone, Copy)]
pub enum L4Rec {
    Tcp { sport: u16, dport: u16, flags: u8 },
    Udp { sport: u16, dport: u16 },
    Sctp { sport: u16, dport: u16 },
    Icmp { ty: u8, code: u8 },
    Icmp6 { ty: u8, code: u8 },
}

/// Which layers a filter's parser reads, for a mismatch report.
pub fn describe(n: &Needs) -> String {
    let on: Vec<&str> = [
        (n.ip4, "ip4"),
        (n.ip6, "ip6"),
        (n.ip6_walk(), "ip6 extension headers"),
        (n.frag4, "frag4"),
        (n.frag6, "frag6"),
        (n.tcp4, "tcp4"),
        (n.tcp6, "tcp6"),
        (n.udp4, "udp4"),
        (n.udp6, "udp6"),
        (n.sctp4, "sctp4"),
        (n.sctp6, "sctp6"),
        (n.icmp, "icmp"),
        (n.icmp6, "icmp6"),
        (n.arp, "arp"),
    ]
    .into_iter()
    .filter_map(|(b, name)| b.then_some(name))
    .collect();
    format!("parser reads: Ethernet, VLAN, {}", on.join(", "))
}

/// The fields of `p` for a filter whose parser reads the layers `n` says, or why the
/// packet is malformed for it. `frame` is the length of the built frame.
///
/// docs/packet-parsing.md: a header that is parsed is validated; a layer that is not parsed
/// cannot be malformed (Ethernet and the VLAN look-through are always parsed). So a packet
/// malformed in a layer `n` skips is, for this filter, a packet without that layer: its
/// fields end before it. A packet well-formed in every layer gets all its fields, parsed
/// or not: leaving a layer out must not change what any rule sees (`hir::needs` promises
/// it; the comparison with the kernel checks it).
pub fn parse(p: &Pkt, frame: usize, n: &Needs) -> Result<Rec, &'static str> {
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
        tpid: p.tags.first().map(|t| t.0),
        depth: p.tags.len() as u8,
        frame_len: frame as u32,
        smac: p.smac,
        dmac: p.dmac,
        arp: match p.body {
            Body::Arp { sha, tha } => Some((sha, tha)),
            _ => None,
        },
        ..Rec::default()
    };
    let Body::Ip(ip) = &p.body else {
        return Ok(r);
    };
    // The IP header: malformed only when this family is parsed; else, malformed or not,
    // the packet is not IP for this filter (well-formed, it keeps its fields).
    let parsed = if ip.v6() { n.ip6 } else { n.ip4 };
    let (ip_rec, walk) = match ip_layer(p, frame) {
        Ok(x) => x,
        Err(why) if parsed => return Err(why),
        Err(_) => return Ok(r),
    };
    // IPv6 extension headers are walked only when something behind them is needed; a
    // chain too long to walk then cannot be malformed, and nothing behind it is seen.
    let walked = !ip.v6() || n.ip6_walk();
    let (frag, later, proto) = match walk {
        Ok(x) => x,
        Err(why) if parsed && walked => return Err(why),
        Err(_) => {
            r.ip = Some(IpRec {
                proto: ip.exts.first().map_or(ip.proto(), ext_number),
                ..ip_rec
            });
            return Ok(r);
        }
    };
    r.ip = Some(IpRec { proto, ..ip_rec });
    r.frag = frag;
    r.later = later;
    if later {
        return Ok(r);
    }
    // The L4 header: malformed only when parsed behind this family.
    let l4_parsed = match (ip.l4, ip.v6()) {
        (L4::Tcp { .. }, false) => n.tcp4,
        (L4::Tcp { .. }, true) => n.tcp6,
        (L4::Udp { .. }, false) => n.udp4,
        (L4::Udp { .. }, true) => n.udp6,
        (L4::Icmp { .. }, false) => n.icmp,
        (L4::Icmp { .. }, true) => n.icmp6,
        (L4::Sctp { .. }, false) | (L4::Raw(SCTP), false) => n.sctp4,
        (L4::Sctp { .. }, true) | (L4::Raw(SCTP), true) => n.sctp6,
        (L4::Raw(_), _) => false,
    };
    r.l4 = match l4_layer(p, ip) {
        Ok(l4) => l4,
        Err(why) if parsed && walked && l4_parsed => return Err(why),
        Err(_) => None,
    };
    r.payload = ip.payload;
    Ok(r)
}

/// What the walk of the IPv6 extension headers (none for IPv4) gives: (fragment, later
/// fragment, protocol), or why the chain is malformed.
type Walk = Result<(bool, bool, u8), &'static str>;

/// The IP header's fields, and the walk behind it; `Err` when the IP header is malformed.
fn ip_layer(p: &Pkt, frame: usize) -> Result<(IpRec, Walk), &'static str> {
    let Body::Ip(ip) = &p.body else {
        unreachable!("an IP packet")
    };
    let l3 = p.l3_off();
    let len = ip.len_field(p.bad);
    let (frag_offset, mf) = ip.frag4.unwrap_or((0, false));
    let rec = IpRec {
        v6: ip.v6(),
        src: ip.src,
        dst: ip.dst,
        proto: ip.proto(),
        ttl: ip.ttl,
        len: (len + if ip.v6() { 40 } else { 0 }) as u32,
        first_next: ip.exts.first().map_or(ip.proto(), ext_number),
        ihl: (ip.hdr_len() / 4) as u8,
        tos: ip.tos,
        id: ip.id,
        df: ip.df,
        mf,
        frag_offset,
    };
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
        let (frag, later) = ip.frag4.map_or((false, false), |(offset, more)| {
            (offset != 0 || more, offset != 0)
        });
        return Ok((rec, Ok((frag, later, ip.proto()))));
    }
    if frame < l3 + 40 {
        return Err("IPv6 header cut short");
    }
    if l3 + 40 + len > frame {
        return Err("IPv6 payload length past the frame");
    }
    let mut frag = false;
    for (i, e) in ip.exts.iter().enumerate() {
        if i == 6 {
            return Ok((rec, Err("a seventh IPv6 extension header")));
        }
        if let Ext::Fragment { offset, .. } = e {
            frag = true;
            if *offset != 0 {
                // Nothing after a later fragment's header is read.
                let proto = ip.exts.get(i + 1).map_or(ip.proto(), ext_number);
                return Ok((rec, Ok((true, true, proto))));
            }
        }
    }
    // The generator's extension headers always lie inside the payload length (a frame cut
    // short fails the payload-length test first; a short L4 keeps the chain whole).
    assert!(
        ip.ext_len() <= len,
        "an extension header past the IPv6 payload"
    );
    Ok((rec, Ok((frag, false, ip.proto()))))
}

/// The L4 header, or why it is malformed: it must lie inside the IP packet as its length
/// field says (which lies inside the frame), whatever follows the IP packet in the frame.
fn l4_layer(p: &Pkt, ip: &Ip) -> Result<Option<L4Rec>, &'static str> {
    let len = ip.len_field(p.bad);
    // Bytes of the L4 header and payload inside the IP packet.
    let l4_bytes = if ip.v6() {
        len - ip.ext_len()
    } else {
        len - ip.hdr_len()
    };
    Ok(match ip.l4 {
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
        L4::Icmp { ty, code } => {
            if l4_bytes < 4 {
                return Err("ICMP header cut short");
            }
            Some(if ip.v6() {
                L4Rec::Icmp6 { ty, code }
            } else {
                L4Rec::Icmp { ty, code }
            })
        }
        L4::Sctp { sport, dport } => {
            if l4_bytes < 12 {
                return Err("SCTP header cut short");
            }
            Some(L4Rec::Sctp { sport, dport })
        }
        // SCTP: the 12-byte common header; the generator fills IP payloads with 0xab.
        L4::Raw(SCTP) => {
            if l4_bytes < 12 {
                return Err("SCTP header cut short");
            }
            Some(L4Rec::Sctp {
                sport: 0xabab,
                dport: 0xabab,
            })
        }
        L4::Raw(_) => None,
    })
}

/// The IP protocol number of SCTP, which the generator sends as a raw L4 protocol.
const SCTP: u8 = 132;

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
                IntTest::Masked(m, op, x) => {
                    let v = v & m;
                    match op {
                        Op::Eq => v == *x,
                        Op::Ne => v != *x,
                        Op::Lt => v < *x,
                        Op::Le => v <= *x,
                        Op::Gt => v > *x,
                        Op::Ge => v >= *x,
                    }
                }
            }
        }),
        Cond::Addr(f, t) => addr_value(*f, r).is_some_and(|a| match t {
            AddrTest::Eq(n) | AddrTest::In(n) => n.contains(a),
            AddrTest::Ne(n) => !n.contains(a),
            AddrTest::Lit(ns) => ns.iter().any(|n| n.contains(a)),
            AddrTest::Set(i) => sets[*i].nets.iter().any(|n| n.contains(a)),
        }),
        // docs/packet-parsing.md: the bytes after the TCP or UDP header inside the IP
        // packet; a slice past its end is absent, so `!=` is false too.
        Cond::Payload {
            tcp,
            start,
            len,
            value,
            eq,
        } => {
            let kind = match r.l4 {
                Some(L4Rec::Tcp { .. }) => Some(true),
                Some(L4Rec::Udp { .. }) => Some(false),
                _ => None,
            };
            let fits = kind.is_some() && tcp.is_none_or(|t| Some(t) == kind);
            let end = usize::from(*start) + usize::from(*len);
            let have = u64::MAX >> (64 - 8 * u32::from(*len)) & 0xabab_abab_abab_abab;
            fits && end <= r.payload && (have == *value) == *eq
        }
        Cond::Mac(f, t) => mac_value(*f, r).is_some_and(|m| match t {
            MacTest::Eq(x) => m == *x,
            MacTest::Ne(x) => m != *x,
            MacTest::Lit(xs) => xs.contains(&m),
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
    let ip4 = ip.filter(|i| !i.v6);
    let ip6 = ip.filter(|i| i.v6);
    let v: u64 = match (f, r.l4) {
        (TcpSport | L4Sport, Some(L4Rec::Tcp { sport, .. })) => sport.into(),
        (TcpDport | L4Dport, Some(L4Rec::Tcp { dport, .. })) => dport.into(),
        (TcpFlags, Some(L4Rec::Tcp { flags, .. })) => flags.into(),
        (UdpSport | L4Sport, Some(L4Rec::Udp { sport, .. })) => sport.into(),
        (UdpDport | L4Dport, Some(L4Rec::Udp { dport, .. })) => dport.into(),
        (SctpSport | L4Sport, Some(L4Rec::Sctp { sport, .. })) => sport.into(),
        (SctpDport | L4Dport, Some(L4Rec::Sctp { dport, .. })) => dport.into(),
        (IcmpType, Some(L4Rec::Icmp { ty, .. })) | (Icmp6Type, Some(L4Rec::Icmp6 { ty, .. })) => {
            ty.into()
        }
        (IcmpCode, Some(L4Rec::Icmp { code, .. }))
        | (Icmp6Code, Some(L4Rec::Icmp6 { code, .. })) => code.into(),
        (IpProto, _) => ip?.proto.into(),
        (Ip4Proto, _) => ip4?.proto.into(),
        (Ip6Next, _) => ip6?.proto.into(),
        (Ip6FirstNext, _) => ip6?.first_next.into(),
        (IpTtl, _) => ip?.ttl.into(),
        (Ip4Ttl, _) => ip4?.ttl.into(),
        (Ip6Hoplimit, _) => ip6?.ttl.into(),
        (IpLen, _) => ip?.len.into(),
        (Ip4Ihl, _) => ip4?.ihl.into(),
        (Ip4Dscp, _) => (ip4?.tos >> 2).into(),
        (Ip4Ecn, _) => (ip4?.tos & 3).into(),
        (Ip4Id, _) => ip4?.id.into(),
        (Ip4FragOffset, _) => ip4?.frag_offset.into(),
        (VlanId, _) => r.vlan?.0.into(),
        (VlanInner, _) => r.vlan?.1.into(),
        (VlanDepth, _) => r.depth.into(),
        (VlanTpid, _) => r.tpid?.into(),
        (FrameLen, _) => r.frame_len.into(),
        _ => return None,
    };
    Some(v)
}

/// docs/packet-parsing.md: the Ethernet addresses of every frame; ARP's hardware addresses
/// when the frame is ARP over Ethernet/IPv4.
fn mac_value(f: MacField, r: &Rec) -> Option<u64> {
    Some(match f {
        MacField::EthSrc => r.smac,
        MacField::EthDst => r.dmac,
        MacField::ArpSha => r.arp?.0,
        MacField::ArpTha => r.arp?.1,
    })
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
        Sctp => matches!(r.l4, Some(L4Rec::Sctp { .. })),
        Ip4Df => ip.filter(|i| !i.v6)?.df,
        Ip4Mf => ip.filter(|i| !i.v6)?.mf,
        EthBroadcast => r.dmac == 0xffff_ffff_ffff,
        // The group bit: the low bit of the first byte on the wire.
        EthMulticast => r.dmac >> 40 & 1 == 1,
    })
}
