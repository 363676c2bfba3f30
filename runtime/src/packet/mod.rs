//! Test packets from a description: Ethernet, VLAN tags, IPv4/IPv6 (options, extension
//! headers, fragments), TCP/UDP/ICMP/ICMPv6, ARP and raw frames, with correct checksums.
//!
//! ```
//! use pol_runtime::packet::{Packet, Ext, SYN};
//! let syn = Packet::tcp().src("192.0.2.1").dst("198.51.100.1").sport(1234).dport(23)
//!     .flags(SYN).vlan(100).build().expect("valid packet");
//! let v6 = Packet::udp().src("2001:db8::1").ext(Ext::HopByHop).fragment(0, true).build();
//! assert!(syn.len() >= 60 && v6.is_ok());
//! ```
//!
//! Setters never fail; a bad address or an impossible combination is remembered and
//! [`Packet::build`] returns it as a [`PacketError`]. Fields can be corrupted on purpose
//! (`ihl`, `ip_total_len`, `ip_checksum`, ...) for negative tests.

mod encode;
#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;
pub const URG: u8 = 0x20;
pub const ECE: u8 = 0x40;
pub const CWR: u8 = 0x80;

/// An IPv6 extension header, in the order the builder calls add them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ext {
    /// Hop-by-hop options (next header 0), 8 bytes of PadN.
    HopByHop,
    /// Routing header (43), type 0 with no segments left, 8 bytes.
    Routing,
    /// Destination options (60), 8 bytes of PadN.
    DestOpts,
    /// Authentication header (51), 16 bytes (SPI 0x100, sequence 1, 4-byte ICV of zeros).
    Ah,
    /// Fragment header (44): offset in 8-byte units, more-fragments flag.
    Fragment { offset: u16, more: bool },
}

/// Why a packet description cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("{0:?} is not an IPv4 or IPv6 address")]
    BadAddress(String),
    #[error("the source {src} and destination {dst} are of different address families")]
    MixedFamilies { src: IpAddr, dst: IpAddr },
    #[error("{0}")]
    Invalid(String),
}

/// What follows the Ethernet header (and tags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Tcp,
    Udp,
    Sctp,
    Icmp,
    /// An IP header with this protocol number, then the payload.
    IpRaw(u8),
    /// No IP header: this ethertype, then the payload.
    Raw(u16),
    Arp,
}

/// A packet description; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    kind: Kind,
    eth_dst: [u8; 6],
    eth_src: [u8; 6],
    ethertype: Option<u16>,
    /// (TPID, TCI), outermost first.
    tags: Vec<(u16, u16)>,
    /// The outermost tag's TPID instead of its own.
    outer_tpid: Option<u16>,
    arp_op: u16,
    /// ARP sender / target hardware addresses (default: the Ethernet source, zero).
    arp_sha: Option<[u8; 6]>,
    arp_tha: [u8; 6],
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    force_v6: bool,
    error: Option<PacketError>,
    ttl: u8,
    tos: u8,
    ip_id: u16,
    dont_fragment: bool,
    frag4: Option<(u16, bool)>,
    ip4_options: Vec<u8>,
    exts: Vec<Ext>,
    flow_label: u32,
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    tcp_flags: u8,
    window: u16,
    tcp_options: Vec<u8>,
    icmp_type: Option<u8>,
    icmp_code: u8,
    icmp_rest: [u8; 4],
    payload: Vec<u8>,
    truncate: Option<usize>,
    corrupt: Corrupt,
}

/// Field values written as given instead of computed (negative tests).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Corrupt {
    version: Option<u8>,
    ihl: Option<u8>,
    ip_total_len: Option<u16>,
    ip_checksum: Option<u16>,
    ip_proto: Option<u8>,
    l4_checksum: Option<u16>,
    tcp_data_offset: Option<u8>,
    udp_len: Option<u16>,
}

/// Something that names an IP address: a string or a `std::net` address.
pub trait IntoAddr {
    fn into_addr(self) -> Result<IpAddr, PacketError>;
}

