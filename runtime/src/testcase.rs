//! From a `test` block's packet description to the bytes of a frame.
//!
//! `packet ip6 tcp { src: 2001:db8::1, dport: 22, flags: [syn, ack], vlan: [100],
//! ext: [hop, routing, dest, ah, frag], frag: 0, more: true, ttl: 1, payload_len: 400,
//! truncate: 30 } => drop`. A field the description cannot use is an error with its span.
//! `packet raw { bytes: "ffff ffff ffff 0200 0000 0001 0806 ..." }` gives the frame as hex
//! bytes (white space ignored, as tcpdump -xx prints them), for what the others cannot say.

use crate::packet::{self, Ext, Packet};
use pol_compiler::diag::Diagnostic;
use pol_compiler::syntax::ast::{Expr, ExprKind, Ident, Span, TestCase};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A description that cannot be built, with the span of the offending part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseError {
    pub span: Span,
    pub message: String,
}

fn err<T>(span: &Span, message: impl Into<String>) -> Result<T, CaseError> {
    Err(CaseError {
        span: span.clone(),
        message: message.into(),
    })
}

/// The fields a packet description may set, for the error message.
pub const FIELDS: &str = "src, dst, smac, dmac, sha, tha, sport, dport, flags, ttl, tos, id, df, type, code, vlan, qinq, tpid, op, ext, frag, more, ihl, options, payload, payload_len, echo, quote, truncate, mpls, pppoe, encap, vni";

/// Every packet description of the file's `test` blocks that cannot be built, as
/// diagnostics (`pol check` reports them, not only `pol test`).
pub fn check(file: &pol_compiler::syntax::ast::File) -> Vec<Diagnostic> {
    use pol_compiler::syntax::ast::Item;
    let mut out = Vec::new();
    for item in &file.items {
        let Item::Test(t) = item else { continue };
        for case in &t.cases {
            if let TestCase::Packet { .. } = case {
                if let Err(e) = build(case) {
                    out.push(
                        Diagnostic::error("E0701", e.message, e.span)
                            .with_label("this packet cannot be built"),
                    );
                }
            }
        }
    }
    out
}

/// Builds the frame a test case describes.
pub fn build(case: &TestCase) -> Result<Vec<u8>, CaseError> {
    let TestCase::Packet {
        layers,
        fields,
        span,
        ..
    } = case
    else {
        return err(&(0..0), "this test case did not parse");
    };
    frame(layers, fields, span)
}

