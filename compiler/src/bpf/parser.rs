//! The packet parser: the prologue of every XDP/TC filter. It reads Ethernet, VLAN/QinQ,
//! IPv4 (options honoured), IPv6 (extension headers walked) and TCP/UDP/ICMP headers and
//! fills the packet record (`record.rs`), so rules read stack scalars only.
//!
//! Fail-closed: a truncated or inconsistent header, a third VLAN tag, more than
//! `MAX_EXT_HDRS` IPv6 extension headers or a first fragment too short for its L4 header
//! jumps to `malformed`. Unknown EtherTypes and L4 protocols are not malformed: the record
//! then has no IP (or no L4) bits.
//!
//! Registers while parsing: r2 = data, r3 = data_end, r4 = L3 header, r5 = EtherType,
//! r8 = L4 header, r9 = layer flags (stored once at the end), r0/r1/r6/r7 scratch.
//!
//! Verifier notes, in one place. Every packet read is preceded by
//! `r0 = base + N; if r0 > r3 goto malformed` covering all reads up to `base + N`; without
//! it the load fails with `invalid access to packet, off=14 size=2, R2(id=0,off=14,r=0)`.
//! Adding a variable (the IPv4 header length, an extension header length) to a packet
//! pointer gives a pointer with a new id and range 0, so each such base gets its own check
//! before its first read (`invalid access to packet, off=0 size=1, R8(id=2,off=0,r=0)`).
//! Variables added to packet pointers must be bounded (`be16` results are, to 16 bits);
//! `forget_value` keeps the verifier's path count down in the IPv6 walk. Stack stores must be aligned to their size (`misaligned stack access`), so
//! the unaligned 16-byte addresses go in 4-byte pieces and ICMP type/code byte by byte.

use super::asm::{Asm, Label};
use super::insn::*;
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

/// The layers the rules read; the parser skips the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Needs {
    pub ip6: bool,
    pub l4: bool,
}

/// At most this many IPv6 extension headers are walked; one more is malformed.
pub const MAX_EXT_HDRS: usize = 6;

const SKB_VLAN_PRESENT: i16 = 20;
const SKB_VLAN_TCI: i16 = 24;
const SKB_DATA: i16 = 76;
const SKB_DATA_END: i16 = 80;

const ETH_P_IP: i32 = 0x0800;
const ETH_P_IPV6: i32 = 0x86dd;
const ETH_P_8021Q: i32 = 0x8100;
const ETH_P_8021AD: i32 = 0x88a8;

const IPPROTO_HOPOPTS: i32 = 0;
const IPPROTO_ICMP: i32 = 1;
const IPPROTO_TCP: i32 = 6;
const IPPROTO_UDP: i32 = 17;
const IPPROTO_ROUTING: i32 = 43;
const IPPROTO_FRAGMENT: i32 = 44;
const IPPROTO_AH: i32 = 51;
const IPPROTO_ICMPV6: i32 = 58;
const IPPROTO_DSTOPTS: i32 = 60;

/// Frame offset of a record field.
const fn rec(off: i16) -> i16 {
    RECORD_BASE + off
}

/// `r0 = base + n; if r0 > data_end goto malformed`: makes `base .. base + n` readable.
fn check(a: &mut Asm, base: Reg, n: i32, malformed: Label) {
    a.emit(mov64_reg(R0, base));
    a.emit(alu64_imm(BPF_ADD, R0, n));
    a.jmp_reg_to(BPF_JGT, R0, R3, malformed);
}

/// `dst = be16 *(u16 *)(base + off)`: a network-order field in host order.
fn load_be16(a: &mut Asm, dst: Reg, base: Reg, off: i16) {
    a.emit(ldx(Size::H, dst, base, off));
    a.emit(be16(dst));
}

/// Scratch slot for `forget_value`: 2-aligned but not 8-aligned, so the verifier keeps no
/// value for it (a sub-register spill is tracked only at an 8-aligned slot).
const FORGET_SLOT: i16 = SCRATCH_BASE + 2;

