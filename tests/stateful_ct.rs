//! Connection tracking (issue 15): `ct.state` and `ct.direction` in filter rules. Every
//! state transition through `pol test` (BPF_PROG_TEST_RUN) on XDP and TC, a full table
//! open and closed, and a default-deny host firewall on the tc ingress and egress of one
//! interface with real TCP and UDP between two network namespaces: replies pass,
//! unsolicited connections do not, and a flow that outlived its timeout counts as new.

mod common;
mod run_support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{require_kernel, TempDir};
use run_support::*;

fn pol(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pol"))
        .args(args)
        .output()
        .expect("run pol")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Each rule names what the packet was, so a test case's count says its state.
const PROBE: &str = r#"
CONFIG
filter ct_probe on HOOK {
    pass ct.state == new and ct.direction == original          count new_orig
    pass ct.state == established and ct.direction == reply     count est_reply
    pass ct.state == established and ct.direction == original  count est_orig
    drop ct.state == invalid                                   count invalid
    drop ct.state == untracked                                 count untracked
    default drop                                               count other
}
"#;

const TRANSITIONS: &str = r#"
test "transitions" on ct_probe {
    packet tcp { src: 10.0.0.1, dst: 10.0.0.2, sport: 40000, dport: 80, flags: [ack] } => drop count invalid
    packet tcp { src: 10.0.0.1, dst: 10.0.0.2, sport: 40000, dport: 80, flags: [syn] } => pass count new_orig
    packet tcp { src: 10.0.0.1, dst: 10.0.0.2, sport: 40000, dport: 80, flags: [syn] } => pass count new_orig
    packet tcp { src: 10.0.0.2, dst: 10.0.0.1, sport: 80, dport: 40000, flags: [syn, ack] } => pass count est_reply
    packet tcp { src: 10.0.0.1, dst: 10.0.0.2, sport: 40000, dport: 80, flags: [ack] } => pass count est_orig
    packet tcp { src: 10.0.0.2, dst: 10.0.0.1, sport: 80, dport: 40000, flags: [fin, ack] } => pass count est_reply
    packet tcp { src: 10.0.0.2, dst: 10.0.0.1, sport: 80, dport: 40001, flags: [syn, ack] } => drop count invalid
    packet tcp { src: 10.0.0.1, dst: 10.0.0.2, sport: 40002, dport: 80, flags: [syn, ack] } => drop count invalid
    packet udp { src: 10.0.0.1, dst: 10.0.0.3, sport: 5353, dport: 53 } => pass count new_orig
    packet udp { src: 10.0.0.1, dst: 10.0.0.3, sport: 5353, dport: 53 } => pass count new_orig
    packet udp { src: 10.0.0.3, dst: 10.0.0.1, sport: 53, dport: 5353 } => pass count est_reply
    packet udp { src: 10.0.0.1, dst: 10.0.0.3, sport: 5353, dport: 53 } => pass count est_orig
    packet udp { src: 10.0.0.3, dst: 10.0.0.1, sport: 53, dport: 5354 } => pass count new_orig
    packet ip6 tcp { src: 2001:db8::1, dst: 2001:db8::2, sport: 1000, dport: 22, flags: [syn] } => pass count new_orig
    packet ip6 tcp { src: 2001:db8::2, dst: 2001:db8::1, sport: 22, dport: 1000, flags: [syn, ack] } => pass count est_reply
    packet tcp { src: 0.0.0.0, dst: 2.0.1.13, sport: 1000, dport: 22, flags: [syn, ack] } => drop count invalid
    packet icmp { src: 10.0.0.1, dst: 10.0.0.2, type: 8 } => pass count new_orig
    packet icmp { src: 10.0.0.2, dst: 10.0.0.1, type: 0 } => pass count est_reply
    packet icmp { src: 10.0.0.9, dst: 10.0.0.1, type: 0 } => drop count invalid
    packet icmp { src: 10.0.0.9, dst: 10.0.0.1, type: 3 } => drop count untracked
    packet icmp6 { src: 2001:db8::1, dst: 2001:db8::2, type: 128 } => pass count new_orig
    packet icmp6 { src: 2001:db8::2, dst: 2001:db8::1, type: 129 } => pass count est_reply
    packet icmp6 { src: 2001:db8::2, dst: 2001:db8::1, type: 135 } => drop count untracked
    packet arp { } => drop count untracked
}
"#;

fn run_tests(dir: &TempDir, name: &str, source: &str, want: usize) {
    let file = dir.path().join(format!("{name}.pol"));
    std::fs::write(&file, source).expect("write");
    let o = pol(&["test", file.to_str().expect("utf-8")]);
    let out = text(&o);
    assert!(o.status.success(), "{name}: {out}");
    assert!(
        out.contains(&format!("{want} passed, 0 failed")),
        "{name}: {out}"
    );
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn every_transition_on_xdp_and_tc() {
    require_kernel();
    let dir = TempDir::new("pol_ct_transitions");
    for (i, hook) in ["xdp(\"eth0\")", "tc(\"eth0\", ingress)"]
        .iter()
        .enumerate()
    {
        let src = PROBE.replace("HOOK", hook).replace("CONFIG", "") + TRANSITIONS;
        run_tests(&dir, &format!("t{i}"), &src, 24);
    }
}

/// A table of 16 flows: one TCP flow opened, then 200 UDP flows; the TCP flow's entry is
/// evicted (least recently used), so its reply is unknown: invalid when the table fails
/// closed, taken up as established when it fails open. A mid-stream ACK likewise.
#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn a_full_table_evicts_and_fails_closed_or_open_as_declared() {
    require_kernel();
    let dir = TempDir::new("pol_ct_full");
    for (full, reply, verdict) in [("closed", "invalid", "drop"), ("open", "est_orig", "pass")] {
        let mut src = PROBE.replace("HOOK", "xdp(\"eth0\")").replace(
            "CONFIG",
            &format!("const conntrack = {{ size: 16, full: {full} }}"),
        );
        src.push_str("test \"full\" on ct_probe {\n");
        src.push_str(
            "    packet tcp { src: 10.1.0.1, dst: 10.1.0.2, sport: 40000, dport: 80, flags: [syn] } => pass count new_orig\n",
        );
        for i in 0..200 {
            src.push_str(&format!(
                "    packet udp {{ src: 10.2.{}.{}, dst: 10.1.0.1, sport: 53, dport: 9 }} => pass count new_orig\n",
                i / 250,
                i % 250 + 1
            ));
        }
        // The SYN-ACK of the evicted flow is a reply nobody is known to have asked for;
        // with `full: open` it starts an entry the way it goes (original).
        src.push_str(&format!(
            "    packet tcp {{ src: 10.1.0.2, dst: 10.1.0.1, sport: 80, dport: 40000, flags: [syn, ack] }} => {verdict} count {reply}\n"
        ));
        src.push_str(&format!(
            "    packet tcp {{ src: 10.3.0.1, dst: 10.1.0.1, sport: 1, dport: 2, flags: [ack] }} => {verdict} count {reply}\n"
        ));
        src.push_str("}\n");
        run_tests(&dir, &format!("full_{full}"), &src, 203);
    }
}

#[test]
fn bad_ct_tests_are_errors_with_spans() {
    let dir = TempDir::new("pol_ct_diags");
    let file = dir.path().join("bad.pol");
    std::fs::write(
        &file,
        "const conntrack = { size: 0, full: maybe, tcp: 5, colour: 1 }\n\
         filter f on xdp(\"eth0\") {\n    \
         pass ct.state == related\n    \
         pass ct.state == establised\n    \
         pass ct.state > new\n    \
         pass ct.dir == reply\n    \
         default pass\n}\n",
    )
    .expect("write");
    let o = pol(&["check", file.to_str().expect("utf-8")]);
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    for (want, line) in [
        ("`size` is the number of flows", 1),
        ("`full` is `open` or `closed`", 1),
        ("`tcp` is a timeout", 1),
        ("`conntrack` has no setting `colour`", 1),
        (
            "`related` (ICMP errors quoting a tracked flow) is not supported yet",
            3,
        ),
        (
            "`ct.state` is one of new, established, invalid, untracked",
            4,
        ),
        ("`ct.state` is compared with `==`, `!=` or `in {..}`", 5),
        ("unknown field `ct.dir`", 6),
    ] {
        assert!(out.contains(want), "missing {want:?}: {out}");
        assert!(
            out.contains(&format!("bad.pol:{line}:")),
            "no span on line {line}: {out}"
        );
    }
}

/// The host firewall of examples/stateful_firewall.pol on `va` (A), with 1-second UDP
/// timeouts so a test can outlive them.
const FIREWALL: &str = r#"
const conntrack = { udp_new: 1s, udp: 1s }
filter fw_in on tc("va", ingress) {
    pass ct.state == established
    pass arp
    pass icmp6.type in 133..136
    drop ct.state == invalid                      count invalid
    default drop                                  count unsolicited
}
filter fw_out on tc("va", egress) {
    default pass
}
"#;

/// Runs in B: a TCP server on 9000 that echoes, and a UDP server on 9001 that answers each
/// datagram, then (told by a line on stdin) sends one unsolicited datagram to A:7000 from
/// 9001, the way the earlier replies went. Prints "ready" first.
const B_SIDE: &str = r#"
import socket, sys, threading
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("10.99.0.2", 9000)); t.listen(4)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("10.99.0.2", 9001))
def tcp():
    while True:
        c, _ = t.accept(); d = c.recv(100); c.sendall(d.upper()); c.close()
