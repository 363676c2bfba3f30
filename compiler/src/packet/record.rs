//! The packet record: the fixed stack area where the packet parser leaves every header
//! field a filter can test, so rules read plain stack scalars and never touch packet memory.
//!
//! It is one stack slot of the filter's MIR (offsets below are from its start). The parser
//! zeroes what the rules read and not every path writes, so a field of an absent header
//! reads as 0; rules test the `flags` bit of a layer
//! before reading its fields. Addresses are kept in network byte order exactly as on the
//! wire (so an LPM-trie key can point straight into the record); ports and other integers
//! in host byte order (so `<` and ranges work).

/// Size of the record in bytes (a multiple of 8, at most 128: `Needs` masks are u128).
pub const RECORD_SIZE: i16 = 128;
/// The record's size for a filter that reads nothing at or past this offset (the MAC
/// addresses live there): such a filter's stack frame is what it was before they existed.
pub const RECORD_SIZE_BASE: i16 = 112;

/// The record's size for a filter that reads the record bytes in `reads` (a `Needs` mask)
/// and the first `payload` bytes of the L4 payload (0: none), which follow the record at
/// `OFF_PAYLOAD`.
pub const fn record_size(reads: u128, payload: u8) -> i16 {
    if payload > 0 {
        OFF_PAYLOAD + payload_window(payload)
    } else if reads >> RECORD_SIZE_BASE != 0 {
        RECORD_SIZE
    } else {
        RECORD_SIZE_BASE
    }
}

/// The payload window of a filter whose payload tests end at byte `end`: rounded up to 8
/// (the parser zeroes it in u64 stores).
pub const fn payload_window(end: u8) -> i16 {
    (end as i16 + 7) / 8 * 8
}

/// u16, host order: how many bytes of the L4 (TCP or UDP) payload the parser copied to
/// `OFF_PAYLOAD`: the payload's length, at most the filter's window; 0 without payload.
pub const OFF_PAYLOAD_LEN: i16 = 124;
/// The first bytes of the TCP or UDP payload, as on the wire, when a rule reads them: a
/// window past the record (outside the `Needs` byte masks), sized per filter.
pub const OFF_PAYLOAD: i16 = RECORD_SIZE;
/// Payload tests end at or before this byte of the payload.
pub const PAYLOAD_WINDOW_MAX: u8 = 64;
/// A payload test compares at most this many bytes.
pub const PAYLOAD_TEST_MAX: usize = 16;

// Layer bits in `flags` (u32 at offset 0): set only when the whole header was parsed.
pub const F_VLAN: u32 = 1 << 0;
pub const F_IP4: u32 = 1 << 1;
pub const F_IP6: u32 = 1 << 2;
pub const F_TCP: u32 = 1 << 3;
pub const F_UDP: u32 = 1 << 4;
pub const F_ICMP: u32 = 1 << 5;
pub const F_ICMP6: u32 = 1 << 6;
/// Any IPv4 or IPv6 fragment (first or not).
pub const F_FRAG: u32 = 1 << 7;
/// A fragment with a non-zero offset: it carries no L4 header, so no L4 bit is set.
pub const F_FRAG_LATER: u32 = 1 << 8;
/// An ARP packet for IPv4 over Ethernet (hardware type 1, protocol 0x0800).
pub const F_ARP: u32 = 1 << 9;
pub const F_SCTP: u32 = 1 << 10;
/// MPLS labels were looked through (EtherType 0x8847/0x8848): `mpls.label` is set.
pub const F_MPLS: u32 = 1 << 11;
/// A PPPoE session header was looked through (EtherType 0x8864): `pppoe.session` is set.
pub const F_PPPOE: u32 = 1 << 12;
/// The packet is a tunnel pol recognises: IP-in-IP (4), IPv6-in-IP (41), GRE (47), or UDP
/// to port 4789 (VXLAN) or 6081 (GENEVE), whether or not its inner packet could be read.
pub const F_TUNNEL: u32 = 1 << 13;
/// The layer bits of a tunnel's inner packet are the outer ones shifted by this much
/// (`F_TCP << INNER_SHIFT` is "the inner packet is TCP"); bits 0..16 are the outer layers.
pub const INNER_SHIFT: u32 = 16;
/// Outer layer bits that have an inner twin.
pub const INNER_LAYERS: u32 =
    F_IP4 | F_IP6 | F_TCP | F_UDP | F_ICMP | F_ICMP6 | F_FRAG | F_FRAG_LATER | F_SCTP;
/// Every inner layer bit.
pub const F_INNER_ALL: u32 = INNER_LAYERS << INNER_SHIFT;