/// Makes the verifier see `reg` as any value in `0..=max`, whatever it knew before: a
/// 16-bit spill and fill through an untracked stack slot, then an explicit bound (never
/// taken for the values the parser computes). Without it every path through the IPv6
/// extension-header walk (options, AH or fragment header, 6 times) carries its own exact
/// range into the packet pointer, no two states prune each other, and the verifier
/// processes 76582 insns (180 ms) instead of a few thousand.
fn forget_value(a: &mut Asm, reg: Reg, max: i32, malformed: Label) {
    a.emit(stx(Size::H, R10, reg, FORGET_SLOT));
    a.emit(ldx(Size::H, reg, R10, FORGET_SLOT));
    a.jmp_imm_to(BPF_JGT, reg, max, malformed);
}

/// Emits the parser. On fall-through the record at `r10 + RECORD_BASE` is filled and every
/// register but r10 is free; a bad packet jumps to `malformed` with the record partly set.
pub fn emit_packet_parser(a: &mut Asm, hook: ParserHook, needs: Needs, malformed: Label) {
    let done = a.new_label();
    let l4 = L4Labels {
        tcp: a.new_label(),
        udp: a.new_label(),
        icmp: a.new_label(),
        icmp6: a.new_label(),
    };

    for k in 0..RECORD_SIZE / 8 {
        a.emit(st_imm(Size::DW, R10, RECORD_BASE + 8 * k, 0));
    }
    a.emit(mov64_imm(R9, 0));
    let (data, data_end) = match hook {
        ParserHook::Xdp => (0, 4),
        ParserHook::Tc => (SKB_DATA, SKB_DATA_END),
    };
    a.emit(ldx(Size::W, R2, R1, data));
    a.emit(ldx(Size::W, R3, R1, data_end));
    a.emit(mov64_reg(R4, R2));
    a.emit(alu64_imm(BPF_ADD, R4, 14));
    a.jmp_reg_to(BPF_JGT, R4, R3, malformed);
    load_be16(a, R5, R2, 12);
    emit_vlan(a, hook, malformed);

    a.emit(stx(Size::H, R10, R5, rec(OFF_ETH_TYPE)));
    let not_ip4 = a.new_label();
    a.jmp_imm_to(BPF_JNE, R5, ETH_P_IP, not_ip4);
    // `last`: the block ends the parser, so its final `goto done` can fall through.
    emit_ip4(a, needs, &l4, done, malformed, !needs.ip6 && !needs.l4);
    a.bind(not_ip4);
    if needs.ip6 {
        a.jmp_imm_to(BPF_JNE, R5, ETH_P_IPV6, done);
        emit_ip6(a, needs, &l4, done, malformed, !needs.l4);
    }
    if needs.l4 {
        if !needs.ip6 {
            a.ja_to(done);
        }
        emit_l4(a, needs, &l4, done, malformed);
    }
    a.bind(done);
    a.emit(stx(Size::W, R10, R9, rec(OFF_FLAGS)));
}

/// VLAN tags: r4 points past the 14-byte Ethernet header and r5 holds its EtherType; on
/// exit r4 points to the L3 header and r5 holds the EtherType after the tags.
fn emit_vlan(a: &mut Asm, hook: ParserHook, malformed: Label) {
    let l3 = a.new_label();
    let tags = [a.new_label(), a.new_label()];
    if hook == ParserHook::Tc {
        // The kernel usually takes the outer tag out of the frame before TC ingress.
        let no_meta = a.new_label();
        a.emit(ldx(Size::W, R0, R1, SKB_VLAN_PRESENT));
        a.jmp_imm_to(BPF_JEQ, R0, 0, no_meta);
        a.emit(ldx(Size::W, R0, R1, SKB_VLAN_TCI));
        a.emit(alu64_imm(BPF_AND, R0, 0xfff));
        a.emit(stx(Size::H, R10, R0, rec(OFF_VLAN_OUTER)));
        a.emit(st_imm(Size::B, R10, rec(OFF_VLAN_COUNT), 1));
        a.emit(mov64_imm(R9, F_VLAN as i32));
        a.jmp_imm_to(BPF_JEQ, R5, ETH_P_8021Q, tags[1]);
        a.jmp_imm_to(BPF_JEQ, R5, ETH_P_8021AD, tags[1]);
        a.ja_to(l3);
        a.bind(no_meta);
    }
    a.jmp_imm_to(BPF_JEQ, R5, ETH_P_8021Q, tags[0]);
    a.jmp_imm_to(BPF_JNE, R5, ETH_P_8021AD, l3);
    for (slot, &tag) in tags.iter().enumerate() {
        a.bind(tag);
        check(a, R4, 4, malformed);
        load_be16(a, R6, R4, 0);
        a.emit(alu64_imm(BPF_AND, R6, 0xfff));
        a.emit(stx(Size::H, R10, R6, rec(OFF_VLAN_OUTER + 2 * slot as i16)));
        load_be16(a, R5, R4, 2);
        a.emit(mov64_reg(R4, R0));
        a.emit(st_imm(Size::B, R10, rec(OFF_VLAN_COUNT), slot as i32 + 1));
        if slot == 0 {
            a.emit(mov64_imm(R9, F_VLAN as i32));
            a.jmp_imm_to(BPF_JEQ, R5, ETH_P_8021Q, tags[1]);
            a.jmp_imm_to(BPF_JNE, R5, ETH_P_8021AD, l3);
        } else {
            // A third tag: we would not see the payload, so fail closed.
            a.jmp_imm_to(BPF_JEQ, R5, ETH_P_8021Q, malformed);
            a.jmp_imm_to(BPF_JEQ, R5, ETH_P_8021AD, malformed);
        }
    }
    a.bind(l3);
}

