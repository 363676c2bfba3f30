//! `pol load` / `pol status` / `pol unload`: a policy that outlives the process that
//! loaded it, counts real traffic, is replaced in place under traffic without a packet
//! slipping through or being dropped wrongly, and leaves nothing once unloaded.

mod common;
mod run_support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{require_kernel, TempDir};
use run_support::*;

/// `pol ARGS` inside network namespace `ns`; (success, stdout, stderr).
fn pol_in(ns: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new("nsenter")
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

fn status(ns: &str, name: &str) -> serde_json::Value {
    let (ok, out, err) = pol_in(ns, &["status", name, "--json"]);
    assert!(ok, "pol status: {err}");
    json(&out)["policies"][0].clone()
}

#[test]
#[cfg_attr(
    pol_no_netns,
    ignore = "kernel test: needs root, bpf(), iproute2, util-linux, bpftool and python3, unavailable at build time (CI=true runs it)"
)]
fn a_loaded_policy_filters_after_its_loader_exits_and_unload_leaves_nothing() {
    require_kernel();
    require_tools();
    // Policy names are host-wide: unique per test process, so concurrent test runs (other
    // worktrees) never touch each other's policies.
    let name = format!("pol_ld_{}", std::process::id());
    let other = format!("other_{}", std::process::id());
    let _unload = Unload::new(&[&name, &other]);
    let net = NetPair::new("pl");
    let dir = TempDir::new("pol_policy_load");
    let file = dir.path().join("pol_ld.pol");
    std::fs::write(
        &file,
        "filter pol_ld on xdp(\"va\") {\n    drop udp.dport == 9999   count dropped\n    default pass\n}\n",
    )
    .expect("write");
    let file = file.to_str().expect("utf-8 path");
    let (ok, _, err) = pol_in(&net.a, &["load", file, "--name", &name]);
    assert!(ok, "{err}");
    assert!(err.contains(&format!("loaded policy `{name}`")), "{err}");
    // The loading process is gone; the program stays attached through its pinned link.
    let (_, link) = ip(&["-n", &net.a, "link", "show", "va"]);
    assert!(link.contains("prog/xdp"), "{link}");
    send_udp(&net, 9999, 5);
    send_udp(&net, 5555, 2);
    let s = status(&net.a, &name);
    assert_eq!(
        s["counters"]["programs"][0]["rules"][0]["packets"], 5,
        "{s}"
    );
    assert_eq!(s["counters"]["counts"][0]["total"], 5, "{s}");
    assert!(
        s["programs"][0]["prog_id"]
            .as_u64()
            .is_some_and(|id| id > 0),
        "{s}"
    );
    assert!(s["maps"].as_array().is_some_and(|m| m.len() == 2), "{s}");
    // Counters keep moving with later traffic, read by a later process.
    send_udp(&net, 9999, 3);
    let s = status(&net.a, &name);
    assert_eq!(s["counters"]["counts"][0]["total"], 8, "{s}");
    // Text form too, from another network namespace (policies are host-wide).
    let (ok, out, err) = pol_in(&net.b, &["status"]);
    assert!(
        ok && out.contains(&format!("policy {name}")) && out.contains("pol_ld on va"),
        "{out}{err}"
    );

    // Its hook is taken: neither a `pol run` nor another policy may share it.
    let (ok, _, err) = pol_in(&net.a, &["run", file, "--duration", "0.1"]);
    assert!(
        !ok && err.contains(&format!(
            "XDP of `va` is used by the loaded policy `{name}`"
        )),
        "{err}"
    );
    let (ok, _, err) = pol_in(&net.a, &["load", file, "--name", &other]);
    assert!(
        !ok && err.contains(&format!("used by the loaded policy `{name}`")),
        "{err}"
    );

    let (ok, _, err) = pol_in(&net.a, &["unload", &name]);
    assert!(
        ok && err.contains(&format!("unloaded policy `{name}`")),
        "{err}"
    );
    assert_clean(&net.a, "pol_ld");
    assert!(!std::path::Path::new(&format!("/run/pol/policies/{name}.json")).exists());
    let (ok, _, err) = pol_in(&net.a, &["unload", &name]);
    assert!(
        !ok && err.contains(&format!("no policy `{name}` is loaded")),
        "{err}"
    );
    // The hook is free again.
    let (ok, _, err) = pol_in(&net.a, &["run", file, "--duration", "0.1"]);
    assert!(ok, "{err}");
    assert_clean(&net.a, "pol_ld");
}

