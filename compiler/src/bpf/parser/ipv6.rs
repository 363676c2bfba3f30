//! IPv6: the fixed header, the fields the rules read, the extension-header walk (when the
//! protocol, fragments or L4 are needed) and the dispatch to TCP/UDP/ICMPv6.

use super::emit::Em;
use super::{
    dispatch, has, rec, Deferred, L4Labels, ParserHook, Slow, IPPROTO_ICMPV6, IPPROTO_SCTP,
    IPPROTO_TCP, IPPROTO_UDP, IP_END, MAX_EXT_HDRS,
};
use crate::bpf::asm::Label;
use crate::bpf::insn::*;
use crate::bpf::record::*;

const IPPROTO_HOPOPTS: i32 = 0;
const IPPROTO_ROUTING: i32 = 43;
const IPPROTO_FRAGMENT: i32 = 44;
const IPPROTO_AH: i32 = 51;
const IPPROTO_DSTOPTS: i32 = 60;

/// IPv6 at r4, then up to `MAX_EXT_HDRS` extension headers, fully unrolled.
pub(super) fn emit(p: &mut Em, l4: &L4Labels, done: Label) {
    let n = p.needs;
    let malformed = p.malformed;
    let s = n.store6;
    p.check(R4, 40);
    // Version 6 in the first nibble: anything else behind EtherType 0x86dd is malformed.
    p.emit(ldx(Size::B, R0, R4, 0));
    p.emit(alu64_imm(BPF_AND, R0, 0xf0));
    p.jmp_imm(BPF_JNE, R0, 0x60, malformed);
    // Payload length + 40 (on 32 bits: it does not wrap), then (scalar += packet pointer)
    // the end of the IP packet: within the frame; extension headers and L4 are checked
    // against it. On TC a GSO packet may say 0 (BIG TCP): then the rest of the frame.
    p.load_be16(IP_END, R4, 4);
    if p.hook == ParserHook::Tc {
        p.slow_path_imm(BPF_JEQ, IP_END, 0, Slow::GsoLength { v6: true });
    }
    p.emit(alu64_imm(BPF_ADD, IP_END, 40));
    if has(s, OFF_IP_LEN, 4) {
        p.emit(stx(Size::W, R10, IP_END, rec(OFF_IP_LEN)));
    }
    p.emit(alu64_reg(BPF_ADD, IP_END, R4));
    p.ip_end_in_frame();
    if has(s, OFF_IP_TTL, 1) {
        p.emit(ldx(Size::B, R0, R4, 7));
        p.emit(stx(Size::B, R10, R0, rec(OFF_IP_TTL)));
    }
    if has(s, OFF_IP6_NEXTHDR, 1) {
        p.emit(ldx(Size::B, R0, R4, 6));
        p.emit(stx(Size::B, R10, R0, rec(OFF_IP6_NEXTHDR)));
    }
    // The record's addresses are at offsets 20 and 40 (4-aligned only): 4-byte pieces,
    // each stored only when read.
    for (plen, addr, from) in [
        (OFF_SRC_PREFIXLEN, OFF_SRC, 8),
        (OFF_DST_PREFIXLEN, OFF_DST, 24),
    ] {
        for k in 0..4 {
            if has(s, addr + 4 * k, 4) {
                p.emit(ldx(Size::W, R0, R4, from + 4 * k));
                p.emit(stx(Size::W, R10, R0, rec(addr + 4 * k)));
            }
        }
        if has(s, plen, 4) {
            p.emit(st_imm(Size::W, R10, rec(plen), 128));
        }
    }
    if has(s, OFF_IP_VERSION, 1) {
        p.emit(st_imm(Size::B, R10, rec(OFF_IP_VERSION), 6));
    }
    p.emit(alu64_imm(BPF_OR, R9, F_IP6 as i32));
    if !n.ip6_walk() {
        p.goto(done);
        return;
    }
    p.emit(ldx(Size::B, R1, R4, 6));
    p.emit(mov64_reg(R8, R4));
    p.emit(alu64_imm(BPF_ADD, R8, 40));

    // Extension headers: r1 = next header, r8 = its start. Unrolled: each header is
    // checked, then r8 moves past it (a variable amount, hence a fresh check each time).
    // The checks are against the frame only: r8 only grows, so a header that ends past
    // the IP packet leaves r8 past IP_END for good, and both ways out of the walk (the end
    // of the chain, a later fragment) test r8 against IP_END once instead of every step
    // testing it. (A header wholly past the IP end may steer the walk, but only towards
    // `malformed`.)
    let end_of_chain = p.new_label();
    let later = p.new_label();
    let mut steps = Vec::new();
    for _ in 0..MAX_EXT_HDRS {
        let hdr = p.new_label();
        let adv = p.new_label();
        let frag = p.new_label();
        for proto in [
            IPPROTO_HOPOPTS,
            IPPROTO_ROUTING,
            IPPROTO_DSTOPTS,
            IPPROTO_FRAGMENT,
        ] {
            p.jmp_imm(BPF_JEQ, R1, proto, hdr);
        }
        p.jmp_imm(BPF_JNE, R1, IPPROTO_AH, end_of_chain);
        p.bind(hdr);
        p.check(R8, 8);
        p.emit(ldx(Size::B, R6, R8, 1));
        p.emit(ldx(Size::B, R0, R8, 0));
        p.jmp_imm(BPF_JEQ, R1, IPPROTO_FRAGMENT, frag);
        // Options headers: (hdrlen + 1) * 8 bytes; AH: (hdrlen + 2) * 4 = that / 2 + 4.
        p.emit(alu64_imm(BPF_ADD, R6, 1));
        p.emit(alu64_imm(BPF_LSH, R6, 3));
        p.jmp_imm(BPF_JNE, R1, IPPROTO_AH, adv);
        p.emit(alu64_imm(BPF_RSH, R6, 1));
        p.emit(alu64_imm(BPF_ADD, R6, 4));
        p.bind(adv);
        p.forget_value(R6, 2048);
        p.emit(mov64_reg(R1, R0));
        p.emit(alu64_reg(BPF_ADD, R8, R6));
        steps.push((frag, adv));
    }
    // Still an extension header after MAX_EXT_HDRS of them: fail closed.
    for proto in [
        IPPROTO_HOPOPTS,
        IPPROTO_ROUTING,
        IPPROTO_DSTOPTS,
        IPPROTO_FRAGMENT,
        IPPROTO_AH,
    ] {
        p.jmp_imm(BPF_JEQ, R1, proto, malformed);
    }
    p.bind(end_of_chain);
    // Every extension header ends inside the IP packet. (No read of r8 follows here: no
    // test against data_end is needed.)
    p.jmp_reg(BPF_JGT, R8, IP_END, malformed);
    if has(s, OFF_IP_PROTO, 1) {
        p.emit(stx(Size::B, R10, R1, rec(OFF_IP_PROTO)));
    }
    dispatch(
        p,
        &[
            (n.tcp6, IPPROTO_TCP, l4.tcp),
            (n.udp6, IPPROTO_UDP, l4.udp),
            (n.sctp6, IPPROTO_SCTP, l4.sctp),
            (n.icmp6, IPPROTO_ICMPV6, l4.icmp6),
        ],
        done,
    );
    if !n.l4_6() {
        p.goto(done);
    }
    p.deferred.push(Deferred::Frag6 { steps, later });
}

