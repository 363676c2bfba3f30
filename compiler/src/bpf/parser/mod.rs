//! The packet parser: the prologue of every XDP/TC filter. It reads Ethernet, VLAN/QinQ,
//! IPv4 (options honoured), IPv6 (extension headers walked) and TCP/UDP/ICMP headers and
//! fills the packet record (`record.rs`), so rules read stack scalars only. `Needs` (from
//! `hir::needs`) says which layers to parse and which record bytes to zero and store; the
//! rest is not emitted.
//!
//! Fail-closed: a truncated or inconsistent header, a third VLAN tag, more than
//! `MAX_EXT_HDRS` IPv6 extension headers or a first fragment too short for its L4 header
//! jumps to `malformed`. Headers behind the IP header (IPv6 extension headers, TCP, UDP,
//! ICMP) must lie inside the IP packet as its length field gives it, not just inside the
//! frame: bytes after the IP packet (Ethernet padding, or trailing bytes an attacker
//! appends to a tiny first fragment) are not part of it and must not supply ports or
//! flags. Unknown EtherTypes and L4 protocols are not malformed: the record then has no
//! IP (or no L4) bits. A layer that is not parsed is never malformed.
//!
//! Registers while parsing: r2 = data, r3 = data_end, r4 = L3 header, r5 = EtherType,
//! r7 = end of the IP packet (`IP_END`, computed once from the length field and checked
//! against data_end), r8 = L4 header, r1 = L4 protocol, r9 = layer flags (stored once at
//! the end), r0/r6 scratch.
//!
//! Verifier notes, in one place. Every packet read is preceded by
//! `r0 = base + N; if r0 > r3 goto malformed` covering all reads up to `base + N`; without
//! it the load fails with `invalid access to packet, off=14 size=2, R2(id=0,off=14,r=0)`.
//! An L4 header gets a second test, `if r0 > r7 goto malformed`, bounding it by the IP
//! packet (the IPv6 walk tests r8 against r7 where it ends instead, see `ipv6.rs`); it
//! cannot replace the first: only a comparison with data_end (r3) gives the verifier a
//! readable range, a comparison with another packet pointer gives none (and is allowed
//! only to a loader with CAP_PERFMON or CAP_SYS_ADMIN, as root has; pol's programs already
//! need that for other pointer arithmetic).
//! Adding a variable (the IPv4 header length, an extension header length) to a packet
//! pointer gives a pointer with a new id and range 0, so each such base gets its own check
//! before its first read (`invalid access to packet, off=0 size=1, R8(id=2,off=0,r=0)`).
//! Variables added to packet pointers must be bounded (`be16` results are, to 16 bits);
//! `forget_value` keeps the verifier's path count down in the IPv6 walk. Stack stores must be aligned to their size (`misaligned stack access`), so
//! the unaligned 16-byte addresses go in 4-byte pieces and ICMP type/code byte by byte.
//! The verifier rejects a read of stack never written on some path (`invalid read from
//! stack`), even where the layer bits make that path impossible at run time, so every byte
//! a rule may read (`Needs::reads`) is zeroed up front unless every path writes it.

mod emit;
mod ipv4;
mod ipv6;
mod l4;

use super::asm::{Asm, Label};
use super::insn::*;
use super::record::*;
use emit::Em;

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
}

/// One bit per record byte (`RECORD_SIZE` <= 128).
pub type ByteMask = u128;

/// Record bytes `off .. off + len` as a `Needs` byte mask.
pub const fn span(off: i16, len: i16) -> ByteMask {
    let bits = if len >= 128 { !0 } else { (1u128 << len) - 1 };
    bits << off
}

impl Needs {
    /// The full parser: every layer, every field.
    pub const ALL: Needs = Needs {
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
    };

