//! IPv4: the header with its options (IHL honoured), the fields the rules read, fragments,
//! and the dispatch to TCP/UDP/ICMP.

use super::emit::Em;
use super::{
    dispatch, has, rec, Deferred, L4Labels, ParserHook, Slow, IPPROTO_ICMP, IPPROTO_SCTP,
    IPPROTO_TCP, IPPROTO_UDP, IP_END,
};
use crate::bpf::asm::Label;
use crate::bpf::insn::*;
use crate::bpf::record::*;

/// IPv4 at r4. Leaves r7 = end of the IP packet, r8 = L4 header, r1 = protocol, and
/// dispatches to the L4 blocks.
pub(super) fn emit(p: &mut Em, l4: &L4Labels, done: Label) {
    let n = p.needs;
    let malformed = p.malformed;
    let s = n.store4;
    p.check(R4, 20);
    // Version 4 and IHL >= 5 in one range test of the first byte: 0x45 ..= 0x4f.
    p.emit(ldx(Size::B, R6, R4, 0));
    p.jmp_imm(BPF_JLT, R6, 0x45, malformed);
    p.jmp_imm(BPF_JGT, R6, 0x4f, malformed);
    p.emit(alu64_imm(BPF_AND, R6, 0xf));
    if has(s, OFF_IP4_IHL, 1) {
        p.emit(stx(Size::B, R10, R6, rec(OFF_IP4_IHL)));
    }
    p.emit(alu64_imm(BPF_LSH, R6, 2));
    // The total length, then (scalar += packet pointer) the end of the IP packet. On TC
    // a GSO packet may say 0 (BIG TCP): its length is then the rest of the frame.
    p.load_be16(IP_END, R4, 2);
    if p.hook == ParserHook::Tc {
        p.slow_path(BPF_JLT, IP_END, R6, Slow::GsoLength { v6: false });
    } else {
        p.jmp_reg(BPF_JLT, IP_END, R6, malformed);
    }
    if has(s, OFF_IP_LEN, 4) {
        p.emit(stx(Size::W, R10, IP_END, rec(OFF_IP_LEN)));
    }
    // Total length within the frame; with total length >= IHL * 4 this also puts the
    // options inside the frame. The L4 header is checked against IP_END.
    p.emit(alu64_reg(BPF_ADD, IP_END, R4));
    p.ip_end_in_frame();
    if has(s, OFF_IP_TTL, 1) {
        p.emit(ldx(Size::B, R0, R4, 8));
        p.emit(stx(Size::B, R10, R0, rec(OFF_IP_TTL)));
    }
    if has(s, OFF_IP4_DSCP, 2) {
        p.emit(ldx(Size::B, R0, R4, 1));
        if has(s, OFF_IP4_ECN, 1) {
            p.emit(mov64_reg(R8, R0));
            p.emit(alu64_imm(BPF_AND, R8, 3));
            p.emit(stx(Size::B, R10, R8, rec(OFF_IP4_ECN)));
        }
        if has(s, OFF_IP4_DSCP, 1) {
            p.emit(alu64_imm(BPF_RSH, R0, 2));
            p.emit(stx(Size::B, R10, R0, rec(OFF_IP4_DSCP)));
        }
    }
    if has(s, OFF_IP4_ID, 2) {
        p.load_be16(R0, R4, 4);
        p.emit(stx(Size::H, R10, R0, rec(OFF_IP4_ID)));
    }
    if has(s, OFF_IP4_FRAG, 2) || has(s, OFF_IP4_FRAG_OFFSET, 2) {
        p.load_be16(R0, R4, 6);
        if has(s, OFF_IP4_FRAG, 2) {
            p.emit(stx(Size::H, R10, R0, rec(OFF_IP4_FRAG)));
        }
        if has(s, OFF_IP4_FRAG_OFFSET, 2) {
            p.emit(alu64_imm(BPF_AND, R0, 0x1fff));
            p.emit(stx(Size::H, R10, R0, rec(OFF_IP4_FRAG_OFFSET)));
        }
    }
    let l4_needed = n.l4_4();
    let store_proto = has(s, OFF_IP_PROTO, 1);
    if l4_needed || store_proto {
        p.emit(ldx(Size::B, R1, R4, 9));
    }
    if store_proto {
        p.emit(stx(Size::B, R10, R1, rec(OFF_IP_PROTO)));
    }
    p.store_ip4_addrs(s, &[(OFF_SRC, 12), (OFF_DST, 16)]);
    if has(s, OFF_IP_VERSION, 1) {
        p.emit(st_imm(Size::B, R10, rec(OFF_IP_VERSION), 4));
    }
    p.emit(alu64_imm(BPF_OR, R9, F_IP4 as i32));

    // Flags and fragment offset, tested as loaded (network order): MF | offset.
    let l4_start = p.new_label();
    if n.frag4 {
        let frag = p.new_label();
        p.emit(ldx(Size::H, R0, R4, 6));
        p.jmp_imm(BPF_JSET, R0, net16(0x3fff), frag);
        p.deferred.push(Deferred::Frag4 {
            at: frag,
            l4: if l4_needed { l4_start } else { done },
        });
    } else if l4_needed {
        // Only whether it is a later fragment (no L4 header) matters.
        p.emit(ldx(Size::H, R0, R4, 6));
        p.jmp_imm(BPF_JSET, R0, net16(0x1fff), done);
    }
    p.bind(l4_start);
    if l4_needed {
        p.emit(mov64_reg(R8, R4));
        p.emit(alu64_reg(BPF_ADD, R8, R6));
        dispatch(
            p,
            &[
                (n.tcp4, IPPROTO_TCP, l4.tcp),
                (n.udp4, IPPROTO_UDP, l4.udp),
                (n.sctp4, IPPROTO_SCTP, l4.sctp),
                (n.icmp, IPPROTO_ICMP, l4.icmp),
            ],
            done,
        );
    } else {
        p.goto(done);
    }
}

/// A fragment (r0 = flags and offset): first fragments go on to `l4`, later ones to `done`.
pub(super) fn emit_frag(p: &mut Em, at: Label, l4: Label, done: Label) {
    p.bind(at);
    p.emit(alu64_imm(BPF_OR, R9, F_FRAG as i32));
    p.emit(alu64_imm(BPF_AND, R0, net16(0x1fff)));
    p.jmp_imm(BPF_JEQ, R0, 0, l4);
    p.emit(alu64_imm(BPF_OR, R9, F_FRAG_LATER as i32));
    p.goto(done);
}
