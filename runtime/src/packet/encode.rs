//! Turning a [`Packet`] description into wire bytes, checksums included.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Ext, Kind, Packet, PacketError};

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_ARP: u16 = 0x0806;
const MIN_FRAME: usize = 60;

const DEFAULT_SRC4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const DEFAULT_DST4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const DEFAULT_SRC6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const DEFAULT_DST6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

fn invalid(msg: impl Into<String>) -> PacketError {
    PacketError::Invalid(msg.into())
}

/// The two addresses, of one family.
enum Addrs {
    V4(Ipv4Addr, Ipv4Addr),
    V6(Ipv6Addr, Ipv6Addr),
}

fn addrs(p: &Packet) -> Result<Addrs, PacketError> {
    let v6 =
        p.force_v6 || matches!(p.src, Some(IpAddr::V6(_))) || matches!(p.dst, Some(IpAddr::V6(_)));
    let (src, dst) = if v6 {
        (
            p.src.unwrap_or(IpAddr::V6(DEFAULT_SRC6)),
            p.dst.unwrap_or(IpAddr::V6(DEFAULT_DST6)),
        )
    } else {
        (
            p.src.unwrap_or(IpAddr::V4(DEFAULT_SRC4)),
            p.dst.unwrap_or(IpAddr::V4(DEFAULT_DST4)),
        )
    };
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) if !v6 => Ok(Addrs::V4(s, d)),
        (IpAddr::V6(s), IpAddr::V6(d)) => Ok(Addrs::V6(s, d)),
        (IpAddr::V4(_), IpAddr::V4(_)) => Err(invalid(
            "IPv6 was asked for (ip6, ext or fragment) but the addresses are IPv4",
        )),
        (src, dst) => Err(PacketError::MixedFamilies { src, dst }),
    }
}

pub(super) fn build(p: &Packet) -> Result<Vec<u8>, PacketError> {
    let (ethertype, body) = match p.kind {
        Kind::Raw(ethertype) => (ethertype, p.payload.clone()),
        Kind::Arp => (ETH_P_ARP, arp(p)?),
        _ => match addrs(p)? {
            Addrs::V4(s, d) => (ETH_P_IP, ipv4(p, s, d)?),
            Addrs::V6(s, d) => (ETH_P_IPV6, ipv6(p, s, d)?),
        },
    };
    let mut frame = Vec::with_capacity(18 + 4 * p.tags.len() + body.len());
    frame.extend_from_slice(&p.eth_dst);
    frame.extend_from_slice(&p.eth_src);
    for (i, (tpid, tci)) in p.tags.iter().enumerate() {
        let tpid = if i == 0 {
            p.outer_tpid.unwrap_or(*tpid)
        } else {
            *tpid
        };
        frame.extend_from_slice(&tpid.to_be_bytes());
        frame.extend_from_slice(&tci.to_be_bytes());
    }
    frame.extend_from_slice(&p.ethertype.unwrap_or(ethertype).to_be_bytes());
    frame.extend_from_slice(&body);
    match p.truncate {
        Some(n) => frame.truncate(n),
        None if frame.len() < MIN_FRAME => frame.resize(MIN_FRAME, 0),
        None => {}
    }
    Ok(frame)
}

fn arp(p: &Packet) -> Result<Vec<u8>, PacketError> {
    let (src, dst) = match addrs(p)? {
        Addrs::V4(s, d) => (s, d),
        Addrs::V6(..) => return Err(invalid("ARP carries IPv4 addresses only")),
    };
    let mut b = Vec::with_capacity(28);
    b.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4]); // Ethernet, IPv4
    b.extend_from_slice(&p.arp_op.to_be_bytes());
    b.extend_from_slice(&p.arp_sha.unwrap_or(p.eth_src));
    b.extend_from_slice(&src.octets());
    b.extend_from_slice(&p.arp_tha);
    b.extend_from_slice(&dst.octets());
    b.extend_from_slice(&p.payload);
    Ok(b)
}