/// A filter whose conjunctive rules went to the multi-field classifier (its `bpf_loop`
/// callback is a subprogram, which the kernel takes only with BTF func_info) loads as a
/// policy, decides real traffic by its first matching rule, and unloads clean.
#[test]
#[cfg_attr(
    pol_no_netns,
    ignore = "kernel test: needs root, bpf(), iproute2, util-linux, bpftool and python3, unavailable at build time (CI=true runs it)"
)]
fn a_classifier_filter_loads_as_a_policy() {
    require_kernel();
    require_tools();
    let name = format!("pol_cls_{}", std::process::id());
    let _unload = Unload::new(&[&name]);
    let net = NetPair::new("pc");
    let dir = TempDir::new("pol_policy_cls");
    let file = dir.path().join("pol_cls.pol");
    // 40 conjunctive rules (the classifier takes 32 or more); only the last matches B.
    let mut rules: String = (0..39)
        .map(|i| {
            format!(
                "    drop udp and ip.src in 10.{i}.0.0/16 and udp.dport in 9000..{}\n",
                9001 + i
            )
        })
        .collect();
    rules.push_str("    drop udp and ip.src in 10.99.0.0/24 and udp.dport in 9990..9999\n");
    std::fs::write(
        &file,
        format!("filter pol_cls on xdp(\"va\") {{\n{rules}    default pass\n}}\n"),
    )
    .expect("write");
    let file = file.to_str().expect("utf-8 path");
    let (ok, out, err) = pol_in(&net.a, &["build", file, "--explain", "-o", "/dev/null"]);
    assert!(
        ok && format!("{out}{err}").contains("-> classifier"),
        "{out}{err}"
    );
    let (ok, _, err) = pol_in(&net.a, &["load", file, "--name", &name]);
    assert!(ok, "{err}");
    send_udp(&net, 9995, 5);
    send_udp(&net, 5555, 2);
    let s = status(&net.a, &name);
    assert_eq!(rule_packets(&s["counters"], 39), 5, "{s}");
    assert_eq!(rule_packets(&s["counters"], 0), 0, "{s}");
    let (ok, _, err) = pol_in(&net.a, &["unload", &name]);
    assert!(ok, "{err}");
    assert_clean(&net.a, "pol_cls");
}

/// Runs in A: counts datagrams per port until stdin closes, then prints `port count` lines.
const COUNTER: &str = r#"
import socket, sys, select
socks = {}
for p in (7001, 7002, 7003, 7004):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind(("10.99.0.1", p)); s.setblocking(False); socks[s] = p
got = {p: 0 for p in socks.values()}
print("ready", flush=True)
done = False
while True:
    r, _, _ = select.select(list(socks) + ([] if done else [sys.stdin]), [], [], 0.3)
    if not r and done:
        break
    for s in r:
        if s is sys.stdin:
            sys.stdin.read(); done = True
            continue
        while True:
            try:
                s.recv(2048); got[socks[s]] += 1
            except BlockingIOError:
                break
for p, n in sorted(got.items()):
    print(p, n, flush=True)
"#;

/// Runs in B: sends to ports 7001..7004 in turn, paced, until stdin closes; prints how many
/// went to each port.
const SENDER: &str = r#"
import socket, sys, select, time
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sent = {7001: 0, 7002: 0, 7003: 0, 7004: 0}
print("ready", flush=True)
while not select.select([sys.stdin], [], [], 0)[0]:
    for p in sent:
        u.sendto(b"x" * 32, ("10.99.0.1", p)); sent[p] += 1
    time.sleep(0.001)
for p, n in sorted(sent.items()):
    print(p, n, flush=True)
"#;

fn helper(ns: &str, script: &str) -> std::process::Child {
    let mut c = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{ns}"))
        .args([&python(), "-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start python");
    let mut first = String::new();
    BufReader::new(c.stdout.as_mut().expect("stdout"))
        .read_line(&mut first)
        .expect("read");
    assert_eq!(first.trim(), "ready");
    c
}

/// Closes the helper's stdin and returns its `port count` lines.
fn counts(mut c: std::process::Child) -> std::collections::BTreeMap<u16, u64> {
    drop(c.stdin.take());
    let out = c.wait_with_output().expect("wait");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (p, n) = l.split_once(' ')?;
            Some((p.parse().ok()?, n.parse().ok()?))
        })
        .collect()
}

