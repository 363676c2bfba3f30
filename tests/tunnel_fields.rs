//! Tunnels, MPLS and PPPoE as a user writes them (issue 7 §2, §3): `inner.*` fields behind
//! VXLAN, GENEVE, GRE (with and without checksum, key, sequence; IPv4, IPv6 and Ethernet
//! payloads), IP-in-IP, 6in4 and 4in6; `tunnel`, `tunnel.id`, `inner`; `mpls.label` and
//! `pppoe.session` with the IP packet behind them. Frames are built here byte by byte and
//! given to `pol test` as raw frames (BPF_PROG_TEST_RUN), on XDP and TC.

mod common;
mod run_support;

use run_support::pol;

/// `pol ARGS` must succeed; its stdout.
fn pol_ok(args: &[&str]) -> String {
    let o = pol(args);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "pol {}: {out}{}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

const MAC: [u8; 12] = [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];

fn eth(ethertype: u16, rest: &[u8]) -> Vec<u8> {
    let mut v = MAC.to_vec();
    v.extend(ethertype.to_be_bytes());
    v.extend(rest);
    v
}

/// An IPv4 header (no options) carrying `proto` and `payload`; `cut` bytes fewer in its
/// total length than it carries (the packet claims to end early).
fn ip4(src: [u8; 4], dst: [u8; 4], proto: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0x45, 0];
    v.extend((20 + payload.len() as u16).to_be_bytes());
    v.extend([0, 1, 0x40, 0, 64, proto, 0, 0]);
    v.extend(src);
    v.extend(dst);
    v.extend(payload);
    v
}

fn ip6(src: [u16; 8], dst: [u16; 8], next: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0x60, 0, 0, 0];
    v.extend((payload.len() as u16).to_be_bytes());
    v.extend([next, 64]);
    for w in src.iter().chain(&dst) {
        v.extend(w.to_be_bytes());
    }
    v.extend(payload);
    v
}