/// The upper-layer protocol number and its bytes (checksum still zero), and where the
/// checksum goes (`None`: no checksum, e.g. raw bytes).
fn l4(p: &Packet, v6: bool) -> Result<(u8, Vec<u8>, Option<usize>), PacketError> {
    match p.kind {
        Kind::Tcp => {
            if p.tcp_options.len() > 40 {
                return Err(invalid(format!(
                    "TCP options are {} bytes; at most 40 fit",
                    p.tcp_options.len()
                )));
            }
            let opt_len = p.tcp_options.len().div_ceil(4) * 4;
            let doff = (20 + opt_len) / 4;
            let mut b = Vec::with_capacity(20 + opt_len + p.payload.len());
            b.extend_from_slice(&p.sport.to_be_bytes());
            b.extend_from_slice(&p.dport.to_be_bytes());
            b.extend_from_slice(&p.seq.to_be_bytes());
            b.extend_from_slice(&p.ack.to_be_bytes());
            let doff = p.corrupt.tcp_data_offset.map_or(doff as u8, |d| d & 0x0f);
            b.push(doff << 4);
            b.push(p.tcp_flags);
            b.extend_from_slice(&p.window.to_be_bytes());
            b.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
            b.extend_from_slice(&p.tcp_options);
            b.resize(20 + opt_len, 0);
            b.extend_from_slice(&p.payload);
            Ok((6, b, Some(16)))
        }
        Kind::Udp => {
            let len = 8 + p.payload.len();
            let len16 =
                u16::try_from(len).map_err(|_| invalid("UDP datagram longer than 65535 bytes"))?;
            let mut b = Vec::with_capacity(len);
            b.extend_from_slice(&p.sport.to_be_bytes());
            b.extend_from_slice(&p.dport.to_be_bytes());
            b.extend_from_slice(&p.corrupt.udp_len.unwrap_or(len16).to_be_bytes());
            b.extend_from_slice(&[0, 0]);
            b.extend_from_slice(&p.payload);
            Ok((17, b, Some(6)))
        }
        Kind::Sctp => {
            let mut b = Vec::with_capacity(12 + p.payload.len());
            b.extend_from_slice(&p.sport.to_be_bytes());
            b.extend_from_slice(&p.dport.to_be_bytes());
            b.extend_from_slice(&[0; 8]); // verification tag, CRC32c (not checked by filters)
            b.extend_from_slice(&p.payload);
            Ok((132, b, None))
        }
        Kind::Icmp => {
            let (proto, default_ty) = if v6 { (58, 128) } else { (1, 8) };
            let mut b = vec![p.icmp_type.unwrap_or(default_ty), p.icmp_code, 0, 0];
            b.extend_from_slice(&p.icmp_rest);
            b.extend_from_slice(&p.payload);
            Ok((proto, b, Some(2)))
        }
        Kind::IpRaw(proto) => Ok((proto, p.payload.clone(), None)),
        Kind::Raw(_) | Kind::Arp => Err(invalid("internal: no L4 for a non-IP frame")),
    }
}

/// Fills the L4 checksum: `pseudo` is the pseudo-header's checksum contribution
/// (0 for ICMPv4, which has none).
fn fill_l4_checksum(p: &Packet, proto: u8, l4: &mut [u8], at: Option<usize>, pseudo: u64) {
    let Some(at) = at else { return };
    let sum = match p.corrupt.l4_checksum {
        Some(sum) => sum,
        None => {
            let sum = checksum(pseudo + sum_words(l4));
            // A computed UDP checksum of 0 is sent as 0xffff (0 means "none").
            if proto == 17 && sum == 0 {
                0xffff
            } else {
                sum
            }
        }
    };
    if let Some(slot) = l4.get_mut(at..at + 2) {
        slot.copy_from_slice(&sum.to_be_bytes());
    }
}

