//! Kernel tests of the packet parser: every parser variant loads through the verifier as
//! XDP and as TC, BPF_PROG_TEST_RUN on hand-built frames must fill the record as
//! specified, and every variant `hir::needs` can ask for must agree with the full parser
//! on the fields it parses (a differential check over all the frames below).
//!
//! Method: a program `record = pattern; parser; map[0] = record` (malformed: return
//! 0xBAD) dumps the record through a one-entry array map. The pattern makes a byte the
//! variant promises (`Needs::reads`) but leaves unwritten show up as a mismatch; a
//! second program without the pattern reads each such byte, so the verifier checks that
//! every path initialises them.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::{Mutex, OnceLock};

use pol_compiler::bpf::disasm::disassemble;
use pol_compiler::bpf::insn::{self, encode};
use pol_compiler::packet::needs::{span, ByteMask, Needs, ParserHook};
use pol_compiler::packet::record::*;

/// The record's size in bytes.
const REC: usize = RECORD_SIZE as usize;
use pol_compiler::ir::to_mir::{parser_probe, Probe};
use pol_runtime::direct::Object as _;
use pol_runtime::sys::{self, MapType, ProgType};

/// The dump program's malformed return: MIR refuses constants outside the hook's return
/// codes, and 3 is one for XDP (XDP_TX) and TC (TC_ACT_PIPE) alike.
const MALFORMED: u32 = 3;
const EINVAL: i32 = 22;
const ALL: Needs = Needs::ALL;

/// The parser (`ir::to_mir`) as a probe program, compiled by `codegen`, with map `dump`
/// pointing at `map_fd`.
fn mir_program(hook: ParserHook, needs: Needs, probe: Probe, map_fd: i32) -> Vec<insn::Insn> {
    let m = parser_probe(hook, needs, probe).unwrap_or_else(|e| panic!("{hook:?} {needs:?}: {e}"));
    let c =
        pol_compiler::codegen::compile(&m).unwrap_or_else(|e| panic!("{hook:?} {needs:?}: {e}"));
    let code = &c.funcs[0].code;
    let mut insns = code.insns.clone();
    for (slot, _) in &code.map_relocs {
        insns[*slot].imm = map_fd;
    }
    insns
}

/// `record = pattern; parser; map[0] = record; return 0` (malformed: return `MALFORMED`).
fn dump_insns(hook: ParserHook, needs: Needs, map_fd: i32) -> Vec<insn::Insn> {
    mir_program(
        hook,
        needs,
        Probe::Dump {
            fill: i64::from(0xa5a5_a5a5_u32 as i32),
            malformed: i64::from(MALFORMED),
        },
        map_fd,
    )
}

/// `parser; read every byte of needs.reads; return 0`: the verifier rejects it if some
/// path leaves one of those bytes unwritten.
fn reads_insns(hook: ParserHook, needs: Needs) -> Vec<insn::Insn> {
    mir_program(hook, needs, Probe::Reads, -1)
}

/// The size of the parser's test program: the parser, a load of each byte it must fill,
/// the return.
fn parser_len(hook: ParserHook, needs: Needs) -> usize {
    reads_insns(hook, needs).len()
}

fn prog_type(hook: ParserHook) -> ProgType {
    match hook {
        ParserHook::Xdp => ProgType::Xdp,
        ParserHook::Tc => ProgType::SchedCls,
    }
}

fn load(hook: ParserHook, needs: Needs, insns: &[insn::Insn]) -> (OwnedFd, String) {
    sys::prog_load_raw(prog_type(hook), &encode(insns), "GPL", 1).unwrap_or_else(|e| {
        panic!(
            "{hook:?} {needs:?} rejected: {e}\n{}",
            disassemble(insns, &[], &[], &|_| String::new())
        )
    })
}

/// A loaded dump program and its map.
struct Dumper {
    prog: OwnedFd,
    map: OwnedFd,
}

impl Dumper {
    fn new(hook: ParserHook, needs: Needs) -> Dumper {
        let map = sys::map_create(MapType::Array, 4, RECORD_SIZE as u32, 1, 0)
            .unwrap_or_else(|e| panic!("array map: {e}"));
        let insns = dump_insns(hook, needs, map.as_raw_fd());
        let (prog, _) = load(hook, needs, &insns);
        let (_fd, _) = load(hook, needs, &reads_insns(hook, needs));
        Dumper { prog, map }
    }

    /// The record after parsing `pkt`, `Ok(None)` when malformed.
    fn run(&self, pkt: &[u8]) -> Result<Option<[u8; REC]>, sys::SysError> {
        // One map per program, but tests run in parallel threads: one packet at a time.
        static LOCK: Mutex<()> = Mutex::new(());
        let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        if sys::test_run(self.prog.as_fd(), pkt, 1)?.retval == MALFORMED {
            return Ok(None);
        }
        let v =
            sys::map_lookup(self.map.as_fd(), &0u32.to_ne_bytes(), REC)?.expect("array entry 0");
        Ok(Some(v.try_into().expect("a whole record")))
    }
}

/// Fails the test unless the kernel can run it (tests that cannot run here are compiled
/// ignored, see build.rs); the probe runs once.
fn require_kernel() {
    static OK: OnceLock<Result<(), String>> = OnceLock::new();
    if let Err(why) = OK.get_or_init(sys::bpf_available) {
        panic!("kernel test cannot run: {why}");
    }
}

/// The full parser of `hook`, loaded once.
fn full(hook: ParserHook) -> &'static Dumper {
    static XDP: OnceLock<Dumper> = OnceLock::new();
    static TC: OnceLock<Dumper> = OnceLock::new();
    let cell = match hook {
        ParserHook::Xdp => &XDP,
        ParserHook::Tc => &TC,
    };
    cell.get_or_init(|| Dumper::new(hook, ALL))
}

