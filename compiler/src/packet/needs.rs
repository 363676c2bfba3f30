//! What the packet parser must do: `Needs` (from `hir::needs`) says which layers to parse
//! and which record bytes (`record.rs`) to zero and store. The parser itself is built as
//! MIR in `ir/to_mir/parser.rs`; this module is its contract with the front end.
//!
//! Fail-closed: a truncated or inconsistent header, a third VLAN tag, more than
//! `MAX_EXT_HDRS` IPv6 extension headers or a first fragment too short for its L4 header
//! is malformed. Headers behind the IP header (IPv6 extension headers, TCP, UDP,
//! ICMP) must lie inside the IP packet as its length field gives it, not just inside the
//! frame: bytes after the IP packet (Ethernet padding, or trailing bytes an attacker
//! appends to a tiny first fragment) are not part of it and must not supply ports or
//! flags. Unknown EtherTypes and L4 protocols are not malformed: the record then has no
//! IP (or no L4) bits. A layer that is not parsed is never malformed.
//!
//! The verifier rejects a read of stack never written on some path (`invalid read from
//! stack`), even where the layer bits make that path impossible at run time, so every byte
//! a rule may read (`Needs::reads`) is zeroed up front unless every path writes it.

use super::record::*;

/// Where the program runs: it fixes the context layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParserHook {
    /// `struct xdp_md`: data at +0, data_end at +4.
    Xdp,
    /// `struct __sk_buff` (cls_bpf): data at +76, data_end at +80, and the VLAN tag the
    /// kernel moved out of the frame in `vlan_present` (+20) and `vlan_tci` (+24).
    Tc,
}

/// What the parser does. Byte masks have bit `b` for record byte `b` (see `span`); a
/// store of a field happens when any of its bytes is in the mask. `Default` is the
/// smallest parser: Ethernet and VLAN tags only, the flags word stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Needs {
    /// Copy the first `payload` bytes of the TCP / UDP payload (when parsed) behind the
    /// record (`OFF_PAYLOAD`), their count to `OFF_PAYLOAD_LEN`; 0: no payload is read.
    pub payload: u8,
    pub payload_tcp: bool,
    pub payload_udp: bool,
    /// Copy the ICMP / ICMPv6 message from its byte 4 (the echo identifier, or the header
    /// an error quotes after its 4 unused bytes) to the same window, `payload` bytes at
    /// most: connection tracking reads echo ids and the flow an error quotes there.
    pub payload_icmp: bool,
    /// Parse IPv4 / IPv6 headers (else such packets look like any other EtherType).
    pub ip4: bool,
    pub ip6: bool,
    /// Set `F_FRAG`/`F_FRAG_LATER` for IPv4 / IPv6 fragments.
    pub frag4: bool,
    pub frag6: bool,
    /// Parse this L4 header behind IPv4 / IPv6.
    pub tcp4: bool,
    pub tcp6: bool,
    pub udp4: bool,
    pub udp6: bool,
    pub sctp4: bool,
    pub sctp6: bool,
    pub icmp: bool,
    pub icmp6: bool,
    /// Parse ARP (IPv4 over Ethernet).
    pub arp: bool,
    /// Set `F_VLAN` for tagged frames.
    pub vlan_flag: bool,
    /// Every record byte the rules or count keys may read (the flags word always).
    pub reads: ByteMask,
    /// Bytes stored by the Ethernet/VLAN code (EtherType, VLAN IDs, tag count).
    pub store_link: ByteMask,
    /// Bytes stored from the IPv4 / IPv6 header.
    pub store4: ByteMask,
    pub store6: ByteMask,
    /// Bytes stored from the ARP header.
    pub store_arp: ByteMask,
    /// Bytes stored from the TCP, UDP and ICMP/ICMPv6 headers.
    pub store_tcp: ByteMask,
    pub store_udp: ByteMask,
    pub store_sctp: ByteMask,
    pub store_icmp: ByteMask,
    /// Bytes of the second window (`OFF_EXT`, relative to it) a rule or key reads: the
    /// parser zeroes and stores exactly these; 0: the record has no second window.
    pub ext_reads: ByteMask,
    /// Recognise tunnels behind IPv4 and IPv6 (`F_TUNNEL`, `tunnel.id`).
    pub tunnel: bool,
    /// The layers of a recognised tunnel's inner packet to parse (none: it is not read).
    pub inner: Inner,
    /// Look through MPLS label stacks / PPPoE session headers to the IP packet they carry.
    pub mpls: bool,
    pub pppoe: bool,
    /// The record has the L7 window (`OFF_L7`): zeroed, and the L4 payload's position
    /// stored there for TCP and UDP, for the L7 passes (`crate::l7`).
    pub l7: bool,
}

