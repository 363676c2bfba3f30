//! Real traffic through `pol run` filters, as on a real host: HTTP requests and responses,
//! 50 MB TCP transfers and UDP with GSO through `tc` ingress and egress with offloads on
//! (GRO, TSO, GSO: socket buffers whose linear head ends long before the packet does), and
//! TCP over an MTU-9000 veth through XDP native and generic (multi-buffer XDP). Every byte
//! must arrive, the filter must still drop what it must (a telnet connect during the
//! transfer), and no packet may count as malformed.
//!
//! The traffic itself is `tests/real_traffic/traffic.py`, run in the namespaces.

mod common;
mod run_support;

use common::{require_kernel, TempDir};
use run_support::{
    assert_clean, ip, json, python, require_tools, rule_packets, sh, NetPair, PolRun,
};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BULK: u64 = 50_000_000;
const HTTP_BIG: u64 = 2_000_000;
const UDP_SEG: u64 = 1200;
const UDP_BYTES: u64 = UDP_SEG * 40 * 50;

/// The filter (program) name of a scenario: its tag and this test process's id, so that
/// another suite running the same test at the same time (other worktrees share the host's
/// programs and hook claims) is never mistaken for something this one left behind.
fn unique(tag: &str) -> String {
    format!("{tag}{}", std::process::id())
}

