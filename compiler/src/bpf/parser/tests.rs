//! Listings of small parsers, to read and to catch unintended changes.

use super::*;
use crate::bpf::disasm::disassemble;

fn listing(hook: ParserHook, needs: Needs) -> String {
    let mut a = Asm::new();
    let malformed = a.new_label();
    emit_packet_parser(&mut a, hook, needs, malformed);
    a.bind(malformed);
    a.emit(exit());
    let p = a.finish().expect("assembles");
    disassemble(&p.insns, &[], &[], &|_| String::new())
}

/// The smallest parser (Ethernet and VLAN tags only), as a listing to read.
#[test]
fn minimal_xdp_parser_listing() {
    insta::assert_snapshot!(listing(ParserHook::Xdp, Needs::default()));
}

/// IPv4 source and TCP destination port only: the benchmark filter's parser.
#[test]
fn ip4_src_tcp_dport_listing() {
    let needs = Needs {
        ip4: true,
        tcp4: true,
        reads: span(OFF_FLAGS, 4) | span(OFF_SRC, 4) | span(OFF_DPORT, 2),
        store4: span(OFF_SRC, 4),
        store_tcp: span(OFF_DPORT, 2),
        ..Needs::default()
    };
    insta::assert_snapshot!(listing(ParserHook::Xdp, needs));
}

/// The full parser.
#[test]
fn full_tc_parser_size() {
    let n = listing(ParserHook::Tc, Needs::ALL).lines().count();
    assert!(n > 250, "{n}");
}

#[test]
fn spans() {
    assert_eq!(span(0, 4), 0xf);
    assert_eq!(span(60, 4), 0xf << 60);
    assert_eq!(span(64, 4), 0xf << 64);
    assert_eq!(span(0, 128), !0);
    assert_eq!(Needs::default().zeroed(), 0);
    assert_eq!(Needs::ALL.zeroed(), !0x3f);
}
