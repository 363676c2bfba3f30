//! Random packets for the differential test: drawn from the rule pools and from the values
//! the rules mention, sometimes malformed; a plain description the reference reads, built
//! into a frame with the runtime's packet builder.

use crate::rules::*;
use pol_runtime::packet::{Ext, Packet, ACK, FIN, PSH, RST, SYN};
use std::net::IpAddr;

#[derive(Debug, Clone)]
pub struct Pkt {
    /// Ethernet source and destination addresses (48-bit values).
    pub smac: u64,
    pub dmac: u64,
    /// (TPID, TCI), outermost first.
    pub tags: Vec<(u16, u16)>,
    pub body: Body,
    pub bad: Bad,
}

#[derive(Debug, Clone)]
pub enum Body {
    /// ARP for IPv4 over Ethernet, with its sender and target hardware addresses.
    Arp {
        sha: u64,
        tha: u64,
    },
    /// A frame of this EtherType, not IP.
    Raw(u16),
    Ip(Ip),
}

#[derive(Debug, Clone)]
pub struct Ip {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ttl: u8,
    /// IPv4 TOS byte (DSCP and ECN), identification and don't-fragment flag.
    pub tos: u8,
    pub id: u16,
    pub df: bool,
    pub l4: L4,
    /// IPv4 fragment: offset (8-byte units), more fragments.
    pub frag4: Option<(u16, bool)>,
    /// IPv4 option bytes (a multiple of 4).
    pub opts: usize,
    /// IPv6 extension headers, fragment header included.
    pub exts: Vec<Ext>,
    /// Bytes after the L4 header.
    pub payload: usize,
}

#[derive(Debug, Clone, Copy)]
pub enum L4 {
    Tcp {
        sport: u16,
        dport: u16,
        flags: u8,
    },
    Udp {
        sport: u16,
        dport: u16,
    },
    Sctp {
        sport: u16,
        dport: u16,
    },
    /// ICMP over IPv4, ICMPv6 over IPv6.
    Icmp {
        ty: u8,
        code: u8,
    },
    /// Another protocol: no L4 header pol reads.
    Raw(u8),
}

/// How a packet is made malformed (besides three tags or seven extension headers, which
/// are plain descriptions).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bad {
    None,
    /// IPv4 IHL 4.
    Ihl4,
    /// TCP data offset 4.
    TcpDoff4,
    /// The frame cut to this many bytes, inside the tags or the IP packet.
    Truncate(usize),
    /// The IP length (IPv4 total, IPv6 payload) ends `l4` bytes into the L4 header; the
    /// frame is cut there too when `cut`, else the rest of the header follows the IP packet.
    ShortL4 {
        l4: usize,
        cut: bool,
    },
}

impl Bad {
    /// A coarse name, to group mismatches by.
    pub fn label(self) -> &'static str {
        match self {
            Bad::None => "as built",
            Bad::Ihl4 => "IHL 4",
            Bad::TcpDoff4 => "TCP data offset 4",
            Bad::Truncate(_) => "frame cut short",
            Bad::ShortL4 { cut: true, .. } => "IP length and frame end inside the L4 header",
            Bad::ShortL4 { cut: false, .. } => {
                "IP length ends inside the L4 header, the frame goes on"
            }
        }
    }
}

impl Pkt {
    pub fn l3_off(&self) -> usize {
        14 + 4 * self.tags.len()
    }
}

impl Ip {
    pub fn v6(&self) -> bool {
        self.src.is_ipv6()
    }
    /// IPv4 header with options, or the fixed IPv6 header.
    pub fn hdr_len(&self) -> usize {
        if self.v6() {
            40
        } else {
            20 + self.opts
        }
    }
    pub fn ext_len(&self) -> usize {
        self.exts
            .iter()
            .map(|e| if *e == Ext::Ah { 16 } else { 8 })
            .sum()
    }
    /// The L4 header as written (ICMP: type, code, checksum and 4 more bytes).
    pub fn l4_hdr(&self) -> usize {
        match self.l4 {
            L4::Tcp { .. } => 20,
            L4::Udp { .. } | L4::Icmp { .. } => 8,
            L4::Sctp { .. } => 12,
            L4::Raw(_) => 0,
        }
    }
    /// The IP length field as written: IPv4 total length, IPv6 payload length.
    pub fn len_field(&self, bad: Bad) -> usize {
        let l4 = match bad {
            Bad::ShortL4 { l4, .. } => l4,
            _ => self.l4_hdr() + self.payload,
        };
        if self.v6() {
            self.ext_len() + l4
        } else {
            self.hdr_len() + l4
        }
    }
    pub fn proto(&self) -> u8 {
        match self.l4 {
            L4::Tcp { .. } => 6,
            L4::Udp { .. } => 17,
            L4::Sctp { .. } => 132,
            L4::Icmp { .. } if self.v6() => 58,
            L4::Icmp { .. } => 1,
            L4::Raw(p) => p,
        }
    }
}

