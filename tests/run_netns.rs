//! End to end: `pol run` (the real binary) on one end of a veth pair between two network
//! namespaces, real TCP, UDP, ICMP and VLAN-tagged traffic from the other end; what arrived,
//! what was dropped, what the counters say, and that nothing is left after SIGINT, SIGTERM,
//! a panic, or an attach that fails half-way.

mod common;
mod run_support;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{require_kernel, TempDir};
use run_support::*;

const POLICY: &str = r#"
set never: ip4 = { 192.0.2.1, 192.0.2.2, 192.0.2.3, 192.0.2.4, 192.0.2.5, 192.0.2.6,
                   192.0.2.7, 192.0.2.8, 192.0.2.9 }
filter e2e_sigint on xdp("eth0") {
    drop udp.dport == 9999                 count udp9999_by_src[ip.src]
    drop tcp.dport == 23                   count telnet
    drop icmp
    drop vlan.id == 100 and udp
    drop ip.src in never
    default pass
}
"#;

/// Runs in A: UDP 5000/9999 (v4 and v6), TCP 8080 and 23; counts what arrives until the
/// file named by argv[1] exists, then prints the counts as JSON.
const RECEIVER: &str = r#"
import json, os, select, socket, sys
socks, counts = {}, {"udp5000": 0, "udp9999": 0, "udp6_9999": 0, "tcp8080": b"", "tcp23": 0}
def udp(fam, addr, port, name):
    s = socket.socket(fam, socket.SOCK_DGRAM); s.bind((addr, port)); socks[s] = name
udp(socket.AF_INET, "10.99.0.1", 5000, "udp5000")
udp(socket.AF_INET, "10.99.0.1", 9999, "udp9999")
udp(socket.AF_INET6, "fd99::1", 9999, "udp6_9999")
for port, name in ((8080, "tcp8080"), (23, "tcp23")):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("10.99.0.1", port)); s.listen(4); socks[s] = "L" + name
print("ready", flush=True)
while not os.path.exists(sys.argv[1]):
    r, _, _ = select.select(list(socks), [], [], 0.05)
    for s in r:
        name = socks[s]
        if name == "Ltcp23":
            c, _ = s.accept(); counts["tcp23"] += 1; c.close()
        elif name == "Ltcp8080":
            c, _ = s.accept(); c.settimeout(2); counts["tcp8080"] += c.recv(100); c.close()
        else:
            s.recv(2048); counts[name] += 1
counts["tcp8080"] = counts["tcp8080"].decode()
print(json.dumps(counts), flush=True)
"#;

/// Runs in B: bounded bursts; argv[1] is the MAC of `va` for the hand-built VLAN frames.
const SENDER: &str = r#"
import json, socket, struct, sys, time
out = {}
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b)); s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(20):
    u.sendto(b"drop me", ("10.99.0.1", 9999)); u.sendto(b"pass me", ("10.99.0.1", 5000)); time.sleep(0.005)
u6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
for i in range(10):
    u6.sendto(b"drop me", ("fd99::1", 9999)); time.sleep(0.005)
t = socket.socket(); t.settimeout(3)
try:
    t.connect(("10.99.0.1", 8080)); t.sendall(b"hello"); out["tcp8080"] = "sent"
except OSError as e:
    out["tcp8080"] = str(e)
t.close()
t = socket.socket(); t.settimeout(1)
try:
    t.connect(("10.99.0.1", 23)); out["tcp23"] = "connected"
except OSError as e:
    out["tcp23"] = "failed"
t.close()
ic = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); ic.settimeout(0.1)
replies = 0
for seq in range(10):
    h = struct.pack("!BBHHH", 8, 0, 0, 0x4242, seq) + b"pol"
    h = h[:2] + struct.pack("!H", csum(h)) + h[4:]
    ic.sendto(h, ("10.99.0.1", 0))
    try:
        while True:
            d = ic.recv(2048)
            if d[20] == 0: replies += 1
    except socket.timeout:
        pass
out["icmp_replies"] = replies
mac = bytes.fromhex(sys.argv[1].replace(":", ""))
p = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); p.bind(("vb", 0))
src_mac = p.getsockname()[4]
def frame(vid, dport):
    udp = struct.pack("!HHHH", 40000, dport, 8 + 4, 0) + b"vlan"
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                     socket.inet_aton("10.99.0.2"), socket.inet_aton("10.99.0.1"))
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return mac + src_mac + struct.pack("!HHH", 0x8100, vid, 0x0800) + ip + udp
for i in range(20):
    p.send(frame(100, 5001)); time.sleep(0.002)
