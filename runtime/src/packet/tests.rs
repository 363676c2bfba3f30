//! Packet builder tests: bytes checked against hand-written frames whose checksums were
//! computed independently (Python `struct`, and the well-known IPv4 header example with
//! checksum 0xb861), plus checksum verification of every kind of packet.

use super::encode::{checksum, sum_words};
use super::{Ext, Packet, PacketError, ACK, SYN};

fn build(p: Packet) -> Vec<u8> {
    match p.build() {
        Ok(bytes) => bytes,
        Err(e) => panic!("packet should build: {e}"),
    }
}

/// Whether the Internet checksum over `data` (checksum field included) verifies.
fn verifies(pseudo: &[u8], data: &[u8]) -> bool {
    checksum(sum_words(pseudo) + sum_words(data)) == 0
}

#[test]
fn tcp_syn_matches_known_bytes() {
    let got = build(
        Packet::tcp()
            .src("192.0.2.1")
            .dst("198.51.100.1")
            .sport(1234)
            .dport(23)
            .flags(SYN),
    );
    #[rustfmt::skip]
    let want: [u8; 60] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00,
        // IPv4: len 40, id 1, ttl 64, TCP, checksum 0x8e99
        0x45, 0x00, 0x00, 0x28, 0x00, 0x01, 0x00, 0x00, 0x40, 0x06, 0x8e, 0x99,
        0xc0, 0x00, 0x02, 0x01, 0xc6, 0x33, 0x64, 0x01,
        // TCP: 1234 -> 23, seq 1, SYN, window 64240, checksum 0xc3d1
        0x04, 0xd2, 0x00, 0x17, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
        0x50, 0x02, 0xfa, 0xf0, 0xc3, 0xd1, 0x00, 0x00,
        // Ethernet padding to 60 bytes
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];
    assert_eq!(got, want);
}

#[test]
fn ipv4_header_matches_the_textbook_example() {
    // 4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7
    let got = build(
        Packet::udp()
            .src("192.168.0.1")
            .dst("192.168.0.199")
            .ip_id(0)
            .dont_fragment()
            .payload(&[0; 87]),
    );
    let want = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];
    assert_eq!(got.get(14..34), Some(&want[..]));
    assert_eq!(got.len(), 14 + 0x73);
}

#[test]
fn udp6_with_extension_chain() {
    let got = build(
        Packet::udp()
            .src("2001:db8::1")
            .dst("2001:db8::2")
            .sport(5353)
            .dport(53)
            .ext(Ext::HopByHop)
            .ext(Ext::Routing)
            .ext(Ext::DestOpts)
            .fragment(0, true)
            .payload(b"hi"),
    );
    assert_eq!(got.get(12..14), Some(&[0x86, 0xdd][..]));
    assert_eq!(got.get(14), Some(&0x60));
    // payload length: 4 extension headers of 8 bytes + 10 bytes of UDP
    assert_eq!(got.get(18..20), Some(&[0, 42][..]));
    assert_eq!(got.get(20), Some(&0), "first header: hop-by-hop");
    let exts = 54;
    let next: Vec<u8> = (0..4)
        .filter_map(|i| got.get(exts + 8 * i).copied())
        .collect();
    assert_eq!(
        next,
        [43, 60, 44, 17],
        "hop-by-hop -> routing -> dest opts -> fragment -> UDP"
    );
    // fragment header: offset 0, M = 1
    assert_eq!(got.get(exts + 24 + 2..exts + 24 + 4), Some(&[0, 1][..]));
    let udp = exts + 32;
    assert_eq!(
        got.get(udp..udp + 10),
        Some(&[0x14, 0xe9, 0x00, 0x35, 0x00, 0x0a, 0x26, 0xde, b'h', b'i'][..])
    );
}

#[test]
fn vlan_and_qinq_tags() {
    let got = build(Packet::tcp().vlan(100).vlan(200));
    assert_eq!(
        got.get(12..22),
        Some(&[0x81, 0, 0, 100, 0x81, 0, 0, 200, 0x08, 0x00][..])
    );
    let got = build(Packet::udp().qinq(100).vlan(0xabc).ip6());
    assert_eq!(
        got.get(12..22),
        Some(&[0x88, 0xa8, 0, 100, 0x81, 0, 0x0a, 0xbc, 0x86, 0xdd][..])
    );
    assert_eq!(got.get(22), Some(&0x60));
}

#[test]
fn ipv4_options_and_fragments() {
    // Router alert (4 bytes) and a 1-byte NOP padded to 8 bytes: IHL 7.
    let got = build(
        Packet::tcp()
            .ip4_options(&[0x94, 0x04, 0, 0, 0x01])
            .frag4(3, true),
    );
    assert_eq!(got.get(14), Some(&0x47));
    assert_eq!(
        got.get(34..42),
        Some(&[0x94, 0x04, 0, 0, 0x01, 0, 0, 0][..])
    );
    assert_eq!(got.get(20..22), Some(&[0x20, 0x03][..]), "MF and offset 3");
    assert!(verifies(&[], got.get(14..42).unwrap_or_default()));
    // TCP starts after the options.
    assert_eq!(got.get(42..44), Some(&40000u16.to_be_bytes()[..]));
}

