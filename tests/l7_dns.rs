//! DNS names matched in the kernel (issue 13 §2): a real DNS responder in one network
//! namespace, `dig` in the other, `pol run` of a `dns.qname` blocklist between them on
//! XDP and on tc. Each test asserts what reached the responder, what `dig` saw and what
//! the counters say.

mod common;
mod run_support;

use run_support::{count, require_tools, NetPair, PolRun};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The responder (tests/l7/dns_server.py) running in namespace `ns`; killed on drop.
struct Responder {
    child: Child,
    log: std::path::PathBuf,
}

impl Responder {
    fn start(ns: &str, log: std::path::PathBuf) -> Responder {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/l7/dns_server.py");
        let mut child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{ns}"))
            .args([&run_support::python(), script])
            .arg(&log)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the DNS responder");
        let out = child.stdout.take().expect("stdout");
        let mut line = String::new();
        let _ = BufReader::new(out).read_line(&mut line);
        assert_eq!(line.trim(), "ready", "the DNS responder did not start");
        Responder { child, log }
    }

    /// The question names that reached the responder, in order.
    fn seen(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What `dig` saw for one query from namespace `ns`: the answer's status and address, or
/// `timeout` when nothing came back. One try, one second (`+tries=1`).
fn dig(ns: &str, name: &str, extra: &[&str]) -> String {
    let out = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{ns}"))
        .args(["dig", "@10.99.0.1", "+tries=1", "+timeout=1", name, "A"])
        .args(extra)
        .output()
        .expect("run dig");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if text.contains("timed out") || text.contains("no servers could be reached") {
        return "timeout".into();
    }
    match text.split("status: ").nth(1) {
        Some(rest) => {
            let status = rest.split(',').next().unwrap_or("").to_string();
            if text.contains("192.0.2.53") {
                format!("{status} 192.0.2.53")
            } else {
                status
            }
        }
        None => format!("unparsed: {text}"),
    }
}

fn blocklist(hook: &str) -> String {
    format!(
        "filter dnsbl on {hook} {{\n\
         \x20   drop dns.qname == \"*.blocked.test\"              count blocked\n\
         \x20   drop dns.qname in {{ \"evil.test\", \"*.Bad.Example\" }} count bad\n\
         \x20   default pass\n}}\n"
    )
}

/// Names `dig` asks for, and whether the filter lets the query through.
const QUERIES: &[(&str, bool)] = &[
    ("ok.test", true),
    ("blocked.test", true), // the wildcard covers names below it, not itself
    ("x.blocked.test", false),
    ("A.B.BLOCKED.Test", false), // case does not matter
    ("xblocked.test", true),
    ("evil.test", false),
    ("www.evil.test", true), // exact: nothing below it
    ("q.bad.example", false),
    ("gone.nx.test", true),
];

#[test]
#[cfg_attr(
    pol_no_netns,
    ignore = "kernel test: needs root, bpf(), iproute2, util-linux, bpftool and python3, unavailable at build time (CI=true runs it)"
)]
fn a_dns_blocklist_drops_queries_on_xdp_and_tc() {
    common::require_kernel();
    require_tools();
    common::require_tool("dig");
    for (i, hook) in ["xdp(\"va\")", "tc(\"va\", ingress)"].iter().enumerate() {
        let net = NetPair::new(&format!("dn{i}"));
        let dir = common::TempDir::new("pol_l7_dns");
        let responder = Responder::start(&net.a, dir.path().join("seen.log"));
        let file = dir.path().join("dnsbl.pol");
        std::fs::write(&file, blocklist(hook)).expect("write");
        let f = file.to_str().expect("utf-8");
        let mut run = PolRun::start(&net.a, &[f, "--json", "--interval", "0.2"], &[]);
        assert!(
            run.wait_for("\"attached\"", Duration::from_secs(30))
                .is_some(),
            "{hook}: pol run did not attach: {:?}",
            run.seen
        );
        for &(name, passes) in QUERIES {
            let got = dig(&net.b, name, &[]);
            let want = if !passes {
                "timeout"
            } else if name.ends_with("nx.test") {
                "NXDOMAIN"
            } else {
                "NOERROR 192.0.2.53"
            };
            assert_eq!(got, want, "{hook}: dig {name}");
        }
        let passed: Vec<String> = QUERIES
            .iter()
            .filter(|q| q.1)
            .map(|q| q.0.to_string())
            .collect();
        assert_eq!(
            responder.seen(),
            passed,
            "{hook}: what reached the responder"
        );
        let v = run.last_counters(Duration::from_secs(1));
        assert_eq!(count(&v, "blocked")["total"], 2, "{hook}: {v}");
        assert_eq!(count(&v, "bad")["total"], 2, "{hook}: {v}");
        run.signal("INT");
        let (ok, _, err) = run.finish(Duration::from_secs(20));
        assert!(ok, "{hook}: {err}");
        run_support::assert_clean(&net.a, "dnsbl");
    }
}

