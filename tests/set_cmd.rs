//! `pol set add|del|list` against a real `pol run` in a network namespace: traffic from an
//! address outside a set arrives, is dropped once `pol set add` puts the address in, and
//! arrives again after `pol set del`; `list` decodes what the maps hold; every error a user
//! can meet is a sentence; nothing is left pinned afterwards.

mod common;
mod run_support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{require_kernel, TempDir};
use run_support::*;

const POLICY: &str = r#"
set blocked: cidr = { 192.0.2.1, 192.0.2.2, 192.0.2.3, 192.0.2.4, 192.0.2.5,
                      192.0.2.6, 192.0.2.7, 192.0.2.8, 192.0.2.9 }
set nets: cidr = { 198.51.100.0/24, 203.0.113.0/24, 10.1.0.0/16, 10.2.0.0/16, 10.3.0.0/16,
                   10.4.0.0/16, 10.5.0.0/16, 10.6.0.0/16, 2001:db8::/32 }
set ports: port = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 100..200 }
set small: cidr = { 10.0.0.1, 10.0.0.2 }

filter set_e2e on xdp("va") {
    drop ip.src in blocked        count by_set
    drop ip.src in nets
    drop udp.dport in ports
    drop ip.src in small
    default pass
}
"#;

/// Runs in A: counts UDP datagrams to 10.99.0.1:5000 for argv[1] seconds.
const RECEIVER: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("10.99.0.1", 5000)); s.settimeout(0.05)
print("ready", flush=True)
n, end = 0, time.time() + float(sys.argv[1])
while time.time() < end:
    try:
        s.recv(2048); n += 1
    except socket.timeout:
        pass
print(n, flush=True)
"#;

/// Runs in B: 10 datagrams to 10.99.0.1:5000.
const SENDER: &str = r#"
import socket, time
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(10):
    u.sendto(b"x", ("10.99.0.1", 5000)); time.sleep(0.01)
"#;