fn tcp(dport: u16) -> Vec<u8> {
    let mut v = 40000u16.to_be_bytes().to_vec();
    v.extend(dport.to_be_bytes());
    v.extend([0; 8]);
    v.extend([0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    v
}

fn udp(dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = 40000u16.to_be_bytes().to_vec();
    v.extend(dport.to_be_bytes());
    v.extend((8 + payload.len() as u16).to_be_bytes());
    v.extend([0, 0]);
    v.extend(payload);
    v
}

fn vxlan(flags: u8, vni: u32, inner: &[u8]) -> Vec<u8> {
    let mut v = vec![flags, 0, 0, 0];
    v.extend((vni << 8).to_be_bytes());
    v.extend(inner);
    v
}

fn geneve(opt_words: u8, proto: u16, vni: u32, inner: &[u8]) -> Vec<u8> {
    let mut v = vec![opt_words, 0];
    v.extend(proto.to_be_bytes());
    v.extend((vni << 8).to_be_bytes());
    v.extend(vec![0xaa; 4 * opt_words as usize]);
    v.extend(inner);
    v
}

/// GRE: `csum`, `key` and `seq` say which optional words follow the 4-byte header.
fn gre(version: u16, proto: u16, csum: bool, key: Option<u32>, seq: bool, inner: &[u8]) -> Vec<u8> {
    let flags = u16::from(csum) << 15 | u16::from(key.is_some()) << 13 | u16::from(seq) << 12;
    let mut v = (flags | version).to_be_bytes().to_vec();
    v.extend(proto.to_be_bytes());
    if csum {
        v.extend([0xbe, 0xef, 0, 0]);
    }
    if let Some(k) = key {
        v.extend(k.to_be_bytes());
    }
    if seq {
        v.extend([0, 0, 0, 9]);
    }
    v.extend(inner);
    v
}

fn mpls(labels: &[u32], payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    for (i, l) in labels.iter().enumerate() {
        let bos = u32::from(i + 1 == labels.len());
        v.extend((l << 12 | bos << 8 | 64).to_be_bytes());
    }
    v.extend(payload);
    v
}

fn pppoe(session: u16, ppp: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0x11, 0];
    v.extend(session.to_be_bytes());
    v.extend((payload.len() as u16 + 2).to_be_bytes());
    v.extend(ppp.to_be_bytes());
    v.extend(payload);
    v
}

const OUT_A: [u8; 4] = [192, 0, 2, 1];
const OUT_B: [u8; 4] = [192, 0, 2, 2];
const IN_A: [u8; 4] = [10, 0, 0, 1];
const IN_B: [u8; 4] = [10, 0, 0, 2];
const BAD4: [u8; 4] = [10, 9, 9, 9];
const V6A: [u16; 8] = [0x2001, 0xdb8, 0, 0, 0, 0, 0, 1];
const BAD6: [u16; 8] = [0x2001, 0xdb8, 0xbad, 0, 0, 0, 0, 1];

/// Outer Ethernet + IPv4 + UDP to `port` carrying `payload`.
fn over_udp4(port: u16, payload: &[u8]) -> Vec<u8> {
    out4(17, &udp(port, payload))
}

/// Outer Ethernet + IPv4 (192.0.2.1 to .2) carrying `proto` and `payload`.
fn out4(proto: u8, payload: &[u8]) -> Vec<u8> {
    eth(0x0800, &ip4(OUT_A, OUT_B, proto, payload))
}

/// Outer Ethernet + IPv6 carrying `next` and `payload`.
fn out6(next: u8, payload: &[u8]) -> Vec<u8> {
    eth(0x86dd, &ip6(V6A, V6A, next, payload))
}

/// GRE version 0 without optional words.
fn gre0(proto: u16, inner: &[u8]) -> Vec<u8> {
    gre(0, proto, false, None, false, inner)
}

fn inner_eth4(src: [u8; 4], proto: u8, l4: &[u8]) -> Vec<u8> {
    eth(0x0800, &ip4(src, IN_B, proto, l4))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The frames of the test, each with its expected verdict and counters.
fn cases() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let in4_tcp = |src, port| ip4(src, IN_B, 6, &tcp(port));
    let in6_tcp = |dst, port| ip6(V6A, dst, 6, &tcp(port));
    let dns4 = || ip4(IN_A, IN_B, 17, &udp(53, b"q"));
    let vx = |vni, inner: &[u8]| over_udp4(4789, &vxlan(8, vni, inner));
    let gn = |opts, proto, vni, inner: &[u8]| over_udp4(6081, &geneve(opts, proto, vni, inner));
    let ssh4 = ip4(OUT_A, OUT_B, 6, &tcp(22));
    vec![
        // VXLAN: inner Ethernet, IPv4.
        (
            "vxlan inner telnet",
            vx(5, &inner_eth4(IN_A, 6, &tcp(23))),
            "drop",
        ),
        (
            "vxlan inner web",
            vx(5, &inner_eth4(IN_A, 6, &tcp(80))),
            "pass",
        ),
        (
            "vxlan vni 77 dns",
            vx(77, &inner_eth4(IN_A, 17, &udp(53, b"q"))),
            "drop",
        ),
        (
            "vxlan vni 78 dns",
            vx(78, &inner_eth4(IN_A, 17, &udp(53, b"q"))),
            "pass",
        ),
        (
            "vxlan inner source",
            vx(5, &inner_eth4(BAD4, 6, &tcp(80))),
            "drop count by_inner[10.9.9.9]",
        ),
        // The I flag clear: a tunnel pol does not look into.
        (
            "vxlan without I flag",
            over_udp4(4789, &vxlan(0, 5, &inner_eth4(IN_A, 6, &tcp(80)))),
            "drop",
        ),
        // Inner Ethernet carrying ARP: not IP, so not `inner`.
        ("vxlan inner arp", vx(5, &eth(0x0806, &[0; 28])), "drop"),
        // GENEVE with 8 bytes of options and an Ethernet payload, inner IPv6; and IPv4
        // directly (protocol type 0x0800).
        (
            "geneve inner v6",
            gn(2, 0x6558, 9, &eth(0x86dd, &in6_tcp(BAD6, 80))),
            "drop",
        ),
        (
            "geneve inner v6 ok",
            gn(2, 0x6558, 9, &eth(0x86dd, &in6_tcp(V6A, 80))),
            "pass",
        ),
        ("geneve ip4", gn(0, 0x0800, 77, &dns4()), "drop"),
        (
            "geneve version 1",
            over_udp4(
                6081,
                &[&[0x40u8, 0, 8, 0, 0, 0, 9, 0][..], &in4_tcp(IN_A, 80)].concat(),
            ),
            "drop",
        ),
        // GRE: plain, checksum + key, key + sequence, Ethernet, IPv6; version 1 and an
        // unknown payload are tunnels pol does not look into.
        (
            "gre plain",
            out4(47, &gre0(0x0800, &in4_tcp(IN_A, 23))),
            "drop",
        ),
        (
            "gre plain web",
            out4(47, &gre0(0x0800, &in4_tcp(IN_A, 80))),
            "pass",
        ),
        (
            "gre csum key 77",
            out4(47, &gre(0, 0x0800, true, Some(77), false, &dns4())),
            "drop",
        ),
        (
            "gre key 78 seq",
            out4(47, &gre(0, 0x0800, false, Some(78), true, &dns4())),
            "pass",
        ),
        (
            "gre csum seq telnet",
            out4(47, &gre(0, 0x0800, true, None, true, &in4_tcp(IN_A, 23))),
            "drop",
        ),
        (
            "gre ethernet",
            out4(
                47,
                &gre(
                    0,
                    0x6558,
                    false,
                    Some(1),
                    false,
                    &inner_eth4(IN_A, 6, &tcp(23)),
                ),
            ),
            "drop",
        ),
        (
            "gre ip6 over ip6",
            out6(47, &gre0(0x86dd, &in6_tcp(BAD6, 80))),
            "drop",
        ),
        (
            "gre version 1",
            out4(
                47,
                &gre(1, 0x880b, false, Some(1), false, &in4_tcp(IN_A, 80)),
            ),
            "drop",
        ),
        (
            "gre unknown payload",
            out4(47, &gre0(0x880b, &in4_tcp(IN_A, 80))),
            "drop",
        ),
        // IP-in-IP, 6in4, 4in6, 6in6.
        ("ipip", out4(4, &in4_tcp(IN_A, 23)), "drop"),
        ("ipip web", out4(4, &in4_tcp(IN_A, 80)), "pass"),
        ("6in4", out4(41, &in6_tcp(V6A, 23)), "drop"),
        (
            "4in6",
            out6(4, &in4_tcp(BAD4, 80)),
            "drop count by_inner[10.9.9.9]",
        ),
        ("6in6", out6(41, &in6_tcp(BAD6, 443)), "drop"),
        // Not tunnels: the outer packet's own port 23 is not an inner rule's.
        ("plain telnet", out4(6, &tcp(23)), "pass"),
        (
            "plain udp",
            over_udp4(4790, &vxlan(8, 5, &inner_eth4(IN_A, 6, &tcp(23)))),
            "pass",
        ),
        // MPLS: one label, two labels, IPv6 behind, and a stack with no bottom.
        (
            "mpls 100",
            eth(0x8847, &mpls(&[100], &in4_tcp(IN_A, 80))),
            "drop",
        ),
        (
            "mpls 200/300 src",
            eth(
                0x8847,
                &mpls(&[200, 300], &ip4(OUT_A, [192, 0, 2, 99], 6, &tcp(80))),
            ),
            "pass",
        ),
        (
            "mpls 200/300 bad src",
            eth(
                0x8847,
                &mpls(&[200, 300], &ip4([192, 0, 2, 99], OUT_B, 6, &tcp(80))),
            ),
            "drop",
        ),
        (
            "mpls ip6",
            eth(0x8847, &mpls(&[200], &in6_tcp(V6A, 80))),
            "pass",
        ),
        // PPPoE session 0x1234 carrying IPv4 TCP to 22; another session; IPv6.
        (
            "pppoe ssh",
            eth(0x8864, &pppoe(0x1234, 0x0021, &ssh4)),
            "drop",
        ),
        (
            "pppoe other session",
            eth(0x8864, &pppoe(0x1235, 0x0021, &ssh4)),
            "pass",
        ),
        (
            "pppoe ip6 ssh",
            eth(0x8864, &pppoe(0x1234, 0x0057, &ip6(V6A, V6A, 6, &tcp(22)))),
            "drop",
        ),
    ]
}

/// Frames that are malformed (`malformed drop` with every rule passing them otherwise).
fn malformed() -> Vec<(&'static str, Vec<u8>)> {
    let inner = ip4(IN_A, IN_B, 6, &tcp(80));
    // The outer packet ends 10 bytes into the inner IPv4 header.
    let mut cut = ip4(OUT_A, OUT_B, 4, &inner);
    cut[2..4].copy_from_slice(&30u16.to_be_bytes());
    // The inner packet claims to be longer than the outer one holds.
    let mut long = ip4(OUT_A, OUT_B, 4, &inner);
    long[22..24].copy_from_slice(&200u16.to_be_bytes());
    let five: Vec<u32> = vec![1, 2, 3, 4, 5];
    let mut no_bottom = Vec::new();
    for l in &five {
        no_bottom.extend((l << 12 | 64).to_be_bytes());
    }
    no_bottom.extend(&inner);
    vec![
        ("inner header cut by the outer length", eth(0x0800, &cut)),
        ("inner packet longer than the outer", eth(0x0800, &long)),
        ("vxlan header cut", over_udp4(4789, &[8, 0, 0])),
        ("mpls stack of five without bottom", eth(0x8847, &no_bottom)),
    ]
}

fn policy(hook: &str) -> String {
    let mut t = String::new();
    for (name, frame, verdict) in cases() {
        t.push_str(&format!(
            "    # {name}\n    packet raw {{ bytes: \"{}\" }} => {verdict}\n",
            hex(&frame)
        ));
    }
    for (name, frame) in malformed() {
        t.push_str(&format!(
            "    # {name}\n    packet raw {{ bytes: \"{}\" }} => drop\n",
            hex(&frame)
        ));
    }
    format!(
        "filter f on {hook} {{\n\
         \x20   drop inner.ip.src == 10.9.9.9 count by_inner[inner.ip.src]\n\
         \x20   drop inner.tcp.dport == 23\n\
         \x20   drop inner.udp.dport == 53 and tunnel.id == 77\n\
         \x20   drop inner.ip6.dst in 2001:db8:bad::/48\n\
         \x20   drop tunnel and not inner\n\
         \x20   drop mpls.label == 100\n\
         \x20   drop pppoe.session == 0x1234 and l4.dport == 22\n\
         \x20   drop mpls and ip.src == 192.0.2.99\n\
         \x20   default pass\n}}\n\
         test \"tunnels\" on f {{\n{t}}}\n"
    )
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn tunnel_mpls_and_pppoe_fields_decide_on_xdp_and_tc() {
    common::require_kernel();
    let dir = common::TempDir::new("pol_tunnel_fields");
    let n = cases().len() + malformed().len();
    for (i, hook) in ["xdp(\"eth0\")", "tc(\"eth0\", ingress)"]
        .iter()
        .enumerate()
    {
        let file = dir.path().join(format!("tun{i}.pol"));
        std::fs::write(&file, policy(hook)).expect("write");
        let out = pol_ok(&["test", file.to_str().expect("utf-8")]);
        assert!(
            out.trim_end().ends_with(&format!("{n} passed, 0 failed")),
            "{out}"
        );
    }
    // The malformed frames are malformed, not dropped by a rule: with `malformed pass`
    // they pass.
    let file = dir.path().join("lenient.pol");
    let mut src = policy("xdp(\"eth0\")").replace(
        "    default pass\n",
        "    default pass\n    malformed pass\n",
    );
    for (_, frame) in malformed() {
        let line = format!("bytes: \"{}\" }} => drop", hex(&frame));
        src = src.replace(&line, &format!("bytes: \"{}\" }} => pass", hex(&frame)));
    }
    std::fs::write(&file, src).expect("write");
    pol_ok(&["test", file.to_str().expect("utf-8")]);
}

/// Without a rule naming them, tunnels and MPLS are not looked into: the inner telnet
/// connection and the IP packet behind MPLS meet no rule (as documented), and the filter's
/// code is the same as without the new parser parts.
#[test]
fn filters_that_name_no_tunnel_field_do_not_parse_tunnels() {
    use pol_compiler::driver;
    let plain = "filter f on xdp(\"eth0\") {\n    drop tcp.dport == 23\n    drop ip.src == 10.9.9.9\n    default pass\n}\n";
    let with = plain.replace(
        "    default pass",
        "    drop inner.tcp.dport == 23\n    default pass",
    );
    let insns = |src: &str| {
        let out = driver::compile(src).expect("compiles");
        out.programs[0].insns.len()
    };
    assert!(
        insns(&with) > insns(plain) + 40,
        "the inner parser is only in the second"
    );
}

/// Many `inner.*` rules become rule maps and set maps keyed from the second window, as
/// outer ones do: nine exact inner sources (one rule map), a 10-prefix inner set (an LPM
/// trie), a 12-port set on `inner.l4.dport` (a hash map).
#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn inner_fields_in_rule_maps_and_set_maps() {
    common::require_kernel();
    let dir = common::TempDir::new("pol_tunnel_maps");
    let srcs: String = (1..=9)
        .map(|i| format!("    drop inner.ip.src == 10.1.0.{i}\n"))
        .collect();
    let nets: Vec<String> = (1..=10).map(|i| format!("10.2.{i}.0/24")).collect();
    let ports: Vec<String> = (1..=12).map(|i| format!("{}", 7000 + i)).collect();
    let frame = |src: [u8; 4], port: u16| {
        hex(&over_udp4(
            4789,
            &vxlan(8, 5, &inner_eth4(src, 6, &tcp(port))),
        ))
    };
    let src = format!(
        "set nets: cidr = {{ {} }}\nset ports: port = {{ {} }}\n\
         filter f on tc(\"eth0\", ingress) {{\n{srcs}\
         \x20   drop inner.ip.src in nets\n\
         \x20   drop inner.l4.dport in ports count by_port[inner.tcp.dport]\n\
         \x20   default pass\n}}\n\
         test \"maps\" on f {{\n\
         \x20   packet raw {{ bytes: \"{}\" }} => drop\n\
         \x20   packet raw {{ bytes: \"{}\" }} => pass\n\
         \x20   packet raw {{ bytes: \"{}\" }} => drop\n\
         \x20   packet raw {{ bytes: \"{}\" }} => pass\n\
         \x20   packet raw {{ bytes: \"{}\" }} => drop count by_port[7005]\n\
         \x20   packet raw {{ bytes: \"{}\" }} => pass\n\
         }}\n",
        nets.join(", "),
        ports.join(", "),
        frame([10, 1, 0, 7], 80),
        frame([10, 1, 0, 10], 80),
        frame([10, 2, 9, 200], 80),
        frame([10, 2, 11, 1], 80),
        frame([10, 3, 0, 1], 7005),
        frame([10, 3, 0, 1], 7013),
    );
    let file = dir.path().join("maps.pol");
    std::fs::write(&file, &src).expect("write");
    let obj = dir.path().join("maps.o");
    let out = pol_ok(&[
        "build",
        file.to_str().expect("utf-8"),
        "--explain",
        "-o",
        obj.to_str().expect("utf-8"),
    ]);
    assert!(
        out.contains("lpm_trie"),
        "the inner prefix set is a trie: {out}"
    );
    let out = pol_ok(&["test", file.to_str().expect("utf-8")]);
    assert!(out.trim_end().ends_with("6 passed, 0 failed"), "{out}");
}

/// A filter that reads every kind of field at once (tunnels and every inner layer, MPLS,
/// PPPoE, the outer layers, MAC addresses, the largest payload window) loads on TC, where
/// the parser is biggest (the pull-and-parse-again loop), and on XDP: the verifier's budget
/// holds for the whole parser.
#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn a_filter_reading_every_field_kind_loads() {
    common::require_kernel();
    let dir = common::TempDir::new("pol_tunnel_all");
    for hook in ["tc(\"eth0\", ingress)", "xdp(\"eth0\")"] {
        let src = format!(
            "filter f on {hook} {{\n\
             \x20   drop inner.tcp.dport == 23 and inner.ip.fragment and inner.icmp6.type == 1 and inner.icmp.type == 3 and inner.sctp.dport == 9 and inner.ip6.first_next == 0 and inner.ip4.ihl == 5 and inner.ip.later_fragment\n\
             \x20   drop tunnel.id == 5 and mpls.label == 3 and mpls.depth == 2 and pppoe.session == 1\n\
             \x20   drop tcp.dport == 23 and ip.fragment and icmp6.type == 1 and arp.op == 1 and eth.src == 02:00:00:00:00:01 and payload[0..4] == \"GET \" and udp.payload[60..64] == \"abcd\" and vlan.id == 3 and sctp.dport == 1 and ip.later_fragment and icmp.type == 1\n\
             \x20   drop inner.udp.dport == 53\n\
             \x20   default pass\n}}\n\
             test \"t\" on f {{\n\
             \x20   packet tcp {{ dport: 23 }} => pass\n\
             \x20   packet raw {{ bytes: \"{}\" }} => drop\n\
             }}\n",
            hex(&over_udp4(4789, &vxlan(8, 5, &inner_eth4(IN_A, 17, &udp(53, b"q")))))
        );
        let file = dir.path().join("all.pol");
        std::fs::write(&file, src).expect("write");
        let out = pol_ok(&["test", file.to_str().expect("utf-8")]);
        assert!(
            out.trim_end().ends_with("2 passed, 0 failed"),
            "{hook}: {out}"
        );
    }
}

