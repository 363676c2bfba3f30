//! `pol run`'s lifecycle in every attach mode (XDP link, TCX link, netlink clsact filter):
//! every signal that ends a process detaches and removes everything; what a SIGKILL leaves
//! is removed by the next run on the hook; two runs never share a hook.

mod common;
mod run_support;

use std::time::Duration;

use common::{require_kernel, TempDir};
use run_support::*;

/// The attach modes: (name, hook in the file, extra `pol run` flags).
const MODES: [(&str, &str, &[&str]); 3] = [
    ("xdp", "xdp(\"va\")", &[]),
    ("tcx", "tc(\"va\", ingress)", &["--tc-mode", "auto"]),
    ("netlink", "tc(\"va\", ingress)", &["--tc-mode", "netlink"]),
];

/// A filter with a set of more than 8 elements, so its map is pinned (and must go too).
fn policy(name: &str, hook: &str) -> String {
    format!(
        "set s_{name}: ip4 = {{ 192.0.2.1, 192.0.2.2, 192.0.2.3, 192.0.2.4, 192.0.2.5, \
         192.0.2.6, 192.0.2.7, 192.0.2.8, 192.0.2.9 }}\n\
         filter {name} on {hook} {{\n    drop ip.src in s_{name}\n    default pass\n}}\n"
    )
}

fn start(ns: &str, file: &str, flags: &[&str]) -> PolRun {
    let mut args = vec![file, "--json", "--interval", "0.1"];
    args.extend_from_slice(flags);
    let mut pol = PolRun::start(ns, &args, &[]);
    if pol
        .wait_for("\"attached\"", Duration::from_secs(30))
        .is_none()
    {
        let (_, lines, err) = pol.finish(Duration::from_secs(5));
        panic!("pol run did not attach:\nstdout: {lines:?}\nstderr: {err}");
    }
    pol
}

fn tc_filters(ns: &str) -> String {
    sh("tc", &["-n", ns, "filter", "show", "dev", "va", "ingress"])
}

#[test]
#[cfg_attr(
    pol_no_netns,
    ignore = "kernel test: needs root, bpf(), iproute2, util-linux, bpftool and python3, unavailable at build time (CI=true runs it)"
)]
fn every_ending_signal_detaches_in_every_mode() {
    require_kernel();
    require_tools();
    let net = NetPair::new("ls");
    let dir = TempDir::new("pol_lifecycle_sig");
    for (mode, hook, flags) in MODES {
        let name = format!("lc_sig_{mode}");
        let file = dir.path().join(format!("{name}.pol"));
        std::fs::write(&file, policy(&name, hook)).expect("write");
        let file = file.to_str().expect("utf-8 path");
        for sig in ["INT", "TERM", "HUP", "QUIT", "PIPE"] {
            let mut pol = start(&net.a, file, flags);
            assert!(
                !claims_of(&name).is_empty(),
                "{mode}: a running pol run claims its hook"
            );
            // A counters line, so the signal lands in the loop.
            assert!(pol
                .wait_for("\"counters\"", Duration::from_secs(10))
                .is_some());
            pol.signal(sig);
            let (ok, lines, err) = pol.finish(Duration::from_secs(10));
            assert!(ok, "{mode} SIG{sig}: pol run failed: {err}");
            assert!(
                lines.iter().any(|l| l.contains("\"final\"")) && err.contains("detached"),
                "{mode} SIG{sig}: {lines:?}\n{err}"
            );
            assert_clean(&net.a, &name);
        }
    }
}