#[test]
#[cfg_attr(
    pol_no_netns,
    ignore = "kernel test: needs root, bpf(), iproute2, util-linux, bpftool and python3, unavailable at build time (CI=true runs it)"
)]
fn replacing_under_traffic_a_hundred_times_leaks_nothing() {
    require_kernel();
    require_tools();
    let name = format!("pol_rp_{}", std::process::id());
    let _unload = Unload::new(&[&name]);
    let net = NetPair::new("pr");
    let dir = TempDir::new("pol_policy_replace");
    // Both versions drop 7001 and pass 7004; they disagree on 7002 and 7003.
    let v = |extra: u16| {
        format!(
            "filter pol_rp on xdp(\"va\") {{\n    drop udp.dport == 7001 count both\n    \
             drop udp.dport == {extra}\n    default pass\n}}\n"
        )
    };
    let (v1, v2) = (dir.path().join("v1.pol"), dir.path().join("v2.pol"));
    std::fs::write(&v1, v(7002)).expect("write");
    std::fs::write(&v2, v(7003)).expect("write");
    let (v1, v2) = (v1.to_str().expect("utf-8"), v2.to_str().expect("utf-8"));
    let (ok, _, err) = pol_in(&net.a, &["load", v1, "--name", &name]);
    assert!(ok, "{err}");
    let counter = helper(&net.a, COUNTER);
    let sender = helper(&net.b, SENDER);
    let mut switch_ms = Vec::new();
    for i in 0..100 {
        let file = if i % 2 == 0 { v2 } else { v1 };
        let (ok, _, err) = pol_in(&net.a, &["load", file, "--name", &name]);
        assert!(ok, "replacement {i}: {err}");
        assert!(err.contains("counters carried: both"), "{err}");
        if let Some(ms) = err
            .split("switch ")
            .nth(1)
            .and_then(|r| r.split(" ms").next())
            .and_then(|m| m.parse::<f64>().ok())
        {
            switch_ms.push(ms);
        }
    }
    let sent = counts(sender);
    std::thread::sleep(Duration::from_millis(200));
    let got = counts(counter);
    let s = status(&net.a, &name);
    assert_eq!(s["generation"], 100, "{s}");
    let (ok, _, err) = pol_in(&net.a, &["unload", &name]);
    assert!(ok, "{err}");
    assert_clean(&net.a, "pol_rp");
    switch_ms.sort_by(f64::total_cmp);
    let median = switch_ms.get(switch_ms.len() / 2).copied().unwrap_or(0.0);
    let _ = writeln!(
        std::io::stderr(),
        "sent {sent:?}, received {got:?}, link switch median {median:.3} ms"
    );
    assert!(sent[&7001] > 1000 && sent[&7004] > 1000, "{sent:?}");
    assert_eq!(got[&7001], 0, "a packet both versions drop passed: {got:?}");
    assert_eq!(
        got[&7004], sent[&7004],
        "a packet both versions pass was lost: sent {sent:?}, received {got:?}"
    );
    // Counters carried over every replacement: `both` saw every 7001 datagram.
    assert_eq!(s["counters"]["counts"][0]["total"], sent[&7001], "{s}");
}

#[test]
#[cfg_attr(
    pol_no_netns,
    ignore = "kernel test: needs root, bpf(), iproute2, util-linux, bpftool and python3, unavailable at build time (CI=true runs it)"
)]
fn a_policy_whose_interface_is_gone_is_loaded_afresh() {
    require_kernel();
    require_tools();
    let name = format!("pol_gone_{}", std::process::id());
    let _unload = Unload::new(&[&name]);
    let dir = TempDir::new("pol_policy_gone");
    let file = dir.path().join("pol_gone.pol");
    std::fs::write(
        &file,
        "filter pol_gone on xdp(\"va\") {\n    drop udp.dport == 9999\n    default pass\n}\n",
    )
    .expect("write");
    let file = file.to_str().expect("utf-8 path");
    {
        let first = NetPair::new("pg");
        let (ok, _, err) = pol_in(&first.a, &["load", file, "--name", &name]);
        assert!(ok, "{err}");
    } // its namespaces are deleted: the kernel severs the policy's link
    let net = NetPair::new("ph");
    let (ok, _, err) = pol_in(&net.a, &["load", file, "--name", &name]);
    assert!(
        ok && err.contains("lost its interface")
            && err.contains(&format!("loaded policy `{name}`")),
        "{err}"
    );
    let s = status(&net.a, &name);
    assert_eq!(s["generation"], 0, "{s}");
    let (_, link) = ip(&["-n", &net.a, "link", "show", "va"]);
    assert!(link.contains("prog/xdp"), "{link}");
    let (ok, _, err) = pol_in(&net.a, &["unload", &name]);
    assert!(ok, "{err}");
    assert_clean(&net.a, "pol_gone");
}

