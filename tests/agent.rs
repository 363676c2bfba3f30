//! `pol agent --policies DIR`: two agents in two network namespaces ("nodes") fed from one
//! directory load it, follow a change, keep the last good version through a broken file
//! (reporting it), take the fix, and unload a removed file.

mod common;
mod run_support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{require_kernel, TempDir};
use run_support::*;

/// The agent tests run one at a time: each starts agents that load, replace and unload
/// host-wide policies, and run side by side they starved each other (a first load over
/// 30 s) on a loaded machine.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn version(port: u16) -> String {
    format!(
        "filter agent_edge on xdp(\"va\") {{\n    drop udp.dport == {port} count dropped\n    default pass\n}}\n"
    )
}

/// The status of policy `name` (None when it is not loaded), from the host namespace:
/// policies are host-wide.
fn status(name: &str) -> Option<serde_json::Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_pol"))
        .args(["status", "--json"])
        .output()
        .expect("pol status");
    if !out.status.success() {
        return None;
    }
    json(&String::from_utf8_lossy(&out.stdout))["policies"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)
        .cloned()
}

/// Waits until `pred` holds for both nodes' policies; returns how long it took. On
/// failure the agents' logs (`logs`) are in the message.
fn converge(
    what: &str,
    logs: &std::path::Path,
    pred: impl Fn(Option<&serde_json::Value>) -> bool,
) -> Duration {
    let t = Instant::now();
    let mut last = (None, None);
    while t.elapsed() < Duration::from_secs(30) {
        let id = std::process::id();
        let a = status(&format!("n1_{id}_agent_edge"));
        let b = status(&format!("n2_{id}_agent_edge"));
        if pred(a.as_ref()) && pred(b.as_ref()) {
            return t.elapsed();
        }
        last = (a, b);
        std::thread::sleep(Duration::from_millis(50));
    }
    let id = std::process::id();
    let log = |n: String| std::fs::read_to_string(logs.join(n)).unwrap_or_default();
    panic!(
        "the nodes did not converge ({what}): {last:?}\nagent n1:\n{}\nagent n2:\n{}",
        log(format!("n1_{id}_log")),
        log(format!("n2_{id}_log"))
    );
}

fn dropped_by_rule(p: Option<&serde_json::Value>) -> u64 {
    p.and_then(|p| p["counters"]["programs"][0]["rules"][0]["packets"].as_u64())
        .unwrap_or(0)
}

#[test]
#[cfg_attr(
    pol_no_netns,
    ignore = "kernel test: needs root, bpf(), iproute2, util-linux, bpftool and python3, unavailable at build time (CI=true runs it)"
)]
fn agents_on_two_nodes_follow_one_directory() {
    let _serial = serial();
    require_kernel();
    require_tools();
    // Policy names are host-wide: unique per test process (prefixes n1_PID_, n2_PID_).
    let id = std::process::id();
    let (p1, p2) = (format!("n1_{id}_"), format!("n2_{id}_"));
    let _unload = Unload::new(&[&format!("{p1}agent_edge"), &format!("{p2}agent_edge")]);
    let n1 = NetPair::new("g1");
    let n2 = NetPair::new("g2");
    let dir = TempDir::new("pol_agent");
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).expect("mkdir");
    let file = policies.join("agent_edge.pol");
    std::fs::write(&file, version(7001)).expect("write");
    std::fs::write(policies.join("README"), "not a policy\n").expect("write");
    let dir_s = policies.to_str().expect("utf-8");
    let start = |net: &NetPair, prefix: &str| {
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", net.a))
            .arg(env!("CARGO_BIN_EXE_pol"))
            .args([
                "agent",
                "--policies",
                dir_s,
                "--interval",
                "0.1",
                "--prefix",
                prefix,
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join(format!("{prefix}log"))).expect("log"))
            .spawn()
            .expect("pol agent")
    };
    let logs = dir.path();
    let a1 = start(&n1, &p1);
    let a2 = start(&n2, &p2);
    let loaded = converge("first load", logs, |p| {
        p.is_some_and(|p| p["generation"] == 0)
    });
    send_udp(&n1, 7001, 3);
    send_udp(&n2, 7001, 3);
    converge("v1 drops 7001", logs, |p| dropped_by_rule(p) == 3);

    // A change reaches both nodes, and the new version filters.
    std::thread::sleep(Duration::from_millis(20)); // a distinct mtime
    let changed = Instant::now();
    std::fs::write(&file, version(7002)).expect("write");
    converge("v2", logs, |p| p.is_some_and(|p| p["generation"] == 1));
    let to_new = changed.elapsed();
    send_udp(&n1, 7002, 4);
    send_udp(&n2, 7002, 4);
    converge("v2 drops 7002", logs, |p| dropped_by_rule(p) == 4);

    // A broken file: the loaded version stays, and says why.
    std::fs::write(
        &file,
        "filter agent_edge on xdp(\"va\") {\n    drop udp.dprt == 1\n",
    )
    .expect("write");
    converge("failure reported", logs, |p| {
        p.is_some_and(|p| p["generation"] == 1 && p["last_error"].is_string())
    });
    send_udp(&n1, 7002, 2);
    converge("v2 still filters on n1", logs, |p| {
        p.is_none_or(|p| p["name"] == format!("{p2}agent_edge").as_str()) || dropped_by_rule(p) == 6
    });

    // Fixed: both take it.
    std::fs::write(&file, version(7003)).expect("write");
    converge("v3", logs, |p| {
        p.is_some_and(|p| p["generation"] == 2 && p["last_error"].is_null())
    });

    // Removed: both unload.
    std::fs::remove_file(&file).expect("rm");
    converge("unloaded", logs, |p| p.is_none());
    for (mut a, log) in [(a1, format!("{p1}log")), (a2, format!("{p2}log"))] {
        let _ = Command::new("kill")
            .args(["-INT", &a.id().to_string()])
            .status();
        let status = a.wait().expect("agent");
        let err = std::fs::read_to_string(logs.join(&log)).unwrap_or_default();
        assert!(status.success(), "{err}");
        assert!(
            err.contains("update FAILED, the loaded version (if any) stays"),
            "{err}"
        );
        assert!(err.contains("its file is gone; unloaded"), "{err}");
    }
    assert_clean(&n1.a, "agent_edge");
    assert_clean(&n2.a, "agent_edge");
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!(
            "agent: first load on both nodes {:.0} ms, change to new version filtering {:.0} ms\n",
            loaded.as_secs_f64() * 1000.0,
            to_new.as_secs_f64() * 1000.0
        )
        .as_bytes(),
    );
}

