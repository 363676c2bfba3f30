//! L4 payload bytes as a user writes them (issue 7): `payload[A..B]`, `tcp.payload[..]`,
//! `udp.payload[..]` compared with strings and integers, through `pol test`
//! (BPF_PROG_TEST_RUN) on XDP and TC, and their diagnostics. Payload past the socket
//! buffer's linear head: tests/real_traffic.rs.

mod common;

use std::process::{Command, Output};

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

fn policy(hook: &str) -> String {
    format!(
        "filter web on {hook} {{\n\
         \x20   drop tcp.payload[0..4] == \"GET \" and tcp.dport == 80 count gets\n\
         \x20   drop udp.payload[0..2] == 0x1603\n\
         \x20   drop payload[5] == 0x41\n\
         \x20   pass payload[0..3] != \"abc\"\n\
         \x20   default drop\n}}\n\
         test \"payload\" on web {{\n\
         \x20   packet tcp {{ dport: 80, payload: \"GET / HTTP/1.1\" }} => drop count gets\n\
         \x20   packet tcp {{ dport: 80, payload: \"POST / HTTP/1.1\" }} => pass\n\
         \x20   packet tcp {{ dport: 80, payload: \"GE\" }} => drop\n\
         \x20   packet ip6 udp {{ src: 2001:db8::1, dport: 443, payload: \"\\n\" }} => drop\n\
         \x20   packet tcp {{ dport: 81, payload: \"GET / HTTP/1.1\" }} => pass\n\
         \x20   packet tcp {{ dport: 81, payload: \"xxxxxA\" }} => drop\n\
         \x20   packet tcp {{ dport: 81, payload: \"abcdef\" }} => drop\n\
         \x20   packet ip6 tcp {{ src: 2001:db8::1, dport: 81, payload: \"abcdef\", ext: [hop, dest] }} => drop\n\
         \x20   packet ip6 tcp {{ src: 2001:db8::1, dport: 81, payload: \"abddef\", ext: [hop, dest] }} => pass\n\
         \x20   packet icmp {{ }} => drop\n\
         }}\n"
    )
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn payload_rules_decide_on_xdp_and_tc() {
    common::require_kernel();
    let dir = common::TempDir::new("pol_payload_fields");
    for (i, hook) in ["xdp(\"eth0\")", "tc(\"eth0\", egress)"].iter().enumerate() {
        let file = dir.path().join(format!("p{i}.pol"));
        std::fs::write(&file, policy(hook)).expect("write");
        let o = pol(&["test", file.to_str().expect("utf-8")]);
        let (out, err) = text(&o);
        assert!(o.status.success(), "{hook}: {out}{err}");
        assert!(out.trim_end().ends_with("10 passed, 0 failed"), "{out}");
    }
}

#[test]
fn payload_slices_are_checked() {
    let dir = common::TempDir::new("pol_payload_diags");
    let file = dir.path().join("bad.pol");
    std::fs::write(
        &file,
        "filter f on xdp(\"eth0\") {\n    drop payload[0..4] == \"GET\"\n    \
         drop payload[2..2] == 1\n    drop payload[60..70] == 1\n    \
         drop payload[0..2] < 3\n    drop payload[0] == 256\n    \
         drop ip.payload[0] == 1\n    drop payload[0..20] == \"aaaaaaaaaaaaaaaaaaaa\"\n    \
         default pass\n}\n",
    )
    .expect("write");
    let o = pol(&["check", file.to_str().expect("utf-8")]);
    let (out, err) = text(&o);
    assert!(!o.status.success(), "{out}{err}");
    for want in [
        "`payload[0..4]` is 4 bytes, this string 3",
        "empty payload slice: 2..2 holds no byte",
        "payload slice 60..70 is out of reach: filters read the first 64 bytes of the payload",
        "payload bytes are compared with `==` or `!=`",
        "256 does not fit in 1 byte",
        "`ip.payload[..]` is not a packet field",
        "payload slice 0..20 is out of reach",
    ] {
        assert!(err.contains(want), "{want}: {err}");
    }
}
