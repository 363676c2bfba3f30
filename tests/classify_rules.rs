//! Conjunctive rules go to the classifier (issue 11): ClassBench-shaped rule sets written
//! as `.pol` filters compile with their rules in the classifier, load (through aya, which
//! links the classifier's subprograms from `.text`, and through pol's direct loader, which
//! links them itself with BTF func_info), and give a plain first-match reference's verdict
//! for every trace header on both.

mod common;

use pol_compiler::classify::gen::{self, Shape};
use pol_compiler::classify::{self, Header, Rule};
use pol_compiler::driver;
use pol_compiler::ir::groups::{self, Placement};
use pol_runtime::direct::Object as _;
use pol_runtime::packet::Packet;
use pol_runtime::testrun;

fn addr(a: &[u8; 16]) -> String {
    format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3])
}

/// The rule as pol text: `ip4 and PROTO and ip.src in P and ... and PORT in LO..HI`.
fn pol_rule(r: &Rule) -> String {
    let mut tests = vec!["ip4".to_string()];
    let proto = (r.proto.lo == r.proto.hi).then_some(r.proto.lo);
    let l4 = match proto {
        Some(6) => Some("tcp"),
        Some(17) => Some("udp"),
        Some(1) => Some("icmp"),
        Some(p) => {
            tests.push(format!("ip.proto == {p}"));
            None
        }
        None => None,
    };
    if let Some(l) = l4 {
        tests.push(l.to_string());
    }
    for (name, p) in [("ip.src", r.src), ("ip.dst", r.dst)] {
        if p.len > 0 {
            tests.push(format!("{name} in {}/{}", addr(&p.addr), p.len));
        }
    }
    for (name, rg) in [("sport", r.sport), ("dport", r.dport)] {
        let Some(l) = l4.filter(|l| *l != "icmp") else {
            continue;
        };
        if rg.lo == rg.hi {
            tests.push(format!("{l}.{name} == {}", rg.lo));
        } else if (rg.lo, rg.hi) != (0, u16::MAX) {
            tests.push(format!("{l}.{name} in {}..{}", rg.lo, rg.hi));
        }
    }
    let verdict = if r.action == 0 { "drop" } else { "pass" };
    format!("    {verdict} {}\n", tests.join(" and "))
}

fn source(rules: &[Rule]) -> String {
    let mut s = String::from("filter cls on xdp(\"eth0\") {\n");
    for r in rules {
        s.push_str(&pol_rule(r));
    }
    s.push_str("    default pass\n}\n");
    s
}

/// `pol filter ARGS` in namespace `ns`: asserts it succeeded; its stdout.
fn filter_ok(ns: &str, args: &[&str]) -> String {
    let mut a = vec!["filter"];
    a.extend_from_slice(args);
    let (ok, out, err) = pol_in(ns, &a);
    assert!(ok, "pol filter {args:?}: {err}");
    out
}

