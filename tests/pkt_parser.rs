//! Kernel tests of the packet parser: every program loads through the verifier as XDP and
//! as TC, and BPF_PROG_TEST_RUN on hand-built frames must fill the record as specified.
//!
//! Method: for each 4-byte word of the record, a program `parser; r0 = word; exit` with
//! `malformed: r0 = 0xBAD; exit`. 16 programs per (hook, needs) read back the whole record.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::OnceLock;

use pol_compiler::bpf::disasm::disassemble;
use pol_compiler::bpf::insn::{self, encode, Size, R0, R10};
use pol_compiler::bpf::parser::{emit_packet_parser, Needs, ParserHook};
use pol_compiler::bpf::record::*;
use pol_compiler::bpf::Asm;
use pol_runtime::sys::{self, ProgType};

const MALFORMED: u32 = 0xBAD;
const EINVAL: i32 = 22;
const ALL: Needs = Needs {
    ip6: true,
    l4: true,
};

fn program(hook: ParserHook, needs: Needs, word: i16) -> Vec<insn::Insn> {
    let mut a = Asm::new();
    let malformed = a.new_label();
    emit_packet_parser(&mut a, hook, needs, malformed);
    a.emit(insn::ldx(Size::W, R0, R10, RECORD_BASE + 4 * word));
    a.emit(insn::exit());
    a.bind(malformed);
    a.emit(insn::mov64_imm(R0, MALFORMED as i32));
    a.emit(insn::exit());
    a.finish().expect("parser assembles").insns
}

fn prog_type(hook: ParserHook) -> ProgType {
    match hook {
        ParserHook::Xdp => ProgType::Xdp,
        ParserHook::Tc => ProgType::SchedCls,
    }
}

/// Loads the 16 record-word programs, printing the parser's size and verifier cost.
fn load_all(hook: ParserHook, needs: Needs) -> Vec<OwnedFd> {
    (0..RECORD_SIZE / 4)
        .map(|w| {
            let insns = program(hook, needs, w);
            if w == 0 && std::env::var_os("POL_DISASM").is_some() {
                println!("{}", disassemble(&insns, &[], &[], &|_| String::new()));
            }
            let (fd, log) = sys::prog_load_raw(prog_type(hook), &encode(&insns), "GPL", 4)
                .unwrap_or_else(|e| panic!("{hook:?} {needs:?} rejected: {e}"));
            if w == 0 {
                let stats = log
                    .lines()
                    .find(|l| l.starts_with("processed"))
                    .unwrap_or("");
                println!(
                    "parser {hook:?} {needs:?}: {} insns (+4 trailer); {stats}",
                    insns.len() - 4
                );
            }
            fd
        })
        .collect()
}

/// Whether the kernel can run the tests; without it the tests pass vacuously, except in CI.
fn kernel() -> bool {
    static OK: OnceLock<Result<(), String>> = OnceLock::new();
    match OK.get_or_init(sys::bpf_available) {
        Ok(()) => true,
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => panic!("{why}"),
        Err(why) => {
            eprintln!("skipping kernel test: {why}");
            false
        }
    }
}

fn progs(hook: ParserHook) -> &'static [OwnedFd] {
    static XDP: OnceLock<Vec<OwnedFd>> = OnceLock::new();
    static TC: OnceLock<Vec<OwnedFd>> = OnceLock::new();
    match hook {
        ParserHook::Xdp => XDP.get_or_init(|| load_all(hook, ALL)),
        ParserHook::Tc => TC.get_or_init(|| load_all(hook, ALL)),
    }
}

/// The record as the parser left it, decoded.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Rec {
    flags: u32,
    eth_type: u16,
    vlan: [u16; 2],
    vlan_count: u8,
    proto: u8,
    ttl: u8,
    version: u8,
    ip_len: u16,
    src_plen: u32,
    src: [u8; 16],
    dst_plen: u32,
    dst: [u8; 16],
    sport: u16,
    dport: u16,
    tcp_flags: u8,
    icmp: (u8, u8),
}

