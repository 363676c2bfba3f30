//! Per-rule audit and enforce, switched while running, and alerts sent where a
//! collector reads them (a Unix socket, a file) with the rate limit's suppressed counts:
//! real connects from a test cgroup, a real listener, a real exec.

mod common;
mod rules_support;

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixListener;
use std::process::Command;
use std::time::Duration;

use common::{require_kernel, TempDir};
use rules_support::*;

fn pol(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pol"))
        .args(args)
        .output()
        .expect("run pol")
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn one_rule_switches_between_audit_and_enforce_and_alerts_reach_a_collector_socket() {
    require_kernel();
    common::require_tool("python3");
    let dir = TempDir::new("pol_rules_modes");
    let cg = TestCgroup::new("pol_rules_modes");
    let la = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    let lb = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    let (pa, pb) = (
        la.local_addr().expect("addr").port(),
        lb.local_addr().expect("addr").port(),
    );
    let rules = dir.path().join("modes.pol");
    std::fs::write(
        &rules,
        format!(
            "rule watch_a on connect {{\n    when port == {pa}\n    action audit, deny, alert(warning, \"a {{port}}\")\n}}\n\
             rule block_b on connect {{\n    when port == {pb}\n    action deny, alert(critical, \"b {{port}}\")\n}}\n"
        ),
    )
    .expect("write rules");
    let file = rules.to_str().expect("utf-8");
    let sock = dir.path().join("collector.sock");
    let collector = UnixListener::bind(&sock).expect("bind the collector socket");
    let to = format!("unix:{}", sock.display());
    let run = start(&[
        "--json",
        "--alert-rate",
        "3",
        "--alerts-to",
        &to,
        "--cgroup",
        cg.path().to_str().expect("utf-8"),
        file,
    ]);
    let (conn, _) = collector.accept().expect("pol connects to the collector");
    let connect = |port: u16| said(&cg.sh(&socket_script("connect", false, "127.0.0.1", port)));
    let pid = run.id().to_string();
    let mode = |args: &[&str]| {
        let mut a = vec!["mode", file];
        a.extend_from_slice(args);
        a.extend_from_slice(&["--pid", &pid]);
        let o = pol(&a);
        assert!(o.status.success(), "pol {a:?}: {o:?}");
        said(&o)
    };

    assert_eq!(mode(&["--rule", "watch_a"]), "audit", "as the file says");
    assert_eq!(mode(&[]), "enforce");
    assert_eq!(connect(pa), "ok", "watch_a starts in audit mode");
    assert_eq!(connect(pb), "EPERM", "block_b enforces");
    // A storm on block_b from one process: 3 alerts per CPU a second pass, the rest are
    // counted; every connect is refused.
    let storm = cg.sh(&format!(
        "exec python3 -c \"import socket\nn = 0\nfor _ in range(20):\n    s = socket.socket()\n    try:\n        s.connect(('127.0.0.1', {pb}))\n    except PermissionError:\n        n += 1\n    s.close()\nprint(n)\""
    ));
    assert_eq!(said(&storm), "20", "denials are never limited: {storm:?}");
    mode(&["enforce", "--rule", "watch_a"]);
    assert_eq!(connect(pa), "EPERM", "watch_a enforces now");
    // The file in audit mode: block_b lets it through, watch_a keeps its own mode.
    mode(&["audit"]);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(connect(pb), "ok", "block_b follows the file: audit");
    assert_eq!(
        connect(pa),
        "EPERM",
        "watch_a's own mode outlasts the file's"
    );
    mode(&["follow", "--rule", "watch_a"]);
    assert_eq!(mode(&["--rule", "watch_a"]), "follow", "as the file again");
    assert_eq!(connect(pa), "ok");
    std::thread::sleep(Duration::from_millis(1200));
    let out = stop(run);
    assert!(
        out.trim().is_empty(),
        "alerts go to the collector, not stdout: {out}"
    );
    let lines: Vec<serde_json::Value> = BufReader::new(conn)
        .lines()
        .map(|l| serde_json::from_str(&l.expect("read")).expect("a JSON line"))
        .collect();
    let seen: Vec<(String, String)> = lines
        .iter()
        .filter(|v| v["type"] == "alert")
        .map(|v| {
            (
                v["rule"].as_str().unwrap_or("").into(),
                v["action"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    let denied_b = seen
        .iter()
        .filter(|(r, a)| r == "block_b" && a == "deny")
        .count();
    let others: Vec<(&str, &str)> = seen
        .iter()
        .filter(|(r, a)| !(r == "block_b" && a == "deny"))
        .map(|(r, a)| (r.as_str(), a.as_str()))
        .collect();
    assert_eq!(
        others,
        [
            ("watch_a", "audit"),
            ("watch_a", "deny"),
            ("block_b", "audit"),
            ("watch_a", "deny"),
            ("watch_a", "audit"),
        ],
        "{lines:#?}"
    );
    let suppressed = lines
        .iter()
        .filter(|v| v["type"] == "suppressed" && v["rule"] == "block_b" && v["limit"] == 3)
        .filter_map(|v| v["count"].as_u64())
        .max()
        .unwrap_or(0);
    assert!(
        suppressed > 0 && denied_b as u64 + suppressed == 21,
        "21 denials of block_b: {denied_b} alerted, {suppressed} counted on the collector's stream\n{lines:#?}"
    );
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn alerts_go_to_a_file_and_a_missing_collector_is_one_sentence() {
    require_kernel();
    let dir = TempDir::new("pol_rules_alertfile");
    let name = format!("paf{}", std::process::id() % 100_000);
    let prog = program(dir.path(), &name);
    let rules = dir.path().join("file.pol");
    std::fs::write(
        &rules,
        format!("rule seen on exec {{\n    when comm == \"{name}\"\n    action alert(notice, \"{{comm}} ran\")\n}}\n"),
    )
    .expect("write rules");
    let file = rules.to_str().expect("utf-8");
    let log = dir.path().join("alerts.log");
    std::fs::write(&log, "earlier line\n").expect("write log");
    let run = start(&["--alerts-to", log.to_str().expect("utf-8"), file]);
    assert!(Command::new(&prog).status().expect("run").success());
    let out = stop(run);
    assert!(out.trim().is_empty(), "nothing on stdout: {out}");
    let text = std::fs::read_to_string(&log).expect("read log");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "appended: a header and one alert\n{text}");
    assert_eq!(lines[0], "earlier line");
    assert!(lines[1].starts_with("SEVERITY RULE"), "{text}");
    assert!(
        lines[2].starts_with("notice   seen") && lines[2].ends_with(&format!("{name} ran")),
        "{text}"
    );

    let gone = dir.path().join("nobody.sock");
    let o = pol(&[
        "run",
        "--duration",
        "5",
        "--alerts-to",
        &format!("unix:{}", gone.display()),
        file,
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no collector listens on that socket"),
        "one sentence: {err}"
    );
    assert!(!err.contains("attached"), "nothing was attached: {err}");
}
