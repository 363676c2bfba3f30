//! Ethernet and ARP hardware addresses as a user writes them (issue 7): `eth.src`,
//! `eth.dst`, `eth.broadcast`, `eth.multicast`, `arp.sha`, `arp.tha` with MAC literals,
//! through `pol test` (BPF_PROG_TEST_RUN) on XDP and TC, the diagnostics around them, and
//! `pol set` changing a `mac` set of a running filter.

mod common;
mod run_support;

use run_support::{json, require_tools, rule_packets, send_udp, NetPair, PolRun};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

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

/// Reads counter lines until rule `index` has counted at least `want` packets.
fn wait_rule(run: &mut PolRun, index: u64, want: u64) -> u64 {
    let end = Instant::now() + Duration::from_secs(10);
    let mut last = 0;
    while Instant::now() < end {
        let Some(l) = run.wait_for("\"counters\"", Duration::from_secs(2)) else {
            break;
        };
        last = rule_packets(&json(&l), index);
        if last >= want {
            break;
        }
    }
    last
}

/// Rule `index`'s count in the last counter line read over 2 s (after traffic has settled).
fn settled(run: &mut PolRun, index: u64) -> u64 {
    let end = Instant::now() + Duration::from_secs(2);
    let mut last = 0;
    while Instant::now() < end {
        if let Some(l) = run.wait_for("\"counters\"", Duration::from_secs(1)) {
            last = rule_packets(&json(&l), index);
        }
    }
    last
}

/// `pol set add|del|list` on a `mac` set (a hash map keyed by the 6-byte address) of a
/// running `pol run`: B's frames are dropped once its MAC is added, and pass again once it
/// is deleted; the set lists MAC addresses as they are written.
#[test]
#[cfg_attr(
    pol_no_netns,
    ignore = "kernel test: needs root, bpf(), iproute2, util-linux, bpftool and python3, unavailable at build time (CI=true runs it)"
)]
fn pol_set_changes_a_mac_set_of_a_running_filter() {
    common::require_kernel();
    require_tools();
    let net = NetPair::new("pm");
    let (_, link) = run_support::ip(&["-n", &net.b, "link", "show", "vb"]);
    let mac_b = link
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .expect("vb has a MAC address")
        .to_string();
    let dir = common::TempDir::new("pol_mac_set");
    let file = dir.path().join("macset.pol");
    let macs: Vec<String> = (1..=9).map(|i| format!("02:00:00:00:0b:{i:02x}")).collect();
    std::fs::write(
        &file,
        format!(
            "set macs: mac = {{ {} }}\n\
             filter macset on xdp(\"va\") {{\n    drop eth.src in macs\n    default pass\n}}\n",
            macs.join(", ")
        ),
    )
    .expect("write");
    let f = file.to_str().expect("utf-8");
    let mut run = PolRun::start(&net.a, &[f, "--json", "--interval", "0.2"], &[]);
    assert!(
        run.wait_for("\"attached\"", Duration::from_secs(30))
            .is_some(),
        "pol run did not attach"
    );
    send_udp(&net, 5000, 10);
    assert_eq!(settled(&mut run, 0), 0, "B's MAC is not in the set yet");

    let o = pol(&[
        "set",
        "add",
        f,
        "macs",
        &mac_b.to_uppercase(),
        "02:00:00:00:0b:01",
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains(&format!("added {mac_b} to macs")), "{out}");
    assert!(
        out.contains("02:00:00:00:0b:01 was already in macs"),
        "{out}"
    );
    assert!(
        err.contains("set macs: 10 entries (macs_u48 10 of 73)"),
        "{err}"
    );
    send_udp(&net, 5000, 10);
    assert!(
        wait_rule(&mut run, 0, 10) >= 10,
        "B's frames are dropped by rule 0"
    );

    let o = pol(&["set", "list", f, "macs"]);
    let (out, _) = text(&o);
    assert!(o.status.success());
    let listed: Vec<&str> = out.lines().collect();
    assert_eq!(listed.len(), 10, "{out}");
    assert!(
        listed.contains(&mac_b.as_str()) && listed.contains(&"02:00:00:00:0b:09"),
        "{out}"
    );

    let o = pol(&["set", "del", f, "macs", &mac_b]);
    let (out, err) = text(&o);
    assert!(
        o.status.success() && out.contains(&format!("deleted {mac_b} from macs")),
        "{out}{err}"
    );
    let before = settled(&mut run, 0);
    send_udp(&net, 5000, 10);
    assert_eq!(settled(&mut run, 0), before, "B passes again");

    let o = pol(&["set", "add", f, "macs", "02:00:00:00:0b"]);
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("is not a MAC address such as 02:00:00:00:00:01"),
        "{err}"
    );
    run.signal("INT");
    let (ok, _, err) = run.finish(Duration::from_secs(20));
    assert!(ok, "{err}");
}