impl IntoAddr for &str {
    fn into_addr(self) -> Result<IpAddr, PacketError> {
        self.trim()
            .parse()
            .map_err(|_| PacketError::BadAddress(self.to_string()))
    }
}
impl IntoAddr for &String {
    fn into_addr(self) -> Result<IpAddr, PacketError> {
        self.as_str().into_addr()
    }
}
impl IntoAddr for IpAddr {
    fn into_addr(self) -> Result<IpAddr, PacketError> {
        Ok(self)
    }
}
impl IntoAddr for Ipv4Addr {
    fn into_addr(self) -> Result<IpAddr, PacketError> {
        Ok(IpAddr::V4(self))
    }
}
impl IntoAddr for Ipv6Addr {
    fn into_addr(self) -> Result<IpAddr, PacketError> {
        Ok(IpAddr::V6(self))
    }
}

impl Packet {
    fn new(kind: Kind) -> Packet {
        Packet {
            kind,
            eth_dst: [0x02, 0, 0, 0, 0, 0x02],
            eth_src: [0x02, 0, 0, 0, 0, 0x01],
            ethertype: None,
            tags: Vec::new(),
            outer_tpid: None,
            arp_op: 1,
            arp_sha: None,
            arp_tha: [0; 6],
            src: None,
            dst: None,
            force_v6: false,
            error: None,
            ttl: 64,
            tos: 0,
            ip_id: 1,
            dont_fragment: false,
            frag4: None,
            ip4_options: Vec::new(),
            exts: Vec::new(),
            flow_label: 0,
            sport: 40000,
            dport: 80,
            seq: 1,
            ack: 0,
            tcp_flags: SYN,
            window: 64240,
            tcp_options: Vec::new(),
            icmp_type: None,
            icmp_code: 0,
            icmp_rest: [0, 1, 0, 1],
            payload: Vec::new(),
            truncate: None,
            corrupt: Corrupt::default(),
        }
    }

    /// A TCP segment (default: SYN from port 40000 to 80, seq 1, window 64240).
    pub fn tcp() -> Packet {
        Packet::new(Kind::Tcp)
    }
    /// A UDP datagram (default ports 40000 → 80).
    pub fn udp() -> Packet {
        Packet::new(Kind::Udp)
    }
    /// An SCTP packet: the common header (ports, verification tag, checksum left 0).
    pub fn sctp() -> Packet {
        Packet::new(Kind::Sctp)
    }
    /// An ICMP echo request (ICMPv6 echo request, type 128, over IPv6).
    pub fn icmp() -> Packet {
        Packet::new(Kind::Icmp)
    }
    /// An ICMPv6 echo request: `icmp()` over IPv6.
    pub fn icmp6() -> Packet {
        Packet::new(Kind::Icmp).ip6()
    }
    /// An IP header with protocol `proto` followed directly by the payload.
    pub fn ip_raw(proto: u8) -> Packet {
        Packet::new(Kind::IpRaw(proto))
    }
    /// An Ethernet frame with `ethertype` and the payload, no IP header.
    pub fn raw(ethertype: u16) -> Packet {
        Packet::new(Kind::Raw(ethertype))
    }
    /// An ARP request (broadcast) from `src` asking for `dst`; IPv4 addresses only.
    pub fn arp() -> Packet {
        let mut p = Packet::new(Kind::Arp);
        p.eth_dst = [0xff; 6];
        p
    }

    /// The ARP operation (1 request, the default; 2 reply).
    pub fn arp_op(mut self, op: u16) -> Packet {
        self.arp_op = op;
        self
    }

    /// The ARP sender hardware address (default: the Ethernet source address).
    pub fn arp_sha(mut self, mac: [u8; 6]) -> Packet {
        self.arp_sha = Some(mac);
        self
    }

    /// The ARP target hardware address (default: zero, as in a request).
    pub fn arp_tha(mut self, mac: [u8; 6]) -> Packet {
        self.arp_tha = mac;
        self
    }

    fn fail(mut self, e: PacketError) -> Packet {
        self.error.get_or_insert(e);
        self
    }