/// Test blocks describe tunnels, MPLS and PPPoE without raw bytes: `encap: vxlan|geneve|
/// gre|ipip` with `vni` (the VNI or GRE key) carries the described packet in a tunnel from
/// 192.0.2.1 to 192.0.2.2; `mpls: [labels]` and `pppoe: SESSION` put it behind them.
#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn test_blocks_describe_tunnels_mpls_and_pppoe() {
    common::require_kernel();
    let dir = common::TempDir::new("pol_tunnel_blocks");
    let file = dir.path().join("blocks.pol");
    std::fs::write(
        &file,
        "filter f on tc(\"eth0\", ingress) {\n\
         \x20   drop inner.tcp.dport == 23 and tunnel.id == 77\n\
         \x20   drop inner.ip6 and inner.udp.dport == 53\n\
         \x20   drop mpls.label == 100\n\
         \x20   drop pppoe.session == 0x1234 and tcp.dport == 22\n\
         \x20   drop ip.src == 192.0.2.1 and tcp.dport == 23\n\
         \x20   default pass\n}\n\
         test \"wrapped\" on f {\n\
         \x20   packet tcp { dport: 23, encap: vxlan, vni: 77 } => drop\n\
         \x20   packet tcp { dport: 23, encap: vxlan, vni: 78 } => pass\n\
         \x20   packet tcp { dport: 23, encap: geneve, vni: 77 } => drop\n\
         \x20   packet tcp { dport: 23, encap: gre, vni: 77 } => drop\n\
         \x20   packet tcp { dport: 23, encap: gre } => pass\n\
         \x20   packet tcp { src: 192.0.2.1, dport: 23 } => drop\n\
         \x20   packet ip6 udp { dport: 53, encap: ipip } => drop\n\
         \x20   packet ip6 udp { dport: 53, encap: gre } => drop\n\
         \x20   packet udp { dport: 53, encap: ipip } => pass\n\
         \x20   packet tcp { dport: 80, mpls: [100, 200] } => drop\n\
         \x20   packet tcp { dport: 80, mpls: [200, 100] } => pass\n\
         \x20   packet tcp { dport: 22, pppoe: 0x1234 } => drop\n\
         \x20   packet ip6 tcp { dport: 22, pppoe: 0x1234, vlan: [5] } => drop\n\
         \x20   packet tcp { dport: 22, pppoe: 0x1235 } => pass\n\
         }\n",
    )
    .expect("write");
    let out = pol_ok(&["test", file.to_str().expect("utf-8")]);
    assert!(out.trim_end().ends_with("14 passed, 0 failed"), "{out}");

    // Mistakes are spans `pol check` reports.
    std::fs::write(
        &file,
        "filter f on xdp(\"eth0\") {\n    drop tunnel\n    default pass\n}\n\
         test \"bad\" on f {\n\
         \x20   packet tcp { dport: 23, encap: l2tp } => drop\n\
         \x20   packet tcp { dport: 23, vni: 5 } => drop\n\
         }\n",
    )
    .expect("write");
    let o = pol(&["check", file.to_str().expect("utf-8")]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("unknown tunnel `l2tp`: vxlan, geneve, gre or ipip"),
        "{err}"
    );
    assert!(
        err.contains("`vni` is the VXLAN or GENEVE VNI or the GRE key"),
        "{err}"
    );
}
