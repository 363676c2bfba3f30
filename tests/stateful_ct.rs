//! Connection tracking (issue 15): `ct.state` and `ct.direction` in filter rules. Every
//! state transition through `pol test` (BPF_PROG_TEST_RUN) on XDP and TC, a full table
//! open and closed, and a default-deny host firewall on the tc ingress and egress of one
//! interface with real TCP and UDP between two network namespaces: replies pass,
//! unsolicited connections do not, and a flow that outlived its timeout counts as new.

mod common;
mod run_support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::{require_kernel, TempDir};
use run_support::*;

/// Each rule names what the packet was, so a test case's count says its state.
const PROBE: &str = r#"
CONFIG
filter ct_probe on HOOK {
    pass ct.state == new and ct.direction == original          count new_orig
    pass ct.state == established and ct.direction == reply     count est_reply
    pass ct.state == established and ct.direction == original  count est_orig
    pass ct.state == related and ct.direction == reply         count rel_reply
    pass ct.state == related and ct.direction == original      count rel_orig
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

test "related, echo ids, fragments" on ct_probe {
    packet udp { src: 10.5.0.1, dst: 10.5.0.3, sport: 5353, dport: 53 } => pass count new_orig
    packet icmp { src: 10.5.0.3, dst: 10.5.0.1, type: 3, code: 3, quote: { kind: udp, src: 10.5.0.1, dst: 10.5.0.3, sport: 5353, dport: 53 } } => pass count rel_reply
    packet icmp { src: 10.5.0.3, dst: 10.5.0.1, type: 3, code: 3, quote: { kind: udp, src: 10.5.0.1, dst: 10.5.0.3, sport: 5353, dport: 54 } } => drop count invalid
    packet icmp { src: 10.5.0.3, dst: 10.5.0.1, type: 3, code: 3, options: 4, quote: { kind: udp, src: 10.5.0.1, dst: 10.5.0.3, sport: 5353, dport: 53, options: 4 } } => drop count untracked
    packet icmp { src: 10.5.0.1, dst: 10.5.0.2, type: 8, echo: 7 } => pass count new_orig
    packet icmp { src: 10.5.0.2, dst: 10.5.0.1, type: 0, echo: 7 } => pass count est_reply
    packet icmp { src: 10.5.0.2, dst: 10.5.0.1, type: 0, echo: 8 } => drop count invalid
    packet icmp { src: 10.5.0.2, dst: 10.5.0.1, type: 8, echo: 7 } => pass count new_orig
    packet icmp { src: 10.5.9.9, dst: 10.5.0.1, type: 11, quote: { kind: icmp, src: 10.5.0.1, dst: 10.5.0.2, type: 8, echo: 7 } } => pass count rel_reply
    packet icmp { src: 10.5.9.9, dst: 10.5.0.2, type: 11, quote: { kind: icmp, src: 10.5.0.2, dst: 10.5.0.1, type: 0, echo: 7 } } => pass count rel_orig
    packet icmp { src: 10.5.9.9, dst: 10.5.0.1, type: 12, quote: { kind: icmp, src: 10.5.0.1, dst: 10.5.0.2, type: 8, echo: 9 } } => drop count invalid
    packet tcp { src: 10.5.0.1, dst: 10.5.0.5, sport: 40000, dport: 443, flags: [syn] } => pass count new_orig
    packet icmp { src: 10.5.0.5, dst: 10.5.0.1, type: 3, code: 4, quote: { kind: tcp, src: 10.5.0.1, dst: 10.5.0.5, sport: 40000, dport: 443, flags: [syn] } } => pass count rel_reply
    packet ip6 tcp { src: 2001:db8:5::1, dst: 2001:db8:5::2, sport: 1000, dport: 22, flags: [syn] } => pass count new_orig
    packet ip6 icmp6 { src: 2001:db8:5::9, dst: 2001:db8:5::1, type: 1, quote: { kind: tcp, src: 2001:db8:5::1, dst: 2001:db8:5::2, sport: 1000, dport: 22, flags: [syn] } } => pass count rel_reply
    packet ip6 icmp6 { src: 2001:db8:5::9, dst: 2001:db8:5::1, type: 2, quote: { kind: tcp, src: 2001:db8:5::1, dst: 2001:db8:5::2, sport: 1001, dport: 22 } } => drop count invalid
    packet ip6 icmp6 { src: 2001:db8:5::1, dst: 2001:db8:5::2, type: 128, echo: 3 } => pass count new_orig
    packet ip6 icmp6 { src: 2001:db8:5::2, dst: 2001:db8:5::1, type: 129, echo: 4 } => drop count invalid
    packet ip6 icmp6 { src: 2001:db8:5::9, dst: 2001:db8:5::2, type: 3, quote: { kind: icmp6, src: 2001:db8:5::1, dst: 2001:db8:5::2, type: 128, echo: 3 } } => pass count rel_reply
    packet udp { src: 10.5.0.1, dst: 10.5.0.4, sport: 1, dport: 2, frag: 0, more: true } => pass count new_orig
    packet udp { src: 10.5.0.1, dst: 10.5.0.4, sport: 1, dport: 2, frag: 185 } => drop count untracked
    packet ip6 udp { src: 2001:db8:5::1, dst: 2001:db8:5::4, sport: 1, dport: 2, ext: [frag] } => pass count new_orig
    packet ip6 udp { src: 2001:db8:5::1, dst: 2001:db8:5::4, sport: 1, dport: 2, frag: 185 } => drop count untracked
}
"#;

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
        pol_test(dir.path(), &format!("t{i}"), &src, 47);
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
        pol_test(dir.path(), &format!("full_{full}"), &src, 203);
    }
}

