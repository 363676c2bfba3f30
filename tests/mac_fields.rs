//! Ethernet and ARP hardware addresses as a user writes them (issue 7): `eth.src`,
//! `eth.dst`, `eth.broadcast`, `eth.multicast`, `arp.sha`, `arp.tha` with MAC literals,
//! through `pol test` (BPF_PROG_TEST_RUN) on XDP and TC, and the diagnostics around them.

mod common;

use std::process::{Command, Output};

fn pol(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pol"))
        .args(args)
        .output()
        .expect("run pol")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A filter over every MAC field on `hook`, and a test block whose verdicts need each.
fn policy(hook: &str) -> String {
    // Twelve gateways: a named set of more than 8 elements is a hash map keyed by MAC.
    let gws: Vec<String> = (1..=12)
        .map(|i| format!("02:00:00:00:01:{i:02x}"))
        .collect();
    // Nine exact `eth.src` rules: they become one rule map.
    let srcs: String = (1..=9)
        .map(|i| format!("    drop eth.src == 02:00:00:00:0a:{i:02x} count by_src[eth.src]\n"))
        .collect();
    format!(
        "set gws: mac = {{ {} }}\n\
         filter f on {hook} {{\n{srcs}\
         \x20   pass eth.dst in gws\n\
         \x20   pass eth.broadcast and arp.op == 1\n\
         \x20   drop arp.sha == aa:bb:cc:dd:ee:ff\n\
         \x20   drop arp.tha in {{ 02:00:00:00:00:07, 02:00:00:00:00:08 }}\n\
         \x20   drop eth.multicast\n\
         \x20   drop eth.dst != 02:00:00:00:00:02 and tcp.dport == 80\n\
         \x20   default pass\n}}\n\
         test \"macs\" on f {{\n\
         \x20   packet tcp {{ smac: 02:00:00:00:0a:03 }} => drop count by_src[02:00:00:00:0a:03]\n\
         \x20   packet tcp {{ smac: 02:00:00:00:0a:0a }} => pass\n\
         \x20   packet tcp {{ dmac: 02:00:00:00:01:0c, dport: 80 }} => pass\n\
         \x20   packet tcp {{ dmac: 02:00:00:00:01:0d, dport: 80 }} => drop\n\
         \x20   packet tcp {{ dport: 80 }} => pass\n\
         \x20   packet arp {{ src: 10.0.0.1, dst: 10.0.0.2 }} => pass\n\
         \x20   packet arp {{ src: 10.0.0.1, dst: 10.0.0.2, op: 2 }} => drop\n\
         \x20   packet udp {{ dmac: 01:00:5e:00:00:fb }} => drop\n\
         \x20   packet udp {{ dmac: 00:00:5e:00:00:fb }} => pass\n\
         \x20   packet arp {{ src: 10.0.0.1, dst: 10.0.0.2, dmac: 02:00:00:00:00:02, sha: aa:bb:cc:dd:ee:ff }} => drop\n\
         \x20   packet arp {{ src: 10.0.0.1, dst: 10.0.0.2, dmac: 02:00:00:00:00:02, tha: 02:00:00:00:00:08, op: 2 }} => drop\n\
         \x20   packet arp {{ src: 10.0.0.1, dst: 10.0.0.2, dmac: 02:00:00:00:00:02, tha: 02:00:00:00:00:09, op: 2 }} => pass\n\
         }}\n",
        gws.join(", ")
    )
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn mac_fields_decide_on_xdp_and_tc() {
    common::require_kernel();
    let dir = common::TempDir::new("pol_mac_fields");
    for (i, hook) in ["xdp(\"eth0\")", "tc(\"eth0\", ingress)"]
        .iter()
        .enumerate()
    {
        let file = dir.path().join(format!("mac{i}.pol"));
        std::fs::write(&file, policy(hook)).expect("write");
        let o = pol(&["test", file.to_str().expect("utf-8")]);
        let (out, err) = text(&o);
        assert!(o.status.success(), "{hook}: {out}{err}");
        assert!(out.trim_end().ends_with("12 passed, 0 failed"), "{out}");
    }
    // A wrong expectation fails: the verdicts above are the program's, not a default.
    let file = dir.path().join("wrong.pol");
    let src = policy("xdp(\"eth0\")").replace(
        "packet udp { dmac: 01:00:5e:00:00:fb } => drop",
        "packet udp { dmac: 01:00:5e:00:00:fb } => pass",
    );
    std::fs::write(&file, src).expect("write");
    let o = pol(&["test", file.to_str().expect("utf-8")]);
    let (out, _) = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(out.trim_end().ends_with("11 passed, 1 failed"), "{out}");
}

#[test]
fn unknown_fields_come_before_bad_literals_and_macs_are_not_ordered() {
    let dir = common::TempDir::new("pol_mac_diags");
    let file = dir.path().join("bad.pol");
    std::fs::write(
        &file,
        "filter f on xdp(\"eth0\") {\n    drop eth.sorc == 02:00:00:00:00:01\n    \
         drop eth.srcc == 02:00:00:00:0:1\n    default pass\n}\n",
    )
    .expect("write");
    let o = pol(&["check", file.to_str().expect("utf-8")]);
    let (out, err) = text(&o);
    assert!(!o.status.success(), "{out}{err}");
    let at = |s: &str| err.find(s).unwrap_or_else(|| panic!("{s}: {err}"));
    // Line 2: the literal is a MAC; the field is unknown, with the nearest field offered.
    assert!(err.contains("did you mean `eth.src`?"), "{err}");
    // Line 3: the unknown field first, then the literal's own error (a MAC, not IPv6).
    assert!(at("unknown field `eth.sorc`") < at("unknown field `eth.srcc`"));
    assert!(at("unknown field `eth.srcc`") < at("invalid MAC address `02:00:00:00:0:1`"));
    assert!(!err.contains("IPv6"), "{err}");

    std::fs::write(
        &file,
        "filter f on xdp(\"eth0\") {\n    drop eth.src < 02:00:00:00:00:01\n    \
         drop eth.dst == 10.0.0.1\n    drop arp.sha & 1 == 1\n    default pass\n}\n",
    )
    .expect("write");
    let o = pol(&["check", file.to_str().expect("utf-8")]);
    let (_, err) = text(&o);
    for want in [
        "MAC addresses are not ordered: `eth.src` cannot be compared with `<` or `>`",
        "expected mac, found ip4",
        "`arp.sha` (type `mac`) is not an integer field: only integers can be masked",
    ] {
        assert!(err.contains(want), "{want}: {err}");
    }
}
