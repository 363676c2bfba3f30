//! The catalog of packet fields a filter can test: name, type, the layer that must be
//! present, and where the packet parser leaves the value in the packet record.

use super::types::Ty;
use crate::diag::suggest;
use crate::packet::record::*;
use serde::Serialize;

/// How a field's value is stored in the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Slot {
    /// An unsigned integer of 1, 2 or 4 bytes, host order; or a MAC address, 6 bytes
    /// (`MAC_SIZE`) holding the 48-bit value in host order.
    Int { off: i16, size: u8 },
    /// A bit mask over an integer slot: the field is true when any bit is set.
    Bits { off: i16, size: u8, mask: u32 },
    /// An address in network order: 4 bytes (IPv4) or 16 (IPv6) at `off`, preceded by a
    /// u32 prefix length (an LPM-trie key starts at `off - 4`).
    Addr { off: i16 },
    /// A bit of the record's layer flags.
    Flag(u32),
    /// A boolean: the integer slot at `off` of `size` bytes equals `value`
    /// (`eth.broadcast` is `eth.dst == ff:ff:ff:ff:ff:ff`).
    Eq { off: i16, size: u8, value: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Field {
    pub name: &'static str,
    pub ty: Ty,
    /// The field exists when any of these layer bits is set.
    pub layer: u32,
    pub slot: Slot,
    pub doc: &'static str,
}

const IP: u32 = F_IP4 | F_IP6;
const L4: u32 = F_TCP | F_UDP | F_SCTP;
const fn int(off: i16, size: u8) -> Slot {
    Slot::Int { off, size }
}
const fn bits(off: i16, size: u8, mask: u32) -> Slot {
    Slot::Bits { off, size, mask }
}
/// The VLAN layer bit; `u32::MAX` marks "always present" (ethernet).
const ETH: u32 = u32::MAX;

pub const FIELDS: &[Field] = &[
    Field {
        name: "eth.src",
        ty: Ty::Mac,
        layer: ETH,
        slot: int(OFF_ETH_SRC, MAC_SIZE),
        doc: "Ethernet source (MAC) address",
    },
    Field {
        name: "eth.dst",
        ty: Ty::Mac,
        layer: ETH,
        slot: int(OFF_ETH_DST, MAC_SIZE),
        doc: "Ethernet destination (MAC) address",
    },
    Field {
        name: "eth.broadcast",
        ty: Ty::Bool,
        layer: ETH,
        slot: Slot::Eq {
            off: OFF_ETH_DST,
            size: MAC_SIZE,
            value: 0xffff_ffff_ffff,
        },
        doc: "the frame is sent to the broadcast address ff:ff:ff:ff:ff:ff",
    },
    Field {
        name: "eth.multicast",
        ty: Ty::Bool,
        layer: ETH,
        // The group bit: the low bit of the first byte on the wire, the top byte of the
        // 48-bit value (broadcast is multicast too, as in pcap's `ether multicast`).
        slot: bits(OFF_ETH_DST + 5, 1, 0x01),
        doc: "the frame is sent to a group (multicast or broadcast) address",
    },
    Field {
        name: "eth.type",
        ty: Ty::U16,
        layer: ETH,
        slot: int(OFF_ETH_TYPE, 2),
        doc: "EtherType after all VLAN tags",
    },
    Field {
        name: "vlan.id",
        ty: Ty::U16,
        layer: F_VLAN,
        slot: int(OFF_VLAN_OUTER, 2),
        doc: "VLAN ID of the outer tag",
    },
    Field {
        name: "vlan.inner",
        ty: Ty::U16,
        layer: F_VLAN,
        slot: int(OFF_VLAN_INNER, 2),
        doc: "VLAN ID of the inner (QinQ) tag, 0 if none",
    },
    Field {
        name: "frame.len",
        ty: Ty::U32,
        layer: ETH,
        slot: int(OFF_FRAME_LEN, 4),
        doc: "length of the whole frame in bytes, as on the wire (all its buffers)",
    },
    Field {
        name: "ip4.ihl",
        ty: Ty::U8,
        layer: F_IP4,
        slot: int(OFF_IP4_IHL, 1),
        doc: "IPv4 header length in 32-bit words (5 without options)",
    },
    Field {
        name: "ip4.dscp",
        ty: Ty::U8,
        layer: F_IP4,
        slot: int(OFF_IP4_DSCP, 1),
        doc: "IPv4 DSCP (the top 6 bits of the TOS byte)",
    },
    Field {
        name: "ip4.ecn",
        ty: Ty::U8,
        layer: F_IP4,
        slot: int(OFF_IP4_ECN, 1),
        doc: "IPv4 ECN (the low 2 bits of the TOS byte)",
    },
    Field {
        name: "ip4.id",
        ty: Ty::U16,
        layer: F_IP4,
        slot: int(OFF_IP4_ID, 2),
        doc: "IPv4 identification",
    },
    Field {
        name: "ip4.df",
        ty: Ty::Bool,
        layer: F_IP4,
        slot: bits(OFF_IP4_FRAG, 2, 0x4000),
        doc: "IPv4 don't-fragment flag",
    },
    Field {
        name: "ip4.mf",
        ty: Ty::Bool,
        layer: F_IP4,
        slot: bits(OFF_IP4_FRAG, 2, 0x2000),
        doc: "IPv4 more-fragments flag",
    },
    Field {
        name: "ip4.frag_offset",
        ty: Ty::U16,
        layer: F_IP4,
        slot: int(OFF_IP4_FRAG_OFFSET, 2),
        doc: "IPv4 fragment offset in 8-byte units",
    },
    Field {
        name: "ip6.first_next",
        ty: Ty::U8,
        layer: F_IP6,
        slot: int(OFF_IP6_NEXTHDR, 1),
        doc: "the next header of the IPv6 header itself, the first of the chain (`ip6.next` and `ip.proto` are the last)",
    },
    Field {
        name: "vlan.tpid",
        ty: Ty::U16,
        layer: F_VLAN,
        slot: int(OFF_VLAN_TPID, 2),
        doc: "TPID of the outer tag: 0x8100 (802.1Q), 0x88a8 (802.1ad), 0x9100 or 0x9200 (pre-standard QinQ)",
    },
    Field {
        name: "vlan.depth",
        ty: Ty::U8,
        layer: ETH,
        slot: int(OFF_VLAN_COUNT, 1),
        doc: "number of VLAN tags (0..2)",
    },
    Field {
        name: "ip.version",
        ty: Ty::U8,
        layer: IP,
        slot: int(OFF_IP_VERSION, 1),
        doc: "4 or 6",
    },
    Field {
        name: "ip.src",
        ty: Ty::Ip,
        layer: IP,
        slot: Slot::Addr { off: OFF_SRC },
        doc: "source address, IPv4 or IPv6",
    },
    Field {
        name: "ip.dst",
        ty: Ty::Ip,
        layer: IP,
        slot: Slot::Addr { off: OFF_DST },
        doc: "destination address, IPv4 or IPv6",
    },
    Field {
        name: "ip.proto",
        ty: Ty::U8,
        layer: IP,
        slot: int(OFF_IP_PROTO, 1),
        doc: "L4 protocol (IPv6: after extension headers)",
    },
    Field {
        name: "ip.ttl",
        ty: Ty::U8,
        layer: IP,
        slot: int(OFF_IP_TTL, 1),
        doc: "TTL or hop limit",
    },
    Field {
        name: "ip.len",
        ty: Ty::U32,
        layer: IP,
        slot: int(OFF_IP_LEN, 4),
        doc: "total length of the IP packet",
    },
    Field {
        name: "ip.fragment",
        ty: Ty::Bool,
        layer: IP,
        slot: Slot::Flag(F_FRAG),
        doc: "any fragment, first or later",
    },
    Field {
        name: "ip.later_fragment",
        ty: Ty::Bool,
        layer: IP,
        slot: Slot::Flag(F_FRAG_LATER),
        doc: "a fragment other than the first (no L4 header)",
    },
    Field {
        name: "ip4.src",
        ty: Ty::Ip4,
        layer: F_IP4,
        slot: Slot::Addr { off: OFF_SRC },
        doc: "IPv4 source address",
    },
    Field {
        name: "ip4.dst",
        ty: Ty::Ip4,
        layer: F_IP4,
        slot: Slot::Addr { off: OFF_DST },
        doc: "IPv4 destination address",
    },
    Field {
        name: "ip4.proto",
        ty: Ty::U8,
        layer: F_IP4,
        slot: int(OFF_IP_PROTO, 1),
        doc: "IPv4 protocol",
    },
    Field {
        name: "ip4.ttl",
        ty: Ty::U8,
        layer: F_IP4,
        slot: int(OFF_IP_TTL, 1),
        doc: "IPv4 TTL",
    },
    Field {
        name: "ip6.src",
        ty: Ty::Ip6,
        layer: F_IP6,
        slot: Slot::Addr { off: OFF_SRC },
        doc: "IPv6 source address",
    },
    Field {
        name: "ip6.dst",
        ty: Ty::Ip6,
        layer: F_IP6,
        slot: Slot::Addr { off: OFF_DST },
        doc: "IPv6 destination address",
    },
    Field {
        name: "ip6.next",
        ty: Ty::U8,
        layer: F_IP6,
        slot: int(OFF_IP_PROTO, 1),
        doc: "IPv6 next header after extension headers",
    },
    Field {
        name: "ip6.hoplimit",
        ty: Ty::U8,
        layer: F_IP6,
        slot: int(OFF_IP_TTL, 1),
        doc: "IPv6 hop limit",
    },
    Field {
        name: "tcp.sport",
        ty: Ty::Port,
        layer: F_TCP,
        slot: int(OFF_SPORT, 2),
        doc: "TCP source port",
    },
    Field {
        name: "tcp.dport",
        ty: Ty::Port,
        layer: F_TCP,
        slot: int(OFF_DPORT, 2),
        doc: "TCP destination port",
    },
    Field {
        name: "tcp.flags",
        ty: Ty::U8,
        layer: F_TCP,
        slot: int(OFF_TCP_FLAGS, 1),
        doc: "TCP flags byte",
    },
    Field {
        name: "tcp.fin",
        ty: Ty::Bool,
        layer: F_TCP,
        slot: bits(OFF_TCP_FLAGS, 1, 0x01),
        doc: "FIN flag",
    },
    Field {
        name: "tcp.syn",
        ty: Ty::Bool,
        layer: F_TCP,
        slot: bits(OFF_TCP_FLAGS, 1, 0x02),
        doc: "SYN flag",
    },
    Field {
        name: "tcp.rst",
        ty: Ty::Bool,
        layer: F_TCP,
        slot: bits(OFF_TCP_FLAGS, 1, 0x04),
        doc: "RST flag",
    },
    Field {
        name: "tcp.psh",
        ty: Ty::Bool,
        layer: F_TCP,
        slot: bits(OFF_TCP_FLAGS, 1, 0x08),
        doc: "PSH flag",
    },
    Field {
        name: "tcp.ack",
        ty: Ty::Bool,
        layer: F_TCP,
        slot: bits(OFF_TCP_FLAGS, 1, 0x10),
        doc: "ACK flag",
    },
    Field {
        name: "tcp.urg",
        ty: Ty::Bool,
        layer: F_TCP,
        slot: bits(OFF_TCP_FLAGS, 1, 0x20),
        doc: "URG flag",
    },
    Field {
        name: "udp.sport",
        ty: Ty::Port,
        layer: F_UDP,
        slot: int(OFF_SPORT, 2),
        doc: "UDP source port",
    },
    Field {
        name: "udp.dport",
        ty: Ty::Port,
        layer: F_UDP,
        slot: int(OFF_DPORT, 2),
        doc: "UDP destination port",
    },
    Field {
        name: "l4.sport",
        ty: Ty::Port,
        layer: L4,
        slot: int(OFF_SPORT, 2),
        doc: "TCP, UDP or SCTP source port",
    },
    Field {
        name: "l4.dport",
        ty: Ty::Port,
        layer: L4,
        slot: int(OFF_DPORT, 2),
        doc: "TCP, UDP or SCTP destination port",
    },
    Field {
        name: "icmp.type",
        ty: Ty::U8,
        layer: F_ICMP,
        slot: int(OFF_ICMP_TYPE, 1),
        doc: "ICMP type",
    },
    Field {
        name: "icmp.code",
        ty: Ty::U8,
        layer: F_ICMP,
        slot: int(OFF_ICMP_CODE, 1),
        doc: "ICMP code",
    },
    Field {
        name: "icmp6.type",
        ty: Ty::U8,
        layer: F_ICMP6,
        slot: int(OFF_ICMP_TYPE, 1),
        doc: "ICMPv6 type",
    },
    Field {
        name: "icmp6.code",
        ty: Ty::U8,
        layer: F_ICMP6,
        slot: int(OFF_ICMP_CODE, 1),
        doc: "ICMPv6 code",
    },
    Field {
        name: "sctp.sport",
        ty: Ty::Port,
        layer: F_SCTP,
        slot: int(OFF_SPORT, 2),
        doc: "SCTP source port",
    },
    Field {
        name: "sctp.dport",
        ty: Ty::Port,
        layer: F_SCTP,
        slot: int(OFF_DPORT, 2),
        doc: "SCTP destination port",
    },
    Field {
        name: "arp.op",
        ty: Ty::U16,
        layer: F_ARP,
        slot: int(OFF_ARP_OP, 2),
        doc: "ARP operation: 1 request, 2 reply",
    },
    Field {
        name: "arp.spa",
        ty: Ty::Ip4,
        layer: F_ARP,
        slot: Slot::Addr { off: OFF_ARP_SPA },
        doc: "ARP sender protocol (IPv4) address",
    },
    Field {
        name: "arp.tpa",
        ty: Ty::Ip4,
        layer: F_ARP,
        slot: Slot::Addr { off: OFF_ARP_TPA },
        doc: "ARP target protocol (IPv4) address",
    },
    Field {
        name: "arp.sha",
        ty: Ty::Mac,
        layer: F_ARP,
        slot: int(OFF_ARP_SHA, MAC_SIZE),
        doc: "ARP sender hardware (MAC) address",
    },
    Field {
        name: "arp.tha",
        ty: Ty::Mac,
        layer: F_ARP,
        slot: int(OFF_ARP_THA, MAC_SIZE),
        doc: "ARP target hardware (MAC) address (zero in most requests)",
    },
    Field {
        name: "mpls.label",
        ty: Ty::U32,
        layer: F_MPLS,
        slot: int(OFF_EXT + EXT_MPLS_LABEL, 4),
        doc: "the outermost MPLS label (20 bits)",
    },
    Field {
        name: "mpls.depth",
        ty: Ty::U8,
        layer: F_MPLS,
        slot: int(OFF_EXT + EXT_MPLS_DEPTH, 1),
        doc: "the number of MPLS label stack entries (1..4)",
    },
    Field {
        name: "pppoe.session",
        ty: Ty::U16,
        layer: F_PPPOE,
        slot: int(OFF_EXT + EXT_PPPOE_SESSION, 2),
        doc: "the PPPoE session ID",
    },
    Field {
        name: "tunnel.id",
        ty: Ty::U32,
        layer: F_TUNNEL,
        slot: int(OFF_EXT + EXT_TUNNEL_ID, 4),
        doc: "the tunnel's VXLAN or GENEVE VNI, or its GRE key; 0 when it has none",
    },
    // Layer presence as booleans: `drop icmp6`, `pass tcp and tcp.dport == 22`.
    Field {
        name: "mpls",
        ty: Ty::Bool,
        layer: ETH,
        slot: Slot::Flag(F_MPLS),
        doc: "the frame carries MPLS labels (EtherType 0x8847 or 0x8848)",
    },
    Field {
        name: "pppoe",
        ty: Ty::Bool,
        layer: ETH,
        slot: Slot::Flag(F_PPPOE),
        doc: "a PPPoE session frame (EtherType 0x8864)",
    },
    Field {
        name: "tunnel",
        ty: Ty::Bool,
        layer: ETH,
        slot: Slot::Flag(F_TUNNEL),
        doc: "a tunnel pol recognises: IP-in-IP, IPv6-in-IP, GRE, VXLAN (UDP 4789) or GENEVE (UDP 6081)",
    },
    Field {
        name: "inner",
        ty: Ty::Bool,
        layer: ETH,
        slot: Slot::Flag((F_IP4 | F_IP6) << INNER_SHIFT),
        doc: "a tunnel whose inner IPv4 or IPv6 packet pol parsed (`tunnel and not inner`: one it cannot see into)",
    },
    Field {
        name: "sctp",
        ty: Ty::Bool,
        layer: ETH,
        slot: Slot::Flag(F_SCTP),
        doc: "an SCTP packet",
    },
    Field {
        name: "arp",
        ty: Ty::Bool,
        layer: ETH,
        slot: Slot::Flag(F_ARP),
        doc: "an ARP packet (IPv4 over Ethernet)",
    },
    Field {
        name: "vlan",
        ty: Ty::Bool,
        layer: ETH,
        slot: Slot::Flag(F_VLAN),
        doc: "the frame carries a VLAN tag",
    },
    Field {
        name: "ip4",
        ty: Ty::Bool,
        layer: ETH,
        slot: Slot::Flag(F_IP4),
        doc: "an IPv4 packet",
    },
    Field {
        name: "ip6",
        ty: Ty::Bool,
        layer: ETH,
        slot: Slot::Flag(F_IP6),
        doc: "an IPv6 packet",
    },
    Field {
        name: "tcp",
        ty: Ty::Bool,
        layer: ETH,
        slot: Slot::Flag(F_TCP),
        doc: "a TCP segment (not a later fragment)",
    },
    Field {
        name: "udp",
        ty: Ty::Bool,
        layer: ETH,
        slot: Slot::Flag(F_UDP),
        doc: "a UDP datagram (not a later fragment)",
    },
    Field {
        name: "icmp",
        ty: Ty::Bool,
        layer: ETH,
        slot: Slot::Flag(F_ICMP),
        doc: "an ICMP message",
    },
    Field {
        name: "icmp6",
        ty: Ty::Bool,
        layer: ETH,
        slot: Slot::Flag(F_ICMP6),
        doc: "an ICMPv6 message",
    },
];

/// Looks a packet field up by its dotted name.
pub fn lookup(name: &str) -> Option<&'static Field> {
    all().find(|f| f.name == name)
}

