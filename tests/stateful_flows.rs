//! Flow events (issue 15): `log` on filter rules sends an event per decided packet through
//! a ring buffer, limited to 1,000 a second (or the file's `const flowlog` rate) with the
//! suppressed ones counted; `pol run` prints them as aligned columns or JSON lines. Real
//! UDP between two network namespaces.

mod common;
mod run_support;

use std::process::Command;
use std::time::Duration;

use common::{require_kernel, TempDir};
use run_support::*;

const POLICY: &str = "filter flows_e2e on xdp(\"va\") {
    pass ct.state == established
    drop udp.dport == 9999                         count dropped log
    pass udp.dport == 5000
    default pass log
}
";

/// Sends `argv[1]` datagrams to A:9999 and `argv[2]` to A:5000, as fast as it can.
const SENDER: &str = r#"
import socket, sys
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(int(sys.argv[1])):
    u.sendto(b"x", ("10.99.0.1", 9999))
for i in range(int(sys.argv[2])):
    u.sendto(b"x", ("10.99.0.1", 5000))
"#;

fn send(net: &NetPair, to_9999: u32, to_5000: u32) {
    let ok = Command::new("ip")
        .args(["netns", "exec", &net.b, &python(), "-c", SENDER])
        .args([to_9999.to_string(), to_5000.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "sender");
}

#[test]
#[cfg_attr(
    pol_no_netns,
    ignore = "kernel test: needs root, bpf(), iproute2, util-linux, bpftool and python3, unavailable at build time (CI=true runs it)"
)]
fn logged_decisions_print_as_json_lines_and_columns_with_the_suppressed_counted() {
    require_kernel();
    require_tools();
    let net = NetPair::new("fl");
    let dir = TempDir::new("pol_flows");
    let file = dir.path().join("flows_e2e.pol");
    std::fs::write(&file, POLICY).expect("write");
    let file = file.to_str().expect("utf-8");

    // JSON: 5 drops logged, 7 datagrams to 5000 not logged.
    let run = PolRun::attached(&net.a, file, &[]);
    send(&net, 5, 7);
    std::thread::sleep(Duration::from_millis(400));
    // Then a burst far over the event rate: 3,000 drops at once.
    send(&net, 3000, 0);
    std::thread::sleep(Duration::from_millis(400));
    let (lines, v) = run.stop();
    let flows: Vec<serde_json::Value> = lines
        .iter()
        .filter(|l| l.contains("\"event\":\"flow\""))
        .map(|l| json(l))
        .collect();
    let drops: Vec<&serde_json::Value> = flows.iter().filter(|f| f["dport"] == 9999).collect();
    let first = drops
        .first()
        .unwrap_or_else(|| panic!("no flow event: {lines:?}"));
    assert_eq!(first["verdict"], "drop", "{first}");
    assert_eq!(first["iface"], "va", "{first}");
    assert_eq!(first["dir"], "xdp", "{first}");
    assert_eq!(first["src"], "10.99.0.2", "{first}");
    assert_eq!(first["dst"], "10.99.0.1", "{first}");
    assert_eq!(first["proto"], "udp", "{first}");
    assert_eq!(first["line"], 3, "{first}");
    assert_eq!(first["filter"], "flows_e2e", "{first}");
    assert_eq!(first["ct"], "new", "{first}");
    assert_eq!(first["ct_dir"], "original", "{first}");
    assert!(
        flows.iter().all(|f| f["dport"] != 5000),
        "rule 3 does not log: {flows:?}"
    );
    let summary = lines
        .iter()
        .find(|l| l.contains("\"event\":\"flows\""))
        .map(|l| json(l))
        .unwrap_or_else(|| panic!("no summary: {lines:?}"));
    let shown = summary["shown"].as_u64().unwrap_or(0);
    let suppressed = summary["suppressed"].as_u64().unwrap_or(0);
    let decided = rule_packets(&v, 1);
    assert_eq!(decided, 3005, "{v}");
    // Every logged decision is either shown or counted as suppressed (the ring buffer
    // holds far more than one burst of the rate).
    assert_eq!(shown as usize, flows.len(), "{summary}");
    assert_eq!(
        shown + suppressed,
        decided + v["programs"][0]["default"].as_u64().unwrap_or(0),
        "{summary} {v}"
    );
    assert!(
        suppressed > 0,
        "3,005 at once is over 1,000 a second: {summary}"
    );
    assert!(
        (1000..2000).contains(&shown),
        "about one second's worth shown: {summary}"
    );

    // Columns.
    let run = PolRun::start(&net.a, &[file, "--interval", "0.5"], &[]);
    std::thread::sleep(Duration::from_millis(1500));
    send(&net, 2, 0);
    std::thread::sleep(Duration::from_millis(400));
    run.signal("INT");
    let (ok, lines, err) = run.finish(Duration::from_secs(10));
    assert!(ok, "pol run: {err}");
    let header = lines
        .iter()
        .position(|l| l.contains("IFACE") && l.contains("VERD") && l.contains("CT"))
        .unwrap_or_else(|| panic!("no header: {lines:?}"));
    let row = lines
        .iter()
        .skip(header)
        .find(|l| l.contains("10.99.0.2:") && l.contains(":9999"))
        .unwrap_or_else(|| panic!("no row: {lines:?}"));
    for want in ["va", "xdp", "drop", " 3 ", "udp", "new original"] {
        assert!(row.contains(want), "{want:?} in {row:?}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("flow events: ") && l.contains("suppressed")),
        "{lines:?}"
    );
    assert_clean(&net.a, "flows_e2e");
}

/// The events' limit is the file's (`const flowlog = { rate: 50/s, burst: 20 }`): 1,000
/// logged drops at once show the burst and what the rate refills while they arrive, and
/// the rest is counted as suppressed; the column summary names the limit.
#[test]
#[cfg_attr(
    pol_no_netns,
    ignore = "kernel test: needs root, bpf(), iproute2, util-linux, bpftool and python3, unavailable at build time (CI=true runs it)"
)]
fn the_event_rate_is_the_files_own() {
    require_kernel();
    require_tools();
    let net = NetPair::new("fr");
    let dir = TempDir::new("pol_flow_rate");
    // Named after the test's pid: other suites may run this test at once.
    let name = format!("fr{}", std::process::id());
    let file = dir.path().join(format!("{name}.pol"));
    std::fs::write(
        &file,
        format!("const flowlog = {{ rate: 50/s, burst: 20 }}\nfilter {name} on xdp(\"va\") {{\n    drop udp.dport == 9999    count dropped log\n    default pass\n}}\n"),
    )
    .expect("write");
    let file = file.to_str().expect("utf-8");
    let run = PolRun::start(&net.a, &[file, "--interval", "0.5"], &[]);
    std::thread::sleep(Duration::from_millis(1500));
    let sent = std::time::Instant::now();
    send(&net, 1000, 0);
    let secs = sent.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(400));
    run.signal("INT");
    let (ok, lines, err) = run.finish(Duration::from_secs(10));
    assert!(ok, "pol run: {err}");
    let summary = lines
        .iter()
        .find(|l| l.starts_with("flow events: "))
        .unwrap_or_else(|| panic!("no summary: {lines:?}"));
    assert!(summary.ends_with("(over 50 a second)"), "{summary}");
    let num = |word: &str| -> u64 {
        let at = summary.find(word).unwrap_or(0);
        summary[..at]
            .split_whitespace()
            .last()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{word} in {summary}"))
    };
    let (shown, suppressed) = (num(" shown"), num(" suppressed"));
    assert_eq!(shown + suppressed, 1000, "{summary}");
    // 20 at once, then one every 20 ms while the burst lasts (plus one for the edges).
    let most = 20 + (50.0 * secs).ceil() as u64 + 1;
    assert!(
        (20..=most).contains(&shown),
        "{shown} shown, 20 to {most} expected over {secs:.3} s: {summary}"
    );
    assert_clean(&net.a, &name);
}

#[test]
fn bad_flowlog_settings_are_errors_with_spans() {
    let dir = TempDir::new("pol_flowlog_diags");
    for (setting, code, want) in [
        ("rate: 100", "E0511", "a rate is a count per time unit"),
        (
            "rate: 1000000/s",
            "E0402",
            "at most 100000 flow events a second",
        ),
        (
            "burst: 0",
            "E0402",
            "`burst` is how many events may come at once",
        ),
        ("speed: 5/s", "E0405", "`flowlog` has no setting `speed`"),
    ] {
        let file = dir.path().join("f.pol");
        std::fs::write(
            &file,
            format!("const flowlog = {{ {setting} }}\nfilter f on xdp(\"eth0\") {{\n    default pass log\n}}\n"),
        )
        .expect("write");
        let o = pol(&["check", file.to_str().expect("utf-8")]);
        let out = text(&o);
        assert!(!o.status.success(), "{setting}: {out}");
        assert!(out.contains(code) && out.contains(want), "{setting}: {out}");
        assert!(
            out.contains("f.pol:1:"),
            "{setting}: a span on line 1: {out}"
        );
    }
}
