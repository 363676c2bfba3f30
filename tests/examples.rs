//! Every example compiles, its golden files match, it loads into the kernel verifier through
//! aya and through `bpftool prog loadall`, and its own `test` blocks plus the adversarial
//! packets below get the verdicts they should.

mod common;

use common::{require_kernel, snapshot_settings};
use pol_compiler::driver::{self, Compiled};
use pol_runtime::direct::Object as _;
use pol_runtime::packet::{Ext, Packet, ACK, SYN};
use pol_runtime::testrun;
use std::path::{Path, PathBuf};

fn examples() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples"))
            .expect("examples/ exists")
            .map(|e| e.expect("readable entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "pol"))
            .collect();
    v.sort();
    v
}

fn compile(path: &Path) -> (String, Compiled) {
    let src = std::fs::read_to_string(path).expect("readable example");
    match driver::compile(&src) {
        Ok(c) => (src, c),
        Err(d) => panic!(
            "{} does not compile:\n{}",
            path.display(),
            pol_compiler::diag::render_all(&d, &path.display().to_string(), &src)
        ),
    }
}

#[test]
fn examples_golden_files() {
    let paths = examples();
    assert!(paths.len() >= 5, "at least five examples");
    for path in paths {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("utf-8 name")
            .to_string();
        let (src, c) = compile(&path);
        let ir: String = c.programs.iter().map(|p| p.ir.to_string()).collect();
        let layout = pol_compiler::obj::layout(&c.spec);
        let json = layout.to_json().expect("layout.json serializes");
        // It reads back into the same types (the runtime's view of it).
        let back: pol_compiler::obj::Layout =
            serde_json::from_str(&json).expect("layout.json reads back");
        assert_eq!(
            back, layout,
            "{name}: layout.json does not read back as written"
        );
        let layout = json;
        snapshot_settings(&src).bind(|| {
            insta::assert_snapshot!(
                format!("example_{name}_ast"),
                pol_compiler::syntax::print::dump(&c.ast)
            );
            insta::assert_snapshot!(
                format!("example_{name}_hir"),
                pol_compiler::hir::print::dump(&c.hir)
            );
            insta::assert_snapshot!(format!("example_{name}_ir"), ir);
            insta::assert_snapshot!(format!("example_{name}_code"), code_summary(&c));
            insta::assert_snapshot!(format!("example_{name}_layout"), layout);
        });
    }
}

/// The code per source, one line each: how many instructions and conditional jumps the
/// parser, each rule, the default, the malformed path and the shared tail compile to.
/// Short enough to read in review; the code itself is checked by running it (the kernel
/// tests below, the differential and parser tests) and per pass by the MIR filetests.
fn code_summary(c: &Compiled) -> String {
    use pol_compiler::bpf::insn::{BPF_CALL, BPF_EXIT, BPF_JA, BPF_JMP, BPF_JMP32};
    use pol_compiler::ir::{SRC_DECIDE, SRC_DEFAULT, SRC_MALFORMED, SRC_PARSER};
    let mut out = String::new();
    for (p, f) in c.programs.iter().zip(&c.hir.filters) {
        out.push_str(&format!(
            "program {}: {} slots (ld_imm64 takes two)\n",
            p.name,
            p.insns.len()
        ));
        // (source, instructions, conditional jumps), in order of first appearance.
        let mut per: Vec<(u32, usize, usize)> = Vec::new();
        for (k, &(start, src)) in p.marks.iter().enumerate() {
            let end = p.marks.get(k + 1).map_or(p.insns.len(), |m| m.0);
            let code = p.insns.get(start..end).unwrap_or(&[]);
            // ld_imm64 is one instruction in two slots: count its first half only.
            let n = code.iter().filter(|i| i.code != 0).count();
            let jumps = code
                .iter()
                .filter(|i| {
                    let class = i.code & 0x07;
                    (class == BPF_JMP || class == BPF_JMP32)
                        && !matches!(i.code & 0xf0, BPF_JA | BPF_CALL | BPF_EXIT)
                })
                .count();
            match per.iter_mut().find(|e| e.0 == src) {
                Some(e) => (e.1, e.2) = (e.1 + n, e.2 + jumps),
                None => per.push((src, n, jumps)),
            }
        }
        for (src, n, jumps) in per {
            let what = match src {
                SRC_PARSER => "packet parser".to_string(),
                SRC_DEFAULT => "default".to_string(),
                SRC_MALFORMED => "malformed".to_string(),
                SRC_DECIDE => "count the decision, return the verdict".to_string(),
                pol_compiler::ir::groups::RULE_MAPS => "rule maps".to_string(),
                r => f
                    .rules
                    .iter()
                    .find(|x| x.index == r)
                    .map_or(format!("source {r}"), |x| {
                        format!("line {}: {}", x.line, x.text)
                    }),
            };
            out.push_str(&format!("{n:5} insns {jumps:4} branches  {what}\n"));
        }
    }
    out
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn examples_pass_their_own_tests_in_the_kernel() {
    require_kernel();
    for path in examples() {
        let src = std::fs::read_to_string(&path).expect("readable example");
        let c =
            driver::compile(&src).unwrap_or_else(|_| panic!("{} does not compile", path.display()));
        let loaded = testrun::load(&c).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let outcomes = testrun::run_tests(&c, &loaded);
        assert!(!outcomes.is_empty(), "{} has no test cases", path.display());
        for o in &outcomes {
            assert!(
                o.passed(),
                "{}: test {:?} case {}: expected {:?}, got {:?}",
                path.display(),
                o.test,
                o.index,
                o.expected,
                o.result
            );
        }
    }
}

#[test]
#[cfg_attr(
    pol_no_bpftool,
    ignore = "kernel test: needs root, bpf() and bpftool, unavailable at build time (CI=true runs it)"
)]
fn examples_load_with_bpftool() {
    require_kernel();
    common::require_tool("bpftool");
    for path in examples() {
        let (_, c) = compile(&path);
        let dir = common::TempDir::new("pol_examples");
        let obj = dir.path().join("prog.o");
        std::fs::write(&obj, &c.object).expect("write object");
        let pin = common::BpffsDir::new("pol_ex");
        let out = std::process::Command::new("bpftool")
            .args(["prog", "loadall"])
            .arg(&obj)
            .arg(pin.path())
            .output()
            .expect("run bpftool");
        assert!(
            out.status.success(),
            "bpftool prog loadall {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Runs `pkt` through program `prog` of the example and returns "pass" or "drop".
fn verdict(c: &Compiled, loaded: &pol_runtime::load::Loaded, prog: &str, pkt: Packet) -> String {
    let bytes = pkt.build().expect("valid packet");
    let run = match loaded.test_run(prog, &bytes, 1) {
        Ok(r) => r,
        Err(e) => return format!("test run failed: {e}"),
    };
    let filter = c
        .hir
        .filters
        .iter()
        .find(|f| f.name == prog)
        .expect("filter");
    match testrun::verdict_of(&filter.hook, run.retval) {
        Some(v) => driver::verdict_word(v).to_string(),
        None => format!("retval {}", run.retval),
    }
}

fn example(name: &str) -> Compiled {
    compile(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples")
            .join(format!("{name}.pol")),
    )
    .1
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn edge_cannot_be_evaded() {
    require_kernel();
    let c = example("edge");
    let l = testrun::load(&c).expect("load edge");
    let telnet = || Packet::tcp().src("192.0.2.1").dst("198.51.100.1").dport(23);
    let cases: Vec<(&str, Packet, &str)> = vec![
        ("plain telnet", telnet(), "drop"),
        ("telnet in a VLAN", telnet().vlan(100), "drop"),
        ("telnet in QinQ", telnet().qinq(100).vlan(200), "drop"),
        (
            "telnet behind three tags (malformed)",
            telnet().vlan(1).vlan(2).vlan(3),
            "drop",
        ),
        (
            "telnet with IPv4 options",
            telnet().ip4_options(&[1, 1, 1, 1, 1, 1, 1, 0]),
            "drop",
        ),
        ("telnet first fragment", telnet().frag4(0, true), "drop"),
        (
            "later fragment has no port",
            telnet().frag4(8, false),
            "pass",
        ),
        (
            "tiny first fragment (malformed)",
            telnet().frag4(0, true).truncate(14 + 20 + 8),
            "drop",
        ),
        ("IHL 4 (malformed)", telnet().ihl(4), "drop"),
        (
            "total length past the frame (malformed)",
            telnet().ip_total_len(1500),
            "drop",
        ),
        (
            "IPv4 header cut short (malformed)",
            telnet().truncate(14 + 12),
            "drop",
        ),
        (
            "v6 telnet",
            Packet::tcp().src("2001:db8:9::1").dport(23),
            "drop",
        ),
        (
            "v6 telnet behind extension headers",
            Packet::tcp()
                .src("2001:db8:9::1")
                .dport(23)
                .ext(Ext::HopByHop)
                .ext(Ext::Routing)
                .ext(Ext::DestOpts),
            "drop",
        ),
        (
            "v6 telnet first fragment",
            Packet::tcp()
                .src("2001:db8:9::1")
                .dport(23)
                .fragment(0, true),
            "drop",
        ),
        (
            "v6 with seven extension headers (malformed)",
            (0..7).fold(Packet::tcp().src("2001:db8:9::1").dport(80), |p, _| {
                p.ext(Ext::DestOpts)
            }),
            "drop",
        ),
        (
            "blocked v4 source, exact",
            Packet::udp().src("171.25.193.77").dport(53),
            "drop",
        ),
        (
            "blocked v4 source, prefix",
            Packet::udp().src("185.220.101.33").dport(53),
            "drop",
        ),
        (
            "blocked v6 source",
            Packet::udp().src("2001:db8:bad:1::5").dport(53),
            "drop",
        ),
        (
            "blocked v4 source in a VLAN",
            Packet::udp().src("203.0.113.9").dport(53).vlan(7),
            "drop",
        ),
        (
            "web from anywhere",
            Packet::tcp().src("192.0.2.1").dport(443).flags(SYN),
            "pass",
        ),
        (
            "ssh from admin v6",
            Packet::tcp().src("2001:db8:1::9").dport(22),
            "pass",
        ),
        (
            "ssh from outside v6",
            Packet::tcp().src("2001:db8:2::9").dport(22),
            "drop",
        ),
        (
            "X11 from outside",
            Packet::tcp().src("192.0.2.1").dport(6001),
            "drop",
        ),
        (
            "X11 from inside",
            Packet::tcp().src("10.1.1.1").dport(6001),
            "pass",
        ),
        (
            "ARP",
            Packet::arp().src("192.0.2.1").dst("192.0.2.2"),
            "pass",
        ),
    ];
    for (what, pkt, want) in cases {
        assert_eq!(verdict(&c, &l, "edge", pkt), want, "{what}");
    }
    // The decision statistics: 8 packets above are telnet (rule 1), 6 are malformed.
    let stats = l.map_entries("edge_stats").expect("read stats map");
    let slot = |i: usize| u64::from_le_bytes(stats[i].1.clone().try_into().expect("u64 value"));
    assert_eq!(stats.len(), 5 + 2, "one slot per rule, default, malformed");
    assert_eq!(slot(1), 8, "telnet drops");
    assert_eq!(slot(6), 6, "malformed drops");
    // Counted per source: the blocked v4 source above was counted once.
    let counts = l.map_entries("blocked_by_src").expect("read counter map");
    let key: Vec<u8> = [
        32u32.to_le_bytes().to_vec(),
        vec![171, 25, 193, 77],
        vec![0; 12],
    ]
    .concat();
    let hit = counts
        .iter()
        .find(|e| e.0 == key)
        .expect("blocked source counted");
    assert_eq!(hit.1, 1u64.to_le_bytes().to_vec());
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn tc_ipv6_filter_verdicts() {
    require_kernel();
    let c = example("ipv6");
    let l = testrun::load(&c).expect("load ipv6");
    let h = || Packet::tcp().src("2001:db8:9::1").dst("2001:db8::2");
    let cases: Vec<(&str, Packet, &str)> = vec![
        (
            "IPv4 passes",
            Packet::tcp().src("192.0.2.1").dport(25),
            "pass",
        ),
        ("https", h().dport(443), "pass"),
        ("smtp", h().dport(25), "drop"),
        (
            "smtp behind hop-by-hop and AH",
            h().dport(25).ext(Ext::HopByHop).ext(Ext::Ah),
            "drop",
        ),
        (
            "neighbour solicitation",
            Packet::icmp6().src("fe80::1").icmp_type(135),
            "pass",
        ),
        (
            "echo request",
            Packet::icmp6().src("2001:db8:9::1").icmp_type(128),
            "pass",
        ),
        (
            "router renumbering",
            Packet::icmp6().src("2001:db8:9::1").icmp_type(138),
            "drop",
        ),
        ("established", h().dport(5000).flags(ACK), "pass"),
        ("later fragment", h().dport(25).fragment(8, false), "drop"),
        (
            "TCP header cut short (malformed)",
            h().dport(443).truncate(14 + 40 + 10),
            "drop",
        ),
        ("ssh from admin", h().src("2001:db8:1::5").dport(22), "pass"),
        ("ssh from elsewhere", h().dport(22).flags(SYN), "drop"),
    ];
    for (what, pkt, want) in cases {
        assert_eq!(verdict(&c, &l, "v6host", pkt), want, "{what}");
    }
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn vlan_and_counting_verdicts() {
    require_kernel();
    let c = example("vlan");
    let l = testrun::load(&c).expect("load vlan");
    let cases: Vec<(&str, Packet, &str)> = vec![
        ("untagged", Packet::udp().src("192.0.2.1"), "drop"),
        (
            "mgmt from mgmt prefix",
            Packet::tcp().src("10.10.9.9").vlan(10),
            "pass",
        ),
        (
            "mgmt from elsewhere",
            Packet::tcp().src("10.11.9.9").vlan(10),
            "drop",
        ),
        (
            "QinQ with inner mgmt",
            Packet::tcp().src("192.0.2.1").qinq(20).vlan(10),
            "drop",
        ),
        (
            "guest to private",
            Packet::udp().src("192.0.2.1").dst("172.16.5.5").vlan(30),
            "drop",
        ),
        (
            "guest to internet",
            Packet::udp().src("192.0.2.1").dst("8.8.4.4").vlan(30),
            "pass",
        ),
        (
            "three tags",
            Packet::udp().vlan(30).vlan(31).vlan(32),
            "drop",
        ),
    ];
    for (what, pkt, want) in cases {
        assert_eq!(verdict(&c, &l, "trunk", pkt), want, "{what}");
    }

    let c = example("counting");
    let l = testrun::load(&c).expect("load counting");
    for _ in 0..3 {
        assert_eq!(
            verdict(&c, &l, "observe", Packet::udp().src("192.0.2.7").dport(53)),
            "pass"
        );
    }
    assert_eq!(
        verdict(
            &c,
            &l,
            "observe",
            Packet::udp().dport(123).payload(&[0; 468])
        ),
        "drop"
    );
    assert_eq!(
        verdict(&c, &l, "observe", Packet::udp().dport(9).truncate(20)),
        "drop"
    );
    let dns = l.map_entries("dns_by_src").expect("dns counter");
    let key: Vec<u8> = [
        32u32.to_le_bytes().to_vec(),
        vec![192, 0, 2, 7],
        vec![0; 12],
    ]
    .concat();
    assert_eq!(
        dns.iter().find(|e| e.0 == key).map(|e| e.1.clone()),
        Some(3u64.to_le_bytes().to_vec())
    );
    let floods = l.map_entries("ntp_floods").expect("ntp counter");
    assert_eq!(
        floods.first().map(|e| e.1.clone()),
        Some(1u64.to_le_bytes().to_vec())
    );
    let malformed = l
        .map_entries("malformed_packets")
        .expect("malformed counter");
    assert_eq!(
        malformed.first().map(|e| e.1.clone()),
        Some(1u64.to_le_bytes().to_vec())
    );
}

/// A network namespace with a veth pair `v0`/`v1`, deleted on drop (even when the test fails).
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("{tag}{}", std::process::id());
        let ok = |args: &[&str]| {
            std::process::Command::new("ip")
                .args(args)
                .status()
                .is_ok_and(|s| s.success())
        };
        assert!(ok(&["netns", "add", &name]), "ip netns add {name}");
        let ns = Netns(name);
        assert!(ok(&[
            "-n", &ns.0, "link", "add", "v0", "type", "veth", "peer", "name", "v1"
        ]));
        assert!(ok(&["-n", &ns.0, "link", "set", "v0", "up"]));
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

#[test]
#[cfg_attr(
    pol_no_netns,
    ignore = "kernel test: needs root, bpf(), iproute2, util-linux, bpftool and python3, unavailable at build time (CI=true runs it)"
)]
fn examples_attach_with_iproute2() {
    require_kernel();
    common::require_tool("ip");
    common::require_tool("tc");
    for path in examples() {
        let (_, c) = compile(&path);
        let dir = common::TempDir::new("pol_iproute2");
        let obj = dir.path().join("prog.o");
        std::fs::write(&obj, &c.object).expect("write object");
        let obj = obj.to_str().expect("utf-8 path");
        let ns = Netns::new("polip");
        let run = |cmd: &str, args: &[&str]| {
            let out = std::process::Command::new(cmd)
                .args(args)
                .output()
                .expect("run iproute2");
            assert!(
                out.status.success(),
                "{cmd} {args:?} for {}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let section = &c.spec.programs[0].section;
        if section.starts_with("xdp") {
            run(
                "ip",
                &[
                    "-n",
                    &ns.0,
                    "link",
                    "set",
                    "dev",
                    "v0",
                    "xdpgeneric",
                    "obj",
                    obj,
                    "sec",
                    section,
                ],
            );
            let shown = run("ip", &["-n", &ns.0, "link", "show", "v0"]);
            assert!(
                shown.contains("prog/xdp"),
                "{}: not attached: {shown}",
                path.display()
            );
        } else {
            run("tc", &["-n", &ns.0, "qdisc", "add", "dev", "v0", "clsact"]);
            run(
                "tc",
                &[
                    "-n", &ns.0, "filter", "add", "dev", "v0", "ingress", "bpf", "da", "obj", obj,
                    "sec", section,
                ],
            );
            let shown = run(
                "tc",
                &["-n", &ns.0, "filter", "show", "dev", "v0", "ingress"],
            );
            assert!(
                shown.contains("direct-action"),
                "{}: not attached: {shown}",
                path.display()
            );
        }
    }
    // iproute2 leaves its pin folders behind (see the shared notes); they hold no pins of ours.
}
