//! The errors a `pol run` user meets, each a sentence that says what to do: not root or no
//! CAP_BPF, no such interface, bpffs not mounted (pol mounts it), another XDP program on the
//! interface (refused unless --replace), a file that does not compile. (A verifier rejection
//! cannot be produced from a valid file; its mapping to the rule is unit-tested in src/run.rs.)

mod common;
mod run_support;

use std::process::Command;
use std::time::Duration;

use common::{require_kernel, TempDir};
use run_support::*;

fn policy(name: &str, iface: &str) -> String {
    format!(
        "filter {name} on xdp(\"{iface}\") {{\n    drop udp.dport == 9999\n    default pass\n}}\n"
    )
}

/// Runs `pol run ARGS` through `wrapper` (a command prefix) and returns (success, stderr).
fn pol(wrapper: &[&str], args: &[&str]) -> (bool, String) {
    let mut all: Vec<&str> = wrapper.to_vec();
    all.push(env!("CARGO_BIN_EXE_pol"));
    all.push("run");
    all.extend_from_slice(args);
    let out = Command::new(all[0])
        .args(&all[1..])
        .output()
        .expect("run pol");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
#[cfg_attr(
    pol_no_netns,
    ignore = "kernel test: needs root, bpf(), iproute2, util-linux, bpftool and python3, unavailable at build time (CI=true runs it)"
)]
fn not_root_and_no_cap_bpf() {
    require_kernel();
    require_tools();
    common::require_tool("setpriv");
    let dir = TempDir::new("pol_run_root");
    let file = dir.path().join("f.pol");
    std::fs::write(&file, policy("err_root", "lo")).expect("write");
    let file = file.to_str().expect("path");
    let nobody = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ];
    let no_bpf = [
        "setpriv",
        "--inh-caps=-all",
        "--bounding-set=-bpf,-sys_admin",
    ];
    for wrapper in [&nobody[..], &no_bpf[..]] {
        let (ok, err) = pol(wrapper, &[file]);
        assert!(!ok, "{wrapper:?}: pol run must fail");
        assert!(
            err.contains("pol run needs root") && err.contains("run it with sudo"),
            "{wrapper:?}: {err}"
        );
    }
}

#[test]
#[cfg_attr(
    pol_no_netns,
    ignore = "kernel test: needs root, bpf(), iproute2, util-linux, bpftool and python3, unavailable at build time (CI=true runs it)"
)]
fn no_such_interface() {
    require_kernel();
    require_tools();
    let dir = TempDir::new("pol_run_noif");
    let file = dir.path().join("f.pol");
    std::fs::write(&file, policy("err_noif", "eth9pol")).expect("write");
    let file = file.to_str().expect("path");
    let (ok, err) = pol(&[], &[file]);
    assert!(!ok);
    assert!(
        err.contains("no interface `eth9pol` here (see `ip link`); use --iface"),
        "{err}"
    );
    let (ok, err) = pol(&[], &[file, "--iface", "nosuch0"]);
    assert!(!ok);
    assert!(err.contains("no interface `nosuch0` here"), "{err}");
}

#[test]
#[cfg_attr(
    pol_no_netns,
    ignore = "kernel test: needs root, bpf(), iproute2, util-linux, bpftool and python3, unavailable at build time (CI=true runs it)"
)]
fn bpffs_of_another_mount_namespace_is_used() {
    require_kernel();
    require_tools();
    common::require_tool("unshare");
    let net = NetPair::new("pb");
    let dir = TempDir::new("pol_run_bpffs");
    let file = dir.path().join("f.pol");
    std::fs::write(&file, policy("err_bpffs", "va")).expect("write");
    // A private mount namespace without bpffs at /sys/fs/bpf (as `ip netns exec` makes):
    // pol pins in the bpffs of an ancestor in another namespace instead of mounting a new,
    // private one; the host's stays mounted.
    let script = format!(
        "umount /sys/fs/bpf 2>/dev/null; umount /sys/fs/bpf 2>/dev/null; \
         if grep -q ' /sys/fs/bpf bpf ' /proc/self/mounts; then echo STILL-MOUNTED; exit 0; fi; \
         {} run {} --duration 0.2 && if grep -q ' /sys/fs/bpf bpf ' /proc/self/mounts; \
         then echo MOUNTED-HERE; else echo NOT-MOUNTED-HERE; fi",
        env!("CARGO_BIN_EXE_pol"),
        file.display()
    );
    let out = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", net.a))
        .args(["unshare", "--mount", "--propagation", "private", "sh", "-c"])
        .arg(&script)
        .output()
        .expect("run unshare");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stdout.contains("STILL-MOUNTED") {
        common::cannot_run("cannot unmount bpffs in a private mount namespace");
    }
    assert!(
        stderr.contains("this mount namespace has no BPF filesystem at /sys/fs/bpf"),
        "{stderr}"
    );
    assert!(stdout.contains("NOT-MOUNTED-HERE"), "{stdout}\n{stderr}");
    assert!(
        common::have("mountpoint")
            && Command::new("mountpoint")
                .args(["-q", "/sys/fs/bpf"])
                .status()
                .is_ok_and(|s| s.success()),
        "the host's bpffs must stay mounted"
    );
    assert_clean(&net.a, "err_bpffs");
}

