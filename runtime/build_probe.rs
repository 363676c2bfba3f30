//! Build-time probe, shared by the build scripts of the root package and the runtime:
//! which kernel tests can run on this machine, so those that cannot are compiled with
//! `#[ignore = "reason"]` and `cargo test` reports them as ignored, never as passed.
//!
//! Each `cfg` names what is missing; a test carries
//! `#[cfg_attr(pol_no_bpf, ignore = "...")]` (or `pol_no_bpftool`, `pol_no_netns`,
//! `pol_no_prometheus`, and `pol_no_kubernetes_validate` for the manifests' schema check).
//! Under `CI=true` no cfg is set: every kernel test runs and fails if it cannot.
//! The concrete reason (uid, errno, missing tool) is printed as a cargo warning.

use std::path::Path;

/// The cfgs this probe may set, declared for `unexpected_cfgs`.
const CFGS: [&str; 5] = [
    "pol_no_bpf",
    "pol_no_bpftool",
    "pol_no_netns",
    "pol_no_prometheus",
    "pol_no_kubernetes_validate",
];

/// Tools the `pol run` netns tests drive (iproute2, util-linux, bpftool, python3, and
/// ethtool for the real-traffic tests' offloads).
const NETNS_TOOLS: [&str; 10] = [
    "ethtool",
    "ip",
    "tc",
    "nsenter",
    "unshare",
    "setpriv",
    "mountpoint",
    "bpftool",
    "python3",
    "kill",
];

pub fn probe() {
    for c in CFGS {
        println!("cargo::rustc-check-cfg=cfg({c})");
    }
    // Re-probe when the user, CI mode or installed tools change.
    for v in ["CI", "USER", "SUDO_UID", "PATH"] {
        println!("cargo::rerun-if-env-changed={v}");
    }
    for d in ["/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"] {
        if Path::new(d).is_dir() {
            println!("cargo::rerun-if-changed={d}");
        }
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        return;
    }
    let bpf = bpf_works();
    let missing = |tools: &[&str]| -> Vec<String> {
        tools
            .iter()
            .filter(|t| !on_path(t))
            .map(|t| t.to_string())
            .collect()
    };
    let skip = |cfg: &str, why: Option<String>| {
        if let Some(why) = why {
            println!("cargo::rustc-cfg={cfg}");
            println!("cargo::warning=kernel tests marked {cfg} are ignored: {why}");
        }
    };
    skip("pol_no_bpf", bpf.clone().err());
    let with_tools = |tools: &[&str]| match (&bpf, missing(tools)) {
        (Err(e), _) => Some(e.clone()),
        (Ok(()), m) if m.is_empty() => None,
        (Ok(()), m) => Some(format!("not installed: {}", m.join(", "))),
    };
    skip("pol_no_bpftool", with_tools(&["bpftool"]));
    skip("pol_no_netns", with_tools(&NETNS_TOOLS));
    let mut prom = NETNS_TOOLS.to_vec();
    prom.push("prometheus");
    skip("pol_no_prometheus", with_tools(&prom));
    // Not a kernel test, but the same rule: a check that cannot run is ignored, not passed.
    if !on_path("kubernetes-validate") {
        println!("cargo::rustc-cfg=pol_no_kubernetes_validate");
    }
}

fn on_path(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    // Root's tools live in sbin directories that a user's PATH may lack.
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(Into::into))
        .any(|d| d.join(tool).is_file())
}

/// Loads `r0 = 0; exit` as an XDP program, as `pol_runtime::sys::bpf_available` does.
fn bpf_works() -> Result<(), String> {
    const TRIVIAL: [u8; 16] = [0xb7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0];
    const LICENSE: &[u8] = b"GPL\0";
    // union bpf_attr for BPF_PROG_LOAD: prog_type, insn_cnt, insns, license, then zeros.
    let mut attr = [0u64; 16];
    attr[0] = 6 | (2u64 << 32); // BPF_PROG_TYPE_XDP, 2 instructions (little-endian)
    attr[1] = TRIVIAL.as_ptr() as u64;
    attr[2] = LICENSE.as_ptr() as u64;
    // SAFETY: attr is a zero-padded BPF_PROG_LOAD attribute whose pointers outlive the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            5, // BPF_PROG_LOAD
            attr.as_mut_ptr(),
            std::mem::size_of_val(&attr) as u32,
        )
    };
    if fd >= 0 {
        // SAFETY: fd was just returned by the kernel and is closed once.
        unsafe { libc::close(fd as i32) };
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    Err(format!(
        "cannot load a BPF program as uid {euid} ({err}); run as root (or with CAP_BPF + \
         CAP_NET_ADMIN), or set CI=true to make these tests fail instead"
    ))
}