fn pol(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pol"))
        .args(args)
        .output()
        .expect("run pol")
}

/// Bad DNS tests are errors at their span: a malformed wildcard, a name longer than 255
/// bytes, a label longer than 63, an unknown field, an ordering of names, a value that
/// does not fit.
#[test]
fn bad_dns_tests_are_errors_at_their_span() {
    let dir = common::TempDir::new("pol_l7_dns_bad");
    let file = dir.path().join("bad.pol");
    let long = vec!["a"; 128].join(".");
    let label = "b".repeat(64);
    let src = format!(
        "filter f on xdp(\"eth0\") {{\n\
         \x20   drop dns.qname == \"a*.example.com\"\n\
         \x20   drop dns.qname == \"{long}\"\n\
         \x20   drop dns.qname in {{ \"ok.test\", \"{label}.test\" }}\n\
         \x20   drop dns.qnme == \"x.test\"\n\
         \x20   drop dns.qname < \"x.test\"\n\
         \x20   drop dns.rcode == 16\n\
         \x20   drop dns.qtype == BOGUS\n\
         \x20   drop dns.qname == 3\n\
         \x20   default pass\n}}\n"
    );
    std::fs::write(&file, &src).expect("write");
    let o = pol(&["check", file.to_str().expect("utf-8")]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "{err}");
    for (line, want) in [
        (2, "E0560"),
        (3, "E0560"),
        (4, "E0560"),
        (5, "E0562"),
        (6, "E0561"),
        (7, "E0561"),
        (8, "E0561"),
        (9, "E0561"),
    ] {
        let at = format!("bad.pol:{line}:");
        assert!(
            err.lines().any(|l| l.contains(&at)),
            "no error at line {line} ({want}): {err}"
        );
        assert!(err.contains(want), "{want}: {err}");
    }
    for want in [
        "a wildcard is the whole first label: `*.example.com`",
        "this name is 257 bytes on the wire; DNS names hold at most 255",
        "DNS labels hold at most 63",
        "did you mean `dns.qname`?",
        "`dns.qname` is compared with `==`, `!=` or `in`",
        "16 does not fit `dns.rcode`",
        "not a value of `dns.qtype`",
        "a DNS name is a string",
    ] {
        assert!(err.contains(want), "{want}: {err}");
    }
}

/// `n` distinct names `w<i>.<zone>.example` (zones spread the trie).
fn many_names(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("w{i}.z{}.example", i % 97))
        .collect()
}