fn decode(b: &[u8; 64]) -> Rec {
    let u16_at = |o: i16| u16::from_ne_bytes([b[o as usize], b[o as usize + 1]]);
    let u32_at =
        |o: i16| u32::from_ne_bytes(b[o as usize..o as usize + 4].try_into().unwrap_or_default());
    let addr = |o: i16| -> [u8; 16] {
        b[o as usize..o as usize + 16]
            .try_into()
            .unwrap_or_default()
    };
    Rec {
        flags: u32_at(OFF_FLAGS),
        eth_type: u16_at(OFF_ETH_TYPE),
        vlan: [u16_at(OFF_VLAN_OUTER), u16_at(OFF_VLAN_INNER)],
        vlan_count: b[OFF_VLAN_COUNT as usize],
        proto: b[OFF_IP_PROTO as usize],
        ttl: b[OFF_IP_TTL as usize],
        version: b[OFF_IP_VERSION as usize],
        ip_len: u16_at(OFF_IP_LEN),
        src_plen: u32_at(OFF_SRC_PREFIXLEN),
        src: addr(OFF_SRC),
        dst_plen: u32_at(OFF_DST_PREFIXLEN),
        dst: addr(OFF_DST),
        sport: u16_at(OFF_SPORT),
        dport: u16_at(OFF_DPORT),
        tcp_flags: b[OFF_TCP_FLAGS as usize],
        icmp: (b[OFF_ICMP_TYPE as usize], b[OFF_ICMP_CODE as usize]),
    }
}

fn run(hook: ParserHook, pkt: &[u8]) -> Result<Option<Rec>, sys::SysError> {
    let mut rec = [0u8; 64];
    for (w, fd) in progs(hook).iter().enumerate() {
        let r = sys::test_run(fd.as_fd(), pkt, 1)?.retval;
        if w == 0 && r == MALFORMED {
            return Ok(None);
        }
        rec[4 * w..4 * w + 4].copy_from_slice(&r.to_ne_bytes());
    }
    Ok(Some(decode(&rec)))
}

/// Parses `pkt` as XDP and as TC (which must agree); `None` means malformed. The TC test
/// run refuses (EINVAL) an IPv4/IPv6 EtherType with less than the fixed IP header behind
/// it, so those frames are checked through XDP only.
fn parse(pkt: &[u8]) -> Option<Rec> {
    let xdp = run(ParserHook::Xdp, pkt).unwrap_or_else(|e| panic!("XDP test run: {e}"));
    match run(ParserHook::Tc, pkt) {
        Ok(tc) => assert_eq!(xdp, tc, "XDP and TC parse differently: {pkt:02x?}"),
        Err(e) if e.errno() == Some(EINVAL) && pkt.len() < 14 + 40 => {}
        Err(e) => panic!("TC test run of {} bytes: {e}", pkt.len()),
    }
    xdp
}

fn ok(pkt: &[u8]) -> Rec {
    parse(pkt).unwrap_or_else(|| panic!("malformed: {pkt:02x?}"))
}

fn malformed(pkt: &[u8]) {
    assert_eq!(parse(pkt), None, "should be malformed: {pkt:02x?}");
}

// ---- Frames, byte by byte (pol_runtime::packet was not there yet when this was written) ----

const SRC4: [u8; 4] = [192, 0, 2, 1];
const DST4: [u8; 4] = [198, 51, 100, 7];
const SRC6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const DST6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0xb, 0xad, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

fn eth(tags: &[(u16, u16)], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
    for &(tpid, vid) in tags {
        f.extend(tpid.to_be_bytes());
        f.extend((0xe000 | vid).to_be_bytes()); // PCP 7: must be masked off
    }
    f.extend(ethertype.to_be_bytes());
    f.extend(payload);
    f
}

fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut h = vec![0u8; 20];
    h[0..2].copy_from_slice(&sport.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    h[12] = 0x50;
    h[13] = flags;
    h
}