    /// Source address; an IPv6 address makes the packet IPv6.
    pub fn src(mut self, addr: impl IntoAddr) -> Packet {
        match addr.into_addr() {
            Ok(a) => {
                self.src = Some(a);
                self
            }
            Err(e) => self.fail(e),
        }
    }
    /// Destination address; an IPv6 address makes the packet IPv6.
    pub fn dst(mut self, addr: impl IntoAddr) -> Packet {
        match addr.into_addr() {
            Ok(a) => {
                self.dst = Some(a);
                self
            }
            Err(e) => self.fail(e),
        }
    }
    /// Use an IPv6 header (default addresses 2001:db8::1 → 2001:db8::2).
    pub fn ip6(mut self) -> Packet {
        self.force_v6 = true;
        self
    }
    pub fn sport(mut self, port: u16) -> Packet {
        self.sport = port;
        self
    }
    pub fn dport(mut self, port: u16) -> Packet {
        self.dport = port;
        self
    }
    /// TCP flags, e.g. `SYN | ACK`.
    pub fn flags(mut self, flags: u8) -> Packet {
        self.tcp_flags = flags;
        self
    }
    pub fn seq(mut self, seq: u32) -> Packet {
        self.seq = seq;
        self
    }
    pub fn ack(mut self, ack: u32) -> Packet {
        self.ack = ack;
        self
    }
    pub fn window(mut self, window: u16) -> Packet {
        self.window = window;
        self
    }
    /// TCP options (padded with zeros to a multiple of 4; at most 40 bytes).
    pub fn tcp_options(mut self, options: &[u8]) -> Packet {
        self.tcp_options = options.to_vec();
        self
    }
    /// ICMP type (default echo request: 8, or 128 for ICMPv6).
    pub fn icmp_type(mut self, ty: u8) -> Packet {
        self.icmp_type = Some(ty);
        self
    }
    /// The identifier of an echo request or reply (1 unless set).
    pub fn echo_id(mut self, id: u16) -> Packet {
        self.icmp_rest[..2].copy_from_slice(&id.to_be_bytes());
        self
    }
    pub fn icmp_code(mut self, code: u8) -> Packet {
        self.icmp_code = code;
        self
    }
    /// IPv4 TTL or IPv6 hop limit (default 64).
    pub fn ttl(mut self, ttl: u8) -> Packet {
        self.ttl = ttl;
        self
    }
    /// IPv4 TOS or IPv6 traffic class.
    pub fn tos(mut self, tos: u8) -> Packet {
        self.tos = tos;
        self
    }
    pub fn ip_id(mut self, id: u16) -> Packet {
        self.ip_id = id;
        self
    }
    pub fn dont_fragment(mut self) -> Packet {
        self.dont_fragment = true;
        self
    }
    pub fn flow_label(mut self, label: u32) -> Packet {
        self.flow_label = label & 0xf_ffff;
        self
    }
    /// IPv4 options (padded with zeros to a multiple of 4; at most 40 bytes), so IHL > 5.
    pub fn ip4_options(mut self, options: &[u8]) -> Packet {
        self.ip4_options = options.to_vec();
        self
    }
    /// An IPv4 fragment: offset in 8-byte units, more-fragments flag. The L4 header is
    /// still written after the IP header (a non-first fragment that looks like TCP); use
    /// [`Packet::ip_raw`] for a fragment of plain bytes.
    pub fn frag4(mut self, offset: u16, more: bool) -> Packet {
        if offset > 0x1fff {
            return self.fail(PacketError::Invalid(format!(
                "IPv4 fragment offset {offset} does not fit in 13 bits"
            )));
        }
        self.frag4 = Some((offset, more));
        self
    }
    /// Appends an IPv6 extension header (makes the packet IPv6).
    pub fn ext(mut self, ext: Ext) -> Packet {
        if let Ext::Fragment { offset, .. } = ext {
            if offset > 0x1fff {
                return self.fail(PacketError::Invalid(format!(
                    "IPv6 fragment offset {offset} does not fit in 13 bits"
                )));
            }
        }
        self.exts.push(ext);
        self.force_v6 = true;
        self
    }
    /// Appends an IPv6 fragment header: `ext(Ext::Fragment { offset, more })`.
    pub fn fragment(self, offset: u16, more: bool) -> Packet {
        self.ext(Ext::Fragment { offset, more })
    }
    /// Pushes an 802.1Q tag (TPID 0x8100); the first tag pushed is the outermost.
    pub fn vlan(self, vid: u16) -> Packet {
        self.push_tag(0x8100, vid)
    }
    /// Pushes an 802.1ad service tag (TPID 0x88a8), normally the outer one.
    pub fn qinq(self, vid: u16) -> Packet {
        self.push_tag(0x88a8, vid)
    }
    /// Sets the TPID of the outermost tag (pushed before or after): `vlan(100)` with
    /// `outer_tpid(0x9100)` is a pre-standard QinQ tag.
    pub fn outer_tpid(mut self, tpid: u16) -> Packet {
        self.outer_tpid = Some(tpid);
        self
    }
    /// Pushes a tag with any TPID and TCI (priority, DEI and VID as given).
    pub fn tag(mut self, tpid: u16, tci: u16) -> Packet {
        self.tags.push((tpid, tci));
        self
    }
    fn push_tag(self, tpid: u16, vid: u16) -> Packet {
        if vid > 0x0fff {
            return self.fail(PacketError::Invalid(format!(
                "VLAN id {vid} does not fit in 12 bits"
            )));
        }
        self.tag(tpid, vid)
    }
    pub fn eth_src(mut self, mac: [u8; 6]) -> Packet {
        self.eth_src = mac;
        self
    }
    pub fn eth_dst(mut self, mac: [u8; 6]) -> Packet {
        self.eth_dst = mac;
        self
    }
    /// Writes this ethertype after the tags instead of the computed one.
    pub fn ethertype(mut self, ethertype: u16) -> Packet {
        self.ethertype = Some(ethertype);
        self
    }
    pub fn payload(mut self, bytes: &[u8]) -> Packet {
        self.payload = bytes.to_vec();
        self
    }
    /// Cuts the finished frame to `len` bytes (and skips padding to 60).
    pub fn truncate(mut self, len: usize) -> Packet {
        self.truncate = Some(len);
        self
    }

