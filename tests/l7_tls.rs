//! TLS server names matched in the kernel (issue 13 §3): `openssl s_server` in one
//! network namespace, `openssl s_client -servername` in the other, `pol run` of an SNI
//! allowlist between them on XDP and tc. Each test asserts what the client saw, how many
//! ClientHellos reached the server, and the counters; a ClientHello split over two
//! segments is refused (fail-closed), as docs/l7.md says.

mod common;
mod run_support;

use run_support::{count, require_tools, NetPair, PolRun};
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `openssl s_server` on 10.99.0.1:4433 in namespace `ns`, with a self-signed
/// certificate made in `dir`; its output (with `-msg`) goes to a file.
struct Server {
    child: Child,
    log: std::path::PathBuf,
}

impl Server {
    fn start(ns: &str, dir: &std::path::Path) -> Server {
        let (key, cert) = (dir.join("key.pem"), dir.join("cert.pem"));
        let ok = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=allowed.test", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "openssl req");
        let log = dir.join("server.log");
        let out = std::fs::File::create(&log).expect("server log");
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{ns}"))
            .args(["openssl", "s_server", "-accept", "4433", "-msg", "-cert"])
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(Stdio::null())
            .spawn()
            .expect("start openssl s_server");
        let server = Server { child, log };
        let end = Instant::now() + Duration::from_secs(10);
        while !server.text().contains("ACCEPT") {
            assert!(Instant::now() < end, "s_server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// ClientHellos the server received.
    fn hellos(&self) -> usize {
        self.text().matches(", ClientHello").count()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `openssl s_client` from namespace `ns` completes a handshake naming `sni`
/// within 3 seconds.
fn handshake(ns: &str, sni: Option<&str>, extra: &[&str]) -> bool {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/run/netns/{ns}"))
        .args([
            "timeout",
            "3",
            "openssl",
            "s_client",
            "-connect",
            "10.99.0.1:4433",
        ])
        .args(extra);
    match sni {
        Some(name) => cmd.args(["-servername", name]),
        None => cmd.arg("-noservername"),
    };
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run openssl s_client");
    let mut out = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut out);
    }
    let _ = child.wait();
    out.contains("Cipher is") && !out.contains("Cipher is (NONE)")
}

fn allowlist(hook: &str) -> String {
    format!(
        "set allowed: dnsname = {{ \"allowed.test\", \"*.good.test\" }}\n\
         filter sni on {hook} {{\n\
         \x20   drop tls.version < TLS12                count old\n\
         \x20   pass tls.sni in allowed                 count admitted\n\
         \x20   drop tls                                count refused\n\
         \x20   default pass\n}}\n"
    )
}

#[test]
#[cfg_attr(
    pol_no_netns,
    ignore = "kernel test: needs root, bpf(), iproute2, util-linux, bpftool and python3, unavailable at build time (CI=true runs it)"
)]
fn an_sni_allowlist_admits_named_servers_on_xdp_and_tc() {
    common::require_kernel();
    require_tools();
    common::require_tool("openssl");
    for (i, hook) in ["xdp(\"va\")", "tc(\"va\", ingress)"].iter().enumerate() {
        let net = NetPair::new(&format!("tl{i}"));
        let dir = common::TempDir::new("pol_l7_tls");
        let server = Server::start(&net.a, dir.path());
        let file = dir.path().join("sni.pol");
        std::fs::write(&file, allowlist(hook)).expect("write");
        let f = file.to_str().expect("utf-8");
        let mut run = PolRun::start(&net.a, &[f, "--json", "--interval", "0.2"], &[]);
        assert!(
            run.wait_for("\"attached\"", Duration::from_secs(30))
                .is_some(),
            "{hook}: pol run did not attach: {:?}",
            run.seen
        );
        let cases: &[(Option<&str>, &[&str], bool)] = &[
            (Some("allowed.test"), &[], true),
            (Some("ALLOWED.Test"), &[], true),
            (Some("www.good.test"), &["-tls1_2"], true),
            (Some("good.test"), &[], false),
            (Some("evil.test"), &[], false),
            (Some("allowed.test.evil"), &[], false),
            (None, &[], false),
        ];
        for (sni, extra, want) in cases {
            assert_eq!(
                handshake(&net.b, *sni, extra),
                *want,
                "{hook}: s_client -servername {sni:?} {extra:?}"
            );
        }
        let admitted = cases.iter().filter(|c| c.2).count();
        assert_eq!(server.hellos(), admitted, "{hook}: {}", server.text());
        let v = run.last_counters(Duration::from_secs(1));
        assert_eq!(
            count(&v, "admitted")["total"],
            admitted as u64,
            "{hook}: {v}"
        );
        // Refused hellos are retransmitted until the client gives up: each copy counts.
        let refused = count(&v, "refused")["total"].as_u64().unwrap_or(0);
        assert!(refused >= 4, "{hook}: {v}");
        assert_eq!(count(&v, "old")["total"], 0, "{hook}: {v}");
        run.signal("INT");
        let (ok, _, err) = run.finish(Duration::from_secs(20));
        assert!(ok, "{hook}: {err}");
        run_support::assert_clean(&net.a, "sni");
    }
}

/// ALPN (`tls.alpn`): `openssl s_client -alpn LIST` offers protocols; a filter on the
/// server's tc ingress drops hellos offering `imap`, admits those offering `h2` or
/// `http/1.1` (byte for byte: `HTTP/1.1` is another protocol) and refuses the rest.
#[test]
#[cfg_attr(
    pol_no_netns,
    ignore = "kernel test: needs root, bpf(), iproute2, util-linux, bpftool and python3, unavailable at build time (CI=true runs it)"
)]
fn alpn_protocols_offered_are_matched() {
    common::require_kernel();
    require_tools();
    common::require_tool("openssl");
    let net = NetPair::new("ta");
    let dir = common::TempDir::new("pol_l7_tls_alpn");
    let server = Server::start(&net.a, dir.path());
    let file = dir.path().join("alpn.pol");
    std::fs::write(
        &file,
        "filter alpn on tc(\"va\", ingress) {\n\
         \x20   drop tls.alpn == \"imap\"                     count imap\n\
         \x20   pass tls.alpn in { \"h2\", \"http/1.1\" }     count web\n\
         \x20   drop tls                                    count refused\n\
         \x20   default pass\n}\n",
    )
    .expect("write");
    let f = file.to_str().expect("utf-8");
    let mut run = PolRun::start(&net.a, &[f, "--json", "--interval", "0.2"], &[]);
    assert!(
        run.wait_for("\"attached\"", Duration::from_secs(30))
            .is_some(),
        "pol run did not attach: {:?}",
        run.seen
    );
    let cases: &[(&[&str], bool)] = &[
        (&["-alpn", "h2"], true),
        (&["-alpn", "spdy/3,http/1.1"], true),
        (&["-alpn", "imap,h2"], false),
        (&["-alpn", "HTTP/1.1"], false),
        (&["-alpn", "h3"], false),
        (&[], false),
    ];
    for (extra, want) in cases {
        assert_eq!(
            handshake(&net.b, Some("allowed.test"), extra),
            *want,
            "s_client {extra:?}"
        );
    }
    assert_eq!(server.hellos(), 2, "{}", server.text());
    let v = run.last_counters(Duration::from_secs(1));
    assert_eq!(count(&v, "web")["total"], 2, "{v}");
    assert!(count(&v, "imap")["total"].as_u64().unwrap_or(0) >= 1, "{v}");
    assert!(
        count(&v, "refused")["total"].as_u64().unwrap_or(0) >= 3,
        "{v}"
    );
    run.signal("INT");
    let (ok, _, err) = run.finish(Duration::from_secs(20));
    assert!(ok, "{err}");
    run_support::assert_clean(&net.a, "alpn");
}