struct L4Labels {
    tcp: Label,
    udp: Label,
    icmp: Label,
    icmp6: Label,
}

/// IPv4 at r4. Leaves r8 = L4 header, r1 = protocol, and dispatches to the L4 blocks.
fn emit_ip4(a: &mut Asm, needs: Needs, l4: &L4Labels, done: Label, malformed: Label, last: bool) {
    check(a, R4, 20, malformed);
    // Version 4 and IHL >= 5 in one range test of the first byte: 0x45 ..= 0x4f.
    a.emit(ldx(Size::B, R6, R4, 0));
    a.jmp_imm_to(BPF_JLT, R6, 0x45, malformed);
    a.jmp_imm_to(BPF_JGT, R6, 0x4f, malformed);
    a.emit(alu64_imm(BPF_AND, R6, 0xf));
    a.emit(alu64_imm(BPF_LSH, R6, 2));
    load_be16(a, R7, R4, 2);
    a.jmp_reg_to(BPF_JLT, R7, R6, malformed);
    a.emit(stx(Size::H, R10, R7, rec(OFF_IP_LEN)));
    // Total length within the frame; with total length >= IHL * 4 this also puts the
    // options inside the frame.
    a.emit(mov64_reg(R0, R4));
    a.emit(alu64_reg(BPF_ADD, R0, R7));
    a.jmp_reg_to(BPF_JGT, R0, R3, malformed);
    a.emit(ldx(Size::B, R0, R4, 8));
    a.emit(stx(Size::B, R10, R0, rec(OFF_IP_TTL)));
    a.emit(ldx(Size::B, R1, R4, 9));
    a.emit(stx(Size::B, R10, R1, rec(OFF_IP_PROTO)));
    a.emit(ldx(Size::W, R0, R4, 12));
    a.emit(stx(Size::W, R10, R0, rec(OFF_SRC)));
    a.emit(ldx(Size::W, R0, R4, 16));
    a.emit(stx(Size::W, R10, R0, rec(OFF_DST)));
    a.emit(st_imm(Size::W, R10, rec(OFF_SRC_PREFIXLEN), 32));
    a.emit(st_imm(Size::W, R10, rec(OFF_DST_PREFIXLEN), 32));
    a.emit(st_imm(Size::B, R10, rec(OFF_IP_VERSION), 4));
    a.emit(alu64_imm(BPF_OR, R9, F_IP4 as i32));
    // Flags and fragment offset, tested as loaded (network order): MF | offset.
    let frag = a.new_label();
    let l4_start = a.new_label();
    a.emit(ldx(Size::H, R0, R4, 6));
    a.jmp_imm_to(BPF_JSET, R0, net16(0x3fff), frag);
    a.bind(l4_start);
    if needs.l4 {
        a.emit(mov64_reg(R8, R4));
        a.emit(alu64_reg(BPF_ADD, R8, R6));
        a.jmp_imm_to(BPF_JEQ, R1, IPPROTO_TCP, l4.tcp);
        a.jmp_imm_to(BPF_JEQ, R1, IPPROTO_UDP, l4.udp);
        a.jmp_imm_to(BPF_JEQ, R1, IPPROTO_ICMP, l4.icmp);
    }
    a.ja_to(done);
    a.bind(frag);
    a.emit(alu64_imm(BPF_OR, R9, F_FRAG as i32));
    a.emit(alu64_imm(BPF_AND, R0, net16(0x1fff)));
    a.jmp_imm_to(BPF_JEQ, R0, 0, l4_start);
    a.emit(alu64_imm(BPF_OR, R9, F_FRAG_LATER as i32));
    if !last {
        a.ja_to(done);
    }
}