/// DNS over TCP, responses, a 100,000-name set read from a file, a 255-byte name: a tc
/// filter on A's ingress drops queries for names in the file (and below `*.blocked.test`)
/// over UDP and TCP; one on A's egress drops NXDOMAIN answers for `*.hidden.nx.test`, after
/// the query reached the responder.
#[test]
#[cfg_attr(
    pol_no_netns,
    ignore = "kernel test: needs root, bpf(), iproute2, util-linux, bpftool and python3, unavailable at build time (CI=true runs it)"
)]
fn tcp_queries_responses_and_a_100000_name_file() {
    common::require_kernel();
    require_tools();
    common::require_tool("dig");
    let net = NetPair::new("dt");
    let dir = common::TempDir::new("pol_l7_dns_file");
    let responder = Responder::start(&net.a, dir.path().join("seen.log"));
    let names = many_names(100_000);
    let mut list = String::from("# generated\n*.blocked.test\n");
    for n in &names {
        list.push_str(n);
        list.push('\n');
    }
    std::fs::write(dir.path().join("names.txt"), list).expect("write names");
    let file = dir.path().join("dnsfile.pol");
    std::fs::write(
        &file,
        "set blocked: dnsname = file(\"names.txt\")\n\
         filter dnsfile on tc(\"va\", ingress) {\n\
         \x20   drop dns.qname in blocked count listed\n\
         \x20   default pass\n}\n\
         filter dnsout on tc(\"va\", egress) {\n\
         \x20   drop dns.response and dns.rcode == NXDOMAIN and dns.qname == \"*.hidden.nx.test\" count hidden\n\
         \x20   default pass\n}\n",
    )
    .expect("write");
    let f = file.to_str().expect("utf-8");
    let mut run = PolRun::start(&net.a, &[f, "--json", "--interval", "0.2"], &[]);
    assert!(
        run.wait_for("\"attached\"", Duration::from_secs(60))
            .is_some(),
        "pol run did not attach: {:?}",
        run.seen
    );
    let label = |c: char, n: usize| c.to_string().repeat(n);
    // 255 bytes on the wire: three 63-byte labels, one of 48, then `blocked.test`.
    let long = format!(
        "{}.{}.{}.{}",
        label('a', 63),
        label('b', 63),
        label('c', 63),
        label('d', 48)
    );
    let cases: Vec<(String, &[&str], &str)> = vec![
        (names[0].clone(), &[], "timeout"),
        (names[99_999].to_uppercase(), &["+tcp"], "timeout"),
        (names[54_321].clone(), &["+tcp"], "timeout"),
        ("w100000.z0.example".into(), &["+tcp"], "NOERROR 192.0.2.53"),
        ("x.blocked.test".into(), &["+tcp"], "timeout"),
        ("ok.test".into(), &["+tcp"], "NOERROR 192.0.2.53"),
        (format!("{long}.blocked.test"), &[], "timeout"),
        (format!("{long}.allowed.test"), &[], "NOERROR 192.0.2.53"),
        ("a.hidden.nx.test".into(), &[], "timeout"),
        ("gone.nx.test".into(), &[], "NXDOMAIN"),
    ];
    for (name, extra, want) in &cases {
        assert_eq!(dig(&net.b, name, extra), *want, "dig {name} {extra:?}");
    }
    let reached: Vec<String> = cases
        .iter()
        .filter(|c| c.2 != "timeout" || c.0.ends_with("hidden.nx.test"))
        .map(|c| c.0.clone())
        .collect();
    assert_eq!(responder.seen(), reached, "what reached the responder");
    let v = run.last_counters(Duration::from_secs(1));
    // Two UDP queries dropped once each; over TCP the client retransmits a dropped
    // segment until dig gives up, and each copy is dropped again.
    let listed = count(&v, "listed")["total"].as_u64().unwrap_or(0);
    assert!(listed >= 5, "{v}");
    assert_eq!(v["programs"][0]["malformed"], 0, "{v}");
    assert_eq!(count(&v, "hidden")["total"], 1, "{v}");
    run.signal("INT");
    let (ok, _, err) = run.finish(Duration::from_secs(30));
    assert!(ok, "{err}");
    run_support::assert_clean(&net.a, "dnsfile");
}

/// The example compiles, and its generator writes the list it says.
#[test]
fn the_dns_blocklist_example_compiles() {
    let ex = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/l7/dns-blocklist.pol");
    let o = pol(&["check", ex]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{out}{err}");
    let gen = Command::new(run_support::python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/l7/gen_blocklist.py"
        ))
        .arg("1000")
        .output()
        .expect("run gen_blocklist.py");
    let text = String::from_utf8_lossy(&gen.stdout).into_owned();
    let names: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(names.len(), 1000);
    for n in names {
        assert!(
            pol_compiler::l7::dns::parse_pattern(n).is_ok(),
            "{n} is not a name pattern"
        );
    }
}