/// `pol filter ARGS` in namespace `ns`: asserts it failed with a sentence (no panic); its
/// stderr.
fn filter_err(ns: &str, args: &[&str]) -> String {
    let mut a = vec!["filter"];
    a.extend_from_slice(args);
    let (ok, _, err) = pol_in(ns, &a);
    assert!(!ok, "pol filter {args:?} must fail");
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// A `pol run` of [`editable_filter`] in a namespace pair of its own, attached. The
/// filter and its file are named after the test process (`BASE_PID`): other suites on the
/// host run these tests at the same time, and `pol filter` finds a run by its file's stem.
struct Editable {
    name: String,
    net: run_support::NetPair,
    dir: common::TempDir,
    file: String,
    pol: Option<run_support::PolRun>,
    /// The XDP program's id when it attached (a change without reload keeps it).
    id: u64,
}

impl Editable {
    fn start(tag: &str, base: &str) -> Editable {
        common::require_kernel();
        run_support::require_tools();
        let name = format!("{base}_{}", std::process::id());
        let net = run_support::NetPair::new(tag);
        let dir = common::TempDir::new(&format!("pol_{name}"));
        let path = dir.path().join(format!("{name}.pol"));
        std::fs::write(&path, editable_filter(&name)).expect("write");
        let file = path.to_str().expect("utf-8 path").to_string();
        let mut pol =
            run_support::PolRun::start(&net.a, &[&file, "--json", "--interval", "0.5"], &[]);
        assert!(
            pol.wait_for("\"attached\"", std::time::Duration::from_secs(30))
                .is_some(),
            "pol run did not attach"
        );
        let id = xdp_prog_id(&net.a);
        Editable {
            name,
            net,
            dir,
            file,
            pol: Some(pol),
            id,
        }
    }

    /// The run, while it runs.
    fn pol(&mut self) -> &mut run_support::PolRun {
        self.pol.as_mut().expect("the run was stopped")
    }

    /// Stops the run (SIGINT) and checks it left nothing behind.
    fn stop(&mut self) {
        let pol = self.pol.take().expect("the run was stopped");
        pol.signal("INT");
        let (ok, _, err) = pol.finish(std::time::Duration::from_secs(10));
        assert!(ok, "{err}");
        run_support::assert_clean(&self.net.a, &self.name);
    }
}

fn packet(h: &Header) -> Option<Packet> {
    let p = match h.proto {
        6 => Packet::tcp().sport(h.sport).dport(h.dport),
        17 => Packet::udp().sport(h.sport).dport(h.dport),
        1 => Packet::icmp(),
        _ => return None,
    };
    Some(p.src(addr(&h.src).as_str()).dst(addr(&h.dst).as_str()))
}

/// The reference verdict: the generated rules are all IPv4 (family `V4`), ports only on
/// TCP and UDP rules, as `pol_rule` writes them.
fn expected(rules: &[Rule], h: &Header) -> &'static str {
    let mut h = *h;
    h.family = classify::V4;
    if h.proto == 1 {
        (h.sport, h.dport) = (0, 0);
    }
    match classify::reference(rules, &h) {
        Some(i) if rules[i].action == 0 => "drop",
        _ => "pass",
    }
}

#[test]
fn classbench_sets_compile_into_the_classifier() {
    for shape in Shape::ALL {
        let rules = gen::rules(shape, 300, 11);
        let src = source(&rules);
        let c = driver::compile(&src)
            .unwrap_or_else(|d| panic!("{}", pol_compiler::diag::render_all(&d, "t.pol", &src)));
        let plan = groups::plan(&c.hir.filters[0]);
        let code: Vec<_> = plan
            .placement
            .iter()
            .enumerate()
            .filter_map(|(i, p)| match p {
                Placement::Code(why) => Some((i, why.clone())),
                _ => None,
            })
            .collect();
        assert!(
            code.is_empty(),
            "{}: rules left as code: {code:?}",
            shape.name()
        );
        assert!(c.maps.iter().any(|m| m.spec.name == "cls_cls_rules"));
    }
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn classified_filters_give_the_first_match_verdict() {
    common::require_kernel();
    for (k, shape) in Shape::ALL.into_iter().enumerate() {
        let rules = gen::rules(shape, 400, 20 + k as u64);
        let src = source(&rules);
        let c = driver::compile(&src)
            .unwrap_or_else(|d| panic!("{}", pol_compiler::diag::render_all(&d, "t.pol", &src)));
        let aya = testrun::load(&c).unwrap_or_else(|e| panic!("{}: aya load: {e}", shape.name()));
        // The direct path links the classifier's subprograms itself, with func_info.
        let direct = testrun::load_direct(&c)
            .unwrap_or_else(|e| panic!("{}: direct load: {e}", shape.name()));
        let hook = &c.hir.filters[0].hook;
        let mut checked = 0;
        for h in gen::trace(&rules, 600, 7 + k as u64) {
            let Some(p) = packet(&h) else { continue };
            let bytes = p.build().expect("packet");
            let want = expected(&rules, &h);
            let run = aya.test_run("cls", &bytes, 1).expect("test run");
            let got = testrun::verdict_of(hook, run.retval).map(driver::verdict_word);
            let direct_run = direct.test_run("cls", &bytes, 1).expect("test run");
            assert_eq!(direct_run.retval, run.retval, "{}: {h:?}", shape.name());
            let first = classify::reference(
                &rules,
                &Header {
                    family: classify::V4,
                    ..h
                },
            );
            assert_eq!(
                got,
                Some(want),
                "{}: header {h:?}, reference rule {first:?}",
                shape.name()
            );
            checked += 1;
        }
        assert!(
            checked > 500,
            "{}: only {checked} headers checked",
            shape.name()
        );
    }
}

mod run_support;

/// Runs in A: counts UDP datagrams to 10.99.0.1:PORT until its stdin closes (then what is
/// queued too), so a slow start of the sender under load loses nothing.
const RECEIVER: &str = r#"
import select, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("10.99.0.1", int(sys.argv[1])))
print("ready", flush=True)
n = 0
while True:
    r, _, _ = select.select([s, sys.stdin], [], [])
    if s in r:
        s.recv(2048); n += 1
    elif sys.stdin in r:
        s.setblocking(False)
        try:
            while True:
                s.recv(2048); n += 1
        except BlockingIOError:
            pass
        break