/// Sends 10 datagrams from B to A; returns how many arrived.
fn udp_round(net: &NetPair) -> u64 {
    let py = python();
    let mut rx = Command::new("ip")
        .args(["netns", "exec", &net.a, &py, "-c", RECEIVER, "1.0"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start receiver");
    let mut out = std::io::BufReader::new(rx.stdout.take().expect("stdout"));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).expect("receiver ready");
    assert_eq!(line.trim(), "ready");
    let sent = Command::new("ip")
        .args(["netns", "exec", &net.b, &py, "-c", SENDER])
        .output()
        .expect("run sender");
    assert!(sent.status.success(), "sender failed: {sent:?}");
    line.clear();
    std::io::BufRead::read_line(&mut out, &mut line).expect("receiver count");
    let _ = rx.wait();
    line.trim().parse().expect("a count")
}

/// `pol set ARGS`: (success, stdout, stderr).
fn pol_set(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pol"))
        .arg("set")
        .args(args)
        .output()
        .expect("run pol set");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Reads counter lines until rule `index` has counted at least `want` packets.
fn wait_rule(pol: &mut PolRun, index: u64, want: u64) -> u64 {
    let end = Instant::now() + Duration::from_secs(10);
    let mut last = 0;
    while Instant::now() < end {
        let Some(l) = pol.wait_for("\"counters\"", Duration::from_secs(2)) else {
            break;
        };
        last = rule_packets(&json(&l), index);
        if last >= want {
            break;
        }
    }
    last
}

#[test]
#[cfg_attr(
    pol_no_netns,
    ignore = "kernel test: needs root, bpf(), iproute2, util-linux, bpftool and python3, unavailable at build time (CI=true runs it)"
)]
fn set_add_del_list_change_a_running_filter() {
    require_kernel();
    require_tools();
    let net = NetPair::new("ps");
    let dir = TempDir::new("pol_set_e2e");
    let file = dir.path().join("set_e2e.pol");
    std::fs::write(&file, POLICY).expect("write policy");
    let f = file.to_str().expect("utf-8 path");

    // Before any run: nothing to change.
    let (ok, _, err) = pol_set(&["list", f, "blocked"]);
    assert!(!ok);
    assert!(
        err.contains("no `pol run` of") && err.contains("start one with `sudo pol run"),
        "{err}"
    );

    let mut pol = PolRun::start(&net.a, &[f, "--json", "--interval", "0.2"], &[]);
    assert!(
        pol.wait_for("\"attached\"", Duration::from_secs(30))
            .is_some(),
        "pol run did not attach"
    );
    let pid = pol.child.id();
    let pins = format!("/sys/fs/bpf/pol/set_e2e-{pid}");
    for m in ["blocked_v4", "nets_v4", "nets_v6", "ports"] {
        assert!(
            std::path::Path::new(&pins).join(m).exists(),
            "{m} pinned under {pins}"
        );
    }
    assert!(
        !std::path::Path::new(&pins).join("small_v4").exists(),
        "inline sets have no map"
    );

    // 10.99.0.2 (B) is not in the set: its traffic arrives.
    assert_eq!(
        udp_round(&net),
        10,
        "B's datagrams arrive before `pol set add`"
    );

    let (ok, out, err) = pol_set(&["add", f, "blocked", B_ADDR, "192.0.2.1"]);
    assert!(ok, "{err}");
    assert!(out.contains("added 10.99.0.2 to blocked"), "{out}");
    assert!(out.contains("192.0.2.1 was already in blocked"), "{out}");
    assert!(
        err.contains("set blocked: 10 entries (blocked_v4 10 of 73)"),
        "{err}"
    );
    assert_eq!(
        udp_round(&net),
        0,
        "B's datagrams are dropped once it is in the set"
    );
    assert!(wait_rule(&mut pol, 0, 10) >= 10, "rule 0 counted the drops");

    let (ok, out, _) = pol_set(&["list", f, "blocked"]);
    assert!(ok);
    let listed: Vec<&str> = out.lines().collect();
    assert_eq!(listed.len(), 10, "{out}");
    assert_eq!(listed[0], "10.99.0.2", "sorted by address: {out}");
    assert!(listed.contains(&"192.0.2.9"), "{out}");

    let (ok, out, err) = pol_set(&["del", f, "blocked", B_ADDR, "10.99.0.3"]);
    assert!(ok, "{err}");
    assert!(out.contains("deleted 10.99.0.2 from blocked"), "{out}");
    assert!(out.contains("10.99.0.3 was not in blocked"), "{out}");
    assert_eq!(
        udp_round(&net),
        10,
        "B's datagrams arrive again after `pol set del`"
    );

    // Prefixes (LPM trie) of both families; host bits are cleared as in the compiler.
    let (ok, out, err) = pol_set(&["add", f, "nets", "2001:db8:1::/48", "192.0.2.77/24"]);
    assert!(ok, "{err}");
    assert!(out.contains("added 192.0.2.0/24 to nets"), "{out}");
    let (ok, out, _) = pol_set(&["list", f, "nets"]);
    assert!(ok);
    assert!(out.contains("\n192.0.2.0/24\n"), "{out}");
    assert!(out.ends_with("2001:db8::/32\n2001:db8:1::/48\n"), "{out}");
    // Ports, with the file's range noted.
    let (ok, out, err) = pol_set(&["add", f, "ports", "5001"]);
    assert!(ok && out.contains("added 5001 to ports"), "{out}{err}");
    let (ok, out, err) = pol_set(&["list", f, "ports"]);
    assert!(ok && out.ends_with("9\n5001\n"), "{out}");
    assert!(err.contains("1 range in the file"), "{err}");

    // Errors, each a sentence that says what to do.
    let cases: &[(&[&str], &str)] = &[
        (
            &["add", f, "blockd", "1.2.3.4"],
            "has no set `blockd`; did you mean `blocked`?",
        ),
        (
            &["add", f, "small", "1.2.3.4"],
            "sets of up to 8 elements are inlined",
        ),
        (
            &["add", f, "blocked", "nope"],
            "`nope` is not a value of set `blocked` (cidr): it is not an IPv4 or IPv6 address",
        ),
        (&["add", f, "ports", "70000"], "does not fit in port"),
        (&["add", f, "ports", "300..400"], "is a range"),
        (
            &["add", f, "blocked", "2001:db8::1"],
            "set `blocked` has no IPv6 map",
        ),
        (
            &["add", f, "blocked", "10.0.0.0/8"],
            "cannot hold the prefix `10.0.0.0/8`",
        ),
        (&["list", f, "blocked", "--pid", "1"], "no `pol run` of"),
    ];
    for (args, want) in cases {
        let (ok, _, err) = pol_set(args);
        assert!(!ok, "{args:?} must fail");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // A wrong value among good ones changes nothing.
    let (ok, _, _) = pol_set(&["add", f, "blocked", "198.18.0.1", "nope"]);
    assert!(!ok);
    let (_, out, _) = pol_set(&["list", f, "blocked"]);
    assert!(!out.contains("198.18.0.1"), "{out}");

    // Full: 9 elements + 64 of room.
    let many: Vec<String> = (0..64).map(|i| format!("198.18.1.{i}")).collect();
    let mut args = vec!["add", f, "blocked"];
    args.extend(many.iter().map(String::as_str));
    let (ok, _, err) = pol_set(&args);
    assert!(ok, "64 more fit: {err}");
    let (ok, _, err) = pol_set(&["add", f, "blocked", "198.18.2.1"]);
    assert!(!ok);
    assert!(
        err.contains("set `blocked` is full: map `blocked_v4` holds its 73 entries")
            && err.contains("pol set del"),
        "{err}"
    );

    pol.signal("INT");
    let (ok, _, err) = pol.finish(Duration::from_secs(10));
    assert!(ok, "{err}");
    assert!(err.contains("set maps pinned under"), "{err}");
    assert!(!std::path::Path::new(&pins).exists(), "{pins} removed");
    assert_clean(&net.a, "set_e2e");
    let (ok, _, err) = pol_set(&["list", f, "blocked"]);
    assert!(!ok && err.contains("no `pol run` of"), "{err}");
}

#[test]
#[cfg_attr(
    pol_no_netns,
    ignore = "kernel test: needs root, bpf(), iproute2, util-linux, bpftool and python3, unavailable at build time (CI=true runs it)"
)]
fn a_killed_run_leaves_pins_the_next_run_removes() {
    require_kernel();
    require_tools();
    let net = NetPair::new("pk");
    let dir = TempDir::new("pol_set_kill");
    let file = dir.path().join("set_kill.pol");
    std::fs::write(&file, POLICY.replace("set_e2e", "set_kill")).expect("write policy");
    let f = file.to_str().expect("utf-8 path");
    let mut first = PolRun::start(&net.a, &[f, "--json"], &[]);
    assert!(first
        .wait_for("\"attached\"", Duration::from_secs(30))
        .is_some());
    let stale = format!("/sys/fs/bpf/pol/set_kill-{}", first.child.id());
    // Two runs of one file: distinct pin directories; `pol set` asks which.
    let mut second = PolRun::start(&net.b, &[f, "--json", "--iface", "vb"], &[]);
    assert!(second
        .wait_for("\"attached\"", Duration::from_secs(30))
        .is_some());
    let (ok, _, err) = pol_set(&["list", f, "blocked"]);
    assert!(
        !ok && err.contains("`pol run`s of") && err.contains("--pid"),
        "{err}"
    );
    let pid = second.child.id().to_string();
    let (ok, out, err) = pol_set(&["list", f, "blocked", "--pid", &pid]);
    assert!(ok && out.lines().count() == 9, "{out}{err}");
    second.signal("INT");
    assert!(second.finish(Duration::from_secs(10)).0);

    first.signal("KILL");
    let _ = first.finish(Duration::from_secs(10));
    assert!(
        std::path::Path::new(&stale).exists(),
        "SIGKILL leaves {stale}"
    );
    let (ok, _, err) = pol_set(&["list", f, "blocked"]);
    assert!(
        !ok && err.contains("no `pol run` of"),
        "a dead run is not running: {err}"
    );
    let mut third = PolRun::start(&net.a, &[f, "--json"], &[]);
    assert!(third
        .wait_for("\"attached\"", Duration::from_secs(30))
        .is_some());
    third.signal("INT");
    let (ok, _, err) = third.finish(Duration::from_secs(10));
    assert!(ok, "{err}");
    // Swept by the third run (or by any other `pol run` starting meanwhile).
    assert!(
        !std::path::Path::new(&stale).exists(),
        "{stale} swept: {err}"
    );
    assert_clean(&net.a, "set_kill");
}