pub fn ext_number(e: &Ext) -> u8 {
    match e {
        Ext::HopByHop => 0,
        Ext::Routing => 43,
        Ext::Fragment { .. } => 44,
        Ext::Ah => 51,
        Ext::DestOpts => 60,
    }
}

/// The frame's bytes.
pub fn build(p: &Pkt) -> Vec<u8> {
    let mut b = match &p.body {
        Body::Arp { sha, tha } => Packet::arp().arp_sha(mac(*sha)).arp_tha(mac(*tha)),
        Body::Raw(ty) => Packet::raw(*ty).payload(&[0x5a; 46]),
        Body::Ip(ip) => {
            let mut b = match ip.l4 {
                L4::Tcp {
                    sport,
                    dport,
                    flags,
                } => Packet::tcp().sport(sport).dport(dport).flags(flags),
                L4::Udp { sport, dport } => Packet::udp().sport(sport).dport(dport),
                L4::Sctp { sport, dport } => Packet::sctp().sport(sport).dport(dport),
                L4::Icmp { ty, code } => Packet::icmp().icmp_type(ty).icmp_code(code),
                L4::Raw(proto) => Packet::ip_raw(proto),
            };
            b = b
                .src(ip.src)
                .dst(ip.dst)
                .ttl(ip.ttl)
                .payload(&vec![0xab; ip.payload]);
            if !ip.v6() {
                b = b.tos(ip.tos).ip_id(ip.id);
                if ip.df {
                    b = b.dont_fragment();
                }
            }
            if ip.opts > 0 {
                b = b.ip4_options(&vec![1; ip.opts]); // NOPs
            }
            if let Some((off, more)) = ip.frag4 {
                b = b.frag4(off, more);
            }
            for e in &ip.exts {
                b = b.ext(*e);
            }
            b
        }
    };
    b = b.eth_src(mac(p.smac)).eth_dst(mac(p.dmac));
    for &(tpid, tci) in &p.tags {
        b = b.tag(tpid, tci);
    }
    b = match (p.bad, &p.body) {
        (Bad::None, _) => b,
        (Bad::Ihl4, _) => b.ihl(4),
        (Bad::TcpDoff4, _) => b.tcp_data_offset(4),
        (Bad::Truncate(n), _) => b.truncate(n),
        (Bad::ShortL4 { cut, .. }, Body::Ip(ip)) => {
            let len = ip.len_field(p.bad);
            let b = b.ip_total_len(len as u16);
            let ip_end = p.l3_off() + len + if ip.v6() { 40 } else { 0 };
            if cut {
                b.truncate(ip_end)
            } else {
                b
            }
        }
        (Bad::ShortL4 { .. }, _) => b,
    };
    b.build()
        .expect("a generated packet is a valid description")
}