/// The instructions of the first program `pol disasm` lists for `source`.
fn insns_of(dir: &TempDir, name: &str, source: &str) -> usize {
    let file = dir.path().join(format!("{name}.pol"));
    std::fs::write(&file, source).expect("write");
    let o = pol(&["disasm", file.to_str().expect("utf-8")]);
    let out = text(&o);
    assert!(o.status.success(), "{name}: {out}");
    let head = out.lines().next().unwrap_or_default();
    head.rsplit(", ")
        .next()
        .and_then(|t| t.strip_suffix(" instructions)"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{name}: no instruction count in {head:?}"))
}

/// The code that reads an ICMP error's quoted header (`related`, `invalid`) is emitted only
/// where a rule can tell its outcome from `untracked`: a `ct.state` test of `related`,
/// `invalid` or `untracked` (not all three), a `ct.direction` test or a `log`. Tests of
/// `new` and `established` alone (and `!=` of them) leave it out; the echo identifier is
/// still tracked.
#[test]
fn icmp_error_code_only_where_a_rule_can_tell() {
    let dir = TempDir::new("pol_ct_related_code");
    let filter = |rules: &str| {
        format!(
            "filter f on tc(\"lo\", ingress) {{\n    pass ct.state == established\n{rules}    default drop\n}}\n"
        )
    };
    let plain = insns_of(&dir, "plain", &filter(""));
    let cases = [
        ("related", "    pass ct.state == related\n", true),
        ("invalid", "    drop ct.state == invalid\n", true),
        ("ne_untracked", "    pass ct.state != untracked\n", true),
        ("direction", "    pass ct.direction == reply\n", true),
        ("log", "    drop ct.state == new log\n", true),
        ("not_related", "    pass not ct.state == related\n", true),
        ("new", "    pass ct.state == new\n", false),
        (
            "ne_established",
            "    drop ct.state != established\n",
            false,
        ),
        (
            "new_or_est",
            "    pass ct.state in { new, established }\n",
            false,
        ),
    ];
    for (name, rules, emitted) in cases {
        let n = insns_of(&dir, name, &filter(rules));
        // The quote's parse, its two lookups and its result are about 340 instructions.
        if emitted {
            assert!(n > plain + 250, "{name}: {n} instructions, plain {plain}");
        } else {
            assert!(n < plain + 40, "{name}: {n} instructions, plain {plain}");
        }
    }
}

/// Without a rule that tells `related` apart, an ICMP error quoting a live flow is
/// `untracked` (it matches no `ct.state` rule), while echo still keeps its identifier.
#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn without_related_tests_errors_are_untracked_and_echo_still_tracked() {
    require_kernel();
    let dir = TempDir::new("pol_ct_no_related");
    let src = r#"
filter f on xdp("eth0") {
    pass ct.state == established   count est
    pass ct.state == new           count new
    default drop                   count other
}
test "no related code" on f {
    packet icmp { src: 10.5.0.1, dst: 10.5.0.2, type: 8, echo: 7 } => pass count new
    packet icmp { src: 10.5.0.2, dst: 10.5.0.1, type: 0, echo: 7 } => pass count est
    packet icmp { src: 10.5.0.2, dst: 10.5.0.1, type: 0, echo: 8 } => drop count other
    packet udp { src: 10.5.0.1, dst: 10.5.0.3, sport: 5353, dport: 53 } => pass count new
    packet icmp { src: 10.5.0.3, dst: 10.5.0.1, type: 3, code: 3, quote: { kind: udp, src: 10.5.0.1, dst: 10.5.0.3, sport: 5353, dport: 53 } } => drop count other
}
"#;
    pol_test(dir.path(), "no_related", src, 5);
}

#[test]
fn bad_ct_tests_are_errors_with_spans() {
    let dir = TempDir::new("pol_ct_diags");
    let file = dir.path().join("bad.pol");
    std::fs::write(
        &file,
        "const conntrack = { size: 0, full: maybe, tcp: 5, colour: 1 }\n\
         filter f on xdp(\"eth0\") {\n    \
         pass ct.state in { related, untracked }\n    \
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
            "`ct.state` is one of new, established, related, invalid, untracked",
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
    assert!(!out.contains("bad.pol:3:"), "`related` is a state: {out}");
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
    drop udp.sport == 9001 and ct.state == new and ct.direction == original count expired_new
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
    let run = start_fw(&net, &dir, "fw_in", FIREWALL);
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
    let (_, v) = run.stop();
    assert!(
        rule_packets(&v, 0) >= 3,
        "replies passed as established: {v}"
    );
    // The late datagram went the way of the expired flow's replies; past the timeout it
    // starts a flow of its own: new, original.
    assert_eq!(
        count(&v, "expired_new")["total"].as_u64().unwrap_or(0),
        1,
        "the late datagram counts as new: {v}"
    );
    assert!(
        count(&v, "unsolicited")["total"].as_u64().unwrap_or(0) >= 1,
        "the stranger's SYN: {v}"
    );
    assert_clean(&net.a, "fw_in");
}

/// An echo request with identifier `ident` to `dst` on a raw socket; "pong" when its reply
/// (that identifier) arrives within a second, else "timed out".
const PING: &str = r#"
import socket, struct, time
def ping(dst, ident):
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); s.settimeout(1)
    def csum(b):
        t = sum(struct.unpack("!%dH" % (len(b) // 2), b)); t = (t >> 16) + (t & 0xffff); t += t >> 16
        return ~t & 0xffff
    body = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + b"pol-ping"
    s.sendto(body[:2] + struct.pack("!H", csum(body)) + body[4:], (dst, 0))
    end = time.time() + 1
    try:
        while time.time() < end:
            d = s.recv(200); h = (d[0] & 15) * 4
            if d[h] == 0 and struct.unpack("!H", d[h + 4:h + 6])[0] == ident:
                return "pong"
    except OSError:
        pass
    return "timed out"
"#;

/// As `FIREWALL`, with replies' ICMP errors let in (`related`).
const FIREWALL_RELATED: &str = r#"
filter fw_in on tc("va", ingress) {
    pass ct.state == established                  count est
    pass ct.state == related                      count related
    pass arp
    pass icmp6.type in 133..136
    drop ct.state == invalid                      count invalid
    default drop                                  count unsolicited
}
filter fw_out on tc("va", egress) {
    default pass
}
"#;

/// Runs in B: a TCP server on 9000 that answers each message in upper case until the peer
/// closes, and a UDP server on 9001 that answers each datagram, both on IPv4 and IPv6.
const B_ECHO: &str = r#"
import socket, threading
t = socket.socket(socket.AF_INET6); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0); t.bind(("::", 9000)); t.listen(8)
u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
u.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0); u.bind(("::", 9001))
def conn(c):
    try:
        while True:
            d = c.recv(100)
            if not d:
                break
            c.sendall(d.upper())
    except OSError:
        pass
def tcp():
    while True:
        c, _ = t.accept(); threading.Thread(target=conn, args=(c,), daemon=True).start()
def udp():
    while True:
        d, a = u.recvfrom(100); u.sendto(d.upper(), a)
threading.Thread(target=tcp, daemon=True).start()
threading.Thread(target=udp, daemon=True).start()
print("ready", flush=True)
import sys
sys.stdin.readline()
"#;

fn start_b(net: &NetPair) -> std::process::Child {
    let mut b = Command::new("ip")
        .args(["netns", "exec", &net.b, &python(), "-c", B_ECHO])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start B");
    let mut line = String::new();
    BufReader::new(b.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("B ready");
    assert_eq!(line.trim(), "ready");
    b
}

fn start_fw(net: &NetPair, dir: &TempDir, name: &str, source: &str) -> PolRun {
    let file = dir.path().join(format!("{name}.pol"));
    std::fs::write(&file, source).expect("write policy");
    PolRun::attached(&net.a, file.to_str().expect("utf-8"), &[])
}

/// IPv6 as well as IPv4 through the tc firewall: A's TCP and UDP over IPv6 get their
/// replies; the port-unreachable errors B sends back for A's datagrams to a closed port
/// (IPv4 and IPv6) are `related` and reach A's sockets as "connection refused"; A's echo
/// request gets its reply (tracked by identifier), while B's echo request to A is dropped.
#[test]
#[cfg_attr(
    pol_no_netns,
    ignore = "kernel test: needs root, bpf(), iproute2, util-linux, bpftool and python3, unavailable at build time (CI=true runs it)"
)]
fn ipv6_icmp_errors_and_echo_through_the_firewall() {
    require_kernel();
    require_tools();
    let net = NetPair::new("cr");
    let dir = TempDir::new("pol_ct_related");
    let run = start_fw(&net, &dir, "fw_rel", FIREWALL_RELATED);
    let mut b = start_b(&net);
    let a_side = PING.to_string()
        + r#"
import json
out = {}
t = socket.socket(socket.AF_INET6); t.settimeout(3)
try:
    t.connect(("fd99::2", 9000)); t.sendall(b"hello"); out["tcp6"] = t.recv(100).decode()
except OSError as e:
    out["tcp6"] = str(e)
u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); u.settimeout(2)
u.sendto(b"ping", ("fd99::2", 9001))
try:
    out["udp6"] = u.recv(100).decode()
except OSError as e:
    out["udp6"] = str(e)
for fam, dst, key in [(socket.AF_INET, "10.99.0.2", "closed4"), (socket.AF_INET6, "fd99::2", "closed6")]:
    c = socket.socket(fam, socket.SOCK_DGRAM); c.settimeout(2); c.connect((dst, 9009))
    c.send(b"anyone?")
    try:
        c.recv(100); out[key] = "answered"
    except ConnectionRefusedError:
        out[key] = "refused"
    except OSError as e:
        out[key] = str(e)
out["ping"] = ping("10.99.0.2", 0x1234)
print(json.dumps(out), flush=True)
"#;
    let a = py_json(&net.a, &a_side, &[]);
    assert_eq!(a["tcp6"], "HELLO", "A's TCP over IPv6: {a}");
    assert_eq!(a["udp6"], "PING", "A's UDP over IPv6: {a}");
    assert_eq!(a["closed4"], "refused", "ICMP port unreachable let in: {a}");
    assert_eq!(
        a["closed6"], "refused",
        "ICMPv6 port unreachable let in: {a}"
    );
    assert_eq!(a["ping"], "pong", "A's echo reply let in: {a}");
    let stranger = py_json(
        &net.b,
        &(PING.to_string()
            + "import json\nprint(json.dumps({'ping': ping('10.99.0.1', 0x4321)}))\n"),
        &[],
    );
    assert_eq!(stranger["ping"], "timed out", "B's echo request dropped");
    let _ = b.kill();
    let _ = b.wait();
    let (_, v) = run.stop();
    assert!(
        count(&v, "related")["total"].as_u64().unwrap_or(0) >= 2,
        "the two port-unreachable errors were related: {v}"
    );
    assert!(
        count(&v, "unsolicited")["total"].as_u64().unwrap_or(0) >= 1,
        "B's echo request: {v}"
    );
    assert_clean(&net.a, "fw_rel");
}