/// Fragment headers (8 bytes; the length byte is reserved and ignored, as the kernel
/// does): r0 = next header, offset and M flag in the u16 at +2, as loaded. A first
/// fragment goes on walking; a later one carries no L4 header, and ends the walk.
pub(super) fn emit_frags(p: &mut Em, steps: Vec<(Label, Label)>, later: Label, done: Label) {
    let n = p.needs;
    for (frag, adv) in steps {
        p.bind(frag);
        if n.frag6 {
            p.emit(alu64_imm(BPF_OR, R9, F_FRAG as i32));
        }
        p.emit(ldx(Size::H, R6, R8, 2));
        p.jmp_imm(BPF_JSET, R6, net16(0xfff8), later);
        p.emit(mov64_imm(R6, 8));
        p.goto(adv);
    }
    p.bind(later);
    // The fragment header, and every header before it, ends inside the IP packet.
    let malformed = p.malformed;
    p.emit(alu64_imm(BPF_ADD, R8, 8));
    p.jmp_reg(BPF_JGT, R8, IP_END, malformed);
    if n.frag6 {
        p.emit(alu64_imm(BPF_OR, R9, F_FRAG_LATER as i32));
    }
    if has(n.store6, OFF_IP_PROTO, 1) {
        p.emit(stx(Size::B, R10, R0, rec(OFF_IP_PROTO)));
    }
    p.goto(done);
}