/// u32 layer bits (above).
pub const OFF_FLAGS: i16 = 0;
/// u16, host order: the EtherType after all VLAN tags.
pub const OFF_ETH_TYPE: i16 = 4;
/// u16, host order: VLAN ID (12 bits) of the outer tag; 0 if untagged.
pub const OFF_VLAN_OUTER: i16 = 6;
/// u16, host order: VLAN ID of the inner tag (QinQ); 0 if none.
pub const OFF_VLAN_INNER: i16 = 8;
/// u8: number of VLAN tags looked through (0..=2).
pub const OFF_VLAN_COUNT: i16 = 10;
/// u8: L4 protocol: IPv4 protocol, or the IPv6 next header after all extension headers.
pub const OFF_IP_PROTO: i16 = 11;
/// u8: IPv4 TTL or IPv6 hop limit.
pub const OFF_IP_TTL: i16 = 12;
/// u8: IP version (4 or 6), 0 when not IP.
pub const OFF_IP_VERSION: i16 = 13;
/// u32: 32 for IPv4, 128 for IPv6; with the address after it, an LPM-trie key.
pub const OFF_SRC_PREFIXLEN: i16 = 16;
/// 16 bytes, network order; IPv4 uses the first 4 (the rest stay zero).
pub const OFF_SRC: i16 = 20;
/// u32: as `OFF_SRC_PREFIXLEN`, for the destination.
pub const OFF_DST_PREFIXLEN: i16 = 36;
/// 16 bytes, network order; IPv4 uses the first 4.
pub const OFF_DST: i16 = 40;
/// u16, host order: TCP, UDP or SCTP source port.
pub const OFF_SPORT: i16 = 56;
/// u16, host order: TCP, UDP or SCTP destination port.
pub const OFF_DPORT: i16 = 58;
/// u8: TCP flags byte (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10, URG 0x20, ECE, CWR).
pub const OFF_TCP_FLAGS: i16 = 60;
/// u8: ICMP or ICMPv6 type.
pub const OFF_ICMP_TYPE: i16 = 61;
/// u8: ICMP or ICMPv6 code.
pub const OFF_ICMP_CODE: i16 = 62;
/// u16, host order: the TPID of the outer VLAN tag (0x8100, 0x88a8, 0x9100 or 0x9200).
pub const OFF_VLAN_TPID: i16 = 14;
/// u8: the first IPv6 next header (before any extension header).
pub const OFF_IP6_NEXTHDR: i16 = 63;
/// u32, host order: IPv4 total length, or IPv6 payload length + 40 (32 bits, so an IPv6
/// jumbo payload or a GSO packet's length does not wrap).
pub const OFF_IP_LEN: i16 = 64;
/// u8: the IPv4 DSCP (TOS >> 2).
pub const OFF_IP4_DSCP: i16 = 68;
/// u8: the IPv4 ECN bits (TOS & 3).
pub const OFF_IP4_ECN: i16 = 69;
/// u16, host order: the IPv4 identification.
pub const OFF_IP4_ID: i16 = 70;
/// u16, host order: the IPv4 flags and fragment offset word (DF 0x4000, MF 0x2000).
pub const OFF_IP4_FRAG: i16 = 72;
/// u16, host order: the IPv4 fragment offset, in 8-byte units.
pub const OFF_IP4_FRAG_OFFSET: i16 = 74;
/// u8: the IPv4 header length in 32-bit words.
pub const OFF_IP4_IHL: i16 = 76;
/// 6 bytes: the Ethernet destination address as a 48-bit integer in host (little-endian)
/// order, so exact tests, sets and map keys treat it as an integer (see `MAC_SIZE`).
/// 2 mod 4: a u16 at +0, a u32 at +2.
pub const OFF_ETH_DST: i16 = 78;
/// u32, host order: the length of the whole frame as it arrived (all its buffers).
pub const OFF_FRAME_LEN: i16 = 84;
/// u32: 32, then the ARP sender protocol address (network order): an LPM-trie key.
pub const OFF_ARP_SPA_PREFIXLEN: i16 = 88;
pub const OFF_ARP_SPA: i16 = 92;
/// u32: 32, then the ARP target protocol address.
pub const OFF_ARP_TPA_PREFIXLEN: i16 = 96;
pub const OFF_ARP_TPA: i16 = 100;
/// u16, host order: the ARP operation (1 request, 2 reply).
pub const OFF_ARP_OP: i16 = 104;
/// 6 bytes, as `OFF_ETH_DST`: the ARP sender hardware address (2 mod 4).
pub const OFF_ARP_SHA: i16 = 106;
/// 6 bytes, as `OFF_ETH_DST`: the ARP target hardware address (0 mod 4: a u32 at +0, a
/// u16 at +4).
pub const OFF_ARP_THA: i16 = 112;
/// 6 bytes, as `OFF_ETH_DST`: the Ethernet source address (2 mod 4).
pub const OFF_ETH_SRC: i16 = 118;