/// Every field: the table above, then the `inner.*` twins of its IP and L4 fields.
pub fn all() -> impl Iterator<Item = &'static Field> {
    FIELDS.iter().chain(INNER.iter())
}

/// `inner.ip.src`, `inner.tcp.dport`, `inner.tcp`, ...: the IP and L4 fields of a tunnel's
/// inner packet, read from the second record window (`OFF_EXT`, the main record's layout)
/// under the inner layer bits (`<< INNER_SHIFT`). Built once from `FIELDS`.
static INNER: std::sync::LazyLock<Vec<Field>> =
    std::sync::LazyLock::new(|| FIELDS.iter().filter_map(inner_twin).collect());

fn inner_twin(f: &Field) -> Option<Field> {
    let in_ip = |off: i16| (OFF_IP_PROTO..=OFF_IP4_IHL).contains(&off);
    let slot = match f.slot {
        Slot::Flag(bit) if bit & !INNER_LAYERS == 0 => Slot::Flag(bit << INNER_SHIFT),
        Slot::Int { off, size } if in_ip(off) => Slot::Int {
            off: OFF_EXT + off,
            size,
        },
        Slot::Bits { off, size, mask } if in_ip(off) => Slot::Bits {
            off: OFF_EXT + off,
            size,
            mask,
        },
        Slot::Addr { off } if in_ip(off) => Slot::Addr { off: OFF_EXT + off },
        _ => return None,
    };
    let layer = if f.layer == ETH {
        ETH
    } else if f.layer & !INNER_LAYERS == 0 {
        f.layer << INNER_SHIFT
    } else {
        return None;
    };
    Some(Field {
        name: String::leak(format!("inner.{}", f.name)),
        ty: f.ty,
        layer,
        slot,
        doc: String::leak(format!("inner packet: {}", f.doc)),
    })
}