fn ipv4(p: &Packet, src: Ipv4Addr, dst: Ipv4Addr) -> Result<Vec<u8>, PacketError> {
    if !p.exts.is_empty() {
        return Err(invalid("IPv6 extension headers on an IPv4 packet"));
    }
    if p.ip4_options.len() > 40 {
        return Err(invalid(format!(
            "IPv4 options are {} bytes; at most 40 fit",
            p.ip4_options.len()
        )));
    }
    let (proto, mut l4, at) = l4(p, false)?;
    let l4_len =
        u16::try_from(l4.len()).map_err(|_| invalid("IP packet longer than 65535 bytes"))?;
    if proto != 1 {
        let mut pseudo = Vec::with_capacity(12);
        pseudo.extend_from_slice(&src.octets());
        pseudo.extend_from_slice(&dst.octets());
        pseudo.extend_from_slice(&[0, proto]);
        pseudo.extend_from_slice(&l4_len.to_be_bytes());
        fill_l4_checksum(p, proto, &mut l4, at, sum_words(&pseudo));
    } else {
        fill_l4_checksum(p, proto, &mut l4, at, 0);
    }

    let opt_len = p.ip4_options.len().div_ceil(4) * 4;
    let hdr_len = 20 + opt_len;
    let total = u16::try_from(hdr_len + l4.len())
        .map_err(|_| invalid("IP packet longer than 65535 bytes"))?;
    let version = p.corrupt.version.unwrap_or(4) & 0x0f;
    let ihl = p.corrupt.ihl.unwrap_or((hdr_len / 4) as u8) & 0x0f;
    let (frag_off, more) = p.frag4.unwrap_or((0, false));
    let flags_frag = (u16::from(p.dont_fragment) << 14) | (u16::from(more) << 13) | frag_off;

    let mut h = Vec::with_capacity(hdr_len + l4.len());
    h.push(version << 4 | ihl);
    h.push(p.tos);
    h.extend_from_slice(&p.corrupt.ip_total_len.unwrap_or(total).to_be_bytes());
    h.extend_from_slice(&p.ip_id.to_be_bytes());
    h.extend_from_slice(&flags_frag.to_be_bytes());
    h.push(p.ttl);
    h.push(p.corrupt.ip_proto.unwrap_or(proto));
    h.extend_from_slice(&[0, 0]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h.extend_from_slice(&p.ip4_options);
    h.resize(hdr_len, 0);
    let sum = p
        .corrupt
        .ip_checksum
        .unwrap_or_else(|| checksum(sum_words(&h)));
    if let Some(slot) = h.get_mut(10..12) {
        slot.copy_from_slice(&sum.to_be_bytes());
    }
    h.extend_from_slice(&l4);
    Ok(h)
}

fn ext_number(e: &Ext) -> u8 {
    match e {
        Ext::HopByHop => 0,
        Ext::Routing => 43,
        Ext::Fragment { .. } => 44,
        Ext::Ah => 51,
        Ext::DestOpts => 60,
    }
}

/// One extension header whose next-header field is `next`.
fn ext_bytes(e: &Ext, next: u8, id: u16) -> Vec<u8> {
    match e {
        // PadN option of 4 data bytes fills the 8-byte header.
        Ext::HopByHop | Ext::DestOpts => vec![next, 0, 1, 4, 0, 0, 0, 0],
        Ext::Routing => vec![next, 0, 0, 0, 0, 0, 0, 0],
        Ext::Fragment { offset, more } => {
            let off = (offset << 3) | u16::from(*more);
            let [o0, o1] = off.to_be_bytes();
            let [i0, i1, i2, i3] = u32::from(id).to_be_bytes();
            vec![next, 0, o0, o1, i0, i1, i2, i3]
        }
        // Length in 4-byte units minus 2: 16 bytes -> 2.
        Ext::Ah => vec![next, 2, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0],
    }
}

fn ipv6(p: &Packet, src: Ipv6Addr, dst: Ipv6Addr) -> Result<Vec<u8>, PacketError> {
    if !p.ip4_options.is_empty() || p.frag4.is_some() {
        return Err(invalid(
            "IPv4 options or an IPv4 fragment on an IPv6 packet (use ext/fragment)",
        ));
    }
    let (proto, mut l4, at) = l4(p, true)?;
    let l4_len = u32::try_from(l4.len()).map_err(|_| invalid("packet too long"))?;
    let mut pseudo = Vec::with_capacity(40);
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&l4_len.to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, proto]);
    fill_l4_checksum(p, proto, &mut l4, at, sum_words(&pseudo));

    // The chain: each header names the next; the last names the upper layer.
    let upper = p.corrupt.ip_proto.unwrap_or(proto);
    let mut exts = Vec::new();
    for (i, e) in p.exts.iter().enumerate() {
        let next = p.exts.get(i + 1).map_or(upper, ext_number);
        exts.extend(ext_bytes(e, next, p.ip_id));
    }
    let first = p.exts.first().map_or(upper, ext_number);
    let payload_len = u16::try_from(exts.len() + l4.len())
        .map_err(|_| invalid("IPv6 payload longer than 65535 bytes"))?;

    let version = u32::from(p.corrupt.version.unwrap_or(6) & 0x0f);
    let word0 = version << 28 | u32::from(p.tos) << 20 | p.flow_label;
    let mut h = Vec::with_capacity(40 + exts.len() + l4.len());
    h.extend_from_slice(&word0.to_be_bytes());
    h.extend_from_slice(&p.corrupt.ip_total_len.unwrap_or(payload_len).to_be_bytes());
    h.push(first);
    h.push(p.ttl);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h.extend_from_slice(&exts);
    h.extend_from_slice(&l4);
    Ok(h)
}

/// Sum of big-endian 16-bit words (an odd last byte is padded with zero).
pub(super) fn sum_words(data: &[u8]) -> u64 {
    data.chunks(2)
        .map(|c| match c {
            [a, b] => u64::from(u16::from_be_bytes([*a, *b])),
            [a] => u64::from(*a) << 8,
            _ => 0,
        })
        .sum()
}

/// The Internet checksum (RFC 1071) of a word sum: folded and complemented.
pub(super) fn checksum(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