/// A table of 16 flows on real traffic: A's TCP connection, then 200 UDP queries of A's
/// (each a flow, answered), which evict the connection's entry. A's next message on that
/// connection gets its answer only when the table fails open; failing closed, B's answer
/// is `invalid` and dropped.
#[test]
#[cfg_attr(
    pol_no_netns,
    ignore = "kernel test: needs root, bpf(), iproute2, util-linux, bpftool and python3, unavailable at build time (CI=true runs it)"
)]
fn a_full_table_on_real_traffic_fails_as_declared() {
    require_kernel();
    require_tools();
    let net = NetPair::new("cf");
    let dir = TempDir::new("pol_ct_full_real");
    let mut b = start_b(&net);
    let a_side = r#"
import json, socket
out = {}
t = socket.socket(); t.settimeout(3)
t.connect(("10.99.0.2", 9000)); t.sendall(b"hello"); out["first"] = t.recv(100).decode()
answered = 0
for i in range(200):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(0.5)
    u.sendto(b"q", ("10.99.0.2", 9001))
    try:
        u.recv(10); answered += 1
    except OSError:
        pass
    u.close()
out["udp"] = answered
t.settimeout(2); t.sendall(b"again")
try:
    out["again"] = t.recv(100).decode()
except OSError:
    out["again"] = "timed out"
print(json.dumps(out), flush=True)
"#;
    for (full, again) in [("closed", "timed out"), ("open", "AGAIN")] {
        let policy = format!("const conntrack = {{ size: 16, full: {full} }}\n{FIREWALL_RELATED}");
        let run = start_fw(&net, &dir, &format!("fw_{full}"), &policy);
        let a = py_json(&net.a, a_side, &[]);
        assert_eq!(a["first"], "HELLO", "{full}: {a}");
        assert_eq!(a["udp"], 200, "{full}: every query answered: {a}");
        assert_eq!(a["again"], again, "{full}: the evicted connection: {a}");
        let (_, v) = run.stop();
        let invalid = count(&v, "invalid")["total"].as_u64().unwrap_or(0);
        if full == "closed" {
            assert!(invalid >= 1, "B's answer was invalid: {v}");
        } else {
            assert_eq!(invalid, 0, "nothing invalid when the table fails open: {v}");
        }
        assert_clean(&net.a, &format!("fw_{full}"));
    }
    let _ = b.kill();
    let _ = b.wait();
}