/// Whether the field lives in the second record window (tunnels, MPLS, PPPoE).
pub fn in_ext(f: &Field) -> bool {
    match f.slot {
        Slot::Int { off, .. }
        | Slot::Bits { off, .. }
        | Slot::Eq { off, .. }
        | Slot::Addr { off } => off >= OFF_EXT,
        Slot::Flag(_) => false,
    }
}

impl Field {
    /// For an address field, the layer bit that says a packet carries an address of this
    /// family in it: `ip.src` has IPv4 ones under `ip4` and IPv6 ones under `ip6`;
    /// `ip4.src` and `arp.spa` only IPv4 ones, under their own layer. `None`: no address
    /// of that family can be there.
    pub fn family_layer(&self, v6: bool) -> Option<u32> {
        // An inner address's family is the inner packet's (`inner.ip.src`).
        let shift = if self.layer != ETH && self.layer & F_INNER_ALL != 0 {
            INNER_SHIFT
        } else {
            0
        };
        match (self.ty, v6) {
            (Ty::Ip, false) => Some(F_IP4 << shift),
            (Ty::Ip, true) => Some(F_IP6 << shift),
            (Ty::Ip4, false) | (Ty::Ip6, true) => Some(self.layer),
            _ => None,
        }
    }

    /// True when the field needs no layer check (always present).
    pub fn always_present(&self) -> bool {
        self.layer == ETH
    }
}

/// The fields nearest to `name` (`tcp.dprt` → `tcp.dport`), for "did you mean" help; a
/// field of the same last part on another layer (`udp.flags` → `tcp.flags`) when nothing
/// is near.
pub fn suggestions(name: &str) -> Vec<&'static str> {
    let near = suggest::nearest(name, all().map(|f| f.name), 2);
    if !near.is_empty() {
        return near;
    }
    let last = name.rsplit_once('.').map_or(name, |(_, l)| l);
    all()
        .map(|f| f.name)
        .filter(|f| name.contains('.') && f.rsplit_once('.').is_some_and(|(_, l)| l == last))
        .take(3)
        .collect()
}

/// The first of [`suggestions`].
pub fn suggest(name: &str) -> Option<&'static str> {
    suggestions(name).first().copied()
}