    /// Whether an L4 header is parsed behind IPv4 / IPv6.
    pub fn l4_4(&self) -> bool {
        self.tcp4 || self.udp4 || self.sctp4 || self.icmp
    }
    pub fn l4_6(&self) -> bool {
        self.tcp6 || self.udp6 || self.sctp6 || self.icmp6
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

const SKB_VLAN_PRESENT: i16 = 20;
const SKB_VLAN_TCI: i16 = 24;
const SKB_VLAN_PROTO: i16 = 28;
const SKB_DATA: i16 = 76;
const SKB_DATA_END: i16 = 80;

/// The end of the IP packet while parsing behind the IP header (see the module comment).
const IP_END: Reg = R7;

const ETH_P_IP: i32 = 0x0800;
const ETH_P_IPV6: i32 = 0x86dd;
const ETH_P_ARP: i32 = 0x0806;
const ETH_P_8021Q: i32 = 0x8100;
const ETH_P_8021AD: i32 = 0x88a8;
/// Pre-standard QinQ service tags, still sent by older switches.
const ETH_P_QINQ1: i32 = 0x9100;
const ETH_P_QINQ2: i32 = 0x9200;

const IPPROTO_ICMP: i32 = 1;
const IPPROTO_TCP: i32 = 6;
const IPPROTO_UDP: i32 = 17;
const IPPROTO_ICMPV6: i32 = 58;
const IPPROTO_SCTP: i32 = 132;

/// Frame offset of a record field.
const fn rec(off: i16) -> i16 {
    RECORD_BASE + off
}

/// Whether any byte of the field at `off .. off + len` is in `mask`.
pub const fn has(mask: ByteMask, off: i16, len: i16) -> bool {
    mask & span(off, len) != 0
}

/// The L4 blocks' entry labels, for the dispatch after IPv4 and IPv6.
struct L4Labels {
    tcp: Label,
    udp: Label,
    sctp: Label,
    icmp: Label,
    icmp6: Label,
}

/// Emits the parser. On fall-through the record at `r10 + RECORD_BASE` holds every byte of
/// `needs.reads`, r9 holds the layer flags (`bpf::select` relies on it) and every other
/// register but r10 is free; a bad packet jumps to `malformed`
/// with the record partly set.
pub fn emit_packet_parser(a: &mut Asm, hook: ParserHook, needs: Needs, malformed: Label) {
    let mut p = Em::new(a, hook, needs, malformed);
    let done = p.new_label();
    let restart = p.new_label();
    if hook == ParserHook::Tc {
        // The context, kept for the pull (see `Slow::Pull`); 0 once pulled.
        p.emit(stx(Size::DW, R10, R1, SLOT_CTX));
        p.truncated = p.new_label();
        p.bind(restart);
    }
    let l4 = L4Labels {
        tcp: p.new_label(),
        udp: p.new_label(),
        sctp: p.new_label(),
        icmp: p.new_label(),
        icmp6: p.new_label(),
    };

    let zeroed = needs.zeroed();
    for k in 0..RECORD_SIZE / 8 {
        if has(zeroed, 8 * k, 8) {
            p.emit(st_imm(Size::DW, R10, RECORD_BASE + 8 * k, 0));
        }
    }
    p.emit(mov64_imm(R9, 0));
    let (data, data_end) = match hook {
        ParserHook::Xdp => (0, 4),
        ParserHook::Tc => (SKB_DATA, SKB_DATA_END),
    };
    if has(needs.store_link, OFF_FRAME_LEN, 4) {
        emit_frame_len(&mut p, hook);
    }
    p.emit(ldx(Size::W, R2, R1, data));
    p.emit(ldx(Size::W, R3, R1, data_end));
    p.emit(mov64_reg(R4, R2));
    p.emit(alu64_imm(BPF_ADD, R4, 14));
    p.jmp_reg(BPF_JGT, R4, R3, malformed);
    p.load_be16(R5, R2, 12);
    emit_vlan(&mut p, hook);
    if has(needs.store_link, OFF_ETH_TYPE, 2) {
        p.emit(stx(Size::H, R10, R5, rec(OFF_ETH_TYPE)));
    }

    if needs.arp {
        let not_arp = p.new_label();
        p.jmp_imm(BPF_JNE, R5, ETH_P_ARP, not_arp);
        emit_arp(&mut p, done);
        p.bind(not_arp);
    }

    // The family that dispatches to L4 goes last, so its last test can fall through into
    // the first L4 block.
    let mut fams = Vec::new();
    if needs.ip4 {
        fams.push(false);
    }
    if needs.ip6 {
        fams.push(true);
    }
    if fams.len() == 2 && needs.l4_4() && !needs.l4_6() {
        fams.reverse();
    }
    for (i, &v6) in fams.iter().enumerate() {
        let next = if i + 1 == fams.len() {
            done
        } else {
            p.new_label()
        };
        p.jmp_imm(BPF_JNE, R5, if v6 { ETH_P_IPV6 } else { ETH_P_IP }, next);
        if v6 {
            ipv6::emit(&mut p, &l4, done);
        } else {
            ipv4::emit(&mut p, &l4, done);
        }
        if next != done {
            p.bind(next);
        }
    }
    l4::emit(&mut p, &l4, done);
    // Nothing below is fallen into: with no IP family parsed, the VLAN code ends here.
    p.end_block(done);
    // Deferred code may defer more (none does today); drain until empty.
    while !p.deferred.is_empty() {
        for d in std::mem::take(&mut p.deferred) {
            d.emit(&mut p, done);
        }
    }
    if hook == ParserHook::Tc && p.truncated_used {
        emit_pull(&mut p, restart);
    }
    p.bind(done);
    p.emit(stx(Size::W, R10, R9, rec(OFF_FLAGS)));
    p.finish();
}

/// `if r5 is a tag TPID goto tag else goto l3`: 0x8100, 0x88a8, 0x9100 or 0x9200 (every
/// TPID in use; docs/packet-parsing.md). IPv4, IPv6 and ARP leave after two tests, as
/// with two TPIDs: all are below 0x88a8.
fn is_tag(p: &mut Em, tag: Label, l3: Label) {
    p.jmp_imm(BPF_JEQ, R5, ETH_P_8021Q, tag);
    p.jmp_imm(BPF_JLT, R5, ETH_P_8021AD, l3);
    p.jmp_imm(BPF_JEQ, R5, ETH_P_8021AD, tag);
    p.jmp_imm(BPF_JEQ, R5, ETH_P_QINQ1, tag);
    p.branch(BPF_JEQ, R5, ETH_P_QINQ2, tag, l3);
}

/// VLAN tags: r4 points past the 14-byte Ethernet header and r5 holds its EtherType; on
/// exit r4 points to the L3 header and r5 holds the EtherType after the tags. Always
/// emitted (a rule must see through tags); only the stores follow `Needs`.
fn emit_vlan(p: &mut Em, hook: ParserHook) {
    let needs = p.needs;
    let malformed = p.malformed;
    let l3 = p.new_label();
    let tags = [p.new_label(), p.new_label()];
    let store_count = |p: &mut Em, n: i32| {
        if has(needs.store_link, OFF_VLAN_COUNT, 1) {
            p.emit(st_imm(Size::B, R10, rec(OFF_VLAN_COUNT), n));
        }
        if n == 1 && needs.vlan_flag {
            p.emit(mov64_imm(R9, F_VLAN as i32));
        }
    };
    if hook == ParserHook::Tc {
        // The kernel usually takes the outer tag out of the frame before TC ingress.
        let no_meta = p.new_label();
        p.emit(ldx(Size::W, R0, R1, SKB_VLAN_PRESENT));
        p.jmp_imm(BPF_JEQ, R0, 0, no_meta);
        if has(needs.store_link, OFF_VLAN_OUTER, 2) {
            p.emit(ldx(Size::W, R0, R1, SKB_VLAN_TCI));
            p.emit(alu64_imm(BPF_AND, R0, 0xfff));
            p.emit(stx(Size::H, R10, R0, rec(OFF_VLAN_OUTER)));
        }
        if has(needs.store_link, OFF_VLAN_TPID, 2) {
            // Network order in the context, as in the frame.
            p.emit(ldx(Size::W, R0, R1, SKB_VLAN_PROTO));
            p.emit(be16(R0));
            p.emit(stx(Size::H, R10, R0, rec(OFF_VLAN_TPID)));
        }
        store_count(p, 1);
        is_tag(p, tags[1], l3);
        p.bind(no_meta);
    }
    is_tag(p, tags[0], l3);
    for (slot, &tag) in tags.iter().enumerate() {
        p.bind(tag);
        if slot == 0 && has(needs.store_link, OFF_VLAN_TPID, 2) {
            p.emit(stx(Size::H, R10, R5, rec(OFF_VLAN_TPID)));
        }
        p.check(R4, 4);
        let id = OFF_VLAN_OUTER + 2 * slot as i16;
        if has(needs.store_link, id, 2) {
            p.load_be16(R6, R4, 0);
            p.emit(alu64_imm(BPF_AND, R6, 0xfff));
            p.emit(stx(Size::H, R10, R6, rec(id)));
        }
        p.load_be16(R5, R4, 2);
        p.emit(mov64_reg(R4, R0));
        store_count(p, slot as i32 + 1);
        if slot == 0 {
            is_tag(p, tags[1], l3);
        } else {
            // A third tag: we would not see the payload, so fail closed.
            is_tag(p, malformed, l3);
        }
    }
    p.bind(l3);
}

/// Code placed after the L4 blocks (so the dispatch before them can fall through), and
/// jumped to from inside a family's block.
pub(super) enum Deferred {
    /// IPv4 fragment: r0 = flags and offset as loaded; `l4` is where L4 parsing resumes.
    Frag4 { at: Label, l4: Label },
    /// IPv6 fragment headers: one entry and resume label per unrolled step, and the
    /// later-fragment exit.
    Frag6 {
        steps: Vec<(Label, Label)>,
        later: Label,
    },
    /// A slow path entered at `at` that resumes at `back`.
    Slow { at: Label, back: Label, what: Slow },
}

/// The slow paths: what a packet that is not plain and linear takes.
#[derive(Debug, Clone, Copy)]
pub(super) enum Slow {
    /// The IP packet ends past data_end (`IP_END` > r3): it may go on outside the linear
    /// part, so compare its end with the whole frame's length.
    LongIp,
    /// TC only: the IP length field is below the header size (IPv4) or zero (IPv6). A
    /// GSO packet over 64 KiB (BIG TCP) says 0 there: its IP packet is the rest of the
    /// frame. Anything else is malformed (IPv4) or an empty payload (IPv6).
    GsoLength { v6: bool },
}

impl Deferred {
    fn emit(self, p: &mut Em, done: Label) {
        match self {
            Deferred::Frag4 { at, l4 } => ipv4::emit_frag(p, at, l4, done),
            Deferred::Frag6 { steps, later } => ipv6::emit_frags(p, steps, later, done),
            Deferred::Slow { at, back, what } => {
                p.bind(at);
                match what {
                    Slow::LongIp => emit_long_ip(p),
                    Slow::GsoLength { v6 } => emit_gso_length(p, v6),
                }
                p.goto(back);
            }
        }
    }
}

/// Stack slots the parser's slow paths use (in the scratch area, free until the rules run).
const SLOT_CTX: i16 = SCRATCH_BASE + 8;
const SLOT_L3: i16 = SCRATCH_BASE + 24;

const HELPER_SKB_PULL_DATA: i32 = 39;
const HELPER_XDP_GET_BUFF_LEN: i32 = 188;
const SKB_LEN: i16 = 0;
const SKB_GSO_SIZE: i16 = 176;
/// A GSO packet's IP length, computed from the frame, is at most this (BIG TCP's limit
/// is 512 KiB); the bound also keeps the verifier's packet-pointer arithmetic in range.
const MAX_GSO_LEN: i32 = 1 << 20;
/// A TC pull linearises at least this much (or the whole packet when shorter), so one
/// pull covers every header a rule can read but the longest IPv6 extension chains.
const PULL_MIN: i32 = 256;

/// ARP at r4: for IPv4 over Ethernet (the only kind rules can test), the operation and
/// the sender and target protocol addresses; any other ARP has no `arp.*` fields. An ARP
/// header cut short is malformed.
fn emit_arp(p: &mut Em, done: Label) {
    let s = p.needs.store_arp;
    p.check(R4, 8);
    // Hardware type 1, protocol 0x0800; lengths 6 and 4: as loaded, in network order.
    p.emit(ldx(Size::W, R0, R4, 0));
    p.jmp_imm(BPF_JNE, R0, i32::from_le_bytes([0, 1, 8, 0]), done);
    p.emit(ldx(Size::H, R0, R4, 4));
    p.jmp_imm(BPF_JNE, R0, i32::from(u16::from_le_bytes([6, 4])), done);
    p.check(R4, 28);
    if has(s, OFF_ARP_OP, 2) {
        p.load_be16(R0, R4, 6);
        p.emit(stx(Size::H, R10, R0, rec(OFF_ARP_OP)));
    }
    p.store_ip4_addrs(s, &[(OFF_ARP_SPA, 14), (OFF_ARP_TPA, 24)]);
    p.emit(alu64_imm(BPF_OR, R9, F_ARP as i32));
    p.goto(done);
}

/// `frame.len`, with r1 = context (kept): `skb->len` on TC; on XDP the length of every
/// buffer of the frame (`bpf_xdp_get_buff_len`, which clobbers r1-r5: the context waits
/// in r6).
fn emit_frame_len(p: &mut Em, hook: ParserHook) {
    match hook {
        ParserHook::Tc => p.emit(ldx(Size::W, R0, R1, SKB_LEN)),
        ParserHook::Xdp => {
            p.emit(mov64_reg(R6, R1));
            p.emit(call(HELPER_XDP_GET_BUFF_LEN));
            p.emit(mov64_reg(R1, R6));
        }
    }
    p.emit(stx(Size::W, R10, R0, rec(OFF_FRAME_LEN)));
}

/// `Slow::LongIp`, entered with r1 = context, r2 = data, r4 = L3 header, r7 = IP end.
/// TC: the frame is the whole socket buffer (`skb->len`), not its linear head. XDP: a
/// multi-buffer frame (xdp.frags) goes on in fragments; `bpf_xdp_get_buff_len` gives its
/// length (the call clobbers r1-r5, so the L3 pointer and context are kept on the stack;
/// spilled packet pointers keep their verified range, and this helper moves no packet
/// data, so they stay valid).
fn emit_long_ip(p: &mut Em) {
    let malformed = p.malformed;
    match p.hook {
        ParserHook::Tc => {
            p.emit(mov64_reg(R0, IP_END));
            p.emit(alu64_reg(BPF_SUB, R0, R2));
            p.emit(ldx(Size::W, R8, R1, SKB_LEN));
            p.jmp_reg(BPF_JGT, R0, R8, malformed);
        }
        ParserHook::Xdp => {
            p.emit(stx(Size::DW, R10, R1, SLOT_CTX));
            p.emit(stx(Size::DW, R10, R4, SLOT_L3));
            p.emit(mov64_reg(R8, IP_END));
            p.emit(alu64_reg(BPF_SUB, R8, R2));
            p.emit(call(HELPER_XDP_GET_BUFF_LEN));
            p.jmp_reg(BPF_JGT, R8, R0, malformed);
            p.emit(ldx(Size::DW, R1, R10, SLOT_CTX));
            p.emit(ldx(Size::W, R2, R1, 0));
            p.emit(ldx(Size::W, R3, R1, 4));
            p.emit(ldx(Size::DW, R4, R10, SLOT_L3));
        }
    }
}

/// `Slow::GsoLength` (TC), entered with r1 = context, r2 = data, r4 = L3 header, r7 = the
/// length field (IPv4: total length, below IHL * 4 in r6; IPv6: payload length 0).
fn emit_gso_length(p: &mut Em, v6: bool) {
    let malformed = p.malformed;
    let plain = p.new_label();
    if !v6 {
        p.jmp_imm(BPF_JNE, IP_END, 0, malformed);
    }
    p.emit(ldx(Size::W, R0, R1, SKB_GSO_SIZE));
    p.jmp_imm(BPF_JEQ, R0, 0, if v6 { plain } else { malformed });
    // Length = skb->len - (L3 offset) [- 40 for the IPv6 payload].
    p.emit(mov64_reg(R0, R4));
    p.emit(alu64_reg(BPF_SUB, R0, R2));
    p.emit(ldx(Size::W, IP_END, R1, SKB_LEN));
    p.emit(alu64_reg(BPF_SUB, IP_END, R0));
    if v6 {
        p.emit(alu64_imm(BPF_SUB, IP_END, 40));
    }
    p.jmp_imm(BPF_JGT, IP_END, MAX_GSO_LEN, malformed);
    if !v6 {
        p.jmp_reg(BPF_JLT, IP_END, R6, malformed);
    }
    p.bind(plain);
}

/// TC's `truncated`: a read past data_end, with r0 = how far it wanted to read. The
/// linear head of a socket buffer can end anywhere (a GRO packet's head held 66 bytes),
/// so pull the headers into it (`bpf_skb_pull_data`: at least `PULL_MIN` bytes, at most
/// the packet) and parse again from the start, once: the helper invalidates every packet
/// pointer. Reads past the packet's end, or a second truncation, are malformed. The
/// context slot doubles as the "not pulled yet" mark, so the verifier sees the loop end:
/// it holds the context pointer (never 0) on the first pass and 0 on the second.
fn emit_pull(p: &mut Em, restart: Label) {
    let malformed = p.malformed;
    let truncated = p.truncated;
    let keep = p.new_label();
    let fits = p.new_label();
    p.bind(truncated);
    p.emit(alu64_reg(BPF_SUB, R0, R2));
    p.emit(ldx(Size::DW, R1, R10, SLOT_CTX));
    p.jmp_imm(BPF_JEQ, R1, 0, malformed);
    p.emit(st_imm(Size::DW, R10, SLOT_CTX, 0));
    p.emit(mov64_reg(R6, R1));
    p.emit(ldx(Size::W, R2, R1, SKB_LEN));
    p.jmp_reg(BPF_JGT, R0, R2, malformed);
    p.jmp_imm(BPF_JGT, R0, PULL_MIN, keep);
    p.emit(mov64_imm(R0, PULL_MIN));
    p.bind(keep);
    p.jmp_reg(BPF_JLE, R0, R2, fits);
    p.emit(mov64_reg(R0, R2));
    p.bind(fits);
    p.emit(mov64_reg(R2, R0));
    p.emit(call(HELPER_SKB_PULL_DATA));
    p.emit(mov64_reg(R1, R6));
    p.goto(restart);
}

/// Jumps to the L4 block of protocol r1 among `protos`; anything else goes to `done`.
/// The last test is left pending, so it becomes `if r1 != P goto done` when P's block
/// comes next.
fn dispatch(p: &mut Em, protos: &[(bool, i32, Label)], done: Label) {
    let protos: Vec<_> = protos.iter().filter(|t| t.0).collect();
    for (i, &&(_, proto, label)) in protos.iter().enumerate() {
        if i + 1 == protos.len() {
            p.branch(BPF_JEQ, R1, proto, label, done);
        } else {
            p.jmp_imm(BPF_JEQ, R1, proto, label);
        }
    }
}

#[cfg(test)]
mod tests;