/// The frame of `packet LAYERS { FIELDS }`.
fn frame(layers: &[Ident], fields: &[(Ident, Expr)], span: &Span) -> Result<Vec<u8>, CaseError> {
    if let [l] = layers {
        if l.name == "raw" {
            return raw_frame(fields, span);
        }
    }
    let mut v6 = false;
    let mut kind: Option<&Ident> = None;
    for l in layers {
        match l.name.as_str() {
            "ip6" => v6 = true,
            "ip4" | "ip" => {}
            "tcp" | "udp" | "sctp" | "icmp" | "icmp6" | "arp" => kind = Some(l),
            "raw" => return err(&l.span, "`raw` stands alone: `packet raw { bytes: \"...\" }`"),
            other => return err(&l.span, format!("unknown packet kind `{other}`; use tcp, udp, sctp, icmp, icmp6 or arp, after ip4 or ip6, or raw")),
        }
    }
    let Some(kind) = kind else {
        return err(
            span,
            "say what the packet is: `packet tcp`, `udp`, `sctp`, `icmp`, `icmp6` or `arp`",
        );
    };
    let mut p = match kind.name.as_str() {
        "tcp" => Packet::tcp(),
        "udp" => Packet::udp(),
        "sctp" => Packet::sctp(),
        "icmp" => Packet::icmp(),
        "icmp6" => Packet::icmp6(),
        _ => Packet::arp(),
    };
    if v6 {
        p = p.ip6();
    }
    let (mut frag, mut more, mut truncate) = (None, false, None);
    let mut wrap = Wrap::default();
    for (name, value) in fields {
        let s = &value.span;
        p = match name.name.as_str() {
            "src" => p.src(addr(value)?),
            "dst" => p.dst(addr(value)?),
            "sport" => p.sport(int(value, u16::MAX as u64)? as u16),
            "dport" => p.dport(int(value, u16::MAX as u64)? as u16),
            "ttl" => p.ttl(int(value, 255)? as u8),
            "type" => p.icmp_type(int(value, 255)? as u8),
            "code" => p.icmp_code(int(value, 255)? as u8),
            "ihl" => p.ihl(int(value, 15)? as u8),
            "tos" => p.tos(int(value, 255)? as u8),
            "id" => p.ip_id(int(value, 0xffff)? as u16),
            "df" => match value.kind {
                ExprKind::Bool(true) => p.dont_fragment(),
                ExprKind::Bool(false) => p,
                _ => return err(&value.span, "`df` is `true` or `false`"),
            },
            "flags" => p.flags(tcp_flags(value)?),
            "vlan" => list(value)?
                .iter()
                .try_fold(p, |p, e| Ok::<_, CaseError>(p.vlan(int(e, 4095)? as u16)))?,
            "qinq" => p.qinq(int(value, 4095)? as u16),
            "tpid" => p.outer_tpid(int(value, 0xffff)? as u16),
            "op" => p.arp_op(int(value, 0xffff)? as u16),
            "smac" => p.eth_src(mac(value)?),
            "dmac" => p.eth_dst(mac(value)?),
            "sha" => p.arp_sha(mac(value)?),
            "tha" => p.arp_tha(mac(value)?),
            "ext" => {
                let mut p = p;
                for e in list(value)? {
                    let ExprKind::Path(path) = &e.kind else {
                        return err(
                            &e.span,
                            "an extension header: hop, routing, dest, ah or frag",
                        );
                    };
                    p = match path.dotted().as_str() {
                        "hop" => p.ext(Ext::HopByHop),
                        "routing" => p.ext(Ext::Routing),
                        "dest" => p.ext(Ext::DestOpts),
                        "ah" => p.ext(Ext::Ah),
                        "frag" => p.ext(Ext::Fragment { offset: 0, more: true }),
                        other => return err(&e.span, format!("unknown extension header `{other}`: hop, routing, dest, ah or frag")),
                    };
                }
                p
            }
            "frag" => {
                frag = Some(int(value, 8191)? as u16);
                p
            }
            "more" => {
                more = matches!(value.kind, ExprKind::Bool(true));
                p
            }
            "options" => {
                let n = int(value, 40)? as usize;
                if !n.is_multiple_of(4) {
                    return err(s, "IPv4 options come in multiples of 4 bytes");
                }
                // NOP options: harmless, and they move the L4 header.
                p.ip4_options(&vec![1u8; n])
            }
            "payload_len" => p.payload(&vec![0u8; int(value, 9000)? as usize]),
            "echo" => p.echo_id(int(value, 0xffff)? as u16),
            "quote" => p.payload(&quote(value, v6)?),
            "payload" => match &value.kind {
                ExprKind::Str(text) => p.payload(text.as_bytes()),
                _ => {
                    return err(
                        &value.span,
                        "`payload` is a string: `payload: \"GET / HTTP/1.1\"`",
                    )
                }
            },
            "truncate" => {
                truncate = Some(int(value, 9000)? as usize);
                p
            }
            "mpls" => {
                for e in list(value)? {
                    wrap.mpls.push(int(&e, (1 << 20) - 1)? as u32);
                }
                p
            }
            "pppoe" => {
                wrap.pppoe = Some(int(value, 0xffff)? as u16);
                p
            }
            "vni" => {
                wrap.vni = Some(int(value, u64::from(u32::MAX))? as u32);
                p
            }
            "encap" => {
                let ExprKind::Path(path) = &value.kind else {
                    return err(s, "a tunnel: vxlan, geneve, gre or ipip");
                };
                wrap.encap = Some(match path.dotted().as_str() {
                    "vxlan" => Encap::Vxlan,
                    "geneve" => Encap::Geneve,
                    "gre" => Encap::Gre,
                    "ipip" => Encap::Ipip,
                    other => {
                        return err(
                            s,
                            format!("unknown tunnel `{other}`: vxlan, geneve, gre or ipip"),
                        )
                    }
                });
                p
            }
            other => {
                return err(
                    &name.span,
                    format!("unknown packet field `{other}`; the fields are {FIELDS}"),
                )
            }
        };
    }
    if let Some(off) = frag {
        p = if v6 {
            p.fragment(off, more)
        } else {
            p.frag4(off, more)
        };
    }
    if let Some(n) = truncate {
        p = p.truncate(n);
    }
    let frame = p.build().map_err(|e| CaseError {
        span: span.clone(),
        message: e.to_string(),
    })?;
    if wrap.vni.is_some() && matches!(wrap.encap, None | Some(Encap::Ipip)) {
        return err(span, "`vni` is the VXLAN or GENEVE VNI or the GRE key: give `encap: vxlan`, `geneve` or `gre`");
    }
    Ok(wrap.apply(frame))
}