/// A ClientHello sent in two segments (its first 20 bytes, then the rest): the first
/// cannot be read, and in a filter that drops on TLS fields it is dropped (the malformed
/// count), so the handshake never starts; the same hello in one segment is admitted.
#[test]
#[cfg_attr(
    pol_no_netns,
    ignore = "kernel test: needs root, bpf(), iproute2, util-linux, bpftool and python3, unavailable at build time (CI=true runs it)"
)]
fn a_client_hello_in_two_segments_is_refused() {
    common::require_kernel();
    require_tools();
    common::require_tool("openssl");
    let net = NetPair::new("ts");
    let dir = common::TempDir::new("pol_l7_tls_split");
    let server = Server::start(&net.a, dir.path());
    let file = dir.path().join("split.pol");
    std::fs::write(&file, allowlist("tc(\"va\", ingress)")).expect("write");
    let f = file.to_str().expect("utf-8");
    let mut run = PolRun::start(&net.a, &[f, "--json", "--interval", "0.2"], &[]);
    assert!(
        run.wait_for("\"attached\"", Duration::from_secs(30))
            .is_some(),
        "pol run did not attach"
    );
    // Python builds a real ClientHello for allowed.test and sends it whole or split; it
    // prints whether a ServerHello (a handshake record) came back within 2 s.
    let script = "import socket, ssl, sys, time\n\
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)\n\
        ctx.check_hostname = False\n\
        ctx.verify_mode = ssl.CERT_NONE\n\
        i, o = ssl.MemoryBIO(), ssl.MemoryBIO()\n\
        t = ctx.wrap_bio(i, o, server_hostname='allowed.test')\n\
        try:\n    t.do_handshake()\nexcept ssl.SSLWantReadError:\n    pass\n\
        hello = o.read()\n\
        s = socket.create_connection(('10.99.0.1', 4433))\n\
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)\n\
        if sys.argv[1] == 'split':\n    s.send(hello[:20]); time.sleep(0.3); s.send(hello[20:])\n\
        else:\n    s.send(hello)\n\
        s.settimeout(2)\n\
        try:\n    r = s.recv(5)\nexcept socket.timeout:\n    r = b''\n\
        print('answered' if r[:1] == b'\\x16' else 'silent')\n";
    // Linux merges unacknowledged segments when it retransmits; without that, every copy
    // of the first segment stays 20 bytes long.
    let ok = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", net.b))
        .args(["sysctl", "-qw", "net.ipv4.tcp_retrans_collapse=0"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "sysctl net.ipv4.tcp_retrans_collapse in B");
    let send = |how: &str| {
        let o = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", net.b))
            .args([&run_support::python(), "-c", script, how])
            .output()
            .expect("run python");
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    assert_eq!(send("whole"), "answered");
    assert_eq!(send("split"), "silent");
    assert_eq!(server.hellos(), 1, "{}", server.text());
    let v = run.last_counters(Duration::from_secs(1));
    let malformed = v["programs"][0]["malformed"].as_u64().unwrap_or(0);
    assert!(malformed >= 1, "{v}");
    assert_eq!(count(&v, "admitted")["total"], 1, "{v}");
    run.signal("INT");
    let (ok, _, err) = run.finish(Duration::from_secs(20));
    assert!(ok, "{err}");
}

/// Bad TLS tests are errors at their span.
#[test]
fn bad_tls_tests_are_errors_at_their_span() {
    let dir = common::TempDir::new("pol_l7_tls_bad");
    let file = dir.path().join("bad.pol");
    std::fs::write(
        &file,
        "filter f on tc(\"eth0\", egress) {\n\
         \x20   drop tls.sni == \"*bad.example\"\n\
         \x20   drop tls.snI == \"x.example\"\n\
         \x20   drop tls.version == TLS1_3\n\
         \x20   drop tls.sni > \"x.example\"\n\
         \x20   drop tls == 1\n\
         \x20   drop tls.alpn == \"\"\n\
         \x20   drop tls.alpn in { \"h2\", \"a-protocol-name-longer-than-31-bytes\" }\n\
         \x20   drop tls.alpn > \"h2\"\n\
         \x20   default pass\n}\n",
    )
    .expect("write");
    let o = Command::new(env!("CARGO_BIN_EXE_pol"))
        .args(["check", file.to_str().expect("utf-8")])
        .output()
        .expect("run pol");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "{err}");
    for (line, want) in [
        (2, "a wildcard is the whole first label"),
        (3, "unknown TLS field `tls.snI`"),
        (4, "not a value of `tls.version`"),
        (5, "`tls.sni` is compared with `==`, `!=` or `in`"),
        (6, "`tls` is a condition, not a value"),
        (7, "an empty ALPN protocol"),
        (8, "pol matches ALPN names of at most 31 bytes"),
        (9, "`tls.alpn` is compared with `==`, `!=` or `in`"),
    ] {
        assert!(
            err.contains(&format!("bad.pol:{line}:")),
            "no error at line {line}: {err}"
        );
        assert!(err.contains(want), "{want}: {err}");
    }
    assert!(err.contains("did you mean `tls.sni`?"), "{err}");
}