/// IPv6 at r4, then up to `MAX_EXT_HDRS` extension headers, fully unrolled.
fn emit_ip6(a: &mut Asm, needs: Needs, l4: &L4Labels, done: Label, malformed: Label, last: bool) {
    check(a, R4, 40, malformed);
    load_be16(a, R7, R4, 4);
    a.emit(alu64_imm(BPF_ADD, R7, 40));
    a.emit(stx(Size::H, R10, R7, rec(OFF_IP_LEN)));
    a.emit(mov64_reg(R0, R4));
    a.emit(alu64_reg(BPF_ADD, R0, R7));
    a.jmp_reg_to(BPF_JGT, R0, R3, malformed);
    a.emit(ldx(Size::B, R0, R4, 7));
    a.emit(stx(Size::B, R10, R0, rec(OFF_IP_TTL)));
    // The record's addresses are at offsets 20 and 40 (4-aligned only): 4-byte pieces.
    for k in 0..4 {
        a.emit(ldx(Size::W, R0, R4, 8 + 4 * k));
        a.emit(stx(Size::W, R10, R0, rec(OFF_SRC + 4 * k)));
    }
    for k in 0..4 {
        a.emit(ldx(Size::W, R0, R4, 24 + 4 * k));
        a.emit(stx(Size::W, R10, R0, rec(OFF_DST + 4 * k)));
    }
    a.emit(st_imm(Size::W, R10, rec(OFF_SRC_PREFIXLEN), 128));
    a.emit(st_imm(Size::W, R10, rec(OFF_DST_PREFIXLEN), 128));
    a.emit(st_imm(Size::B, R10, rec(OFF_IP_VERSION), 6));
    a.emit(alu64_imm(BPF_OR, R9, F_IP6 as i32));
    a.emit(ldx(Size::B, R1, R4, 6));
    a.emit(mov64_reg(R8, R4));
    a.emit(alu64_imm(BPF_ADD, R8, 40));

    // Extension headers: r1 = next header, r8 = its start. Unrolled: each header is
    // checked, then r8 moves past it (a variable amount, hence a fresh check each time).
    let end_of_chain = a.new_label();
    let later = a.new_label();
    let mut frags = Vec::new();
    for _ in 0..MAX_EXT_HDRS {
        let hdr = a.new_label();
        let adv = a.new_label();
        let frag = a.new_label();
        for proto in [
            IPPROTO_HOPOPTS,
            IPPROTO_ROUTING,
            IPPROTO_DSTOPTS,
            IPPROTO_FRAGMENT,
        ] {
            a.jmp_imm_to(BPF_JEQ, R1, proto, hdr);
        }
        a.jmp_imm_to(BPF_JNE, R1, IPPROTO_AH, end_of_chain);
        a.bind(hdr);
        check(a, R8, 8, malformed);
        a.emit(ldx(Size::B, R6, R8, 1));
        a.emit(ldx(Size::B, R0, R8, 0));
        a.jmp_imm_to(BPF_JEQ, R1, IPPROTO_FRAGMENT, frag);
        // Options headers: (hdrlen + 1) * 8 bytes; AH: (hdrlen + 2) * 4 = that / 2 + 4.
        a.emit(alu64_imm(BPF_ADD, R6, 1));
        a.emit(alu64_imm(BPF_LSH, R6, 3));
        a.jmp_imm_to(BPF_JNE, R1, IPPROTO_AH, adv);
        a.emit(alu64_imm(BPF_RSH, R6, 1));
        a.emit(alu64_imm(BPF_ADD, R6, 4));
        a.bind(adv);
        forget_value(a, R6, 2048, malformed);
        a.emit(mov64_reg(R1, R0));
        a.emit(alu64_reg(BPF_ADD, R8, R6));
        frags.push((frag, adv));
    }
    // Still an extension header after MAX_EXT_HDRS of them: fail closed.
    for proto in [
        IPPROTO_HOPOPTS,
        IPPROTO_ROUTING,
        IPPROTO_DSTOPTS,
        IPPROTO_FRAGMENT,
        IPPROTO_AH,
    ] {
        a.jmp_imm_to(BPF_JEQ, R1, proto, malformed);
    }
    a.bind(end_of_chain);
    a.emit(stx(Size::B, R10, R1, rec(OFF_IP_PROTO)));
    if needs.l4 {
        a.jmp_imm_to(BPF_JEQ, R1, IPPROTO_TCP, l4.tcp);
        a.jmp_imm_to(BPF_JEQ, R1, IPPROTO_UDP, l4.udp);
        a.jmp_imm_to(BPF_JEQ, R1, IPPROTO_ICMPV6, l4.icmp6);
    }
    a.ja_to(done);
    // Fragment header (8 bytes; its length byte is reserved and ignored, as the kernel
    // does): r0 = next header. Offset and M flag in the u16 at +2, as loaded.
    for (frag, adv) in frags {
        a.bind(frag);
        a.emit(alu64_imm(BPF_OR, R9, F_FRAG as i32));
        a.emit(ldx(Size::H, R6, R8, 2));
        a.jmp_imm_to(BPF_JSET, R6, net16(0xfff8), later);
        a.emit(mov64_imm(R6, 8));
        a.ja_to(adv);
    }
    a.bind(later);
    a.emit(alu64_imm(BPF_OR, R9, F_FRAG_LATER as i32));
    a.emit(stx(Size::B, R10, R0, rec(OFF_IP_PROTO)));
    if !last {
        a.ja_to(done);
    }
}