#[test]
#[cfg_attr(
    pol_no_netns,
    ignore = "kernel test: needs root, bpf(), iproute2, util-linux, bpftool and python3, unavailable at build time (CI=true runs it)"
)]
fn what_a_sigkill_leaves_the_next_run_removes() {
    require_kernel();
    require_tools();
    let net = NetPair::new("lk");
    let dir = TempDir::new("pol_lifecycle_kill");
    for (mode, hook, flags) in MODES {
        let name = format!("lc_kill_{mode}");
        let file = dir.path().join(format!("{name}.pol"));
        std::fs::write(&file, policy(&name, hook)).expect("write");
        let file = file.to_str().expect("utf-8 path");
        let first = start(&net.a, file, flags);
        let pid = first.child.id();
        first.signal("KILL");
        let _ = first.finish(Duration::from_secs(10));
        let left = tc_filters(&net.a);
        if mode == "netlink" {
            // The one thing the kernel does not remove with the process, tagged as pol's.
            assert!(
                left.contains(&name) && left.contains("pref 28783") && left.contains("0x706f6c"),
                "a SIGKILL leaves the netlink filter: {left}"
            );
        } else {
            assert!(!left.contains(&name), "{mode}: links die with the process");
        }
        let second = start(&net.a, file, flags);
        let filters = tc_filters(&net.a);
        assert_eq!(
            filters.matches(&format!("name {name}")).count(),
            usize::from(mode == "netlink"), // TCX links are not tc filters
            "{mode}: only the new run's filter: {filters}"
        );
        second.signal("INT");
        let (ok, _, err) = second.finish(Duration::from_secs(10));
        assert!(ok, "{err}");
        if mode == "netlink" {
            assert!(
                err.contains(&format!(
                    "removed the tc filter `{name}` that a killed `pol run` of {file} (pid {pid}) left on tc ingress of `va`"
                )) && err.contains("removed the clsact qdisc that a killed `pol run`"),
                "{err}"
            );
        }
        // Swept by the second run, or by any other `pol run` starting meanwhile.
        let stale = format!("/sys/fs/bpf/pol/{name}-{pid}");
        assert!(
            !std::path::Path::new(&stale).exists(),
            "{mode}: {stale} left"
        );
        assert_clean(&net.a, &name);
    }
}

#[test]
#[cfg_attr(
    pol_no_netns,
    ignore = "kernel test: needs root, bpf(), iproute2, util-linux, bpftool and python3, unavailable at build time (CI=true runs it)"
)]
fn two_runs_never_share_a_hook() {
    require_kernel();
    require_tools();
    let net = NetPair::new("l2");
    let dir = TempDir::new("pol_lifecycle_share");
    for (mode, hook, flags) in MODES {
        let name = format!("lc_two_{mode}");
        let file = dir.path().join(format!("{name}.pol"));
        std::fs::write(&file, policy(&name, hook)).expect("write");
        let file = file.to_str().expect("utf-8 path");
        let first = start(&net.a, file, flags);
        let mut args = vec![file, "--duration", "0.2"];
        args.extend_from_slice(flags);
        let second = PolRun::start(&net.a, &args, &[]);
        let (ok, _, err) = second.finish(Duration::from_secs(10));
        let what = if mode == "xdp" { "XDP" } else { "tc ingress" };
        assert!(
            !ok && err.contains(&format!(
                "{what} of `va` is already filtered by `pol run` (pid {}, {file}, filter `{name}`)",
                first.child.id()
            )),
            "{mode}: {err}"
        );
        // The first run is untouched: still attached, one filter.
        if mode == "netlink" {
            let filters = tc_filters(&net.a);
            assert_eq!(
                filters.matches(&format!("name {name}")).count(),
                1,
                "{filters}"
            );
        }
        first.signal("INT");
        let (ok, _, err) = first.finish(Duration::from_secs(10));
        assert!(ok, "{err}");
        assert_clean(&net.a, &name);
    }
}

#[test]
#[cfg_attr(
    pol_no_netns,
    ignore = "kernel test: needs root, bpf(), iproute2, util-linux, bpftool and python3, unavailable at build time (CI=true runs it)"
)]
fn ip_netns_exec_pins_where_pol_set_finds_them() {
    require_kernel();
    require_tools();
    let net = NetPair::new("le");
    let dir = TempDir::new("pol_lifecycle_netns_exec");
    let name = "lc_exec";
    let file = dir.path().join(format!("{name}.pol"));
    std::fs::write(&file, policy(name, "xdp(\"va\")")).expect("write");
    let file = file.to_str().expect("utf-8 path");
    // `ip netns exec` remounts /sys in a private mount namespace: no bpffs there.
    let child = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &net.a,
            env!("CARGO_BIN_EXE_pol"),
            "run",
            file,
        ])
        .args(["--duration", "20", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ip netns exec pol run");
    let pid = child.id();
    let pins = format!("/sys/fs/bpf/pol/{name}-{pid}");
    let mut seen = false;
    for _ in 0..200 {
        if std::path::Path::new(&pins).exists() {
            seen = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // From outside that namespace, `pol set` finds the run and its set.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pol"))
        .args(["set", "list", file, &format!("s_{name}")])
        .output()
        .expect("pol set");
    let _ = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status();
    let done = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&done.stderr);
    assert!(seen, "no pins at {pins} in the host's bpffs: {err}");
    assert!(
        err.contains("this mount namespace has no BPF filesystem at /sys/fs/bpf")
            && err.contains(&format!("set maps pinned under {pins}")),
        "{err}"
    );
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && listed.lines().count() == 9,
        "{listed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(done.status.success(), "{err}");
    assert_clean(&net.a, name);
}