/// A firewall whose closed TCP flows linger 2 s: B's SYNs from port 9100 are counted by the
/// state they find.
const LINGER: &str = r#"
const conntrack = { tcp_closing: 2s }
filter fw_in on tc("va", ingress) {
    pass tcp.sport == 9100 and tcp.syn and not tcp.ack and ct.state == established  count syn_est
    pass tcp.sport == 9100 and tcp.syn and not tcp.ack and ct.state == new          count syn_new
    pass ct.state == established                                                    count est
    pass arp
    pass icmp6.type in 133..136
    default drop                                                                    count other
}
filter fw_out on tc("va", egress) {
    default pass
}
"#;

/// Runs in B: a TCP server on 9100 that answers one connection and closes after its peer
/// did (A closes first, so B keeps no TIME_WAIT), then for each line `probe` on stdin sends
/// one SYN from 9100 back to A:41000 — the closed flow's 5-tuple — and prints "sent".
const B_LINGER: &str = r#"
import socket, sys
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("10.99.0.2", 9100)); t.listen(1)
print("ready", flush=True)
c, _ = t.accept(); c.sendall(c.recv(100).upper())
while c.recv(100):
    pass
c.close(); t.close()
print("closed", flush=True)
for line in sys.stdin:
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("10.99.0.2", 9100)); s.settimeout(0.3)
    s.connect_ex(("10.99.0.1", 41000)); s.close()
    print("sent", flush=True)