/// `quote: { kind: udp, src: .., dst: .., sport: .., dport: .. }`: the IP packet an ICMP
/// error quotes (its IP header and the first 8 bytes after it), of the error's IP version.
fn quote(value: &Expr, v6: bool) -> Result<Vec<u8>, CaseError> {
    let ExprKind::Record(items) = &value.kind else {
        return err(
            &value.span,
            "`quote` is a packet: `quote: { kind: udp, src: 10.0.0.1, dst: 10.0.0.2, sport: 5353, dport: 53 }`",
        );
    };
    let mut layers = Vec::new();
    if v6 {
        layers.push(Ident {
            name: "ip6".into(),
            span: value.span.clone(),
        });
    }
    let mut fields = Vec::new();
    for (name, v) in items {
        let Some(v) = v else {
            return err(&name.span, format!("`{}` needs a value", name.name));
        };
        match (name.name.as_str(), &v.kind) {
            ("kind", ExprKind::Path(q)) => layers.push(Ident {
                name: q.dotted(),
                span: v.span.clone(),
            }),
            ("kind", _) => return err(&v.span, "`kind` is tcp, udp or icmp"),
            _ => fields.push((name.clone(), v.clone())),
        }
    }
    if layers.len() == usize::from(v6) {
        return err(&value.span, "say what the quoted packet is: `kind: udp`");
    }
    let frame = frame(&layers, &fields, &value.span)?;
    // The IP packet without the Ethernet header and the padding; 8 bytes of L4 header.
    let ip = frame.get(14..).unwrap_or_default();
    let hl = if v6 {
        40
    } else {
        usize::from(ip.first().map_or(5, |b| b & 0xf)) * 4
    };
    Ok(ip[..ip.len().min(hl + 8)].to_vec())
}

#[derive(Clone, Copy)]
enum Encap {
    Vxlan,
    Geneve,
    Gre,
    Ipip,
}

/// What a test packet is carried in: MPLS labels or a PPPoE session between its Ethernet
/// (and VLAN) header and its IP packet, or a tunnel from 192.0.2.1 to 192.0.2.2 carrying it.
#[derive(Default)]
struct Wrap {
    mpls: Vec<u32>,
    pppoe: Option<u16>,
    encap: Option<Encap>,
    vni: Option<u32>,
}

impl Wrap {
    fn apply(&self, frame: Vec<u8>) -> Vec<u8> {
        let frame = self.tunnel(frame);
        // The EtherType that names the IP packet: after the VLAN tags.
        let mut at = 12;
        while at + 4 <= frame.len()
            && matches!(
                u16::from_be_bytes([frame[at], frame[at + 1]]),
                0x8100 | 0x88a8 | 0x9100 | 0x9200
            )
        {
            at += 4;
        }
        if at + 2 > frame.len() {
            return frame;
        }
        let etype = u16::from_be_bytes([frame[at], frame[at + 1]]);
        let (head, body) = frame.split_at(at + 2);
        let mut head = head.to_vec();
        let mut mid = Vec::new();
        let mut outer = etype;
        if let Some(session) = self.pppoe {
            let ppp: u16 = if etype == 0x86dd { 0x0057 } else { 0x0021 };
            mid.extend([0x11, 0]);
            mid.extend(session.to_be_bytes());
            mid.extend((body.len() as u16 + 2).to_be_bytes());
            mid.extend(ppp.to_be_bytes());
            outer = 0x8864;
        }
        for (i, label) in self.mpls.iter().enumerate() {
            let bos = u32::from(i + 1 == self.mpls.len());
            mid.extend((label << 12 | bos << 8 | 64).to_be_bytes());
            outer = 0x8847;
        }
        head[at..at + 2].copy_from_slice(&outer.to_be_bytes());
        head.extend(mid);
        head.extend(body);
        head
    }

    /// The frame inside a tunnel over IPv4 (VXLAN and GENEVE carry the whole frame, GRE
    /// and IP-in-IP its IP packet).
    fn tunnel(&self, frame: Vec<u8>) -> Vec<u8> {
        let Some(encap) = self.encap else {
            return frame;
        };
        let etype = frame
            .get(12..14)
            .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
        let ip = frame.get(14..).unwrap_or_default();
        let vni = self.vni.unwrap_or(0);
        let udp = |port: u16, payload: Vec<u8>| {
            let mut v = 40000u16.to_be_bytes().to_vec();
            v.extend(port.to_be_bytes());
            v.extend((payload.len() as u16 + 8).to_be_bytes());
            v.extend([0, 0]);
            v.extend(payload);
            v
        };
        let (proto, payload) = match encap {
            Encap::Vxlan => {
                let mut v = vec![8, 0, 0, 0];
                v.extend((vni << 8).to_be_bytes());
                v.extend(&frame);
                (17, udp(4789, v))
            }
            Encap::Geneve => {
                let mut v = vec![0, 0, 0x65, 0x58];
                v.extend((vni << 8).to_be_bytes());
                v.extend(&frame);
                (17, udp(6081, v))
            }
            Encap::Gre => {
                let mut v = if self.vni.is_some() {
                    vec![0x20, 0]
                } else {
                    vec![0, 0]
                };
                v.extend(etype.to_be_bytes());
                if let Some(k) = self.vni {
                    v.extend(k.to_be_bytes());
                }
                v.extend(ip);
                (47, v)
            }
            Encap::Ipip => (if etype == 0x86dd { 41 } else { 4 }, ip.to_vec()),
        };
        let mut out = frame.get(..12).unwrap_or_default().to_vec();
        out.extend([0x08, 0x00, 0x45, 0]);
        out.extend((payload.len() as u16 + 20).to_be_bytes());
        out.extend([0, 1, 0x40, 0, 64, proto, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2]);
        out.extend(payload);
        out
    }
}