/// Waits up to `secs` for `pred` on the status of policy `name`.
fn wait_for(name: &str, secs: u64, pred: impl Fn(Option<&serde_json::Value>) -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(secs) {
        if pred(status(name).as_ref()) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// One network pair with a second interface (`dm0`) in its first namespace (one filter
/// per hook, so two policies need two), and a policy directory: what the single-agent
/// tests share.
struct AgentSite {
    net: NetPair,
    dir: TempDir,
    policies: std::path::PathBuf,
}

impl AgentSite {
    fn new(tag: &str) -> AgentSite {
        let net = NetPair::new(tag);
        let (ok, out) = ip(&[
            "-n", &net.a, "link", "add", "dm0", "type", "veth", "peer", "name", "dm1",
        ]);
        assert!(ok, "{out}");
        let dir = TempDir::new(&format!("pol_agent_{tag}"));
        let policies = dir.path().join("policies");
        std::fs::create_dir_all(&policies).expect("mkdir");
        AgentSite { net, dir, policies }
    }

    fn log(&self) -> std::path::PathBuf {
        self.dir.path().join("log")
    }

    /// `pol agent` on the directory, inside the pair's first namespace; stderr to `log`.
    fn start(&self, interval: &str, prefix: &str) -> std::process::Child {
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.net.a))
            .arg(env!("CARGO_BIN_EXE_pol"))
            .args(["agent", "--policies"])
            .arg(&self.policies)
            .args(["--interval", interval, "--prefix", prefix])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.log()).expect("log"))
            .spawn()
            .expect("pol agent")
    }

    /// Stops an agent with SIGINT; asserts it exited cleanly; returns its log.
    fn stop(&self, mut a: std::process::Child) -> String {
        let _ = Command::new("kill")
            .args(["-INT", &a.id().to_string()])
            .status();
        let ok = a.wait().expect("agent").success();
        let log = std::fs::read_to_string(self.log()).unwrap_or_default();
        assert!(ok, "{log}");
        log
    }
}