print(n, flush=True)
"#;

/// Sends 10 datagrams from B to A's `port`; returns how many arrived.
fn arrive(net: &run_support::NetPair, port: u16) -> u64 {
    arrive_while(net, port, || run_support::send_udp(net, port, 10))
}

/// Counts what arrives at A's `port` while `send` runs (and 200 ms after).
fn arrive_while(net: &run_support::NetPair, port: u16, send: impl FnOnce()) -> u64 {
    use std::io::BufRead;
    let mut rx = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &net.a,
            &run_support::python(),
            "-c",
            RECEIVER,
        ])
        .arg(port.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start receiver");
    let mut out = std::io::BufReader::new(rx.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("receiver ready");
    assert_eq!(line.trim(), "ready");
    send();
    std::thread::sleep(std::time::Duration::from_millis(200));
    drop(rx.stdin.take());
    line.clear();
    out.read_line(&mut line).expect("receiver count");
    let _ = rx.wait();
    line.trim().parse().expect("a count")
}

/// `pol ARGS` in namespace `ns`: (success, stdout, stderr).
fn pol_in(ns: &str, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net=/run/netns/{ns}"))
        .arg(env!("CARGO_BIN_EXE_pol"))
        .args(args)
        .output()
        .expect("run pol");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The id of the XDP program on `va` in `ns`.
fn xdp_prog_id(ns: &str) -> u64 {
    let (_, link) = run_support::ip(&["-n", ns, "-d", "link", "show", "dev", "va"]);
    link.split("prog/xdp id ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no XDP program on va: {link}"))
}

/// 40 conjunctive rules (the classifier takes 32 or more) that B's traffic to 5000 and
/// 5001 misses, and on line 22 (rule 20) one that drops B's traffic to 5002.
fn editable_filter(name: &str) -> String {
    let mut s = format!("filter {name} on xdp(\"va\") {{\n");
    for k in 0..40 {
        if k == 20 {
            s.push_str("    drop ip4 and udp and ip.src in 10.99.0.0/24 and udp.dport == 5002\n");
        } else {
            s.push_str(&format!(
                "    drop ip4 and udp and ip.src in 10.{k}.0.0/16 and udp.dport == {}\n",
                6000 + k
            ));
        }
    }
    s.push_str("    default pass\n}\n");
    s
}

/// `pol filter add|del` on a running `pol run` and on a loaded policy: B's traffic is
/// dropped after an add, arrives again after the del, a rule added after an earlier line
/// wins over it, a compiled rule deleted by its line stops dropping; the XDP program's id
/// never changes (no reload). Every refusal is a sentence.
#[test]
#[cfg_attr(
    pol_no_netns,
    ignore = "kernel test: needs root, bpf(), iproute2, util-linux, bpftool and python3, unavailable at build time (CI=true runs it)"
)]
fn filter_add_del_change_a_running_classifier_without_reload() {
    let mut run = Editable::start("fe", "fedit");
    let (net, ns, f, fl) = (
        &run.net,
        run.net.a.clone(),
        run.file.clone(),
        run.name.clone(),
    );
    let (ns, f, fl) = (ns.as_str(), f.as_str(), fl.as_str());
    let drop5000 = "drop ip4 and udp and ip.src in 10.99.0.0/24 and udp.dport == 5000";
    let pass5000 = "pass udp and ip.src == 10.99.0.2 and udp.dport in 4000..5000";
    assert_eq!(arrive(net, 5000), 10, "B's datagrams arrive before the add");
    assert_eq!(arrive(net, 5002), 0, "rule 20 drops B's datagrams to 5002");

    let out = filter_ok(ns, &["add", f, fl, drop5000]);
    assert!(
        out.contains("added `drop ip4") && out.contains("after line 41"),
        "{out}"
    );
    assert_eq!(arrive(net, 5000), 0, "dropped once the rule is added");
    assert_eq!(arrive(net, 5001), 10, "other ports still arrive");
    // After line 2 (rule 0): before the drop, so it wins.
    let out = filter_ok(ns, &["add", f, fl, pass5000, "--after", "2"]);
    assert!(out.contains("after line 2"), "{out}");
    assert_eq!(arrive(net, 5000), 10, "the earlier pass rule wins");
    filter_ok(ns, &["del", f, fl, pass5000]);
    assert_eq!(arrive(net, 5000), 0, "the drop decides again");
    filter_ok(ns, &["del", f, fl, drop5000]);
    assert_eq!(arrive(net, 5000), 10, "arrives again after the del");
    // A rule of the file, by its line.
    let out = filter_ok(ns, &["del", f, fl, "22"]);
    assert!(out.contains("deleted line 22"), "{out}");
    assert_eq!(arrive(net, 5002), 10, "rule 20 deleted");
    assert_eq!(xdp_prog_id(ns), run.id, "the program was never replaced");

    let not_a_rule = format!("is not a rule of filter `{fl}`");
    let cases: &[(&[&str], &str)] = &[
        (&["add", f, "nope", drop5000], "has no filter `nope`"),
        (
            &["add", f, fl, "drop udp or tcp"],
            "the classifier cannot hold `drop udp or tcp`",
        ),
        (&["add", f, fl, "drop ip.srx == 1.2.3.4"], &not_a_rule),
        (&["add", f, fl, drop5000, "--after", "1"], "line 1 of"),
        (&["del", f, fl, "22"], "is not in the running classifier"),
        (&["del", f, fl, drop5000], "tests exactly"),
    ];
    for (args, want) in cases {
        let err = filter_err(ns, args);
        assert!(err.contains(want), "{args:?}: {err}");
    }
    run.stop();

    // The same on a loaded policy, by its name.
    let net = &run.net;
    let name = format!("pol_fedit_{}", std::process::id());
    let _unload = run_support::Unload::new(&[&name]);
    let (ok, _, err) = pol_in(ns, &["load", f, "--name", &name]);
    assert!(ok, "{err}");
    let id = xdp_prog_id(ns);
    assert_eq!(arrive(net, 5000), 10);
    filter_ok(ns, &["add", &name, fl, drop5000]);
    assert_eq!(arrive(net, 5000), 0, "the policy drops after the add");
    filter_ok(ns, &["del", &name, fl, drop5000]);
    assert_eq!(arrive(net, 5000), 10, "and passes after the del");
    assert_eq!(
        xdp_prog_id(ns),
        id,
        "the policy's program was never replaced"
    );
    let (ok, _, err) = pol_in(ns, &["unload", &name]);
    assert!(ok, "{err}");
}