def udp():
    while True:
        d, a = u.recvfrom(100); u.sendto(d.upper(), a)
threading.Thread(target=tcp, daemon=True).start()
threading.Thread(target=udp, daemon=True).start()
print("ready", flush=True)
for line in sys.stdin:
    u.sendto(b"late", ("10.99.0.1", 7000))
    print("sent", flush=True)
"#;

#[test]
#[cfg_attr(
    pol_no_netns,
    ignore = "kernel test: needs root, bpf(), iproute2, util-linux, bpftool and python3, unavailable at build time (CI=true runs it)"
)]
fn a_host_firewall_lets_replies_in_and_keeps_strangers_out() {
    require_kernel();
    require_tools();
    let net = NetPair::new("ct");
    let dir = TempDir::new("pol_ct_fw");
    let file = dir.path().join("fw_in.pol");
    std::fs::write(&file, FIREWALL).expect("write policy");
    let mut run = PolRun::start(
        &net.a,
        &[file.to_str().expect("utf-8"), "--json", "--interval", "0.5"],
        &[],
    );
    assert!(
        run.wait_for("\"attached\"", Duration::from_secs(30))
            .is_some(),
        "pol run did not attach"
    );
    let py = python();
    let mut b = Command::new("ip")
        .args(["netns", "exec", &net.b, &py, "-c", B_SIDE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start B");
    let mut b_out = BufReader::new(b.stdout.take().expect("stdout"));
    let mut line = String::new();
    b_out.read_line(&mut line).expect("B ready");
    assert_eq!(line.trim(), "ready");
    // A's own connections: TCP and UDP out, their replies in.
    let a_side = r#"
import json, socket, sys, time
out = {}
t = socket.socket(); t.settimeout(3)
try:
    t.connect(("10.99.0.2", 9000)); t.sendall(b"hello"); out["tcp"] = t.recv(100).decode()
except OSError as e:
    out["tcp"] = str(e)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("10.99.0.1", 7000)); u.settimeout(2)
u.sendto(b"ping", ("10.99.0.2", 9001))
try:
    out["udp"] = u.recv(100).decode()
except OSError as e:
    out["udp"] = str(e)
time.sleep(1.6)
sys.stdout.write(json.dumps(out) + "\n"); sys.stdout.flush()
sys.stdin.readline()
u.settimeout(1.5)
try:
    out["late"] = u.recv(100).decode()
except OSError as e:
    out["late"] = "timed out"
print(json.dumps(out), flush=True)
"#;
    let mut a = Command::new("ip")
        .args(["netns", "exec", &net.a, &py, "-c", a_side])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start A");
    let mut a_out = BufReader::new(a.stdout.take().expect("stdout"));
    let mut first = String::new();
    a_out.read_line(&mut first).expect("A's first report");
    let early = json(first.trim());
    assert_eq!(
        early["tcp"], "HELLO",
        "A's TCP connection and its replies: {early}"
    );
    assert_eq!(
        early["udp"], "PING",
        "A's UDP query and its answer: {early}"
    );
    // The UDP flow has been idle for 1.6 s, past its 1 s timeout: B's datagram along the
    // same 5-tuple is a new, unsolicited one now.
    use std::io::Write;
    let mut b_in = b.stdin.take().expect("stdin");
    writeln!(b_in, "go").expect("tell B");
    let mut sent = String::new();
    b_out.read_line(&mut sent).expect("B sent");
    writeln!(a.stdin.take().expect("stdin"), "go").expect("tell A");
    let mut last = String::new();
    a_out.read_line(&mut last).expect("A's last report");
    let late = json(last.trim());
    assert_eq!(
        late["late"], "timed out",
        "the expired flow's datagram is dropped: {late}"
    );
    let _ = a.wait();
    // Unsolicited: B connects to A.
    let stranger = Command::new("ip")
        .args([
            "netns", "exec", &net.b, &py, "-c",
            "import socket\nt = socket.socket(); t.settimeout(1)\ntry:\n    t.connect(('10.99.0.1', 22)); print('connected')\nexcept OSError:\n    print('failed')\n",
        ])
        .output()
        .expect("run stranger");
    assert_eq!(String::from_utf8_lossy(&stranger.stdout).trim(), "failed");
    let _ = b.kill();
    let _ = b.wait();
    run.signal("INT");
    let (ok, lines, err) = run.finish(Duration::from_secs(10));
    assert!(ok, "pol run: {err}");
    let fin = lines
        .iter()
        .rev()
        .find(|l| l.contains("\"final\""))
        .unwrap_or_else(|| panic!("no final object: {lines:?}\n{err}"));
    let v = json(fin);
    assert!(
        rule_packets(&v, 0) >= 3,
        "replies passed as established: {v}"
    );
    assert!(
        count(&v, "unsolicited")["total"].as_u64().unwrap_or(0) >= 2,
        "the late datagram and the stranger's SYN: {v}"
    );
    assert_clean(&net.a, "fw_in");
}
