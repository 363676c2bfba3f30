//! Rate limits (issue 15): `rate(KEY...) > N/s` in filter rules. Each step of the token
//! bucket through `pol test` (BPF_PROG_TEST_RUN), a bounded burst of real UDP between two
//! network namespaces against the declared rate, and the diagnostics of bad rates and keys.

mod common;
mod run_support;

use std::time::Duration;

use common::{require_kernel, TempDir};
use run_support::*;

/// Cases run in order on one loaded program, so each sees the buckets the earlier ones
/// left: three packets per minute per (source, port), then over; other keys have buckets of
/// their own; `rate()` is one bucket for all; a key field's absent layer makes the test false.
const BUCKETS: &str = r#"
filter guard on HOOK {
    drop rate(ip.src, tcp.dport) > 3/m            count limited
    pass udp and rate() <= 2/m
    drop udp
    default pass
}
test "buckets" on guard {
    packet tcp { src: 10.0.0.1, dport: 80 } => pass
    packet tcp { src: 10.0.0.1, dport: 80 } => pass
    packet tcp { src: 10.0.0.1, dport: 80 } => pass
    packet tcp { src: 10.0.0.1, dport: 80 } => drop count limited
    packet tcp { src: 10.0.0.1, dport: 80 } => drop count limited
    packet tcp { src: 10.0.0.1, dport: 81 } => pass
    packet tcp { src: 10.0.0.2, dport: 80 } => pass
    packet ip6 tcp { src: 2001:db8::1, dport: 80 } => pass
    packet ip6 tcp { src: 2001:db8::1, dport: 80 } => pass
    packet ip6 tcp { src: 2001:db8::1, dport: 80 } => pass
    packet ip6 tcp { src: 2001:db8::1, dport: 80 } => drop
    packet udp { src: 10.0.0.1, dport: 53 } => pass
    packet ip6 udp { src: 2001:db8::9, dport: 53 } => pass
    packet udp { src: 10.0.0.7, dport: 53 } => drop
    packet arp { } => pass
}
"#;

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn token_buckets_take_refuse_and_keep_keys_apart_on_xdp_and_tc() {
    require_kernel();
    let dir = TempDir::new("pol_rate_buckets");
    for (i, hook) in ["xdp(\"eth0\")", "tc(\"eth0\", ingress)"]
        .iter()
        .enumerate()
    {
        pol_test(
            dir.path(),
            &format!("r{i}"),
            &BUCKETS.replace("HOOK", hook),
            15,
        );
    }
}

/// Runs in B: UDP to A port 5000 at about `pps` for `secs` seconds, paced; prints how many
/// were sent and the time from the first to the last.
const SENDER: &str = r#"
import json, socket, sys, time
pps, secs = float(sys.argv[1]), float(sys.argv[2])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
n, t0 = 0, time.monotonic()
while True:
    now = time.monotonic()
    if now - t0 >= secs: break
    u.sendto(b"x" * 32, ("10.99.0.1", 5000)); n += 1; last = now
    ahead = t0 + n / pps - time.monotonic()
    if ahead > 0: time.sleep(ahead)
print(json.dumps({"sent": n, "elapsed": last - t0}), flush=True)
"#;

#[test]
#[cfg_attr(
    pol_no_netns,
    ignore = "kernel test: needs root, bpf(), iproute2, util-linux, bpftool and python3, unavailable at build time (CI=true runs it)"
)]
fn a_bounded_burst_passes_at_the_declared_rate() {
    require_kernel();
    require_tools();
    let net = NetPair::new("rl");
    let dir = TempDir::new("pol_rate_netns");
    let file = dir.path().join("rate_e2e.pol");
    std::fs::write(
        &file,
        "filter rate_e2e on xdp(\"va\") {\n    \
         pass udp.dport == 5000 and rate(ip.src, burst(20)) <= 200/s\n    \
         drop udp.dport == 5000\n    default pass\n}\n",
    )
    .expect("write policy");
    let run = PolRun::attached(&net.a, file.to_str().expect("utf-8"), &[]);
    // 1,500 packets per second for 1.5 s: 7.5 times the rate.
    let sent = py_json(&net.b, SENDER, &["1500", "1.5"]);
    std::thread::sleep(Duration::from_millis(300));
    let (_, v) = run.stop();
    let (passed, over) = (rule_packets(&v, 0), rule_packets(&v, 1));
    let n = sent["sent"].as_u64().unwrap_or(0);
    let elapsed = sent["elapsed"].as_f64().unwrap_or(0.0);
    assert_eq!(
        passed + over,
        n,
        "every datagram was judged once: {v} {sent}"
    );
    // The burst, then 200 per second of the time the datagrams took; ±10 % and 5 packets
    // for the clock read at each packet against the sender's.
    let want = 20.0 + 200.0 * elapsed;
    let (lo, hi) = (want * 0.9 - 5.0, want * 1.1 + 5.0);
    assert!(
        (lo..=hi).contains(&(passed as f64)),
        "{passed} passed of {n} in {elapsed:.3} s, expected about {want:.0} ({lo:.0}..{hi:.0})"
    );
    assert!(over > n / 2, "most were over the rate: {over} of {n}");
    assert_clean(&net.a, "rate_e2e");
}

#[test]
fn bad_rates_and_keys_are_errors_with_spans() {
    let dir = TempDir::new("pol_rate_diags");
    let file = dir.path().join("bad.pol");
    std::fs::write(
        &file,
        "filter f on xdp(\"eth0\") {\n    \
         drop rate(ip.src) > 100\n    \
         drop rate(ip.src) > 0/s\n    \
         drop rate(tcp.syn) > 10/s\n    \
         drop rate(ip.src) == 10/s\n    \
         drop rate(ip.src, burst(0)) > 10/s\n    \
         drop rate(ip.src, size(99999999)) > 10/s\n    \
         drop rate(ip.sorce) > 10/s\n    \
         drop rate(ip.src) > 10/fortnight\n    \
         default pass\n}\n",
    )
    .expect("write");
    let o = pol(&["check", file.to_str().expect("utf-8")]);
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    for (want, line) in [
        ("a rate is a count per time unit", 2),
        ("a rate of 0 lets nothing through", 3),
        ("`tcp.syn` cannot key a rate", 4),
        ("a rate is compared with `>`", 5),
        ("`burst(..)` takes one positive integer", 6),
        ("a rate table holds at most", 7),
        ("unknown field `ip.sorce`", 8),
        ("a rate is a count per time unit", 9),
    ] {
        assert!(out.contains(want), "missing {want:?}: {out}");
        assert!(
            out.contains(&format!("bad.pol:{line}:")),
            "no span on line {line}: {out}"
        );
    }
}