/// The largest raw frame (a jumbo frame).
const RAW_MAX: usize = 9018;

/// `packet raw { bytes: "..." }`: the frame's bytes in hex.
fn raw_frame(fields: &[(Ident, Expr)], span: &Span) -> Result<Vec<u8>, CaseError> {
    let mut frame = None;
    for (name, value) in fields {
        if name.name != "bytes" {
            return err(
                &name.span,
                format!("a raw packet has one field, `bytes`, not `{}`", name.name),
            );
        }
        let ExprKind::Str(text) = &value.kind else {
            return err(
                &value.span,
                "the frame's bytes as a string of hex digits: \"ffff ffff ffff 0200 ...\"",
            );
        };
        frame = Some(hex_bytes(text).map_err(|message| CaseError {
            span: value.span.clone(),
            message,
        })?);
    }
    let Some(frame) = frame else {
        return err(span, "a raw packet needs its `bytes: \"...\"`");
    };
    if frame.len() < 14 {
        return err(
            span,
            format!(
                "{} bytes are not a frame: an Ethernet header alone is 14",
                frame.len()
            ),
        );
    }
    Ok(frame)
}

/// Hex digits (pairs), with white space anywhere and an optional `0x` in front.
fn hex_bytes(text: &str) -> Result<Vec<u8>, String> {
    let body = text.trim_start().strip_prefix("0x").unwrap_or(text);
    let digits: Vec<u8> = body.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if let Some(bad) = digits.iter().find(|b| !b.is_ascii_hexdigit()) {
        let shown = if bad.is_ascii_graphic() {
            format!("`{}`", *bad as char)
        } else {
            format!("byte {bad:#04x}")
        };
        return Err(format!("{shown} is not a hex digit"));
    }
    if digits.len() % 2 == 1 {
        return Err(format!(
            "{} hex digits: a byte is two, so one is missing",
            digits.len()
        ));
    }
    if digits.len() / 2 > RAW_MAX {
        return Err(format!(
            "{} bytes: a frame is at most {RAW_MAX}",
            digits.len() / 2
        ));
    }
    let nibble = |b: u8| (b as char).to_digit(16).unwrap_or(0) as u8;
    Ok(digits
        .chunks(2)
        .map(|p| nibble(p[0]) << 4 | nibble(p[1]))
        .collect())
}

fn addr(e: &Expr) -> Result<IpAddr, CaseError> {
    match &e.kind {
        ExprKind::Ip4(a) => Ok(IpAddr::V4(Ipv4Addr::from(*a))),
        ExprKind::Ip6(a) => Ok(IpAddr::V6(Ipv6Addr::from(*a))),
        _ => err(&e.span, "expected an IPv4 or IPv6 address"),
    }
}

fn mac(e: &Expr) -> Result<[u8; 6], CaseError> {
    match e.kind {
        ExprKind::Mac(m) => Ok(m),
        _ => err(&e.span, "expected a MAC address such as 02:00:00:00:00:01"),
    }
}

fn int(e: &Expr, max: u64) -> Result<u64, CaseError> {
    match e.kind {
        ExprKind::Int(v) if v <= max => Ok(v),
        ExprKind::Int(v) => err(&e.span, format!("{v} is too large here (at most {max})")),
        _ => err(&e.span, "expected a number"),
    }
}

fn list(e: &Expr) -> Result<Vec<Expr>, CaseError> {
    match &e.kind {
        ExprKind::List(items) | ExprKind::SetLit(items) => Ok(items.clone()),
        _ => Ok(vec![e.clone()]),
    }
}

fn tcp_flags(e: &Expr) -> Result<u8, CaseError> {
    let mut bits = 0;
    for f in list(e)? {
        let ExprKind::Path(p) = &f.kind else {
            return err(
                &f.span,
                "a TCP flag: fin, syn, rst, psh, ack, urg, ece, cwr",
            );
        };
        bits |= match p.dotted().as_str() {
            "fin" => packet::FIN,
            "syn" => packet::SYN,
            "rst" => packet::RST,
            "psh" => packet::PSH,
            "ack" => packet::ACK,
            "urg" => packet::URG,
            "ece" => packet::ECE,
            "cwr" => packet::CWR,
            other => return err(&f.span, format!("unknown TCP flag `{other}`")),
        };
    }
    Ok(bits)
}