/// The record as the parser left it, decoded.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Rec {
    flags: u32,
    eth_type: u16,
    vlan: [u16; 2],
    vlan_count: u8,
    tpid: u16,
    proto: u8,
    ttl: u8,
    version: u8,
    ip_len: u32,
    src_plen: u32,
    src: [u8; 16],
    dst_plen: u32,
    dst: [u8; 16],
    sport: u16,
    dport: u16,
    tcp_flags: u8,
    icmp: (u8, u8),
}

fn decode(b: &[u8; REC]) -> Rec {
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
        tpid: u16_at(OFF_VLAN_TPID),
        proto: b[OFF_IP_PROTO as usize],
        ttl: b[OFF_IP_TTL as usize],
        version: b[OFF_IP_VERSION as usize],
        ip_len: u32_at(OFF_IP_LEN),
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

/// The full parser on `pkt`.
fn run(hook: ParserHook, pkt: &[u8]) -> Result<Option<Rec>, sys::SysError> {
    Ok(full(hook).run(pkt)?.map(|r| decode(&r)))
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
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn ipv4_tcp() {
    require_kernel();
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

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn vlan_and_qinq() {
    require_kernel();
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
    // Pre-standard QinQ TPIDs are tags too, outer and inner; `vlan.tpid` is the outer's.
    for outer in [0x9100, 0x9200] {
        let r = ok(&eth(&[(outer, 5), (0x8100, 6)], 0x0800, &inner));
        assert_eq!(
            (r.flags, r.vlan, r.vlan_count, r.tpid, r.dport),
            (F_VLAN | F_IP4 | F_UDP, [5, 6], 2, outer, 5353)
        );
        malformed(&eth(
            &[(0x88a8, 1), (0x8100, 2), (outer, 3)],
            0x0800,
            &inner,
        ));
    }
    let r = ok(&eth(&[(0x8100, 5), (0x9100, 6)], 0x0800, &inner));
    assert_eq!((r.vlan, r.tpid, r.dport), ([5, 6], 0x8100, 5353));
    // ARP (or any other EtherType) behind tags: no IP, just the tags.
    let r = ok(&pad(eth(&[(0x8100, 9)], 0x0806, &[0; 28]), 60));
    assert_eq!(
        (r.flags, r.eth_type, r.vlan, r.proto),
        (F_VLAN, 0x0806, [9, 0], 0)
    );
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn other_ethertypes_and_short_frames() {
    require_kernel();
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
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn ipv4_header_checks() {
    require_kernel();
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
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn ipv4_fragments() {
    require_kernel();
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
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn ipv6_and_extension_headers() {
    require_kernel();
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

// ---- Headers behind the IP header must lie inside the IP packet, not just the frame ----

/// Frames whose IP length field (IPv4 total length, IPv6 payload length) ends `k` bytes
/// into the L4 header while the frame carries the whole header and more (Ethernet padding,
/// or bytes an attacker appends to a tiny first fragment): (IPv6, layer bit, frame). All
/// are malformed for a parser that reads that L4 header, whatever the frame holds.
fn l4_past_the_ip_end() -> Vec<(bool, u32, Vec<u8>)> {
    let t = tcp(40000, 23, 0x10);
    let u = udp(53, 5353);
    let echo = [8u8, 0, 0, 0, 0, 1, 0, 1];
    let echo6 = [128u8, 0, 0, 0, 0, 0, 0, 0];
    // (IPv6, protocol, layer bit, header, the bytes pol reads: TCP 20, UDP 8, ICMP 4).
    let l4s: [(bool, u8, u32, &[u8], u16); 6] = [
        (false, 6, F_TCP, &t, 20),
        (true, 6, F_TCP, &t, 20),
        (false, 17, F_UDP, &u, 8),
        (true, 17, F_UDP, &u, 8),
        (false, 1, F_ICMP, &echo, 4),
        (true, 58, F_ICMP6, &echo6, 4),
    ];
    let mut v = Vec::new();
    for (v6, proto, bit, hdr, need) in l4s {
        for k in [0, 1, 3, need - 1] {
            for tags in [&[][..], &[(0x8100, 5)][..]] {
                let l3 = 14 + 4 * tags.len();
                if v6 {
                    let mut f = eth(tags, 0x86dd, &ip6(&[], proto, hdr));
                    f[l3 + 4..l3 + 6].copy_from_slice(&k.to_be_bytes());
                    v.push((v6, bit, pad(f, 100)));
                } else {
                    // Also as a first fragment (MF set): the tiny-fragment attack.
                    for frag in [0, 0x2000] {
                        let mut f = eth(tags, 0x0800, &ip4(proto, frag, &[], hdr));
                        f[l3 + 2..l3 + 4].copy_from_slice(&(20 + k).to_be_bytes());
                        v.push((v6, bit, pad(f, 80)));
                    }
                }
            }
        }
        // Behind IPv4 options and IPv6 extension headers too: one byte short.
        let f = if v6 {
            let mut f = eth(&[], 0x86dd, &ip6(&[(0, opts(1)), (51, ah(1))], proto, hdr));
            f[18..20].copy_from_slice(&(8 + 12 + need - 1).to_be_bytes());
            f
        } else {
            let mut f = eth(&[], 0x0800, &ip4(proto, 0, &[1; 8], hdr));
            f[16..18].copy_from_slice(&(28 + need - 1).to_be_bytes());
            f
        };
        v.push((v6, bit, pad(f, 100)));
    }
    v
}

/// IPv6 frames whose payload length ends inside an extension header while the frame goes
/// on: malformed for a parser that walks the chain.
fn ext_past_the_ip_end() -> Vec<Vec<u8>> {
    let t = tcp(1234, 443, 0x10);
    let mut v = Vec::new();
    for (exts, proto, plen) in [
        // Inside the first 8 bytes of a hop-by-hop header, TCP behind it.
        (vec![(0, opts(1))], 6, 4u16),
        // Inside the second 8 bytes of a 16-byte destination options header.
        (vec![(60, opts(2))], 6, 12),
        // Inside an AH header, behind a fragment header (a first fragment).
        (vec![(44, frag6(0, true)), (51, ah(4))], 17, 20),
        // Past the end of the last header, with no L4 header behind it ("no next header").
        (vec![(0, opts(1)), (60, opts(2))], 59, 16),
        // Inside a later fragment's header (the walk ends there), and wholly before it.
        (vec![(0, opts(1)), (44, frag6(3, false))], 6, 12),
        (vec![(0, opts(1)), (44, frag6(3, false))], 6, 8),
        (vec![(44, frag6(3, true))], 6, 0),
    ] {
        let mut f = eth(&[], 0x86dd, &ip6(&exts, proto, &t));
        f[18..20].copy_from_slice(&plen.to_be_bytes());
        v.push(pad(f, 120));
    }
    v
}

/// Whether variant `n` reads the L4 header `bit` behind IPv4 (or IPv6).
fn parses_l4(n: &Needs, v6: bool, bit: u32) -> bool {
    match (v6, bit) {
        (false, F_TCP) => n.ip4 && n.tcp4,
        (false, F_UDP) => n.ip4 && n.udp4,
        (false, F_ICMP) => n.ip4 && n.icmp,
        (true, F_TCP) => n.ip6 && n.tcp6,
        (true, F_UDP) => n.ip6 && n.udp6,
        (true, F_ICMP6) => n.ip6 && n.icmp6,
        _ => false,
    }
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn l4_header_must_lie_inside_the_ip_packet() {
    require_kernel();
    // The full parser, XDP and TC.
    for (_, _, f) in l4_past_the_ip_end() {
        malformed(&f);
    }
    for f in ext_past_the_ip_end() {
        malformed(&f);
    }
    // The same headers with the length field covering them exactly, and padding after the
    // IP packet: fine.
    let r = ok(&pad(
        eth(&[], 0x0800, &ip4(6, 0x2000, &[], &tcp(5, 23, 0x10))),
        90,
    ));
    assert_eq!(
        (r.flags, r.ip_len, r.dport),
        (F_IP4 | F_FRAG | F_TCP, 40, 23)
    );
    let r = ok(&pad(
        eth(&[], 0x86dd, &ip6(&[(0, opts(1))], 17, &udp(9, 10))),
        120,
    ));
    assert_eq!((r.flags, r.ip_len, r.dport), (F_IP6 | F_UDP, 56, 10));
    let r = ok(&pad(eth(&[], 0x0800, &ip4(1, 0, &[], &[8, 0, 0, 0])), 60));
    assert_eq!((r.flags, r.icmp), (F_IP4 | F_ICMP, (8, 0)));
    // Every variant that reads the L4 header (or walks the IPv6 chain) finds it malformed;
    // a variant that does not read it does not (a layer not parsed cannot be malformed).
    let mut variants: Vec<(String, Needs)> = vec![("default".into(), Needs::default())];
    variants.extend(systematic().into_iter().map(|n| (format!("{n:?}"), n)));
    variants.extend(from_sources());
    let frames = l4_past_the_ip_end();
    let exts = ext_past_the_ip_end();
    for hook in [ParserHook::Xdp, ParserHook::Tc] {
        for (what, n) in &variants {
            let d = Dumper::new(hook, *n);
            for (v6, bit, f) in &frames {
                let got = d.run(f).unwrap_or_else(|e| panic!("{hook:?} {what}: {e}"));
                assert_eq!(
                    got.is_none(),
                    parses_l4(n, *v6, *bit),
                    "{hook:?} {what}: malformed?\npacket {f:02x?}"
                );
            }
            for f in &exts {
                let got = d.run(f).unwrap_or_else(|e| panic!("{hook:?} {what}: {e}"));
                assert_eq!(
                    got.is_none(),
                    n.ip6_walk(),
                    "{hook:?} {what}: malformed?\npacket {f:02x?}"
                );
            }
        }
    }
}

/// The whole program: `pass tcp.ack` must not pass an ACK whose IPv4 total length ends
/// before the TCP header, however many bytes follow in the frame.
#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn tiny_first_fragment_cannot_fake_tcp_flags() {
    require_kernel();
    for hook in ["xdp(\"eth0\")", "tc(\"eth0\", ingress)"] {
        let src = format!("filter f on {hook} {{\n pass tcp.ack\n default drop\n}}\n");
        let compiled =
            pol_compiler::driver::compile(&src).unwrap_or_else(|d| panic!("{src}: {d:?}"));
        let loaded = pol_runtime::testrun::load(&compiled).expect("loads");
        let h = &compiled.hir.filters[0].hook;
        let verdict = |pkt: &[u8]| {
            let run = loaded.test_run("f", pkt, 1).expect("test run");
            pol_runtime::testrun::verdict_of(h, run.retval).expect("a verdict")
        };
        use pol_compiler::syntax::ast::Verdict;
        for frag in [0, 0x2000] {
            let good = pad(
                eth(&[], 0x0800, &ip4(6, frag, &[], &tcp(80, 1234, 0x10))),
                60,
            );
            assert_eq!(verdict(&good), Verdict::Pass, "{hook}");
            for total in [20u16, 28, 39] {
                let mut bad = good.clone();
                bad[16..18].copy_from_slice(&total.to_be_bytes());
                assert_eq!(verdict(&bad), Verdict::Drop, "{hook}: total length {total}");
            }
        }
        let good = eth(&[], 0x86dd, &ip6(&[], 6, &tcp(80, 1234, 0x10)));
        assert_eq!(verdict(&good), Verdict::Pass, "{hook}");
        let mut bad = good.clone();
        bad[18..20].copy_from_slice(&8u16.to_be_bytes());
        assert_eq!(verdict(&bad), Verdict::Drop, "{hook}: payload length 8");
    }
}

// ---- Variants: every Needs must agree with the full parser on what it parses ----

/// Frames that exercise every path of the parser, good and bad.
/// An ARP packet for IPv4 over Ethernet.
fn arp(op: u16, spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
    let mut a = vec![0, 1, 8, 0, 6, 4];
    a.extend(op.to_be_bytes());
    a.extend(ARP_SHA);
    a.extend(spa);
    a.extend(ARP_THA);
    a.extend(tpa);
    a
}

/// The hardware addresses `arp` writes: distinct from each other and from the Ethernet
/// addresses `eth` writes, so a swapped or misplaced store shows.
const ARP_SHA: [u8; 6] = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];
const ARP_THA: [u8; 6] = [0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0xff];

/// The 6-byte MAC slot at `off` of a dumped record, as the wire's six bytes.
fn mac_at(r: &[u8; REC], off: i16) -> [u8; 6] {
    let mut m: [u8; 6] = r[off as usize..off as usize + 6]
        .try_into()
        .expect("6 bytes");
    m.reverse();
    m
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn mac_addresses() {
    require_kernel();
    for hook in [ParserHook::Xdp, ParserHook::Tc] {
        let dump = |pkt: &[u8]| {
            full(hook)
                .run(pkt)
                .unwrap_or_else(|e| panic!("{hook:?} test run: {e}"))
                .unwrap_or_else(|| panic!("{hook:?}: malformed {pkt:02x?}"))
        };
        // Tagged or not, IP or not: the Ethernet addresses are the frame's first 12 bytes.
        for pkt in [
            v4_tcp(23),
            eth(
                &[(0x88a8, 7), (0x8100, 8)],
                0x0800,
                &ip4(6, 0, &[], &tcp(1, 2, 0)),
            ),
            eth(&[], 0x88cc, &[]),
        ] {
            let r = dump(&pkt);
            assert_eq!(mac_at(&r, OFF_ETH_DST), [2, 0, 0, 0, 0, 1], "{hook:?}");
            assert_eq!(mac_at(&r, OFF_ETH_SRC), [2, 0, 0, 0, 0, 2], "{hook:?}");
        }
        let r = dump(&pad(
            eth(&[], 0x0806, &arp(2, [192, 0, 2, 1], [192, 0, 2, 9])),
            60,
        ));
        assert_eq!(mac_at(&r, OFF_ARP_SHA), ARP_SHA, "{hook:?}");
        assert_eq!(mac_at(&r, OFF_ARP_THA), ARP_THA, "{hook:?}");
        assert_eq!(u16::from_ne_bytes([r[104], r[105]]), 2, "{hook:?}: arp.op");
        // Not ARP over Ethernet/IPv4 (hardware type 6): no ARP bit, no hardware addresses.
        let mut other = arp(1, [10, 0, 0, 1], [10, 0, 0, 2]);
        other[1] = 6;
        let r = dump(&pad(eth(&[], 0x0806, &other), 60));
        assert_eq!(u32::from_ne_bytes([r[0], r[1], r[2], r[3]]) & F_ARP, 0);
        assert_eq!(mac_at(&r, OFF_ARP_SHA), [0; 6], "{hook:?}");
    }
}

fn frames() -> Vec<Vec<u8>> {
    let t = tcp(1234, 443, 0x12);
    let u = udp(53, 5353);
    let sctp = [0x0e, 0x1c, 0x0f, 0x1c, 1, 2, 3, 4, 0, 0, 0, 0];
    let echo = [8u8, 0, 0, 0, 0, 1, 0, 1];
    let echo6 = [128u8, 0, 0, 0, 0, 0, 0, 0];
    let mut v = vec![
        v4_tcp(23),
        pad(v4_tcp(23), 80),
        eth(&[], 0x0800, &ip4(17, 0, &[], &u)),
        eth(&[], 0x0800, &ip4(1, 0, &[], &echo)),
        eth(&[], 0x0800, &ip4(47, 0, &[], &[0; 4])),
        eth(&[], 0x0800, &ip4(6, 0, &[1; 8], &t)),
        eth(&[], 0x0800, &ip4(6, 0x2000, &[], &t)),
        eth(&[], 0x0800, &ip4(17, 0x2000, &[], &u)),
        eth(&[], 0x0800, &ip4(6, 0x2001, &[], &[0xff; 8])),
        eth(&[], 0x0800, &ip4(6, 0x4000, &[], &t)),
        eth(&[], 0x0800, &ip4(6, 0x2000, &[], &t[..8])),
        eth(&[], 0x0800, &ip4(1, 0, &[], &echo[..3])),
        eth(&[], 0x0800, &ip4(17, 0, &[], &u[..5])),
        eth(&[(0x8100, 100)], 0x0800, &ip4(17, 0, &[], &u)),
        eth(&[(0x88a8, 7), (0x8100, 4095)], 0x0800, &ip4(6, 0, &[], &t)),
        eth(&[(0x9100, 7), (0x8100, 8)], 0x0800, &ip4(6, 0, &[], &t)),
        eth(&[(0x9200, 7)], 0x86dd, &ip6(&[], 17, &u)),
        eth(
            &[(0x88a8, 1), (0x8100, 2), (0x8100, 3)],
            0x0800,
            &ip4(6, 0, &[], &t),
        ),
        pad(eth(&[(0x8100, 9)], 0x0806, &[0; 28]), 60),
        pad(
            eth(&[], 0x0806, &arp(2, [192, 0, 2, 1], [192, 0, 2, 9])),
            60,
        ),
        eth(
            &[(0x8100, 9)],
            0x0806,
            &arp(1, [10, 0, 0, 1], [10, 0, 0, 2]),
        ),
        eth(&[], 0x0806, &arp(1, [10, 0, 0, 1], [10, 0, 0, 2])[..20]),
        eth(&[], 0x0800, &ip4(132, 0, &[], &sctp)),
        eth(&[], 0x0800, &ip4(132, 0, &[], &sctp[..10])),
        eth(&[(0x8100, 3)], 0x86dd, &ip6(&[], 132, &sctp)),
        pad(eth(&[], 0x0806, &[0; 28]), 60),
        eth(&[], 0x88cc, &[]),
        eth(&[], 0x86dd, &ip6(&[], 6, &t)),
        eth(&[], 0x86dd, &ip6(&[], 17, &u)),
        eth(&[], 0x86dd, &ip6(&[], 58, &echo6)),
        eth(&[], 0x86dd, &ip6(&[], 58, &echo6[..2])),
        eth(&[], 0x86dd, &ip6(&[(60, opts(1))], 59, &[])),
        eth(&[], 0x86dd, &ip6(&[(0, opts(1)), (51, ah(1))], 6, &t)),
        eth(&[], 0x86dd, &ip6(&[(44, frag6(0, true))], 6, &t)),
        eth(
            &[],
            0x86dd,
            &ip6(&[(0, opts(1)), (44, frag6(3, false))], 6, &[0xff; 8]),
        ),
        eth(&[], 0x86dd, &ip6(&[(44, frag6(0, true))], 6, &t[..10])),
        eth(&[(0x8100, 3)], 0x86dd, &ip6(&[(43, opts(3))], 17, &u)),
        eth(&[], 0x86dd, &ip6(&vec![(0, opts(1)); 7], 17, &u)),
        eth(&[], 0x86dd, &ip6(&vec![(60, opts(1)); 6], 6, &t)),
    ];
    // Bad IPv4 headers: IHL 4, IHL 15, version 6, total length too long and too short.
    for (at, byte) in [(14, 0x44), (14, 0x4f), (14, 0x65), (17, 41), (17, 19)] {
        let mut p = v4_tcp(23);
        p[at] = byte;
        v.push(p);
    }
    // IPv6 payload length past the frame.
    let mut p = eth(&[], 0x86dd, &ip6(&[], 6, &t));
    p[18..20].copy_from_slice(&21u16.to_be_bytes());
    v.push(p);
    // Truncations.
    let q = v4_tcp(23);
    v.extend([15, 20, 33, 34, 40, 53].map(|n| q[..n].to_vec()));
    let q = eth(&[], 0x86dd, &ip6(&[(0, opts(1)), (51, ah(1))], 6, &t));
    v.extend([20, 53, 54, 60, 62, 70, 74, 80, q.len() - 1].map(|n| q[..n].to_vec()));
    let q = eth(&[(0x88a8, 7), (0x8100, 8)], 0x0800, &ip4(17, 0, &[], &u));
    v.extend([15, 17, 19, 21].map(|n| q[..n].to_vec()));
    v
}

/// What variant `n` must leave in the record of a packet the full parser read as `f`:
/// the fields of the layers it parses and the stores it makes, zeros elsewhere.
fn expected(n: &Needs, f: &[u8; REC]) -> [u8; REC] {
    let flags = u32::from_ne_bytes(f[0..4].try_into().expect("4 bytes"));
    let mut want = [0u8; REC];
    let mut copy = |mask: ByteMask, off: i16, len: i16| {
        if mask & span(off, len) != 0 {
            let r = off as usize..(off + len) as usize;
            want[r.clone()].copy_from_slice(&f[r]);
        }
    };
    let mut out = if n.vlan_flag { flags & F_VLAN } else { 0 };
    for (off, len) in [
        (OFF_ETH_TYPE, 2),
        (OFF_VLAN_OUTER, 2),
        (OFF_VLAN_INNER, 2),
        (OFF_VLAN_COUNT, 1),
        (OFF_VLAN_TPID, 2),
        (OFF_FRAME_LEN, 4),
        (OFF_ETH_DST, 6),
        (OFF_ETH_SRC, 6),
    ] {
        copy(n.store_link, off, len);
    }
    let frags = F_FRAG | F_FRAG_LATER;
    let (fam, stores, l4) = if flags & F_IP4 != 0 && n.ip4 {
        out |= F_IP4 | if n.frag4 { flags & frags } else { 0 };
        let l4 = [
            (n.tcp4, F_TCP),
            (n.udp4, F_UDP),
            (n.sctp4, F_SCTP),
            (n.icmp, F_ICMP),
        ];
        (Some(false), n.store4, l4)
    } else if flags & F_IP6 != 0 && n.ip6 {
        out |= F_IP6 | if n.frag6 { flags & frags } else { 0 };
        let l4 = [
            (n.tcp6, F_TCP),
            (n.udp6, F_UDP),
            (n.sctp6, F_SCTP),
            (n.icmp6, F_ICMP6),
        ];
        (Some(true), n.store6, l4)
    } else {
        (None, 0, [(false, 0); 4])
    };
    if let Some(v6) = fam {
        let addr_pieces = if v6 { 4 } else { 1 };
        let walk = !v6 || n.ip6_walk();
        if walk {
            copy(stores, OFF_IP_PROTO, 1);
        }
        for (off, len) in [
            (OFF_IP_TTL, 1),
            (OFF_IP_VERSION, 1),
            (OFF_IP_LEN, 4),
            (OFF_IP6_NEXTHDR, 1),
            (OFF_IP4_DSCP, 1),
            (OFF_IP4_ECN, 1),
            (OFF_IP4_ID, 2),
            (OFF_IP4_FRAG, 2),
            (OFF_IP4_FRAG_OFFSET, 2),
            (OFF_IP4_IHL, 1),
        ] {
            copy(stores, off, len);
        }
        for (plen, addr) in [(OFF_SRC_PREFIXLEN, OFF_SRC), (OFF_DST_PREFIXLEN, OFF_DST)] {
            copy(stores, plen, 4);
            for k in 0..addr_pieces {
                copy(stores, addr + 4 * k, 4);
            }
        }
    }
    for (parsed, bit) in l4 {
        if parsed && flags & bit != 0 {
            out |= bit;
            let (mask, fields): (ByteMask, &[(i16, i16)]) = match bit {
                F_TCP => (
                    n.store_tcp,
                    &[(OFF_SPORT, 2), (OFF_DPORT, 2), (OFF_TCP_FLAGS, 1)],
                ),
                F_UDP => (n.store_udp, &[(OFF_SPORT, 2), (OFF_DPORT, 2)]),
                F_SCTP => (n.store_sctp, &[(OFF_SPORT, 2), (OFF_DPORT, 2)]),
                _ => (n.store_icmp, &[(OFF_ICMP_TYPE, 1), (OFF_ICMP_CODE, 1)]),
            };
            for &(off, len) in fields {
                copy(mask, off, len);
            }
        }
    }
    if n.arp && flags & F_ARP != 0 {
        out |= F_ARP;
        for (off, len) in [
            (OFF_ARP_OP, 2),
            (OFF_ARP_SPA_PREFIXLEN, 4),
            (OFF_ARP_SPA, 4),
            (OFF_ARP_TPA_PREFIXLEN, 4),
            (OFF_ARP_TPA, 4),
            (OFF_ARP_SHA, 6),
            (OFF_ARP_THA, 6),
        ] {
            copy(n.store_arp, off, len);
        }
    }
    want[0..4].copy_from_slice(&out.to_ne_bytes());
    want
}

/// Systematic variants: every combination of layers, with every store and with none.
fn systematic() -> Vec<Needs> {
    let mut v = Vec::new();
    for bits in 0..64u32 {
        let on = |i: u32| bits & (1 << i) != 0;
        let (ip4, ip6, tcp, udp, icmp, frag) = (on(0), on(1), on(2), on(3), on(4), on(5));
        for stores in [false, true] {
            let all = if stores { !0 } else { 0 };
            v.push(Needs {
                payload: 0,
                payload_tcp: false,
                payload_udp: false,
                ip4,
                ip6,
                frag4: ip4 && frag,
                frag6: ip6 && frag,
                tcp4: ip4 && tcp,
                tcp6: ip6 && tcp,
                udp4: ip4 && udp,
                udp6: ip6 && udp && !tcp,
                // SCTP rides with UDP (on IPv4 only, so the two differ).
                sctp4: ip4 && udp,
                sctp6: false,
                icmp: ip4 && icmp,
                icmp6: ip6 && icmp,
                // ARP rides with the fragment bit: it is one more layer on or off.
                arp: frag,
                vlan_flag: stores,
                reads: if stores { !0 } else { span(OFF_FLAGS, 4) },
                store_link: all,
                store4: all,
                store6: if stores {
                    span(OFF_SRC, 4) | span(OFF_IP_TTL, 1)
                } else {
                    0
                },
                store_tcp: if stores { span(OFF_DPORT, 2) } else { 0 },
                store_udp: all,
                store_sctp: if stores { span(OFF_SPORT, 2) } else { 0 },
                store_icmp: if stores { span(OFF_ICMP_CODE, 1) } else { 0 },
                store_arp: if stores {
                    span(OFF_ARP_TPA, 4) | span(OFF_ARP_THA, 6)
                } else {
                    0
                },
                ..Needs::default()
            });
        }
    }
    v
}

/// Variants `hir::needs` derives for real filters.
fn from_sources() -> Vec<(String, Needs)> {
    let mut v: Vec<(String, Needs)> = SOURCES
        .iter()
        .map(|s| (s.to_string(), needs_of(s)))
        .collect();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for e in std::fs::read_dir(dir).expect("examples/") {
        let path = e.expect("entry").path();
        // Filters only (examples/probes/ holds the tracing examples).
        if path.extension().is_none_or(|x| x != "pol") {
            continue;
        }
        let src = std::fs::read_to_string(&path).expect("readable");
        let (_, hir, _) = pol_compiler::driver::front(&src);
        let hir = hir.expect("example checks");
        for f in &hir.filters {
            v.push((
                path.display().to_string(),
                pol_compiler::hir::needs::needs(&hir, f),
            ));
        }
    }
    v
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn every_variant_agrees_with_the_full_parser() {
    require_kernel();
    let frames = frames();
    let mut variants: Vec<(String, Needs)> = vec![("default".into(), Needs::default())];
    variants.extend(systematic().into_iter().map(|n| (format!("{n:?}"), n)));
    variants.extend(from_sources());
    for hook in [ParserHook::Xdp, ParserHook::Tc] {
        let reference: Vec<Option<Result<Option<[u8; REC]>, sys::SysError>>> =
            frames.iter().map(|p| Some(full(hook).run(p))).collect();
        for (what, n) in &variants {
            let d = Dumper::new(hook, *n);
            for (pkt, want) in frames.iter().zip(&reference) {
                let Some(Ok(want)) = want else { continue };
                let got = d
                    .run(pkt)
                    .unwrap_or_else(|e| panic!("{hook:?} {what}: {e}"));
                match (want, got) {
                    (_, None) => assert!(
                        want.is_none(),
                        "{hook:?} {what}: malformed, but not for the full parser: {pkt:02x?}"
                    ),
                    (None, Some(_)) => {} // malformed in a layer this variant skips
                    (Some(f), Some(got)) => {
                        let exp = expected(n, f);
                        for b in 0..REC {
                            assert!(
                                n.reads & span(b as i16, 1) == 0 || got[b] == exp[b],
                                "{hook:?} {what}: record byte {b} is {:#x}, want {:#x}\n\
                                 got  {got:02x?}\nwant {exp:02x?}\nfull {f:02x?}\npacket {pkt:02x?}",
                                got[b],
                                exp[b]
                            );
                        }
                    }
                }
            }
        }
    }
}

/// Sizes of the parser for a few variants, printed (run with `--nocapture`).
#[test]
fn parser_sizes() {
    for hook in [ParserHook::Xdp, ParserHook::Tc] {
        for (what, n) in [("full", ALL), ("minimal", Needs::default())]
            .into_iter()
            .map(|(w, n)| (w.to_string(), n))
            .chain(from_sources())
        {
            println!("{hook:?} {:4} {what}", parser_len(hook, n));
        }
    }
    assert!(parser_len(ParserHook::Xdp, Needs::default()) < parser_len(ParserHook::Xdp, ALL));
    // What the verifier goes through for the full parser (the IPv6 walk dominates).
    if cfg!(not(pol_no_bpf)) {
        require_kernel();
        for hook in [ParserHook::Xdp, ParserHook::Tc] {
            let insns = reads_insns(hook, ALL);
            let (fd, _) = load(hook, ALL, &insns);
            let info = sys::prog_info(fd.as_fd()).expect("prog info");
            println!(
                "{hook:?} full parser: {} insns, verifier processed {}",
                insns.len(),
                info.verified_insns
            );
        }
    }
}

// ---- hir::needs over small filters ----

const SOURCES: &[&str] = &[
    "drop ip4.src in blocked\n drop tcp.dport == 23",
    "drop ip4.src in blocked\n drop ip4 and tcp.dport == 23",
    "drop not tcp",
    "drop udp and l4.dport == 53",
    "drop ip.fragment",
    "drop vlan.id == 5",
    "drop vlan",
    "drop icmp.type == 8",
    "drop icmp6",
    "drop (ip4 and tcp.dport == 23) or eth.type == 2054",
    "drop ip4.src in blocked\n default pass count seen[ip.src]",
    "drop ip4.src in blocked count hits[ip.src]",
    "drop ip.ttl < 2",
    "drop ip.proto == 47",
    "drop ip6.src in 2001:db8::/32",
    "drop ip.src in 10.0.0.0/8",
    "drop not ip4.src in 10.0.0.0/8",
    "drop tcp.syn and not tcp.ack",
    "pass ip6 and udp.dport == 53\n drop l4.sport < 1024",
    "drop ip.later_fragment\n drop icmp6.code == 0 or icmp.code == 0",
    "drop eth.src == 02:00:00:00:00:02\n drop eth.broadcast",
    "drop eth.multicast\n drop arp.sha == 02:11:22:33:44:55 count hw[arp.tha]",
];

/// Compiles `drop ...` rules (with a 20-address set `blocked`) and returns the needs.
fn needs_of(rules: &str) -> Needs {
    let addrs: Vec<String> = (1..=20).map(|i| format!("192.0.2.{i}")).collect();
    let src = format!(
        "set blocked: ip4 = {{ {} }}\nfilter f on xdp(\"eth0\") {{\n {rules}\n default pass\n}}\n",
        addrs.join(", ")
    );
    let src = if rules.contains("default") {
        src.replace("\n default pass\n}", "\n}")
    } else {
        src
    };
    let (_, hir, diags) = pol_compiler::driver::front(&src);
    let hir = hir.unwrap_or_else(|| panic!("{src}: {diags:?}"));
    pol_compiler::hir::needs::needs(&hir, &hir.filters[0])
}

/// (ip4, ip6, tcp4, tcp6, udp4, udp6, icmp, icmp6, frag4, frag6)
fn layers(n: &Needs) -> [bool; 10] {
    [
        n.ip4, n.ip6, n.tcp4, n.tcp6, n.udp4, n.udp6, n.icmp, n.icmp6, n.frag4, n.frag6,
    ]
}

#[test]
fn needs_follow_the_rules() {
    const T: bool = true;
    const F: bool = false;
    let l = |s: &str| layers(&needs_of(s));
    // The benchmark filter: `tcp.dport` can match IPv6; the IPv4 source is not stored
    // for IPv6 packets, and only the destination port is stored.
    let n = needs_of(SOURCES[0]);
    assert_eq!(layers(&n), [T, T, T, T, F, F, F, F, F, F]);
    assert_eq!(n.store4, span(OFF_SRC, 4));
    assert_eq!(n.store6, 0);
    assert!(!n.ip6_walk() || n.tcp6);
    assert_eq!(n.store_tcp, span(OFF_DPORT, 2));
    assert_eq!(n.reads, span(0, 4) | span(OFF_SRC, 4) | span(OFF_DPORT, 2));
    // Guarded by `ip4`: no IPv6 at all.
    assert_eq!(l(SOURCES[1]), [T, F, T, F, F, F, F, F, F, F]);
    // `not tcp` is true for IPv6 TCP unless IPv6 is parsed.
    assert_eq!(l("drop not tcp"), [T, T, T, T, F, F, F, F, F, F]);
    // `udp and l4.dport`: TCP ports can never decide.
    assert_eq!(
        l("drop udp and l4.dport == 53"),
        [T, T, F, F, T, T, F, F, F, F]
    );
    assert_eq!(l("drop ip.fragment"), [T, T, F, F, F, F, F, F, T, T]);
    // `vlan.id` is read under the VLAN bit; `vlan.depth` is always there.
    let n = needs_of("drop vlan.id == 5");
    assert_eq!(layers(&n), [F; 10]);
    assert!(n.vlan_flag);
    assert_eq!(n.store_link, span(OFF_VLAN_OUTER, 2));
    let n = needs_of("drop vlan.depth == 2");
    assert!(!n.vlan_flag);
    assert_eq!(n.store_link, span(OFF_VLAN_COUNT, 1));
    assert!(needs_of("drop vlan").vlan_flag);
    assert_eq!(l("drop icmp.type == 8"), [T, F, F, F, F, F, T, F, F, F]);
    assert_eq!(l("drop icmp6"), [F, T, F, F, F, F, F, T, F, F]);
    assert_eq!(l(SOURCES[9]), [T, F, T, F, F, F, F, F, F, F]);
    // The default's key sees every packet; a rule's key only what the rule matches.
    let n = needs_of(SOURCES[10]);
    assert!(n.ip6);
    assert_eq!(n.store6, span(OFF_SRC_PREFIXLEN, 20));
    assert_eq!(
        n.reads & span(OFF_SRC_PREFIXLEN, 20),
        span(OFF_SRC_PREFIXLEN, 20)
    );
    let n = needs_of(SOURCES[11]);
    assert!(n.ip4 && !n.ip6);
    assert_eq!(n.store4, span(OFF_SRC_PREFIXLEN, 8));
    // Header fields of both families, without the extension-header walk.
    let n = needs_of("drop ip.ttl < 2");
    assert!(n.ip4 && n.ip6 && !n.ip6_walk());
    assert_eq!(
        (n.store4, n.store6),
        (span(OFF_IP_TTL, 1), span(OFF_IP_TTL, 1))
    );
    assert!(needs_of("drop ip.proto == 47").ip6_walk());
    // A /32 IPv6 prefix reads the first 4 bytes of the address only.
    let n = needs_of("drop ip6.src in 2001:db8::/32");
    assert_eq!((n.ip4, n.ip6, n.store6), (F, T, span(OFF_SRC, 4)));
    assert_eq!(
        l("drop ip.src in 10.0.0.0/8"),
        [T, F, F, F, F, F, F, F, F, F]
    );
    assert_eq!(
        l("drop not ip4.src in 10.0.0.0/8"),
        [T, F, F, F, F, F, F, F, F, F]
    );
    let n = needs_of("drop tcp.syn and not tcp.ack");
    assert_eq!(n.store_tcp, span(OFF_TCP_FLAGS, 1));
    // `ip6 and udp.dport`: UDP behind IPv6 only; `l4.sport` needs both everywhere.
    assert_eq!(
        l("pass ip6 and udp.dport == 53"),
        [F, T, F, F, F, T, F, F, F, F]
    );
    assert_eq!(l(SOURCES[18]), [T, T, T, T, T, T, F, F, F, F]);
    let n = needs_of(SOURCES[19]);
    assert_eq!(layers(&n), [T, T, F, F, F, F, T, T, T, T]);
    assert_eq!(n.store_icmp, span(OFF_ICMP_CODE, 1));
    // MAC addresses: no layer, only the link stores; `eth.broadcast` and `eth.multicast`
    // read the destination (all of it, its group bit).
    let n = needs_of(SOURCES[20]);
    assert_eq!(layers(&n), [F; 10]);
    assert!(!n.arp);
    assert_eq!(
        n.store_link,
        span(OFF_ETH_DST, 6) | span(OFF_ETH_SRC, 6),
        "{n:?}"
    );
    let n = needs_of("drop eth.multicast");
    assert_eq!(n.store_link, span(OFF_ETH_DST + 5, 1));
    // ARP hardware addresses: ARP, and the stores the rule and its key read.
    let n = needs_of(SOURCES[21]);
    assert!(n.arp && !n.ip4 && !n.ip6);
    assert_eq!(n.store_arp, span(OFF_ARP_SHA, 6) | span(OFF_ARP_THA, 6));
    // A filter that reads no MAC keeps the 112-byte record; one that does, 128 bytes.
    assert_eq!(record_size(needs_of(SOURCES[0]).reads, 0), 112);
    assert_eq!(record_size(n.reads, 0), 128);
    // Payload tests: the TCP or UDP payload, a window past the record rounded up to 8.
    let n = needs_of("drop tcp.payload[0..4] == \"GET \"\n drop payload[9] == 1");
    assert_eq!((n.payload, n.payload_tcp, n.payload_udp), (10, true, true));
    assert_eq!(record_size(n.reads, n.payload), 144);
    let n = needs_of("drop udp.dport == 53 and udp.payload[2..4] == 0x0100");
    assert_eq!((n.payload, n.payload_tcp, n.payload_udp), (4, false, true));
    assert!(!n.tcp4 && !n.tcp6);
}