/// A bad line of a names file is reported by line and column, never by its text.
#[test]
fn a_bad_names_file_line_is_reported_without_its_text() {
    let dir = common::TempDir::new("pol_l7_dns_file_bad");
    std::fs::write(
        dir.path().join("names.txt"),
        "ok.example\n# comment\n  hunter2..secret\n*bad.example\n",
    )
    .expect("write names");
    let file = dir.path().join("f.pol");
    std::fs::write(
        &file,
        "set names: dnsname = file(\"names.txt\")\n\
         filter f on xdp(\"eth0\") {\n    drop dns.qname in names\n    default pass\n}\n",
    )
    .expect("write");
    let o = pol(&["check", file.to_str().expect("utf-8")]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("E0560"), "{err}");
    assert!(
        err.contains("names.txt:3:3: not a DNS name pattern (and 1 more bad lines)"),
        "{err}"
    );
    assert!(!err.contains("hunter2") && !err.contains("secret"), "{err}");
}

/// `pol set add|del|list` on a `dnsname` set of a running filter: names and wildcards
/// added while it runs are dropped at once, a deleted one passes again, `list` shows the
/// patterns back, and a bad name is a sentence that changes nothing.
#[test]
#[cfg_attr(
    pol_no_netns,
    ignore = "kernel test: needs root, bpf(), iproute2, util-linux, bpftool and python3, unavailable at build time (CI=true runs it)"
)]
fn pol_set_changes_a_running_name_set() {
    common::require_kernel();
    require_tools();
    common::require_tool("dig");
    let net = NetPair::new("dz");
    let dir = common::TempDir::new("pol_l7_dns_set");
    let _responder = Responder::start(&net.a, dir.path().join("seen.log"));
    // Named after the pid: other suites run this test at the same time.
    let file = dir.path().join(format!("dnsset{}.pol", std::process::id()));
    std::fs::write(
        &file,
        "set bl: dnsname = { \"evil.test\" }\n\
         filter dnsset on xdp(\"va\") {\n\
         \x20   drop dns.qname in bl count listed\n\
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
    let ok = "NOERROR 192.0.2.53";
    assert_eq!(dig(&net.b, "evil.test", &[]), "timeout");
    assert_eq!(dig(&net.b, "x.new.test", &[]), ok);
    assert_eq!(dig(&net.b, "other.test", &[]), ok);
    let out = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    let o = pol(&["set", "add", f, "bl", "*.new.test", "Other.Test."]);
    assert!(o.status.success(), "{}", out(&o));
    let text = out(&o);
    assert!(text.contains("added *.new.test to bl"), "{text}");
    assert!(text.contains("added other.test to bl"), "{text}");
    assert!(text.contains("set bl: 3 entries (bl 3 of 65)"), "{text}");
    assert_eq!(dig(&net.b, "x.new.test", &[]), "timeout");
    assert_eq!(dig(&net.b, "A.B.NEW.test", &[]), "timeout");
    assert_eq!(dig(&net.b, "new.test", &[]), ok, "the wildcard is below it");
    assert_eq!(dig(&net.b, "other.test", &[]), "timeout");
    let o = pol(&["set", "list", f, "bl"]);
    assert!(o.status.success(), "{}", out(&o));
    let listed = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(
        listed.lines().collect::<Vec<_>>(),
        ["*.new.test", "evil.test", "other.test"],
        "{listed}"
    );
    let o = pol(&["set", "del", f, "bl", "other.test", "never.test"]);
    assert!(o.status.success(), "{}", out(&o));
    let text = out(&o);
    assert!(text.contains("deleted other.test from bl"), "{text}");
    assert!(text.contains("never.test was not in bl"), "{text}");
    assert_eq!(dig(&net.b, "other.test", &[]), ok);
    // A bad name changes nothing, the good one before it included.
    let o = pol(&["set", "add", f, "bl", "fine.test", "a..b"]);
    assert!(!o.status.success());
    let text = out(&o);
    assert!(
        text.contains("`a..b` is not a value of set `bl` (dnsname): it is not a DNS name pattern: an empty label in `a..b`"),
        "{text}"
    );
    assert_eq!(dig(&net.b, "fine.test", &[]), ok);
    let v = run.last_counters(Duration::from_secs(1));
    assert_eq!(count(&v, "listed")["total"], 4, "{v}");
    run.signal("INT");
    let (done, _, err) = run.finish(Duration::from_secs(20));
    assert!(done, "{err}");
    run_support::assert_clean(&net.a, "dnsset");
}
