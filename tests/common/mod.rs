//! Helpers shared by the root package's integration tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

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

/// Starts `pol run ARGS` (bounded by `--duration 300`, so a run whose test failed before
/// stopping it does not stay attached) and waits until it says it attached; then keeps
/// reading its stderr, one line a message on the receiver, so it never blocks on it.
pub fn pol_run(args: &[&str]) -> (Child, Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pol"))
        .args(["run", "--duration", "300"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pol run");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = String::new();
    loop {
        assert!(Instant::now() < deadline, "pol run did not attach: {seen}");
        match lines.next() {
            Some(Ok(l)) if l.starts_with("attached") => break,
            Some(Ok(l)) => seen.push_str(&(l + "\n")),
            _ => {
                let _ = child.wait();
                panic!("pol run ended before attaching: {seen}");
            }
        }
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in lines.map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    (child, rx)
}

/// Stops a [`pol_run`] with SIGINT (as Ctrl-C does), once its last output had time to
/// arrive (it reads events every 10 ms), and returns its stdout; a failed run fails the
/// test.
pub fn pol_stop(mut child: Child) -> String {
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read stdout");
    let st = child.wait().expect("wait");
    assert!(st.success(), "pol run failed: {st}\n{out}");
    out
}