"#;

/// How long a closed TCP flow stays (issue 15): after a full close (FIN both ways and the
/// last ACK, which carries no FIN), the flow lingers `tcp_closing` (2 s here): a SYN along
/// its 5-tuple within it finds the flow (`established`, reply); one 3.5 s after the last
/// packet finds nothing and counts as `new`. (Before the entry kept a closing flag, the
/// last ACK renewed the flow for `tcp`, an hour.)
#[test]
#[cfg_attr(
    pol_no_netns,
    ignore = "kernel test: needs root, bpf(), iproute2, util-linux, bpftool and python3, unavailable at build time (CI=true runs it)"
)]
fn a_closed_tcp_flow_lingers_then_counts_as_new() {
    use std::io::Write;
    require_kernel();
    require_tools();
    let net = NetPair::new("lg");
    let dir = TempDir::new("pol_ct_linger");
    let run = start_fw(&net, &dir, "linger_in", LINGER);
    let py = python();
    let mut b = Command::new("ip")
        .args(["netns", "exec", &net.b, &py, "-c", B_LINGER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start B");
    let mut b_out = BufReader::new(b.stdout.take().expect("stdout"));
    let mut b_in = b.stdin.take().expect("stdin");
    let mut line = String::new();
    let mut next = |out: &mut BufReader<_>| {
        line.clear();
        out.read_line(&mut line).expect("B's line");
        line.trim().to_string()
    };
    assert_eq!(next(&mut b_out), "ready");
    let a = py_json(
        &net.a,
        r#"
import json, socket
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("10.99.0.1", 41000)); t.settimeout(3); t.connect(("10.99.0.2", 9100))
t.sendall(b"bye"); got = t.recv(100).decode(); t.close()
print(json.dumps({"got": got}))
"#,
        &[],
    );
    assert_eq!(a["got"], "BYE", "A's connection through the firewall");
    assert_eq!(next(&mut b_out), "closed");
    // Within the linger: the closed flow is still known.
    writeln!(b_in, "probe").expect("tell B");
    assert_eq!(next(&mut b_out), "sent");
    std::thread::sleep(std::time::Duration::from_millis(3500));
    // Past it: the same 5-tuple starts a new flow.
    writeln!(b_in, "probe").expect("tell B");
    assert_eq!(next(&mut b_out), "sent");
    drop(b_in);
    let _ = b.wait();
    let (_, v) = run.stop();
    let total = |name| count(&v, name)["total"].as_u64().unwrap_or(0);
    // (A's TIME_WAIT answers the first probe's SYN with an ACK, B resets, and B's kernel
    // may send the SYN once more at once: one or two SYNs, all within the linger.)
    assert!(total("syn_est") >= 1, "the SYN within the linger: {v}");
    assert_eq!(total("syn_new"), 1, "the SYN after it: {v}");
    assert!(total("est") >= 3, "the connection's replies: {v}");
    assert_clean(&net.a, "linger_in");
}

/// Dead entries are not swept: the LRU table is enough (docs/stateful.md). A 2,048-flow
/// table full of flows dead for 0.5 s (1 s timeouts) takes a new TCP connection and then 200
/// new UDP flows: inserts evict the least recently used entries, which are dead ones, so the
/// connection (used after them) keeps its entry and its next reply passes; every new query
/// is answered; nothing is `invalid`. (The kernel's LRU evicts in batches of up to 128
/// entries per CPU: with a 256-flow table the same run loses the connection.)
#[test]
#[cfg_attr(
    pol_no_netns,
    ignore = "kernel test: needs root, bpf(), iproute2, util-linux, bpftool and python3, unavailable at build time (CI=true runs it)"
)]
fn dead_entries_make_room_before_live_ones() {
    require_kernel();
    require_tools();
    let net = NetPair::new("cd");
    let dir = TempDir::new("pol_ct_dead");
    let mut b = start_b(&net);
    let a_side = r#"
import json, socket, time
out = {}
def ask(n):
    answered = 0
    for i in range(n):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(0.5)
        u.sendto(b"q", ("10.99.0.2", 9001))
        try:
            u.recv(10); answered += 1
        except OSError:
            pass
        u.close()
    return answered
out["dead"] = ask(2048)
time.sleep(1.5)
t = socket.socket(); t.settimeout(3)
t.connect(("10.99.0.2", 9000)); t.sendall(b"hello"); out["first"] = t.recv(100).decode()
out["new"] = ask(200)
t.settimeout(2); t.sendall(b"again")
try:
    out["again"] = t.recv(100).decode()
except OSError:
    out["again"] = "timed out"
print(json.dumps(out), flush=True)
"#;
    let policy =
        format!("const conntrack = {{ size: 2048, udp_new: 1s, udp: 1s }}\n{FIREWALL_RELATED}");
    let run = start_fw(&net, &dir, "fw_dead", &policy);
    let a = py_json(&net.a, a_side, &[]);
    assert_eq!(a["dead"], 2048, "the first flows answered: {a}");
    assert_eq!(a["first"], "HELLO", "{a}");
    assert_eq!(a["new"], 200, "every new query answered: {a}");
    assert_eq!(
        a["again"], "AGAIN",
        "the live connection kept its entry: {a}"
    );
    let (_, v) = run.stop();
    assert_eq!(
        count(&v, "invalid")["total"].as_u64().unwrap_or(0),
        0,
        "nothing invalid: {v}"
    );
    assert_clean(&net.a, "fw_dead");
    let _ = b.kill();
    let _ = b.wait();
}