fn script() -> String {
    format!(
        "{}/tests/real_traffic/traffic.py",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// Runs a traffic mode to its end in `ns` and returns its JSON line.
fn run(ns: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, &python(), &script()])
        .args(args)
        .output()
        .expect("run traffic.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "traffic.py {args:?} in {ns} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    json(stdout.lines().last().unwrap_or_default())
}

/// A traffic mode left running in `ns` (a server); started once it printed "ready".
struct Server {
    child: Child,
    out: BufReader<std::process::ChildStdout>,
}

impl Server {
    fn start(ns: &str, args: &[&str]) -> Server {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, &python(), &script()])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start traffic.py");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut first = String::new();
        out.read_line(&mut first).expect("server ready");
        assert_eq!(first.trim(), "ready", "traffic.py {args:?} did not start");
        Server { child, out }
    }

    /// The JSON line a sink prints when its transfer ends.
    fn result(mut self) -> serde_json::Value {
        let mut line = String::new();
        self.out.read_line(&mut line).expect("server result");
        json(line.trim())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_pol(net: &NetPair, dir: &TempDir, name: &str, hook: &str, extra: &[&str]) -> PolRun {
    let rules = "drop tcp.dport == 23\n    drop udp.dport == 9";
    start_policy(net, dir, name, hook, rules, extra)
}

/// `pol run` of one filter with these rules (and `default pass`) in namespace `a`.
fn start_policy(
    net: &NetPair,
    dir: &TempDir,
    name: &str,
    hook: &str,
    rules: &str,
    extra: &[&str],
) -> PolRun {
    let file = dir.path().join(format!("{name}.pol"));
    let policy = format!("filter {name} on {hook} {{\n    {rules}\n    default pass\n}}\n");
    std::fs::write(&file, policy).expect("write policy");
    let file = file.to_str().expect("utf-8 path");
    let mut args = vec![file, "--json", "--interval", "0.5"];
    args.extend_from_slice(extra);
    let mut pol = PolRun::start(&net.a, &args, &[]);
    if pol
        .wait_for("\"attached\"", Duration::from_secs(30))
        .is_none()
    {
        let (_, lines, err) = pol.finish(Duration::from_secs(5));
        panic!("pol run did not attach:\nstdout: {lines:?}\nstderr: {err}");
    }
    pol
}

/// Stops pol, checks that nothing was malformed and nothing is left behind; returns the
/// final counters.
fn stop(pol: PolRun, net: &NetPair, name: &str) -> serde_json::Value {
    pol.signal("INT");
    let (ok, lines, err) = pol.finish(Duration::from_secs(10));
    assert!(ok, "pol run failed: {err}");
    let last = lines
        .iter()
        .rev()
        .find(|l| l.contains("\"final\""))
        .unwrap_or_else(|| panic!("no final JSON object: {lines:?}\n{err}"));
    let v = json(last);
    assert_eq!(
        v["programs"][0]["malformed"], 0,
        "no packet is malformed: {v}"
    );
    assert_clean(&net.a, name);
    v
}

/// `stop`, after transfers and a telnet attempt.
fn finish(pol: PolRun, net: &NetPair, name: &str) {
    let v = stop(pol, net, name);
    assert!(rule_packets(&v, 0) >= 1, "the telnet SYN was dropped: {v}");
    assert!(
        v["programs"][0]["default"].as_u64().unwrap_or(0) > 1000,
        "the transfers passed the filter: {v}"
    );
}

fn mac(ns: &str, dev: &str) -> String {
    let (_, out) = ip(&["-n", ns, "link", "show", dev]);
    out.split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap_or_else(|| panic!("no MAC address for {dev}: {out}"))
        .to_string()
}

fn offloads(ns: &str, dev: &str, on: bool) {
    let state = if on { "on" } else { "off" };
    // Not every feature exists on every kernel; what matters is what ends up on.
    let _ = sh(
        "ip",
        &[
            "netns", "exec", ns, "ethtool", "-K", dev, "gro", state, "tso", state, "gso", state,
            "sg", state,
        ],
    );
}

fn ready() {
    require_kernel();
    require_tools();
    common::require_tool("ethtool");
}

/// TCP from `from` to `to` (BULK bytes, over IPv4 and IPv6): every byte arrives.
fn bulk(from: &str, to: &str, to_addrs: [&str; 2], port: u16) {
    for addr in to_addrs {
        let sink = Server::start(to, &["sink", &port.to_string()]);
        let sent = run(from, &["send", addr, &port.to_string(), &BULK.to_string()]);
        let got = sink.result();
        assert_eq!(sent["counted"], BULK, "{addr}: every byte arrives: {sent}");
        assert_eq!(got["bytes"], BULK, "{addr}: {got}");
    }
}

/// HTTP from a client in `client` to a server in `server`: small and 2 MB responses.
fn http(client: &str, server: &str, addr: &str) {
    let srv = Server::start(server, &["http_serve", "8080", &HTTP_BIG.to_string()]);
    let small = run(client, &["http_get", addr, "8080", "/small"]);
    assert_eq!(small["status"], 200, "{small}");
    assert_eq!(small["len"], 5, "{small}");
    let big = run(client, &["http_get", addr, "8080", "/big"]);
    assert_eq!(big["len"], HTTP_BIG, "{big}");
    drop(srv);
}

/// UDP with UDP_SEGMENT (GSO) from `from` to `to`: every byte arrives.
fn udp_gso(from: &str, to: &str, addr: &str) {
    let sink = Server::start(to, &["sink", "5002", "--udp", &UDP_BYTES.to_string()]);
    run(
        from,
        &[
            "udpsend",
            addr,
            "5002",
            &UDP_BYTES.to_string(),
            &UDP_SEG.to_string(),
        ],
    );
    let got = sink.result();
    assert_eq!(got["bytes"], UDP_BYTES, "UDP/GSO to {addr}: {got}");
}

/// A telnet connect from `from` to `to` fails (a listener is there, the filter drops it).
fn telnet_dropped(from: &str, to: &str, addr: &str) {
    let _l = Server::start(to, &["listen", "23"]);
    let c = run(from, &["connect", addr, "23"]);
    assert_eq!(c["connect"], "failed", "telnet to {addr} is dropped: {c}");
    // The same listener on another port is reachable: the drop is the filter's.
    let _m = Server::start(to, &["listen", "2323"]);
    let c = run(from, &["connect", addr, "2323"]);
    assert_eq!(c["connect"], "ok", "{addr}:2323 connects: {c}");
}

/// A `tc` filter on `va` in direction `ingress` or `egress`, offloads on: HTTP between the
/// two namespaces (requests come in through va, responses leave through it), then TCP
/// bulk, UDP with GSO and a telnet attempt towards the filter's side (ingress) or away from
/// it (egress), over IPv4 and IPv6.
fn tc_traffic(tag: &str, direction: &str) {
    ready();
    let name = &unique(tag);
    let net = NetPair::new(tag);
    offloads(&net.a, "va", true);
    offloads(&net.b, "vb", true);
    let dir = TempDir::new(name);
    let pol = start_pol(&net, &dir, name, &format!("tc(\"va\", {direction})"), &[]);
    http(&net.b, &net.a, run_support::A_ADDR);
    http(&net.b, &net.a, "fd99::1");
    let (from, to, v4, v6) = if direction == "ingress" {
        (&net.b, &net.a, run_support::A_ADDR, "fd99::1")
    } else {
        (&net.a, &net.b, run_support::B_ADDR, "fd99::2")
    };
    bulk(from, to, [v4, v6], 5001);
    udp_gso(from, to, v4);
    udp_gso(from, to, v6);
    telnet_dropped(from, to, v4);
    finish(pol, &net, name);
}

/// Sets the MTU of both ends of the veth pair.
fn mtu(net: &NetPair, mtu: &str) {
    for (ns, dev) in [(&net.a, "va"), (&net.b, "vb")] {
        let (ok, out) = ip(&["-n", ns, "link", "set", dev, "mtu", mtu]);
        assert!(ok, "mtu {mtu} on {dev}: {out}");
    }
}

#[test]
#[cfg_attr(
    pol_no_netns,
    ignore = "kernel test: needs root, bpf(), iproute2, util-linux, bpftool, python3 and ethtool, unavailable at build time (CI=true runs it)"
)]
fn tc_ingress_with_gro_carries_http_bulk_tcp_and_udp_gso() {
    tc_traffic("rti", "ingress");
}