/// Runs in B: DATAGRAMS datagrams to 10.99.0.1:5003, a pause every 100.
const STREAM: &str = r#"
import socket, sys, time
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(int(sys.argv[1])):
    u.sendto(b"x" * 32, ("10.99.0.1", 5003))
    if i % 100 == 0:
        time.sleep(0.01)
"#;

/// `pol filter swap` under traffic: two rule sets of 900 rules more that each drop every
/// datagram B sends to port 5003 (with tables of different shapes) are swapped in 24 times
/// while B sends;
/// none arrives (a packet that saw half of each set would have missed both and passed),
/// and the rule the sets follow counted the drops. Then `pol filter add` works on the
/// swapped set, `del` says to swap instead, and a bad set is refused with its line.
#[test]
#[cfg_attr(
    pol_no_netns,
    ignore = "kernel test: needs root, bpf(), iproute2, util-linux, bpftool and python3, unavailable at build time (CI=true runs it)"
)]
fn filter_swap_switches_whole_rule_sets_under_traffic() {
    use std::time::Duration;
    let mut run = Editable::start("fs", "fswap");
    let (ns, f, fl) = (run.net.a.clone(), run.file.clone(), run.name.clone());
    let (ns, f, fl) = (ns.as_str(), f.as_str(), fl.as_str());
    let dir = run.dir.path().to_path_buf();
    // 900 rules B's traffic misses first (so a swap writes for a while), then the ones
    // that drop it.
    let a = dir.join("a.rules");
    let mut set_a = String::from("# set A: B's ports by ranges\n");
    for i in 0..900 {
        set_a.push_str(&format!(
            "drop udp and ip.src in 172.16.{}.{}/32 and udp.dport == {}\n",
            i / 250,
            i % 250,
            7000 + i % 500
        ));
    }
    set_a.push_str(
        "drop udp and ip.src == 10.99.0.2 and udp.dport in 5000..5004\n\
         drop ip4 and udp and ip.src in 10.99.0.0/24 and udp.dport in 5005..5009\n\
         pass udp and ip.src in 10.98.0.0/16 and udp.dport == 5003\n",
    );
    std::fs::write(&a, set_a).expect("write");
    let b = dir.join("b.rules");
    let mut set_b = String::from("# set B: one exact port a rule\n");
    for i in 0..900 {
        set_b.push_str(&format!(
            "drop tcp and ip.dst in 172.17.{}.0/24 and tcp.sport in 100..{}\n",
            i / 8,
            200 + i % 8
        ));
    }
    for p in 5000..5010 {
        set_b.push_str(&format!(
            "drop udp and ip.src in 10.99.0.0/16 and udp.dport == {p}\n"
        ));
    }
    std::fs::write(&b, set_b).expect("write");
    let (a, b) = (a.to_str().expect("utf-8"), b.to_str().expect("utf-8"));

    let net = &run.net;
    assert_eq!(
        arrive(net, 5003),
        10,
        "the file's rules pass B's datagrams to 5003"
    );
    let out = filter_ok(ns, &["swap", f, fl, a]);
    assert!(
        out.contains("swapped in 903 rules of") && out.contains("after line 41"),
        "{out}"
    );
    assert_eq!(arrive(net, 5003), 0, "set A drops them");
    assert_eq!(
        arrive(net, 5002),
        0,
        "set A drops what rule 20 of the file dropped"
    );

    const SENT: u64 = 20_000;
    let py = run_support::python();
    let got = arrive_while(net, 5003, || {
        let mut tx = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &net.b,
                &py,
                "-c",
                STREAM,
                &SENT.to_string(),
            ])
            .spawn()
            .expect("start sender");
        for k in 0..24 {
            let set = if k % 2 == 0 { b } else { a };
            let (ok, _, err) = pol_in(ns, &["filter", "swap", f, fl, set]);
            assert!(ok, "swap {k}: {err}");
        }
        let st = tx.wait().expect("sender");
        assert!(st.success(), "sender failed");
    });
    assert_eq!(
        got, 0,
        "a datagram arrived: some packet saw neither set whole"
    );
    // Rule 39, which both sets follow, counted the drops: each datagram that reached the
    // program (under load the veth's ring to XDP drops some before it; 20,000 go out in
    // bursts of 100), so a good share of them was decided during the swaps.
    // The counter lines queued since the start are read up to the live one (a line that
    // took a while to come), which counts everything sent.
    let mut counted = 0;
    for _ in 0..200 {
        let t = std::time::Instant::now();
        let Some(l) = run.pol().wait_for("\"counters\"", Duration::from_secs(2)) else {
            break;
        };
        counted = run_support::rule_packets(&run_support::json(&l), 39);
        if t.elapsed() > Duration::from_millis(250) {
            break;
        }
    }
    assert!(counted >= SENT / 4, "rule 39 counted {counted} of {SENT}");
    // Changes on top of a swapped set.
    let pass = "pass udp and ip.src == 10.99.0.2 and udp.dport == 5003";
    let net = &run.net;
    filter_ok(ns, &["add", f, fl, pass, "--after", "2"]);
    assert_eq!(arrive(net, 5003), 10, "a rule added before the set wins");
    let err = filter_err(ns, &["del", f, fl, "22"]);
    assert!(err.contains("swapped in by `pol filter swap`"), "{err}");
    let bad = dir.join("bad.rules");
    std::fs::write(&bad, "drop udp and udp.dport == 1\n\ndrop udp or tcp\n").expect("write");
    let bad = bad.to_str().expect("utf-8");
    let err = filter_err(ns, &["swap", f, fl, bad]);
    assert!(err.contains("bad.rules:3"), "{err}");
    assert_eq!(arrive(net, 5003), 10, "a refused swap changes nothing");
    assert_eq!(xdp_prog_id(ns), run.id, "the program was never replaced");
    run.stop();
}