#[test]
fn checksums_verify_for_every_kind() {
    let v4_pseudo = |f: &[u8], proto: u8, len: usize| {
        let mut p = f.get(26..34).unwrap_or_default().to_vec();
        p.extend_from_slice(&[0, proto]);
        p.extend_from_slice(&(len as u16).to_be_bytes());
        p
    };
    let tcp = build(
        Packet::tcp()
            .flags(SYN | ACK)
            .tcp_options(&[2, 4, 5, 0xb4])
            .payload(b"GET /"),
    );
    assert_eq!(tcp.get(46), Some(&0x60), "data offset 6");
    let seg = tcp.get(34..34 + 24 + 5).unwrap_or_default();
    assert!(verifies(&v4_pseudo(&tcp, 6, seg.len()), seg));

    let udp = build(Packet::udp().payload(b"abc"));
    let dgram = udp.get(34..45).unwrap_or_default();
    assert!(verifies(&v4_pseudo(&udp, 17, 11), dgram));

    let icmp = build(Packet::icmp());
    assert_eq!(icmp.get(34..42), Some(&[8, 0, 0xf7, 0xfd, 0, 1, 0, 1][..]));

    let icmp6 = build(Packet::icmp6().dst("2001:db8::99"));
    assert_eq!(icmp6.get(20), Some(&58));
    let mut pseudo = icmp6.get(22..54).unwrap_or_default().to_vec();
    pseudo.extend_from_slice(&[0, 0, 0, 8, 0, 0, 0, 58]);
    let msg = icmp6.get(54..62).unwrap_or_default();
    assert_eq!(msg.first(), Some(&128));
    assert!(verifies(&pseudo, msg));
}

#[test]
fn arp_and_raw_frames() {
    let got = build(Packet::arp().src("192.0.2.1").dst("192.0.2.2"));
    assert_eq!(got.get(..6), Some(&[0xff; 6][..]));
    assert_eq!(got.get(12..14), Some(&[0x08, 0x06][..]));
    #[rustfmt::skip]
    let arp = [
        0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1, 192, 0, 2, 1,
        0, 0, 0, 0, 0, 0, 192, 0, 2, 2,
    ];
    assert_eq!(got.get(14..42), Some(&arp[..]));
    assert_eq!(got.len(), 60);

    let raw = build(Packet::raw(0x88cc).payload(&[1, 2, 3]));
    assert_eq!(raw.get(12..17), Some(&[0x88, 0xcc, 1, 2, 3][..]));
    assert_eq!(raw.len(), 60);
}

#[test]
fn truncation_and_padding() {
    assert_eq!(build(Packet::tcp().truncate(20)).len(), 20);
    assert_eq!(build(Packet::tcp().truncate(0)).len(), 0);
    // Truncating beyond the end changes nothing and does not pad.
    assert_eq!(build(Packet::udp().truncate(1000)).len(), 42);
    assert_eq!(build(Packet::udp()).len(), 60);
    assert_eq!(build(Packet::tcp().payload(&[7; 100])).len(), 154);
}

#[test]
fn corrupted_fields_are_written_as_given() {
    let got = build(Packet::tcp().ihl(3).ip_total_len(9999).ttl(1).tos(0x10));
    assert_eq!(got.get(14), Some(&0x43));
    assert_eq!(got.get(15), Some(&0x10));
    assert_eq!(got.get(16..18), Some(&9999u16.to_be_bytes()[..]));
    assert_eq!(got.get(22), Some(&1));
    // The header checksum covers the corrupted fields, so only the fields are wrong.
    assert!(verifies(&[], got.get(14..34).unwrap_or_default()));

    let got = build(
        Packet::tcp()
            .ip_checksum(0)
            .l4_checksum(0xdead)
            .tcp_data_offset(15),
    );
    assert_eq!(got.get(24..26), Some(&[0, 0][..]));
    assert_eq!(got.get(46), Some(&0xf0));
    assert_eq!(got.get(50..52), Some(&[0xde, 0xad][..]));

    let got = build(Packet::udp().ip6().ip_total_len(3).ip_proto(6).udp_len(1));
    assert_eq!(got.get(18..20), Some(&[0, 3][..]));
    assert_eq!(got.get(20), Some(&6));
    assert_eq!(got.get(58..60), Some(&[0, 1][..]));
}

#[test]
fn bad_descriptions_are_errors() {
    let err = |p: Packet| p.build().err();
    assert_eq!(
        err(Packet::tcp().src("300.1.1.1")),
        Some(PacketError::BadAddress("300.1.1.1".into()))
    );
    assert!(matches!(
        err(Packet::tcp().src("192.0.2.1").dst("2001:db8::1")),
        Some(PacketError::MixedFamilies { .. })
    ));
    assert!(err(Packet::tcp().src("192.0.2.1").ext(Ext::Ah)).is_some());
    assert!(err(Packet::tcp().ip6().ip4_options(&[1])).is_some());
    assert!(err(Packet::tcp().ip4_options(&[1; 41])).is_some());
    assert!(err(Packet::tcp().tcp_options(&[1; 41])).is_some());
    assert!(err(Packet::tcp().vlan(4096)).is_some());
    assert!(err(Packet::tcp().frag4(0x2000, false)).is_some());
    assert!(err(Packet::arp().src("2001:db8::1")).is_some());
    assert!(err(Packet::udp().payload(&vec![0; 70000])).is_some());
}

#[test]
fn ah_header_is_sixteen_bytes() {
    let got = build(Packet::tcp().ip6().ext(Ext::Ah));
    assert_eq!(got.get(20), Some(&51));
    assert_eq!(
        got.get(54..56),
        Some(&[6, 2][..]),
        "next = TCP, length 2 (16 bytes)"
    );
    assert_eq!(got.get(18..20), Some(&[0, 36][..]));
}