#[test]
#[cfg_attr(
    pol_no_netns,
    ignore = "kernel test: needs root, bpf(), iproute2, util-linux, bpftool, python3 and ethtool, unavailable at build time (CI=true runs it)"
)]
fn tc_egress_with_tso_carries_http_bulk_tcp_and_udp_gso() {
    tc_traffic("rte", "egress");
}

/// Frames of 5000 bytes sent through an AF_PACKET socket leave with only their Ethernet
/// header in the socket buffer's linear part: the `tc` egress filter must pull the IP and
/// UDP headers in to read them, and still drop what it must.
#[test]
#[cfg_attr(
    pol_no_netns,
    ignore = "kernel test: needs root, bpf(), iproute2, util-linux, bpftool, python3 and ethtool, unavailable at build time (CI=true runs it)"
)]
fn tc_egress_pulls_headers_outside_the_linear_head() {
    pull_scenario("rtp");
}

fn pull_scenario(tag: &str) {
    ready();
    let name = &unique(tag);
    let net = NetPair::new(tag);
    mtu(&net, "9000");
    let dir = TempDir::new(&format!("pol_{name}"));
    let pol = start_pol(&net, &dir, name, "tc(\"va\", egress)", &[]);
    let sink = Server::start(
        &net.b,
        &["sink", "5003", "--udp", &(20 * (5000 - 42)).to_string()],
    );
    let dst_mac = mac(&net.b, "vb");
    let (a, b) = (run_support::A_ADDR, run_support::B_ADDR);
    for (port, count) in [("5003", "20"), ("9", "10")] {
        run(
            &net.a,
            &["rawudp", "va", &dst_mac, a, b, port, "5000", count],
        );
    }
    let got = sink.result();
    assert_eq!(
        got["bytes"],
        20 * (5000 - 42),
        "the 20 frames to 5003 arrive: {got}"
    );
    let v = stop(pol, &net, name);
    assert_eq!(
        rule_packets(&v, 1),
        10,
        "the 10 frames to port 9 are dropped: {v}"
    );
}