/// The second record window (issue 7, tunnels): past the record and the largest payload
/// window, so neither moves when a filter reads both. A tunnel's inner packet has the main
/// record's layout here, `OFF_EXT + OFF_SRC` being the inner source address and so on (bytes
/// `OFF_IP_PROTO ..= OFF_IP4_IHL`); the bytes before `OFF_IP_PROTO`, unused by the inner
/// layers, hold the tunnel, MPLS and PPPoE fields. Like the payload window it lies outside
/// the `Needs` byte masks (`Needs::ext_reads` is its own mask, relative to `OFF_EXT`) and
/// is part of the stack slot only when a rule reads it.
pub const OFF_EXT: i16 = OFF_PAYLOAD + PAYLOAD_WINDOW_MAX as i16;
/// u32, host order (relative to `OFF_EXT`): the outer MPLS label (20 bits).
pub const EXT_MPLS_LABEL: i16 = 0;
/// u32, host order: the VXLAN or GENEVE VNI (24 bits) or the GRE key; 0 when none.
pub const EXT_TUNNEL_ID: i16 = 4;
/// u16, host order: the PPPoE session ID.
pub const EXT_PPPOE_SESSION: i16 = 8;
/// u8: the number of MPLS label stack entries looked through.
pub const EXT_MPLS_DEPTH: i16 = 10;
/// The last byte of the second window's inner layout (`OFF_IP4_IHL`): the window is at most
/// this long, rounded up to 8.
pub const EXT_WINDOW_MAX: i16 = 80;
/// The record's size when a filter reads the second window's bytes up to `ext_end`
/// (exclusive, relative to `OFF_EXT`): the window rounded up to 8.
pub const fn ext_record_size(ext_end: i16) -> i16 {
    OFF_EXT + (ext_end + 7) / 8 * 8
}

/// The L7 window (issue 13): past the second window, written by the parser (payload
/// position) and by the L7 passes that run before the rules (`crate::l7`). Like the other
/// windows it lies outside the `Needs` byte masks and is part of the stack slot only when
/// a filter reads an L7 field (`Needs::l7`).
pub const OFF_L7: i16 = OFF_EXT + EXT_WINDOW_MAX;
/// Its size: the shared words, then 8 bytes each for HTTP, DNS and TLS.
pub const L7_WINDOW: i16 = 32;
/// u32 (relative to the record): bit `i` is set when L7 string test `i` of the filter holds
/// (`crate::l7::Bits` numbers them across protocols).
pub const OFF_L7_BITS: i16 = OFF_L7;
/// u16, host order: where the L4 payload starts, from the start of the packet (the offset
/// `skb_load_bytes` / `xdp_load_bytes` take); written with the length for TCP and UDP.
pub const OFF_L7_PAY_OFF: i16 = OFF_L7 + 4;
/// u16, host order: the L4 payload's length inside the IP packet (at most 65535); 0 when
/// the packet has no TCP or UDP payload.
pub const OFF_L7_PAY_LEN: i16 = OFF_L7 + 6;
/// u8: the HTTP pass's verdict on the segment (`crate::l7::http::STATE_*`).
pub const OFF_HTTP_STATE: i16 = OFF_L7 + 8;
/// u8: the request's method (`crate::l7::http::METHODS` index + 1).
pub const OFF_HTTP_METHOD: i16 = OFF_L7 + 9;
/// u8: the request's version: 10 (HTTP/1.0), 11 (HTTP/1.1), 0 when not seen.
pub const OFF_HTTP_VERSION: i16 = OFF_L7 + 10;
/// 8 bytes from `OFF_L7 + 16` are DNS's, 8 from `OFF_L7 + 24` TLS's.
pub const OFF_L7_DNS: i16 = OFF_L7 + 16;
pub const OFF_L7_TLS: i16 = OFF_L7 + 24;

/// The size of a MAC address slot; the 48-bit value's low bytes come first.
pub const MAC_SIZE: u8 = 6;

/// How a 6-byte slot at `off` splits into aligned stack accesses (the verifier wants
/// every stack access aligned to its size): (offset in the slot, size) pairs, the
/// low-order part first.
pub const fn mac_pieces(off: i16) -> [(i16, u8); 2] {
    if off % 4 == 0 {
        [(0, 4), (4, 2)]
    } else {
        [(0, 2), (2, 4)]
    }
}