/// L4 headers at r8. The last block falls through to the end of the parser.
fn emit_l4(a: &mut Asm, needs: Needs, l4: &L4Labels, done: Label, malformed: Label) {
    let ports = a.new_label();
    a.bind(l4.tcp);
    check(a, R8, 20, malformed);
    // Data offset (high nibble of byte 12) >= 5.
    a.emit(ldx(Size::B, R1, R8, 12));
    a.jmp_imm_to(BPF_JLT, R1, 0x50, malformed);
    a.emit(ldx(Size::B, R1, R8, 13));
    a.emit(stx(Size::B, R10, R1, rec(OFF_TCP_FLAGS)));
    a.emit(alu64_imm(BPF_OR, R9, F_TCP as i32));
    a.ja_to(ports);
    a.bind(l4.udp);
    check(a, R8, 8, malformed);
    a.emit(alu64_imm(BPF_OR, R9, F_UDP as i32));
    // Both ports in one load: be32 gives sport << 16 | dport.
    a.bind(ports);
    a.emit(ldx(Size::W, R0, R8, 0));
    a.emit(be32(R0));
    a.emit(stx(Size::H, R10, R0, rec(OFF_DPORT)));
    a.emit(alu64_imm(BPF_RSH, R0, 16));
    a.emit(stx(Size::H, R10, R0, rec(OFF_SPORT)));
    a.ja_to(done);
    let icmp_common = a.new_label();
    if needs.ip6 {
        a.bind(l4.icmp6);
        a.emit(alu64_imm(BPF_OR, R9, F_ICMP6 as i32));
        a.ja_to(icmp_common);
    }
    a.bind(l4.icmp);
    a.emit(alu64_imm(BPF_OR, R9, F_ICMP as i32));
    a.bind(icmp_common);
    check(a, R8, 4, malformed);
    a.emit(ldx(Size::B, R0, R8, 0));
    a.emit(stx(Size::B, R10, R0, rec(OFF_ICMP_TYPE)));
    a.emit(ldx(Size::B, R0, R8, 1));
    a.emit(stx(Size::B, R10, R0, rec(OFF_ICMP_CODE)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf::disasm::disassemble;

    /// The smallest parser (Ethernet, VLAN, IPv4 without L4), as a listing to read.
    #[test]
    fn minimal_xdp_parser_listing() {
        let mut a = Asm::new();
        let malformed = a.new_label();
        emit_packet_parser(&mut a, ParserHook::Xdp, Needs::default(), malformed);
        a.bind(malformed);
        a.emit(exit());
        let p = a.finish().expect("assembles");
        insta::assert_snapshot!(disassemble(&p.insns, &[], &[], &|_| String::new()));
    }
}
