//! L4 headers at r8: TCP, UDP, SCTP, ICMP and ICMPv6, each only when some family dispatches to
//! it, laid out so the last dispatch test can fall through into the first block. Each
//! header must end inside the IP packet (r7), not only inside the frame.

use super::emit::Em;
use super::{has, rec, ByteMask, L4Labels};
use crate::bpf::asm::Label;
use crate::bpf::insn::*;
use crate::bpf::record::*;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Tcp,
    Udp,
    Sctp,
    Icmp6,
    Icmp,
}

/// The L4 blocks; each ends by going to `done`.
pub(super) fn emit(p: &mut Em, l4: &L4Labels, done: Label) {
    let n = p.needs;
    let malformed = p.malformed;
    let label = |k: Kind| match k {
        Kind::Tcp => l4.tcp,
        Kind::Udp => l4.udp,
        Kind::Sctp => l4.sctp,
        Kind::Icmp6 => l4.icmp6,
        Kind::Icmp => l4.icmp,
    };
    let mut order: Vec<Kind> = [
        (n.tcp4 || n.tcp6, Kind::Tcp),
        (n.udp4 || n.udp6, Kind::Udp),
        (n.sctp4 || n.sctp6, Kind::Sctp),
        (n.icmp6, Kind::Icmp6),
        (n.icmp, Kind::Icmp),
    ]
    .into_iter()
    .filter(|k| k.0)
    .map(|k| k.1)
    .collect();
    if let Some(first) = p.pending_target() {
        if let Some(i) = order.iter().position(|&k| label(k) == first) {
            let k = order.remove(i);
            order.insert(0, k);
        }
    }
    let pos = |k: Kind| order.iter().position(|&o| o == k);
    let ports_of = |m: ByteMask| m & span_ports();
    // TCP and UDP share the port stores when they store the same ones: the block laid
    // out second holds them.
    let share = pos(Kind::Tcp).is_some()
        && pos(Kind::Udp).is_some()
        && ports_of(n.store_tcp) == ports_of(n.store_udp)
        && ports_of(n.store_tcp) != 0;
    let ports = p.new_label();
    let icmp_common = p.new_label();
    let both_icmp = n.icmp && n.icmp6;
    for (i, &k) in order.iter().enumerate() {
        p.bind(label(k));
        match k {
            Kind::Tcp | Kind::Udp => {
                let tcp = k == Kind::Tcp;
                if tcp {
                    p.check_ip(R8, 20);
                    // Data offset (high nibble of byte 12) >= 5.
                    p.emit(ldx(Size::B, R1, R8, 12));
                    p.jmp_imm(BPF_JLT, R1, 0x50, malformed);
                    if has(n.store_tcp, OFF_TCP_FLAGS, 1) {
                        p.emit(ldx(Size::B, R1, R8, 13));
                        p.emit(stx(Size::B, R10, R1, rec(OFF_TCP_FLAGS)));
                    }
                    p.emit(alu64_imm(BPF_OR, R9, F_TCP as i32));
                } else {
                    p.check_ip(R8, 8);
                    p.emit(alu64_imm(BPF_OR, R9, F_UDP as i32));
                }
                let other = if tcp { Kind::Udp } else { Kind::Tcp };
                if share && pos(other) > Some(i) {
                    p.goto(ports);
                    continue;
                }
                if share {
                    p.bind(ports);
                }
                emit_ports(p, ports_of(if tcp { n.store_tcp } else { n.store_udp }));
            }
            Kind::Sctp => {
                // The common header: ports, verification tag, checksum.
                p.check_ip(R8, 12);
                p.emit(alu64_imm(BPF_OR, R9, F_SCTP as i32));
                emit_ports(p, ports_of(n.store_sctp));
            }
            Kind::Icmp | Kind::Icmp6 => {
                let flag = if k == Kind::Icmp { F_ICMP } else { F_ICMP6 };
                p.emit(alu64_imm(BPF_OR, R9, flag as i32));
                let other = if k == Kind::Icmp {
                    Kind::Icmp6
                } else {
                    Kind::Icmp
                };
                if both_icmp && pos(other) > Some(i) {
                    p.goto(icmp_common);
                    continue;
                }
                if both_icmp {
                    p.bind(icmp_common);
                }
                p.check_ip(R8, 4);
                for (off, from) in [(OFF_ICMP_TYPE, 0), (OFF_ICMP_CODE, 1)] {
                    if has(n.store_icmp, off, 1) {
                        p.emit(ldx(Size::B, R0, R8, from));
                        p.emit(stx(Size::B, R10, R0, rec(off)));
                    }
                }
            }
        }
        p.goto(done);
    }
}

const fn span_ports() -> ByteMask {
    super::span(OFF_SPORT, 4)
}

/// Stores the ports in `mask` (host order).
fn emit_ports(p: &mut Em, mask: ByteMask) {
    match (has(mask, OFF_SPORT, 2), has(mask, OFF_DPORT, 2)) {
        (true, true) => {
            // Both ports in one load: be32 gives sport << 16 | dport.
            p.emit(ldx(Size::W, R0, R8, 0));
            p.emit(be32(R0));
            p.emit(stx(Size::H, R10, R0, rec(OFF_DPORT)));
            p.emit(alu64_imm(BPF_RSH, R0, 16));
            p.emit(stx(Size::H, R10, R0, rec(OFF_SPORT)));
        }
        (sport, true) | (sport @ true, false) => {
            let (off, from) = if sport {
                (OFF_SPORT, 0)
            } else {
                (OFF_DPORT, 2)
            };
            p.load_be16(R0, R8, from);
            p.emit(stx(Size::H, R10, R0, rec(off)));
        }
        (false, false) => {}
    }
}