    // ---- corruption: written as given, not computed ----

    /// IP version nibble.
    pub fn ip_version(mut self, v: u8) -> Packet {
        self.corrupt.version = Some(v);
        self
    }
    /// IPv4 header length nibble (in 4-byte words).
    pub fn ihl(mut self, ihl: u8) -> Packet {
        self.corrupt.ihl = Some(ihl);
        self
    }
    /// IPv4 total length, or IPv6 payload length.
    pub fn ip_total_len(mut self, len: u16) -> Packet {
        self.corrupt.ip_total_len = Some(len);
        self
    }
    pub fn ip_checksum(mut self, sum: u16) -> Packet {
        self.corrupt.ip_checksum = Some(sum);
        self
    }
    /// IPv4 protocol, or the next-header value that introduces the L4 header in IPv6.
    pub fn ip_proto(mut self, proto: u8) -> Packet {
        self.corrupt.ip_proto = Some(proto);
        self
    }
    /// TCP, UDP or ICMP checksum.
    pub fn l4_checksum(mut self, sum: u16) -> Packet {
        self.corrupt.l4_checksum = Some(sum);
        self
    }
    /// TCP data offset nibble (in 4-byte words).
    pub fn tcp_data_offset(mut self, doff: u8) -> Packet {
        self.corrupt.tcp_data_offset = Some(doff);
        self
    }
    pub fn udp_len(mut self, len: u16) -> Packet {
        self.corrupt.udp_len = Some(len);
        self
    }

    /// The frame's bytes: padded to 60 bytes unless truncated.
    pub fn build(&self) -> Result<Vec<u8>, PacketError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        encode::build(self)
    }
}
