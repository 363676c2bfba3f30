//! Helpers shared by the root package's integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// Fails the test unless this process can load BPF programs (and mounts bpffs for the
/// tests that pin). Kernel tests that cannot run here are compiled with `#[ignore =
/// "reason"]` (build.rs, runtime/build_probe.rs), so one that runs and cannot is a failure
/// with its reason, never a silent pass.
pub fn require_kernel() {
    if let Err(why) = pol_runtime::sys::bpf_available() {
        cannot_run(&why);
    }
    let _ = pol_runtime::ensure_bpffs();
}

/// Fails the test unless `cmd` is installed.
pub fn require_tool(cmd: &str) {
    if !have(cmd) {
        cannot_run(&format!("`{cmd}` is not installed"));
    }
}

/// Whether `cmd` is on PATH.
pub fn have(cmd: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Fails a kernel test that cannot run, saying why.
pub fn cannot_run(why: &str) -> ! {
    panic!("kernel test cannot run: {why}");
}

/// Insta settings: snapshots in tests/snapshots, the source shown above each one.
pub fn snapshot_settings(source: &str) -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_snapshot_path("snapshots");
    s.set_prepend_module_to_snapshot(false);
    s.set_description(source);
    s
}

/// A temporary directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("{tag}_{}_{}", std::process::id(), unique()));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A pin directory under /sys/fs/bpf removed (with its pins) on drop.
pub struct BpffsDir(PathBuf);

impl BpffsDir {
    pub fn new(tag: &str) -> BpffsDir {
        BpffsDir(PathBuf::from(format!(
            "/sys/fs/bpf/{tag}_{}_{}",
            std::process::id(),
            unique()
        )))
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for BpffsDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}