/// A 48-bit value as the six bytes of a MAC address.
fn mac(m: u64) -> [u8; 6] {
    let b = m.to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

/// A packet: mostly well-formed, from the pools and the rules' values.
pub fn packet(rng: &mut Rng, hints: &Hints, malformed: bool) -> Pkt {
    let ntags = match rng.range(0, 99) {
        0..=59 => 0,
        60..=84 => 1,
        85..=97 => 2,
        _ => 3,
    };
    let tags = (0..ntags)
        .map(|i| {
            let tpid = if i == 0 && ntags > 1 && rng.chance(50) {
                rng.pick(&[0x88a8, 0x88a8, 0x9100, 0x9200])
            } else if rng.chance(10) {
                rng.pick(&[0x88a8, 0x9100])
            } else {
                0x8100
            };
            let vid = if !hints.vlans.is_empty() && rng.chance(50) {
                rng.pick(&hints.vlans)
            } else {
                rng.pick(&VLANS)
            };
            let pcp = if rng.chance(20) {
                rng.range(1, 7) as u16
            } else {
                0
            };
            (tpid, vid | pcp << 13)
        })
        .collect();
    let body = match rng.range(0, 99) {
        0..=2 => Body::Arp {
            sha: rng.pick(&MACS),
            tha: rng.pick(&MACS),
        },
        3..=4 => Body::Raw(0x88cc),
        _ => Body::Ip(ip(rng, hints)),
    };
    let arp = matches!(body, Body::Arp { .. });
    let mut p = Pkt {
        smac: rng.pick(&MACS),
        dmac: if arp && rng.chance(60) {
            0xffff_ffff_ffff
        } else {
            rng.pick(&MACS)
        },
        tags,
        body,
        bad: Bad::None,
    };
    if malformed && rng.chance(12) {
        if let Body::Ip(ip) = &p.body {
            let natural = p.l3_off() + ip.len_field(Bad::None) + if ip.v6() { 40 } else { 0 };
            let mut options = vec![Bad::Truncate(rng.range(14, natural as u64 - 1) as usize)];
            if !ip.v6() {
                options.push(Bad::Ihl4);
            }
            if matches!(ip.l4, L4::Tcp { .. }) {
                options.push(Bad::TcpDoff4);
            }
            if ip.l4_hdr() > 0 {
                let l4 = rng.range(0, 7.min(ip.l4_hdr() as u64 - 1)) as usize;
                let l4 = if matches!(ip.l4, L4::Tcp { .. }) && rng.chance(50) {
                    rng.range(8, 19) as usize
                } else {
                    l4
                };
                options.push(Bad::ShortL4 {
                    l4,
                    cut: rng.chance(50),
                });
            }
            p.bad = rng.pick(&options);
        }
    }
    p
}

fn addr(rng: &mut Rng, hints: &Hints, want6: bool) -> IpAddr {
    let fam: Vec<IpAddr> = hints
        .addrs
        .iter()
        .copied()
        .filter(|a| a.is_ipv6() == want6)
        .collect();
    if !fam.is_empty() && rng.chance(55) {
        let a = rng.pick(&fam);
        if !rng.chance(25) {
            return a;
        }
        // A neighbour: the last byte changed, inside or just outside a prefix.
        return match a {
            IpAddr::V4(a) => {
                let mut o = a.octets();
                o[3] ^= 1 << rng.range(0, 7);
                IpAddr::V4(o.into())
            }
            IpAddr::V6(a) => {
                let mut o = a.octets();
                o[rng.pick(&[7usize, 8, 15])] ^= 1 << rng.range(0, 7);
                IpAddr::V6(o.into())
            }
        };
    }
    let wide = rng.chance(10);
    if want6 {
        IpAddr::V6(v6(rng, wide))
    } else {
        IpAddr::V4(v4(rng, wide))
    }
}

fn port(rng: &mut Rng, hints: &Hints) -> u16 {
    if !hints.ports.is_empty() && rng.chance(50) {
        rng.pick(&hints.ports)
    } else if rng.chance(85) {
        rng.pick(&PORTS)
    } else {
        rng.range(0, 65535) as u16
    }
}

fn small(rng: &mut Rng, hints: &Hints, pool: &[u8]) -> u8 {
    if !hints.small.is_empty() && rng.chance(30) {
        rng.pick(&hints.small)
    } else {
        rng.pick(pool)
    }
}

fn ip(rng: &mut Rng, hints: &Hints) -> Ip {
    let v6 = rng.chance(40);
    let l4 = match rng.range(0, 9) {
        0..=3 => L4::Tcp {
            sport: port(rng, hints),
            dport: port(rng, hints),
            flags: match rng.range(0, 7) {
                0 => rng.range(0, 255) as u8,
                n => [SYN, SYN | ACK, ACK, FIN | ACK, RST, PSH | ACK, 0][n as usize - 1],
            },
        },
        4..=6 => L4::Udp {
            sport: port(rng, hints),
            dport: port(rng, hints),
        },
        7..=8 => L4::Icmp {
            ty: small(rng, hints, &ICMP_TYPES),
            code: rng.range(0, 4) as u8,
        },
        _ if rng.chance(50) => L4::Sctp {
            sport: port(rng, hints),
            dport: port(rng, hints),
        },
        _ => L4::Raw(rng.pick(&[47, 50, 132])),
    };
    let mut ip = Ip {
        src: addr(rng, hints, v6),
        dst: addr(rng, hints, v6),
        ttl: small(rng, hints, &TTLS),
        tos: rng.pick(&TOS),
        id: rng.pick(&IDS),
        df: rng.chance(30),
        l4,
        frag4: None,
        opts: 0,
        exts: vec![],
        payload: if rng.chance(70) {
            0
        } else {
            rng.range(1, 30) as usize
        },
    };
    let fragment = |rng: &mut Rng| {
        if rng.chance(50) {
            (0, true)
        } else {
            (rng.range(1, 200) as u16, rng.chance(50))
        }
    };
    if v6 {
        if rng.chance(25) {
            let pool = [Ext::HopByHop, Ext::Routing, Ext::DestOpts, Ext::Ah];
            let n = if rng.chance(10) { 7 } else { rng.range(1, 3) };
            ip.exts = (0..n).map(|_| rng.pick(&pool)).collect();
        }
        if rng.chance(15) {
            let (offset, more) = fragment(rng);
            let at = rng.range(0, ip.exts.len() as u64) as usize;
            ip.exts.insert(at, Ext::Fragment { offset, more });
        }
    } else {
        if rng.chance(10) {
            ip.opts = rng.pick(&[4, 8, 40]);
        }
        if rng.chance(15) {
            ip.frag4 = Some(fragment(rng));
        }
    }
    ip
}

/// BPF_PROG_TEST_RUN on tc refuses an untagged IPv4 (IPv6) frame shorter than its 20-byte
/// (40-byte) IP header, so such packets cannot be run there.
pub fn tc_cannot_run(p: &Pkt, frame: usize) -> bool {
    match &p.body {
        Body::Ip(ip) if p.tags.is_empty() => frame < 14 + if ip.v6() { 40 } else { 20 },
        _ => false,
    }
}