/// A policy's set changed with `pol set` (by policy name and by file) keeps those changes
/// across a replacement by a new version of its file; `--reset-sets` drops them.
#[test]
#[cfg_attr(
    pol_no_netns,
    ignore = "kernel test: needs root, bpf(), iproute2, util-linux, bpftool and python3, unavailable at build time (CI=true runs it)"
)]
fn set_changes_to_a_loaded_policy_survive_its_replacement() {
    require_kernel();
    require_tools();
    let name = format!("pol_sets_{}", std::process::id());
    let _unload = Unload::new(&[&name]);
    let net = NetPair::new("ps");
    let dir = TempDir::new("pol_policy_sets");
    let file = dir.path().join("pol_sets.pol");
    let v1 = "set ports: port = { 9001, 9002, 9003, 9004, 9005, 9006, 9007, 9008, 9009 }\n\n\
              filter pol_sets on xdp(\"va\") {\n    drop udp.dport in ports   count dropped\n    default pass\n}\n";
    std::fs::write(&file, v1).expect("write");
    let file = file.to_str().expect("utf-8 path");
    let dropped = |ns: &str| status(ns, &name)["counters"]["counts"][0]["total"].clone();
    let (ok, _, err) = pol_in(&net.a, &["load", file, "--name", &name]);
    assert!(ok, "{err}");

    let (ok, out, err) = pol_in(&net.a, &["set", "add", &name, "ports", "7001"]);
    assert!(ok && out.contains("added 7001 to ports"), "{out}{err}");
    let (ok, out, err) = pol_in(&net.a, &["set", "del", file, "ports", "9001"]);
    assert!(ok && out.contains("deleted 9001 from ports"), "{out}{err}");
    send_udp(&net, 7001, 3);
    send_udp(&net, 9001, 2);
    assert_eq!(dropped(&net.a), 3);

    // A new version of the file (one more rule): the changes are replayed before it filters.
    let v2 = v1.replace(
        "    default pass",
        "    drop udp.dport == 5555\n    default pass",
    );
    std::fs::write(file, &v2).expect("write v2");
    let (ok, _, err) = pol_in(&net.a, &["load", file, "--name", &name]);
    assert!(
        ok && err.contains("`pol set` changes replayed: ports (1 added, 1 deleted)"),
        "{err}"
    );
    send_udp(&net, 7001, 2);
    send_udp(&net, 9001, 2);
    assert_eq!(dropped(&net.a), 5, "7001 still dropped, 9001 still passes");
    let (ok, out, err) = pol_in(&net.a, &["set", "list", &name, "ports"]);
    assert!(
        ok && out.lines().any(|l| l == "7001") && !out.lines().any(|l| l == "9001"),
        "{out}{err}"
    );

    // `--reset-sets`: the sets as the file says.
    let (ok, _, err) = pol_in(&net.a, &["load", file, "--name", &name, "--reset-sets"]);
    assert!(ok && !err.contains("replayed"), "{err}");
    send_udp(&net, 7001, 2);
    send_udp(&net, 9001, 1);
    assert_eq!(
        dropped(&net.a),
        6,
        "7001 passes again, 9001 is dropped again"
    );
    let (ok, out, err) = pol_in(&net.a, &["set", "list", &name, "ports"]);
    assert!(
        ok && !out.lines().any(|l| l == "7001") && out.lines().any(|l| l == "9001"),
        "{out}{err}"
    );

    // Neither a file nor a policy: one sentence.
    let (ok, _, err) = pol_in(&net.a, &["set", "list", "no_such_policy_here", "ports"]);
    assert!(
        !ok && err.contains("is neither a .pol file nor a loaded policy"),
        "{err}"
    );
    let (ok, _, err) = pol_in(&net.a, &["unload", &name]);
    assert!(ok, "{err}");
    assert_clean(&net.a, "pol_sets");
}