/// Which layers of a tunnel's inner packet the parser reads (into the second window, with
/// layer bits `<< INNER_SHIFT`). Inner IP is parsed when any of these is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Inner {
    pub ip: bool,
    pub frag: bool,
    pub tcp: bool,
    pub udp: bool,
    pub sctp: bool,
    pub icmp: bool,
    pub icmp6: bool,
}

impl Inner {
    pub const NONE: Inner = Inner {
        ip: false,
        frag: false,
        tcp: false,
        udp: false,
        sctp: false,
        icmp: false,
        icmp6: false,
    };
    pub const ALL: Inner = Inner {
        ip: true,
        frag: true,
        tcp: true,
        udp: true,
        sctp: true,
        icmp: true,
        icmp6: true,
    };
}

/// One bit per record byte (`RECORD_SIZE` <= 128).
pub type ByteMask = u128;

/// Record bytes `off .. off + len` as a `Needs` byte mask; bytes past the mask's 128 (the
/// payload and second windows, which have masks of their own) are not in it.
pub const fn span(off: i16, len: i16) -> ByteMask {
    if off < 0 || off >= 128 || len <= 0 {
        return 0;
    }
    let bits = if len >= 128 { !0 } else { (1u128 << len) - 1 };
    bits << off
}

impl Needs {
    /// The full parser of the main record: every layer, every field; no tunnels, MPLS or
    /// PPPoE (`ALL_EXT`).
    pub const ALL: Needs = Needs {
        payload: PAYLOAD_WINDOW_MAX,
        payload_tcp: true,
        payload_udp: true,
        payload_icmp: false,
        ip4: true,
        ip6: true,
        frag4: true,
        frag6: true,
        tcp4: true,
        tcp6: true,
        udp4: true,
        udp6: true,
        sctp4: true,
        sctp6: true,
        icmp: true,
        icmp6: true,
        arp: true,
        vlan_flag: true,
        reads: !0,
        store_link: !0,
        store4: !0,
        store6: !0,
        store_arp: !0,
        store_tcp: !0,
        store_udp: !0,
        store_sctp: !0,
        store_icmp: !0,
        ext_reads: 0,
        tunnel: false,
        inner: Inner::NONE,
        mpls: false,
        pppoe: false,
        l7: false,
    };

    /// `ALL`, with tunnels and their inner packets, MPLS and PPPoE too.
    pub const ALL_EXT: Needs = Needs {
        ext_reads: span(0, EXT_WINDOW_MAX),
        tunnel: true,
        inner: Inner::ALL,
        mpls: true,
        pppoe: true,
        ..Needs::ALL
    };

    /// The record's size in bytes: the main record, the payload window, the second window.
    pub const fn record_size(&self) -> i16 {
        if self.l7 {
            OFF_L7 + L7_WINDOW
        } else if self.ext_reads != 0 {
            let end = 128 - self.ext_reads.leading_zeros() as i16;
            ext_record_size(end)
        } else {
            record_size(self.reads, self.payload)
        }
    }

    /// Whether an L4 header is parsed behind IPv4 / IPv6.
    /// Tunnels are recognised at this dispatch too (IP-in-IP, GRE, UDP ports).
    pub fn l4_4(&self) -> bool {
        self.tcp4 || self.udp4 || self.sctp4 || self.icmp || self.tunnel
    }
    pub fn l4_6(&self) -> bool {
        self.tcp6 || self.udp6 || self.sctp6 || self.icmp6 || self.tunnel
    }

    /// Whether the IPv6 extension-header chain is walked: for the protocol, fragments and
    /// L4. Without it, an IPv6 packet has its base header fields only.
    pub fn ip6_walk(&self) -> bool {
        self.ip6 && (self.l4_6() || self.frag6 || self.store6 & span(OFF_IP_PROTO, 1) != 0)
    }

    /// Bytes zeroed before parsing: read bytes that not every path writes (the flags word
    /// and, when stored, the EtherType are written on every path that reaches the rules).
    pub fn zeroed(&self) -> ByteMask {
        let always = span(OFF_FLAGS, 4) | (self.store_link & span(OFF_ETH_TYPE, 2));
        self.reads & !always
    }
}

/// At most this many IPv6 extension headers are walked; one more is malformed.
pub const MAX_EXT_HDRS: usize = 6;

/// Whether any byte of the field at `off .. off + len` is in `mask`.
pub const fn has(mask: ByteMask, off: i16, len: i16) -> bool {
    mask & span(off, len) != 0
}