/// Payload rules on frames whose payload lies outside the socket buffer's linear head
/// (5000-byte AF_PACKET frames through `tc` egress): the filter pulls the bytes it reads,
/// a rule on them drops what it must and lets the rest through whole.
#[test]
#[cfg_attr(
    pol_no_netns,
    ignore = "kernel test: needs root, bpf(), iproute2, util-linux, bpftool, python3 and ethtool, unavailable at build time (CI=true runs it)"
)]
fn tc_egress_payload_rules_read_past_the_linear_head() {
    ready();
    let tag = "rty";
    let name = &unique(tag);
    let net = NetPair::new(tag);
    mtu(&net, "9000");
    let dir = TempDir::new(&format!("pol_{name}"));
    // The generator's payload is all `r`: bytes 40..48 match on port 5004; on 5003 a
    // rule on other bytes never matches, and a `!=` test of them is true.
    let rules = "drop udp.dport == 5004 and udp.payload[40..48] == \"rrrrrrrr\"\n    \
                 drop udp.dport == 5003 and payload[0..4] == \"xxxx\"\n    \
                 drop udp.dport == 5003 and not payload[60..64] == \"rrrr\"\n    \
                 pass udp.dport == 5003 and payload[60..64] != \"rrrx\"";
    let pol = start_policy(&net, &dir, name, "tc(\"va\", egress)", rules, &[]);
    let sink = Server::start(
        &net.b,
        &["sink", "5003", "--udp", &(20 * (5000 - 42)).to_string()],
    );
    let dst_mac = mac(&net.b, "vb");
    let (a, b) = (run_support::A_ADDR, run_support::B_ADDR);
    for (port, count) in [("5003", "20"), ("5004", "10")] {
        run(
            &net.a,
            &["rawudp", "va", &dst_mac, a, b, port, "5000", count],
        );
    }
    let got = sink.result();
    let v = stop(pol, &net, name);
    // Rule 2 (`not ... == "rrrr"`) would drop the frames to 5003 had the bytes not been
    // read (a test of absent bytes is false).
    assert_eq!(
        rule_packets(&v, 0),
        10,
        "the 10 frames to 5004 are dropped: {v}"
    );
    assert_eq!(
        rule_packets(&v, 3),
        20,
        "the 20 frames to 5003 pass rule 3: {v}"
    );
    assert_eq!(
        got["bytes"],
        20 * (5000 - 42),
        "the 20 frames to 5003 arrive: {got}"
    );
}

/// XDP on an MTU-9000 veth, in the given mode: a multi-buffer program.
fn xdp_jumbo(tag: &str, mode: &str) {
    ready();
    let name = &unique(tag);
    let net = NetPair::new(tag);
    mtu(&net, "9000");
    offloads(&net.a, "va", true);
    offloads(&net.b, "vb", true);
    let dir = TempDir::new(name);
    let pol = start_pol(&net, &dir, name, "xdp(\"va\")", &["--xdp-mode", mode]);
    bulk(&net.b, &net.a, [run_support::A_ADDR, "fd99::1"], 5001);
    http(&net.b, &net.a, run_support::A_ADDR);
    telnet_dropped(&net.b, &net.a, run_support::A_ADDR);
    finish(pol, &net, name);
}

#[test]
#[cfg_attr(
    pol_no_netns,
    ignore = "kernel test: needs root, bpf(), iproute2, util-linux, bpftool, python3 and ethtool, unavailable at build time (CI=true runs it)"
)]
fn xdp_native_on_mtu_9000_carries_bulk_tcp() {
    xdp_jumbo("rtn", "native");
}

#[test]
#[cfg_attr(
    pol_no_netns,
    ignore = "kernel test: needs root, bpf(), iproute2, util-linux, bpftool, python3 and ethtool, unavailable at build time (CI=true runs it)"
)]
fn xdp_generic_on_mtu_9000_carries_bulk_tcp() {
    xdp_jumbo("rtg", "generic");
}