for i in range(10):
    p.send(frame(200, 5001)); time.sleep(0.002)
print(json.dumps(out), flush=True)
"#;

fn ready(pol: &mut PolRun) {
    if pol
        .wait_for("\"attached\"", Duration::from_secs(30))
        .is_none()
    {
        let (_, lines, err) = std::mem::replace(pol, dummy()).finish(Duration::from_secs(5));
        panic!("pol run did not attach:\nstdout: {lines:?}\nstderr: {err}");
    }
}

/// A finished stand-in, so a failing `ready` can take the real child out of its slot.
fn dummy() -> PolRun {
    PolRun::start("none-such-netns", &["--help"], &[])
}

#[test]
#[cfg_attr(
    pol_no_netns,
    ignore = "kernel test: needs root, bpf(), iproute2, util-linux, bpftool and python3, unavailable at build time (CI=true runs it)"
)]
fn sigint_counts_real_traffic_and_leaves_nothing() {
    require_kernel();
    require_tools();
    let net = NetPair::new("pr");
    let dir = TempDir::new("pol_run_e2e");
    // Named after the program, so the pin directory (e2e_sigint-PID) is one assert_clean
    // looks for.
    let file = dir.path().join("e2e_sigint.pol");
    std::fs::write(&file, POLICY).expect("write policy");
    let file = file.to_str().expect("utf-8 path");
    let mut pol = PolRun::start(
        &net.a,
        &[file, "--iface", "va", "--json", "--interval", "0.2"],
        &[],
    );
    ready(&mut pol);
    let (_, shown) = ip(&["-n", &net.a, "link", "show", "va"]);
    assert!(shown.contains("prog/xdp"), "no XDP program on va: {shown}");
    let pins = format!("/sys/fs/bpf/pol/e2e_sigint-{}", pol.child.id());
    assert!(
        std::path::Path::new(&pins).join("never_v4").exists(),
        "the set map is pinned under {pins} while pol runs"
    );

    let py = python();
    let stop = dir.path().join("stop");
    let mut receiver = Command::new("ip")
        .args(["netns", "exec", &net.a, &py, "-c", RECEIVER])
        .arg(&stop)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start receiver");
    let mut rx_out = std::io::BufReader::new(receiver.stdout.take().expect("stdout"));
    let mut first = String::new();
    std::io::BufRead::read_line(&mut rx_out, &mut first).expect("receiver ready");
    assert_eq!(first.trim(), "ready");
    let sent = Command::new("ip")
        .args(["netns", "exec", &net.b, &py, "-c", SENDER, &net.mac_a()])
        .output()
        .expect("run sender");
    assert!(
        sent.status.success(),
        "sender: {}",
        String::from_utf8_lossy(&sent.stderr)
    );
    let sent = json(String::from_utf8_lossy(&sent.stdout).trim());
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(&stop, "").expect("stop receiver");
    let mut got = String::new();
    std::io::BufRead::read_line(&mut rx_out, &mut got).expect("receiver counts");
    let _ = receiver.wait();
    let got = json(got.trim());

    // What arrived and what did not.
    assert_eq!(got["udp5000"], 20, "UDP to 5000 passes: {got}");
    assert_eq!(got["udp9999"], 0, "UDP to 9999 is dropped: {got}");
    assert_eq!(got["udp6_9999"], 0, "UDP/IPv6 to 9999 is dropped: {got}");
    assert_eq!(got["tcp8080"], "hello", "TCP to 8080 passes: {got} {sent}");
    assert_eq!(got["tcp23"], 0, "TCP to 23 never connects: {got}");
    assert_eq!(sent["tcp23"], "failed", "{sent}");
    assert_eq!(sent["icmp_replies"], 0, "ICMP echo is dropped: {sent}");

    pol.signal("INT");
    let (ok, lines, err) = pol.finish(Duration::from_secs(10));
    assert!(ok, "pol run failed after SIGINT: {err}");
    assert!(err.contains("attached e2e_sigint to va (xdp"), "{err}");
    assert!(err.contains("--iface va overrides"), "{err}");
    let last = lines
        .iter()
        .rev()
        .find(|l| l.contains("\"final\""))
        .unwrap_or_else(|| panic!("no final JSON object: {lines:?}\n{err}"));
    let v = json(last);
    assert_eq!(rule_packets(&v, 0), 30, "20 UDP + 10 UDP/IPv6 to 9999: {v}");
    let telnet = rule_packets(&v, 1);
    assert!(telnet >= 1, "at least one SYN to 23: {v}");
    assert_eq!(count(&v, "telnet")["total"], telnet, "{v}");
    assert_eq!(rule_packets(&v, 2), 10, "10 ICMP echo requests: {v}");
    assert_eq!(rule_packets(&v, 3), 20, "20 UDP frames on VLAN 100: {v}");
    let default = v["programs"][0]["default"].as_u64().unwrap_or(0);
    assert!(
        default >= 30,
        "20 UDP to 5000 + 10 on VLAN 200 + TCP pass: {v}"
    );
    assert_eq!(v["programs"][0]["malformed"], 0, "{v}");
    let by_src = count(&v, "udp9999_by_src");
    assert_eq!(by_src["key"], "ip.src");
    let entries = by_src["entries"].as_array().expect("entries");
    let get = |k: &str| {
        entries
            .iter()
            .find(|e| e["key"] == k)
            .map(|e| e["packets"].clone())
    };
    assert_eq!(get("10.99.0.2"), Some(20.into()), "{by_src}");
    assert_eq!(get("fd99::2"), Some(10.into()), "{by_src}");
    // The per-interval objects came too, and counters only grow.
    let intervals = lines.iter().filter(|l| l.contains("\"counters\"")).count();
    assert!(intervals >= 1, "{lines:?}");
    assert!(!std::path::Path::new(&pins).exists(), "{pins} is removed");
    assert_clean(&net.a, "e2e_sigint");
}

