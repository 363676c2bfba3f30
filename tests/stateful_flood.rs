//! SYN-flood protection (issue 15): a bounded SYN flood from one (spoofed, unreachable)
//! source against a server whose SYN queue holds 64 half-open connections and has no SYN
//! cookies, while a real client in the same namespace keeps connecting. Behind
//! examples/stateful_synflood.pol's per-source SYN rate the client's connections succeed.
//! (bench/flood/run.sh measures the same with and without pol.)

mod common;
mod run_support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{require_kernel, TempDir};
use run_support::*;

/// Runs in A: listens on 10.99.0.1:80 with a backlog of 64 and accepts forever.
const SERVER: &str = r#"
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.99.0.1", 80)); s.listen(64)
print("ready", flush=True)
while True:
    c, _ = s.accept(); c.close()
"#;

/// Runs in B: `argv[1]` SYNs over `argv[2]` seconds from 10.99.0.200 (no such host: the server's SYN-ACKs go
/// nowhere and its half-open connections stay) to port 80, through a raw socket.
pub const FLOOD: &str = r#"
import random, socket, struct, sys, time
n, secs = int(sys.argv[1]), float(sys.argv[2])
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b)); s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
src, dst = socket.inet_aton("10.99.0.200"), socket.inet_aton("10.99.0.1")
r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
t0 = time.monotonic()
for i in range(n):
    sport = 1024 + i % 60000
    tcp = struct.pack("!HHIIBBHHH", sport, 80, random.getrandbits(32), 0, 5 << 4, 0x02, 64240, 0, 0)
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), i & 0xffff, 0, 64, 6, 0, src, dst)
    r.sendto(ip + tcp, ("10.99.0.1", 0))
    if i % 100 == 99:
        ahead = t0 + secs * (i + 1) / n - time.monotonic()
        if ahead > 0: time.sleep(ahead)
print("%d %.3f" % (n, time.monotonic() - t0), flush=True)
"#;

/// Runs in B: `argv[1]` connections to A:80, one at a time, 1 s timeout each; prints how
/// many succeeded.
pub const CLIENT: &str = r#"
import socket, sys, time
ok = 0
for i in range(int(sys.argv[1])):
    t = socket.socket(); t.settimeout(1)
    try:
        t.connect(("10.99.0.1", 80)); ok += 1
    except OSError:
        pass
    t.close(); time.sleep(0.05)
print(ok, flush=True)
"#;

#[test]
#[cfg_attr(
    pol_no_netns,
    ignore = "kernel test: needs root, bpf(), iproute2, util-linux, bpftool and python3, unavailable at build time (CI=true runs it)"
)]
fn a_real_client_connects_through_a_bounded_syn_flood() {
    require_kernel();
    require_tools();
    let net = NetPair::new("sf");
    let (ok, out) = ip(&[
        "netns",
        "exec",
        &net.a,
        "sysctl",
        "-qw",
        "net.ipv4.tcp_syncookies=0",
    ]);
    assert!(ok, "sysctl: {out}");
    let dir = TempDir::new("pol_synflood");
    let file = dir.path().join("syn_guard.pol");
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/stateful_synflood.pol"
    ))
    .expect("the example");
    std::fs::write(&file, example).expect("write");
    let run = PolRun::attached(&net.a, file.to_str().expect("utf-8"), &["--iface", "va"]);
    let py = python();
    let mut server = Command::new("ip")
        .args(["netns", "exec", &net.a, &py, "-c", SERVER])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start server");
    let mut line = String::new();
    BufReader::new(server.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("server ready");
    let flood = Command::new("ip")
        .args(["netns", "exec", &net.b, &py, "-c", FLOOD, "20000", "3"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start flood");
    std::thread::sleep(Duration::from_millis(500));
    let client = Command::new("ip")
        .args(["netns", "exec", &net.b, &py, "-c", CLIENT, "10"])
        .output()
        .expect("run client");
    let flood = flood.wait_with_output().expect("flood ends");
    let _ = server.kill();
    let _ = server.wait();
    let connected: u32 = String::from_utf8_lossy(&client.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    let (_, v) = run.stop();
    let limited = rule_packets(&v, 0);
    assert!(
        limited > 1000,
        "the flood's SYNs over the source's rate were dropped: {limited} ({}) {v}",
        String::from_utf8_lossy(&flood.stdout)
    );
    assert!(
        connected >= 9,
        "{connected} of 10 connections through the flood ({} SYNs dropped)",
        limited
    );
    assert_clean(&net.a, "syn_guard");
}
