//! What the security rule tests share: `pol run` started and stopped as a user does,
//! programs named as a rule expects, a test cgroup, socket calls, and diagnostics.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use pol_compiler::diag::Diagnostic;
use pol_compiler::driver;

use crate::common;

/// Starts `pol run ARGS` and waits until it says its rules are attached.
pub fn start(args: &[&str]) -> Child {
    common::pol_run(args).0
}

/// Stops `pol run` with SIGINT (as Ctrl-C does) and returns its stdout.
pub fn stop(child: Child) -> String {
    common::pol_stop(child)
}

/// A copy of `/bin/true` named `name` in `dir` (its comm is `name`).
pub fn program(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::copy("/bin/true", &p).expect("copy /bin/true");
    p
}

pub fn alerts(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .filter(|v: &serde_json::Value| v["type"] == "alert")
        .collect()
}

/// The diagnostics of a rule file (front end only: no kernel needed).
pub fn errors(src: &str) -> Vec<Diagnostic> {
    let (_, _, diags) = driver::front(src);
    diags
}

/// Asserts exactly one error with `code`, whose primary span covers `text`.
pub fn assert_error(src: &str, code: &str, text: &str) -> Diagnostic {
    let d = errors(src);
    assert_eq!(d.len(), 1, "one diagnostic: {d:#?}");
    let d = d.into_iter().next().expect("one");
    assert_eq!(d.code, code, "{d:#?}");
    let span = d.primary_span();
    assert_eq!(&src[span], text, "{d:#?}");
    d
}

/// A cgroup v2 directory for one test, removed on drop (its processes have exited).
pub struct TestCgroup(PathBuf);

impl TestCgroup {
    pub fn new(tag: &str) -> TestCgroup {
        let root = pol_runtime::trace::cgroups::cgroup2_root()
            .unwrap_or_else(|| common::cannot_run("no cgroup2 file system is mounted"));
        let p = root.join(format!("{tag}_{}", std::process::id()));
        std::fs::create_dir_all(&p).expect("create the test cgroup");
        TestCgroup(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// `sh -c SCRIPT` run inside this cgroup (the shell moves itself in first).
    pub fn sh(&self, script: &str) -> std::process::Output {
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "echo $$ > {}/cgroup.procs && {script}",
                self.0.display()
            ))
            .output()
            .expect("run sh")
    }

    /// The programs attached to it, as bpftool lists them (empty when none).
    pub fn attached(&self) -> String {
        let out = Command::new("bpftool")
            .args(["cgroup", "show"])
            .arg(&self.0)
            .output()
            .expect("bpftool cgroup show");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// A python3 one-liner that connects (`family` 4 or 6) to `addr`:`port`, or binds
/// (`bind`), and prints `ok` or the errno's name.
pub fn socket_script(op: &str, v6: bool, addr: &str, port: u16) -> String {
    let fam = if v6 { "AF_INET6" } else { "AF_INET" };
    format!(
        "exec python3 -c \"import socket, errno\ns = socket.socket(socket.{fam}, socket.SOCK_STREAM)\ntry:\n    s.{op}(('{addr}', {port}))\n    print('ok')\nexcept OSError as e:\n    print(errno.errorcode[e.errno])\""
    )
}

pub fn said(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}