fn udp(sport: u16, dport: u16) -> Vec<u8> {
    let mut h = vec![0u8; 8];
    h[0..2].copy_from_slice(&sport.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    h[4..6].copy_from_slice(&8u16.to_be_bytes());
    h
}

/// IPv4 with `options` (a multiple of 4 bytes); `frag` is the flags/offset word.
fn ip4(proto: u8, frag: u16, options: &[u8], payload: &[u8]) -> Vec<u8> {
    let ihl = 5 + options.len() / 4;
    let mut h = vec![0x40 | ihl as u8, 0];
    h.extend(((ihl * 4 + payload.len()) as u16).to_be_bytes());
    h.extend([0, 1]);
    h.extend(frag.to_be_bytes());
    h.extend([64, proto, 0, 0]);
    h.extend(SRC4);
    h.extend(DST4);
    h.extend(options);
    h.extend(payload);
    h
}

/// IPv6 with extension headers `(type, body)`; each header gets its next-header byte.
fn ip6(exts: &[(u8, Vec<u8>)], proto: u8, payload: &[u8]) -> Vec<u8> {
    let mut rest = Vec::new();
    for (i, (_, body)) in exts.iter().enumerate() {
        rest.push(exts.get(i + 1).map_or(proto, |e| e.0));
        rest.extend(body);
    }
    rest.extend(payload);
    let mut h = vec![0x60, 0, 0, 0];
    h.extend((rest.len() as u16).to_be_bytes());
    h.push(exts.first().map_or(proto, |e| e.0));
    h.push(33);
    h.extend(SRC6);
    h.extend(DST6);
    h.extend(rest);
    h
}

/// Body of an options header (hop-by-hop, routing, destination) of `8 * units` bytes.
fn opts(units: u8) -> Vec<u8> {
    let mut b = vec![units - 1];
    b.resize(8 * units as usize - 1, 0);
    b
}

/// Body of an AH header: (hdrlen + 2) * 4 bytes in all.
fn ah(hdrlen: u8) -> Vec<u8> {
    let mut b = vec![hdrlen];
    b.resize((hdrlen as usize + 2) * 4 - 1, 0);
    b
}

fn frag6(offset: u16, more: bool) -> Vec<u8> {
    let mut b = vec![0xff]; // reserved length byte: ignored, as the kernel does
    b.extend((offset << 3 | more as u16).to_be_bytes());
    b.extend([0, 0, 0, 1]);
    b
}

fn pad(mut f: Vec<u8>, to: usize) -> Vec<u8> {
    f.resize(f.len().max(to), 0);
    f
}

fn v4_tcp(dport: u16) -> Vec<u8> {
    eth(&[], 0x0800, &ip4(6, 0, &[], &tcp(40000, dport, 0x02)))
}

// ---- Tests ----

#[test]
fn ipv4_tcp() {
    if !kernel() {
        return;
    }
    let r = ok(&v4_tcp(23));
    let mut src = [0u8; 16];
    src[..4].copy_from_slice(&SRC4);
    let mut dst = [0u8; 16];
    dst[..4].copy_from_slice(&DST4);
    let want = Rec {
        flags: F_IP4 | F_TCP,
        eth_type: 0x0800,
        proto: 6,
        ttl: 64,
        version: 4,
        ip_len: 40,
        src_plen: 32,
        src,
        dst_plen: 32,
        dst,
        sport: 40000,
        dport: 23,
        tcp_flags: 0x02,
        ..Rec::default()
    };
    assert_eq!(r, want);
    // Ethernet padding after the IP packet is fine.
    assert_eq!(ok(&pad(v4_tcp(23), 80)), want);
}

/// Every (hook, needs) combination passes the verifier; prints sizes and verifier cost.
#[test]
fn all_variants_load() {
    if !kernel() {
        return;
    }
    for hook in [ParserHook::Xdp, ParserHook::Tc] {
        for (ip6, l4) in [(false, false), (false, true), (true, false), (true, true)] {
            let needs = Needs { ip6, l4 };
            let insns = program(hook, needs, 0);
            let (_fd, log) = sys::prog_load_raw(prog_type(hook), &encode(&insns), "GPL", 4)
                .unwrap_or_else(|e| panic!("{hook:?} {needs:?} rejected: {e}"));
            let stats = log
                .lines()
                .find(|l| l.starts_with("processed"))
                .unwrap_or("");
            let time = log
                .lines()
                .find(|l| l.starts_with("verification time"))
                .unwrap_or("");
            println!(
                "{hook:?} ip6={ip6} l4={l4}: {} insns; {stats}; {time}",
                insns.len() - 4
            );
        }
    }
}

#[test]
fn vlan_and_qinq() {
    if !kernel() {
        return;
    }
    let inner = ip4(17, 0, &[], &udp(53, 5353));
    let r = ok(&eth(&[(0x8100, 100)], 0x0800, &inner));
    assert_eq!(
        (r.flags, r.vlan, r.vlan_count, r.eth_type),
        (F_VLAN | F_IP4 | F_UDP, [100, 0], 1, 0x0800)
    );
    assert_eq!((r.sport, r.dport), (53, 5353));
    let r = ok(&eth(&[(0x88a8, 7), (0x8100, 4095)], 0x0800, &inner));
    assert_eq!(
        (r.flags, r.vlan, r.vlan_count),
        (F_VLAN | F_IP4 | F_UDP, [7, 4095], 2)
    );
    assert_eq!(r.dport, 5353);
    // A third tag hides the payload: fail closed.
    malformed(&eth(
        &[(0x88a8, 1), (0x8100, 2), (0x8100, 3)],
        0x0800,
        &inner,
    ));
    // Truncated inside a tag.
    let two = eth(&[(0x88a8, 7), (0x8100, 8)], 0x0800, &inner);
    for len in [15, 17, 19, 21] {
        malformed(&two[..len]);
    }
    // ARP (or any other EtherType) behind tags: no IP, just the tags.
    let r = ok(&pad(eth(&[(0x8100, 9)], 0x0806, &[0; 28]), 60));
    assert_eq!(
        (r.flags, r.eth_type, r.vlan, r.proto),
        (F_VLAN, 0x0806, [9, 0], 0)
    );
}

#[test]
fn other_ethertypes_and_short_frames() {
    if !kernel() {
        return;
    }
    let r = ok(&pad(eth(&[], 0x0806, &[0; 28]), 60));
    assert_eq!(
        r,
        Rec {
            eth_type: 0x0806,
            ..Rec::default()
        }
    );
    // 14 bytes exactly: an Ethernet header with nothing after it.
    assert_eq!(ok(&eth(&[], 0x88cc, &[])).eth_type, 0x88cc);
    // (Frames under 14 bytes: BPF_PROG_TEST_RUN refuses them for XDP and TC alike.)
}

#[test]
fn ipv4_header_checks() {
    if !kernel() {
        return;
    }
    // Options honoured: 8 bytes of options (IHL 7), TCP behind them.
    let r = ok(&eth(&[], 0x0800, &ip4(6, 0, &[1; 8], &tcp(1, 22, 0x12))));
    assert_eq!(
        (r.flags, r.ip_len, r.dport, r.tcp_flags),
        (F_IP4 | F_TCP, 48, 22, 0x12)
    );
    // IHL 4, and IHL 15 with a 20-byte packet.
    let mut p = v4_tcp(23);
    p[14] = 0x44;
    malformed(&p);
    let mut p = v4_tcp(23);
    p[14] = 0x4f;
    malformed(&p);
    // Version 6 in an IPv4 EtherType.
    let mut p = v4_tcp(23);
    p[14] = 0x65;
    malformed(&p);
    // Total length larger than the frame, and smaller than the header.
    let mut p = v4_tcp(23);
    p[16..18].copy_from_slice(&41u16.to_be_bytes());
    malformed(&p);
    p[16..18].copy_from_slice(&19u16.to_be_bytes());
    malformed(&p);
    // Truncated at every byte of the IPv4 and TCP headers.
    let p = v4_tcp(23);
    for len in 14..p.len() {
        malformed(&p[..len]);
    }
    // TCP data offset < 5.
    let mut p = v4_tcp(23);
    p[14 + 20 + 12] = 0x40;
    malformed(&p);
    // Unknown protocol: IP fields, no L4.
    let r = ok(&eth(&[], 0x0800, &ip4(47, 0, &[], &[0; 4])));
    assert_eq!((r.flags, r.proto, r.dport), (F_IP4, 47, 0));
    // ICMP echo request.
    let r = ok(&eth(
        &[],
        0x0800,
        &ip4(1, 0, &[], &[8, 0, 0, 0, 0, 1, 0, 1]),
    ));
    assert_eq!((r.flags, r.icmp), (F_IP4 | F_ICMP, (8, 0)));
    malformed(&eth(&[], 0x0800, &ip4(1, 0, &[], &[8, 0, 0])));
}

#[test]
fn ipv4_fragments() {
    if !kernel() {
        return;
    }
    // First fragment (MF, offset 0): L4 parsed.
    let r = ok(&eth(&[], 0x0800, &ip4(6, 0x2000, &[], &tcp(5, 23, 2))));
    assert_eq!((r.flags, r.dport), (F_IP4 | F_FRAG | F_TCP, 23));
    // A tiny first fragment that cannot hold the TCP header: malformed.
    malformed(&eth(&[], 0x0800, &ip4(6, 0x2000, &[], &tcp(5, 23, 2)[..8])));
    // Later fragments (offset != 0, with or without MF): no L4, whatever the payload says.
    for frag in [0x2001, 0x0001, 0x1fff] {
        let r = ok(&eth(&[], 0x0800, &ip4(6, frag, &[], &[0xff; 8])));
        assert_eq!(
            (r.flags, r.proto, r.dport),
            (F_IP4 | F_FRAG | F_FRAG_LATER, 6, 0)
        );
    }
    // DF alone is not a fragment.
    let r = ok(&eth(&[], 0x0800, &ip4(6, 0x4000, &[], &tcp(5, 23, 2))));
    assert_eq!(r.flags, F_IP4 | F_TCP);
}

#[test]
fn ipv6_and_extension_headers() {
    if !kernel() {
        return;
    }
    let t = tcp(1234, 443, 0x10);
    let r = ok(&eth(&[], 0x86dd, &ip6(&[], 6, &t)));
    let want = Rec {
        flags: F_IP6 | F_TCP,
        eth_type: 0x86dd,
        proto: 6,
        ttl: 33,
        version: 6,
        ip_len: 60,
        src_plen: 128,
        src: SRC6,
        dst_plen: 128,
        dst: DST6,
        sport: 1234,
        dport: 443,
        tcp_flags: 0x10,
        ..Rec::default()
    };
    assert_eq!(r, want);
    // Each extension header kind, then all of them; the L4 header is still found.
    let kinds = [
        (0, opts(1)),
        (43, opts(3)),
        (60, opts(2)),
        (51, ah(4)),
        (44, frag6(0, true)),
    ];
    for e in &kinds {
        let r = ok(&eth(&[], 0x86dd, &ip6(std::slice::from_ref(e), 6, &t)));
        let frag = if e.0 == 44 { F_FRAG } else { 0 };
        assert_eq!(
            (r.flags, r.proto, r.dport),
            (F_IP6 | F_TCP | frag, 6, 443),
            "ext {}",
            e.0
        );
    }
    let mut six = kinds.to_vec();
    six.push((60, opts(1)));
    let r = ok(&eth(&[(0x8100, 3)], 0x86dd, &ip6(&six, 17, &udp(9, 10))));
    assert_eq!(
        (r.flags, r.proto, r.dport),
        (F_VLAN | F_IP6 | F_UDP | F_FRAG, 17, 10)
    );
    // Seven: fail closed.
    six.push((0, opts(1)));
    malformed(&eth(&[], 0x86dd, &ip6(&six, 17, &udp(9, 10))));
    // Later fragment: the fragment header's next header is the protocol; no L4.
    let r = ok(&eth(
        &[],
        0x86dd,
        &ip6(&[(0, opts(1)), (44, frag6(3, false))], 6, &[0xff; 8]),
    ));
    assert_eq!(
        (r.flags, r.proto, r.dport),
        (F_IP6 | F_FRAG | F_FRAG_LATER, 6, 0)
    );
    // Truncated at every byte up to the end of the TCP header.
    let p = eth(&[], 0x86dd, &ip6(&[(0, opts(1)), (51, ah(1))], 6, &t));
    for len in 14..p.len() {
        malformed(&p[..len]);
    }
    // Payload length larger than the frame.
    let mut p = eth(&[], 0x86dd, &ip6(&[], 6, &t));
    p[18..20].copy_from_slice(&21u16.to_be_bytes());
    malformed(&p);
    // ICMPv6 and "no next header".
    let r = ok(&eth(
        &[],
        0x86dd,
        &ip6(&[], 58, &[128, 0, 0, 0, 0, 0, 0, 0]),
    ));
    assert_eq!((r.flags, r.icmp), (F_IP6 | F_ICMP6, (128, 0)));
    let r = ok(&eth(&[], 0x86dd, &ip6(&[(60, opts(1))], 59, &[])));
    assert_eq!((r.flags, r.proto, r.ip_len), (F_IP6, 59, 48));
}