#[test]
#[cfg_attr(
    pol_no_netns,
    ignore = "kernel test: needs root, bpf(), iproute2, util-linux, bpftool and python3, unavailable at build time (CI=true runs it)"
)]
fn another_xdp_program_is_refused_unless_replace() {
    require_kernel();
    require_tools();
    let net = NetPair::new("px");
    let dir = TempDir::new("pol_run_busy");
    // Someone else's program, attached through netlink by iproute2.
    let other = pol_compiler::driver::compile(&policy("other_xdp", "va")).expect("compiles");
    let obj = dir.path().join("other.o");
    std::fs::write(&obj, &other.object).expect("write object");
    let (ok, out) = ip(&[
        "-n",
        &net.a,
        "link",
        "set",
        "dev",
        "va",
        "xdpgeneric",
        "obj",
        obj.to_str().expect("path"),
        "sec",
        pol_compiler::driver::XDP_SECTION,
    ]);
    assert!(ok, "ip link set xdpgeneric: {out}");
    let file = dir.path().join("f.pol");
    std::fs::write(&file, policy("err_busy", "va")).expect("write");
    let file = file.to_str().expect("path");
    let ns = format!("--net=/run/netns/{}", net.a);
    let (ok, err) = pol(&["nsenter", &ns], &[file, "--duration", "0.2"]);
    assert!(!ok, "must refuse: {err}");
    assert!(
        err.contains("interface `va` already has an XDP program (id ")
            && err.contains("`other_xdp`")
            && err.contains("or run with --replace"),
        "{err}"
    );
    let (_, shown) = ip(&["-n", &net.a, "link", "show", "va"]);
    assert!(
        shown.contains("prog/xdp"),
        "the other program stays: {shown}"
    );

    let id = |shown: &str| {
        shown
            .split_whitespace()
            .skip_while(|w| *w != "id")
            .nth(1)
            .map(str::to_string)
    };
    let before = id(&shown);
    let (ok, err) = pol(&["nsenter", &ns], &[file, "--duration", "0.2", "--replace"]);
    assert!(ok, "--replace must work: {err}");
    assert!(
        err.contains("note: replaced XDP program") && err.contains("it is put back on exit"),
        "{err}"
    );
    assert!(err.contains("attached err_busy to va"), "{err}");
    // The replaced program is back, the same one (same id).
    let (_, shown) = ip(&["-n", &net.a, "link", "show", "va"]);
    assert!(before.is_some() && id(&shown) == before, "{shown}");
    let (ok, out) = ip(&[
        "-n",
        &net.a,
        "link",
        "set",
        "dev",
        "va",
        "xdpgeneric",
        "off",
    ]);
    assert!(ok, "{out}");
    assert_clean(&net.a, "err_busy");

    // Held by another pol run (a BPF link): refused with or without --replace.
    let mut holder = PolRun::start(&net.a, &[file, "--json"], &[]);
    assert!(holder
        .wait_for("\"attached\"", Duration::from_secs(30))
        .is_some());
    let (ok, err) = pol(&["nsenter", &ns], &[file, "--duration", "0.2"]);
    assert!(
        !ok && err.contains("XDP of `va` is already filtered by `pol run` (pid "),
        "{err}"
    );
    holder.signal("INT");
    let (ok, _, err) = holder.finish(Duration::from_secs(10));
    assert!(ok, "{err}");
    assert_clean(&net.a, "err_busy");
}

#[test]
fn compile_errors_and_bad_flags() {
    let dir = TempDir::new("pol_run_bad");
    let file = dir.path().join("bad.pol");
    std::fs::write(
        &file,
        "filter f on xdp(\"lo\") {\n    drop tcp.dprt == 23\n}\n",
    )
    .expect("write");
    let (ok, err) = pol(&[], &[file.to_str().expect("path")]);
    assert!(!ok);
    assert!(err.contains("error"), "{err}");
    let good = dir.path().join("good.pol");
    std::fs::write(&good, policy("err_flags", "lo")).expect("write");
    let (ok, err) = pol(&[], &[good.to_str().expect("path"), "--interval", "0"]);
    assert!(!ok && err.contains("--interval must be at least"), "{err}");
    let (ok, err) = pol(
        &[],
        &[dir.path().join("missing.pol").to_str().expect("path")],
    );
    assert!(!ok && err.contains("cannot read"), "{err}");
}