/// A policy whose file was removed while no agent ran is unloaded by the next agent; and
/// a change reaches the policy at once (the directory is watched), long before the
/// agent's 60 s fallback look.
#[test]
#[cfg_attr(
    pol_no_netns,
    ignore = "kernel test: needs root, bpf(), iproute2, util-linux, bpftool and python3, unavailable at build time (CI=true runs it)"
)]
fn a_restarted_agent_unloads_files_removed_while_it_was_down_and_sees_changes_at_once() {
    let _serial = serial();
    require_kernel();
    require_tools();
    let id = std::process::id();
    let prefix = format!("r{id}_");
    let (keep, gone) = (format!("{prefix}agent_keep"), format!("{prefix}agent_gone"));
    let _unload = Unload::new(&[&keep, &gone]);
    let site = AgentSite::new("gr");
    let policies = &site.policies;
    let keep_file = policies.join("agent_keep.pol");
    std::fs::write(&keep_file, version(7001)).expect("write");
    std::fs::write(
        policies.join("agent_gone.pol"),
        "filter agent_gone on xdp(\"dm0\") {\n    drop udp.dport == 7009\n    default pass\n}\n",
    )
    .expect("write");
    let start = || site.start("60", &prefix);
    let stop = |a| site.stop(a);
    let a = start();
    let both = wait_for(&keep, 20, |p| p.is_some()) && wait_for(&gone, 20, |p| p.is_some());
    let err = stop(a);
    assert!(both, "both loaded: {err}");

    std::fs::remove_file(policies.join("agent_gone.pol")).expect("rm");
    let a = start();
    let unloaded = wait_for(&gone, 20, |p| p.is_none());
    // The first look, which unloaded `gone`, left the unchanged `keep` alone: not replaced.
    let kept = status(&keep).is_some_and(|p| p["generation"] == 0);
    std::thread::sleep(Duration::from_millis(20)); // a distinct mtime
    std::fs::write(&keep_file, version(7002)).expect("write");
    let changed = wait_for(&keep, 20, |p| p.is_some_and(|p| p["generation"] == 1));
    let err = stop(a);
    assert!(
        unloaded,
        "the file removed while no agent ran is unloaded: {err}"
    );
    assert!(
        kept,
        "the unchanged file stays loaded, not replaced by the restart: {err}"
    );
    assert!(changed, "the change is seen at once, not after 60 s: {err}");
    assert!(err.contains("watching it"), "{err}");
    assert!(
        err.contains("agent_gone: its file is gone; unloaded"),
        "{err}"
    );
}

/// Only what changed is replaced: a changed `file(..)` list replaces the policy that reads
/// it, and a changed `.pol` file only its own policy; the others of the directory keep
/// their version (one edit in a ConfigMap of many policies is not a reload of them all).
#[test]
#[cfg_attr(
    pol_no_netns,
    ignore = "kernel test: needs root, bpf(), iproute2, util-linux, bpftool and python3, unavailable at build time (CI=true runs it)"
)]
fn a_change_replaces_only_the_policy_whose_files_changed() {
    let _serial = serial();
    require_kernel();
    require_tools();
    let id = std::process::id();
    let prefix = format!("l{id}_");
    let (lists, other) = (
        format!("{prefix}agent_lists"),
        format!("{prefix}agent_other"),
    );
    let _unload = Unload::new(&[&lists, &other]);
    let site = AgentSite::new("gl");
    let policies = &site.policies;
    let blocked = policies.join("blocked.txt");
    std::fs::write(&blocked, "192.0.2.0/24\n").expect("write");
    std::fs::write(
        policies.join("agent_lists.pol"),
        "set blocked: cidr = file(\"blocked.txt\")\n\nfilter agent_lists on xdp(\"va\") {\n    drop ip.src in blocked\n    default pass\n}\n",
    )
    .expect("write");
    let other_file = policies.join("agent_other.pol");
    std::fs::write(
        &other_file,
        "filter agent_other on xdp(\"dm0\") {\n    drop udp.dport == 7009\n    default pass\n}\n",
    )
    .expect("write");
    let agent = site.start("0.1", &prefix);
    let gen = |n: u64| move |p: Option<&serde_json::Value>| p.is_some_and(|p| p["generation"] == n);
    let first = wait_for(&lists, 20, gen(0)) && wait_for(&other, 20, gen(0));

    // The list changes: its policy is replaced, the other is not.
    std::thread::sleep(Duration::from_millis(20)); // a distinct mtime
    std::fs::write(&blocked, "192.0.2.0/24\n198.51.100.0/24\n").expect("write");
    let list_seen = wait_for(&lists, 20, gen(1));
    let other_kept = status(&other).is_some_and(|p| p["generation"] == 0);

    // The other file changes: only it is replaced.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(
        &other_file,
        "filter agent_other on xdp(\"dm0\") {\n    drop udp.dport == 7010\n    default pass\n}\n",
    )
    .expect("write");
    let other_seen = wait_for(&other, 20, gen(1));
    // A look at the directory after the change has passed (the interval is 0.1 s).
    std::thread::sleep(Duration::from_millis(500));
    let lists_kept = status(&lists).is_some_and(|p| p["generation"] == 1);

    let err = site.stop(agent);
    assert!(first, "both loaded: {err}");
    assert!(list_seen, "a changed list replaces its policy: {err}");
    assert!(
        other_kept,
        "a policy that does not read the list is left alone: {err}"
    );
    assert!(other_seen, "a changed .pol file replaces its policy: {err}");
    assert!(lists_kept, "and only that one: {err}");
}