/// A replacement whose second link cannot switch puts the first back: the old version
/// keeps filtering on both interfaces, and its record is unchanged. The failure is forced
/// by re-pinning the second filter's program pin to another program, so the guarded
/// `BPF_LINK_UPDATE` (expected old program) is refused by the kernel.
#[test]
#[cfg_attr(
    pol_no_netns,
    ignore = "kernel test: needs root, bpf(), iproute2, util-linux, bpftool and python3, unavailable at build time (CI=true runs it)"
)]
fn a_replacement_that_cannot_switch_every_link_rolls_back() {
    require_kernel();
    require_tools();
    let name = format!("pol_rb_{}", std::process::id());
    let _unload = Unload::new(&[&name]);
    let net = NetPair::new("pb");
    // A second interface in A (a veth pair inside it: this kernel has no dummy driver).
    let (ok, out) = ip(&[
        "-n", &net.a, "link", "add", "dm0", "type", "veth", "peer", "name", "dm1",
    ]);
    assert!(ok, "{out}");
    for i in ["dm0", "dm1"] {
        let (ok, out) = ip(&["-n", &net.a, "link", "set", i, "up"]);
        assert!(ok, "{out}");
    }
    let dir = TempDir::new("pol_policy_rb");
    let file = dir.path().join("pol_rb.pol");
    let v1 = "filter rb_a on xdp(\"va\") {\n    drop udp.dport == 9999   count dropped\n    default pass\n}\n\n\
              filter rb_b on xdp(\"dm0\") {\n    drop udp.dport == 9999\n    default pass\n}\n";
    std::fs::write(&file, v1).expect("write");
    let file = file.to_str().expect("utf-8 path");
    let (ok, _, err) = pol_in(&net.a, &["load", file, "--name", &name]);
    assert!(ok, "{err}");
    let before = status(&net.a, &name);
    let prog_id = |s: &serde_json::Value, p: &str| {
        s["programs"]
            .as_array()
            .and_then(|ps| ps.iter().find(|x| x["name"] == p))
            .and_then(|x| x["prog_id"].as_u64())
            .unwrap_or_else(|| panic!("no program {p} in {s}"))
    };
    let (a_id, b_id) = (prog_id(&before, "rb_a"), prog_id(&before, "rb_b"));

    // rb_b's program pin now names rb_a's program: the switch of rb_b, guarded by the
    // program the pin names, must fail; rb_a (switched first) must be switched back.
    let pin = format!("/sys/fs/bpf/pol/{name}/prog_rb_b");
    std::fs::remove_file(&pin).expect("remove pin");
    let out = sh("bpftool", &["prog", "pin", "id", &a_id.to_string(), &pin]);
    assert!(
        std::path::Path::new(&pin).exists(),
        "bpftool prog pin: {out}"
    );

    std::fs::write(file, v1.replace("9999", "8888")).expect("write v2");
    let (ok, _, err) = pol_in(&net.a, &["load", file, "--name", &name]);
    assert!(
        !ok && err.contains("cannot switch filter `rb_b`")
            && err.contains("the programs already switched were switched back"),
        "{err}"
    );
    let after = status(&net.a, &name);
    assert_eq!(after["generation"], 0, "{after}");
    let (_, link) = ip(&["-n", &net.a, "link", "show", "va"]);
    assert!(
        link.contains(&format!("prog/xdp id {a_id}")),
        "va runs the old rb_a: {link}"
    );
    let (_, link) = ip(&["-n", &net.a, "link", "show", "dm0"]);
    assert!(
        link.contains(&format!("id {b_id}")),
        "dm0 runs the old rb_b: {link}"
    );
    // The old version decides: 9999 is dropped and counted, 8888 is not.
    send_udp(&net, 9999, 3);
    send_udp(&net, 8888, 2);
    assert_eq!(status(&net.a, &name)["counters"]["counts"][0]["total"], 3);

    let (ok, _, err) = pol_in(&net.a, &["unload", &name]);
    assert!(ok, "{err}");
    assert_clean(&net.a, "rb_a");
}