/// A filter with a named set of more than 8 elements, so `pol run` pins its map.
fn policy(name: &str, hook: &str) -> String {
    format!(
        "set never_{name}: ip4 = {{ 192.0.2.1, 192.0.2.2, 192.0.2.3, 192.0.2.4, 192.0.2.5, \
         192.0.2.6, 192.0.2.7, 192.0.2.8, 192.0.2.9 }}\n\
         filter {name} on {hook} {{\n    drop udp.dport == 9999\n    \
         drop ip.src in never_{name}\n    default pass\n}}\n"
    )
}

#[test]
#[cfg_attr(
    pol_no_netns,
    ignore = "kernel test: needs root, bpf(), iproute2, util-linux, bpftool and python3, unavailable at build time (CI=true runs it)"
)]
fn sigterm_on_tc_removes_the_qdisc_it_created() {
    require_kernel();
    require_tools();
    let net = NetPair::new("pt");
    let dir = TempDir::new("pol_run_tc");
    let file = dir.path().join("e2e_sigterm.pol");
    std::fs::write(&file, policy("e2e_sigterm", "tc(\"va\", ingress)")).expect("write");
    let file = file.to_str().expect("utf-8 path");
    for mode in ["netlink", "auto"] {
        let mut pol = PolRun::start(&net.a, &[file, "--json", "--tc-mode", mode], &[]);
        ready(&mut pol);
        if mode == "netlink" {
            let q = sh("tc", &["-n", &net.a, "qdisc", "show", "dev", "va"]);
            assert!(q.contains("clsact"), "pol should add clsact: {q}");
            let f = sh(
                "tc",
                &["-n", &net.a, "filter", "show", "dev", "va", "ingress"],
            );
            assert!(f.contains("e2e_sigterm"), "{f}");
        }
        pol.signal("TERM");
        let (ok, lines, err) = pol.finish(Duration::from_secs(10));
        assert!(ok, "{mode}: pol run failed after SIGTERM: {err}");
        assert!(lines.iter().any(|l| l.contains("\"final\"")), "{lines:?}");
        assert_clean(&net.a, "e2e_sigterm");
    }
    // A clsact qdisc that was there before is used and left in place.
    let _ = sh("tc", &["-n", &net.a, "qdisc", "add", "dev", "va", "clsact"]);
    let mut pol = PolRun::start(&net.a, &[file, "--json", "--tc-mode", "netlink"], &[]);
    ready(&mut pol);
    pol.signal("INT");
    let (ok, _, err) = pol.finish(Duration::from_secs(10));
    assert!(ok, "{err}");
    let q = sh("tc", &["-n", &net.a, "qdisc", "show", "dev", "va"]);
    assert!(q.contains("clsact"), "someone else's clsact must stay: {q}");
    let f = sh(
        "tc",
        &["-n", &net.a, "filter", "show", "dev", "va", "ingress"],
    );
    assert!(f.trim().is_empty(), "pol's filter must go: {f}");
}

#[test]
#[cfg_attr(
    pol_no_netns,
    ignore = "kernel test: needs root, bpf(), iproute2, util-linux, bpftool and python3, unavailable at build time (CI=true runs it)"
)]
fn a_panic_leaves_nothing() {
    require_kernel();
    require_tools();
    let net = NetPair::new("pp");
    let dir = TempDir::new("pol_run_panic");
    let file = dir.path().join("e2e_panic.pol");
    std::fs::write(&file, policy("e2e_panic", "xdp(\"va\")")).expect("write");
    let file = file.to_str().expect("utf-8 path");
    let pol = PolRun::start(
        &net.a,
        &[file, "--json"],
        &[("POL_RUN_TEST_PANIC", "after-attach")],
    );
    let (ok, lines, err) = pol.finish(Duration::from_secs(30));
    assert!(!ok, "a panic must fail the run");
    assert!(
        lines.iter().any(|l| l.contains("\"attached\"")),
        "{lines:?} {err}"
    );
    assert!(err.contains("panicked"), "{err}");
    assert_clean(&net.a, "e2e_panic");
}

#[test]
#[cfg_attr(
    pol_no_netns,
    ignore = "kernel test: needs root, bpf(), iproute2, util-linux, bpftool and python3, unavailable at build time (CI=true runs it)"
)]
fn a_failed_attach_half_way_rolls_back() {
    require_kernel();
    require_tools();
    let net = NetPair::new("ph");
    let dir = TempDir::new("pol_run_half");
    // First run holds the XDP hook of va. Its hook claim goes elsewhere, so the second
    // run gets as far as the kernel's refusal (a claim would refuse it before attaching).
    let holder = dir.path().join("e2e_holder.pol");
    std::fs::write(&holder, policy("e2e_holder", "xdp(\"va\")")).expect("write");
    let claims = dir.path().join("claims");
    let claims = claims.to_str().expect("path");
    let mut first = PolRun::start(
        &net.a,
        &[holder.to_str().expect("path"), "--json"],
        &[("POL_CLAIM_DIR", claims)],
    );
    ready(&mut first);
    // Second run: its TC filter attaches (adding clsact), then its XDP filter is refused.
    let two = dir.path().join("e2e_half.pol");
    let src = policy("e2e_half", "tc(\"va\", ingress)") + &policy("e2e_half_x", "xdp(\"va\")");
    std::fs::write(&two, src).expect("write");
    let second = PolRun::start(
        &net.a,
        &[
            two.to_str().expect("path"),
            "--json",
            "--tc-mode",
            "netlink",
            "--replace",
        ],
        &[],
    );
    let (ok, lines, err) = second.finish(Duration::from_secs(30));
    assert!(!ok, "the second run must fail: {lines:?}");
    assert!(
        err.contains("held by a BPF link of another process"),
        "{err}"
    );
    let q = sh("tc", &["-n", &net.a, "qdisc", "show", "dev", "va"]);
    assert!(
        !q.contains("clsact"),
        "the TC half must be rolled back: {q}"
    );
    let f = sh(
        "tc",
        &["-n", &net.a, "filter", "show", "dev", "va", "ingress"],
    );
    assert!(f.trim().is_empty(), "{f}");
    // The first run is untouched.
    let (_, shown) = ip(&["-n", &net.a, "link", "show", "va"]);
    assert!(shown.contains("prog/xdp"), "{shown}");
    first.signal("INT");
    let (ok, _, err) = first.finish(Duration::from_secs(10));
    assert!(ok, "{err}");
    assert_clean(&net.a, "e2e_holder");
    assert_clean(&net.a, "e2e_half");
}
