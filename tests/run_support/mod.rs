//! Helpers for the `pol run` tests: a namespace pair joined by a veth, the real `pol run`
//! binary started inside one of them, and checks that nothing of pol's is left behind.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

pub const A_ADDR: &str = "10.99.0.1";
pub const B_ADDR: &str = "10.99.0.2";

/// Two namespaces `A` (filter side, `va`) and `B` (sender, `vb`) joined by a veth pair,
/// addressed 10.99.0.1/24 + fd99::1/64 and 10.99.0.2/24 + fd99::2/64. Both are deleted on
/// drop, links with them, even when the test fails.
pub struct NetPair {
    pub a: String,
    pub b: String,
}

pub fn ip(args: &[&str]) -> (bool, String) {
    match Command::new("ip").args(args).output() {
        Ok(o) => (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
        ),
        Err(e) => (false, e.to_string()),
    }
}

pub fn sh(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
        })
        .unwrap_or_default()
}

impl NetPair {
    pub fn new(tag: &str) -> NetPair {
        let id = std::process::id();
        let pair = NetPair {
            a: format!("{tag}a{id}"),
            b: format!("{tag}b{id}"),
        };
        for ns in [&pair.a, &pair.b] {
            let (ok, out) = ip(&["netns", "add", ns]);
            assert!(ok, "ip netns add {ns}: {out}");
        }
        let steps: Vec<Vec<&str>> = vec![
            vec![
                "-n", &pair.a, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns",
                &pair.b,
            ],
            vec!["-n", &pair.a, "addr", "add", "10.99.0.1/24", "dev", "va"],
            vec!["-n", &pair.b, "addr", "add", "10.99.0.2/24", "dev", "vb"],
            vec![
                "-n",
                &pair.a,
                "addr",
                "add",
                "fd99::1/64",
                "dev",
                "va",
                "nodad",
            ],
            vec![
                "-n",
                &pair.b,
                "addr",
                "add",
                "fd99::2/64",
                "dev",
                "vb",
                "nodad",
            ],
            vec!["-n", &pair.a, "link", "set", "va", "up"],
            vec!["-n", &pair.b, "link", "set", "vb", "up"],
            vec!["-n", &pair.a, "link", "set", "lo", "up"],
            vec!["-n", &pair.b, "link", "set", "lo", "up"],
        ];
        for s in steps {
            let (ok, out) = ip(&s);
            assert!(ok, "ip {s:?}: {out}");
        }
        pair
    }

    /// The MAC address of `va` (for hand-built frames from B).
    pub fn mac_a(&self) -> String {
        let (_, out) = ip(&["-n", &self.a, "link", "show", "va"]);
        out.split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .unwrap_or("ff:ff:ff:ff:ff:ff")
            .to_string()
    }
}

impl Drop for NetPair {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// `pol run` as a user runs it, inside network namespace `ns` (through nsenter, which keeps
/// /sys/fs/bpf visible). Stdout lines arrive on a channel; stderr is collected.
pub struct PolRun {
    pub child: Child,
    pub lines: Receiver<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
    pub seen: Vec<String>,
}

impl PolRun {
    pub fn start(ns: &str, args: &[&str], envs: &[(&str, &str)]) -> PolRun {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{ns}"))
            .arg(env!("CARGO_BIN_EXE_pol"))
            .arg("run")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start nsenter pol run");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                s.push_str(&line);
                s.push('\n');
            }
            s
        });
        PolRun {
            child,
            lines: rx,
            stderr: Some(stderr),
            seen: Vec::new(),
        }
    }

    /// `pol run FILE --json --interval 0.5 EXTRA..` in `ns`, once it has attached (30 s at
    /// most, else the test fails).
    pub fn attached(ns: &str, file: &str, extra: &[&str]) -> PolRun {
        let mut args = vec![file, "--json", "--interval", "0.5"];
        args.extend_from_slice(extra);
        let mut run = PolRun::start(ns, &args, &[]);
        assert!(
            run.wait_for("\"attached\"", Duration::from_secs(30))
                .is_some(),
            "pol run {file} did not attach: {:?}",
            run.seen
        );
        run
    }

    /// Stops a `--json` run with SIGINT: it must exit cleanly; returns every stdout line and
    /// its final counters object.
    pub fn stop(self) -> (Vec<String>, serde_json::Value) {
        self.signal("INT");
        let (ok, lines, err) = self.finish(Duration::from_secs(10));
        assert!(ok, "pol run: {err}");
        let fin = lines
            .iter()
            .rev()
            .find(|l| l.contains("\"final\""))
            .map(|l| json(l))
            .unwrap_or_else(|| panic!("no final object: {lines:?}\n{err}"));
        (lines, fin)
    }

    /// The last `counters` line the run prints within `wait` (read after the traffic).
    #[allow(dead_code)] // not every test file reads counters
    pub fn last_counters(&mut self, wait: Duration) -> serde_json::Value {
        let end = std::time::Instant::now() + wait;
        let mut last = None;
        while std::time::Instant::now() < end {
            if let Some(l) = self.wait_for("\"counters\"", Duration::from_millis(500)) {
                last = Some(json(&l));
            }
        }
        last.unwrap_or_else(|| panic!("no counters line: {:?}", self.seen))
    }

    /// Waits for a stdout line containing `needle`; `None` when pol exits or time runs out.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Option<String> {
        let end = Instant::now() + timeout;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(needle) {
                        return Some(l);
                    }
                }
                Err(_) => return None,
            }
        }
        None
    }

    pub fn signal(&self, sig: &str) {
        let pid = self.child.id().to_string();
        // nsenter execs pol, so the child's pid is pol's.
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &pid])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{sig} {pid}");
    }

    /// Waits for exit; returns (success, every stdout line, stderr).
    pub fn finish(mut self, timeout: Duration) -> (bool, Vec<String>, String) {
        let end = Instant::now() + timeout;
        let status = loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                break Some(s);
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(500)) {
            self.seen.push(l);
        }
        let err = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let seen = std::mem::take(&mut self.seen);
        (status.is_some_and(|s| s.success()), seen, err)
    }
}

impl Drop for PolRun {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Asserts that nothing of pol's is left: no XDP program or clsact qdisc on `va` in `ns`,
/// no program named `prog` in the kernel, no hook claim of it, nothing named after it in /sys/fs/bpf (set maps
/// are pinned under /sys/fs/bpf/pol/<file stem>-<pid>: tests name files after programs).
/// Freeing a program after its last fd closes is deferred, so this polls for a while.
pub fn assert_clean(ns: &str, prog: &str) {
    let mut last = String::new();
    for _ in 0..100 {
        let link = ip(&["-n", ns, "link", "show", "dev", "va"]).1;
        let qdisc = sh("tc", &["-n", ns, "qdisc", "show", "dev", "va"]);
        let filters = sh("tc", &["-n", ns, "filter", "show", "dev", "va", "ingress"]);
        let progs = sh("bpftool", &["prog", "show"]);
        let pins = sh("ls", &["-R", "/sys/fs/bpf"]);
        let mut bad = Vec::new();
        if link.contains("xdp") {
            bad.push(format!("xdp still on va: {link}"));
        }
        if qdisc.contains("clsact") {
            bad.push(format!("clsact qdisc left: {qdisc}"));
        }
        if !filters.trim().is_empty() {
            bad.push(format!("tc filters left: {filters}"));
        }
        if progs.contains(&format!("name {prog} ")) || progs.contains(&format!("name {prog}\n")) {
            bad.push(format!("program {prog} still loaded"));
        }
        if pins.contains(prog) {
            bad.push(format!("pins left under /sys/fs/bpf: {pins}"));
        }
        for claim in claims_of(prog) {
            bad.push(format!("hook claim left: {claim}"));
        }
        if bad.is_empty() {
            return;
        }
        last = bad.join("\n");
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("pol left something behind:\n{last}");
}

/// The hook claims (/run/pol/hooks, `pol_runtime::hooks`) naming program `prog`.
pub fn claims_of(prog: &str) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(pol_runtime::hooks::CLAIM_ROOT) else {
        return vec![];
    };
    rd.flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter(|t| t.contains(&format!("\"program\":\"{prog}\"")))
        .collect()
}

/// Fails the test unless the tools these tests drive are installed (see
/// `common::require_kernel` for why a missing tool fails rather than skips).
pub fn require_tools() {
    for t in ["ip", "tc", "nsenter", "bpftool", "python3", "kill"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(found, "pol run test cannot run: `{t}` is not installed");
    }
}

/// The python3 interpreter itself (not a pyenv shim), so `ip netns exec` starts it fast.
pub fn python() -> String {
    let out = sh("python3", &["-c", "import sys; print(sys.executable)"]);
    let p = out.trim();
    if p.is_empty() {
        "python3".into()
    } else {
        p.into()
    }
}

/// Sends `n` 32-byte UDP datagrams from B to A (10.99.0.1) port `port`.
pub fn send_udp(net: &NetPair, port: u16, n: u32) {
    let script = format!(
        "import socket\nu = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         for i in range({n}):\n    u.sendto(b'x' * 32, ('10.99.0.1', {port}))\n"
    );
    let ok = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", net.b))
        .args([&python(), "-c", &script])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "send from B");
}

/// The pol binary run with `args` in the test's own namespace.
pub fn pol(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pol"))
        .args(args)
        .output()
        .expect("run pol")
}

/// A command's stdout then stderr, as text.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `pol test` on `source`, written to `DIR/NAME.pol`: every case passes, and there are `want`.
pub fn pol_test(dir: &Path, name: &str, source: &str, want: usize) {
    let file = dir.join(format!("{name}.pol"));
    std::fs::write(&file, source).expect("write");
    let o = pol(&["test", file.to_str().expect("utf-8")]);
    let out = text(&o);
    assert!(o.status.success(), "{name}: {out}");
    assert!(
        out.contains(&format!("{want} passed, 0 failed")),
        "{name}: {out}"
    );
}

/// `python3 -c SCRIPT ARGS..` in namespace `ns`: it must succeed; its last stdout line,
/// parsed as JSON.
pub fn py_json(ns: &str, script: &str, args: &[&str]) -> serde_json::Value {
    let o = Command::new("ip")
        .args(["netns", "exec", ns, &python(), "-c", script])
        .args(args)
        .output()
        .expect("run python");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    json(out.lines().last().unwrap_or("{}"))
}

/// Parses the JSON object of a stdout line.
pub fn json(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

/// `packets` of rule `index` of the first program in a counters/final object.
pub fn rule_packets(v: &serde_json::Value, index: u64) -> u64 {
    v["programs"][0]["rules"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["index"] == index))
        .and_then(|r| r["packets"].as_u64())
        .unwrap_or_else(|| panic!("no rule {index} in {v}"))
}

/// The `count` entry named `name`.
pub fn count<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    v["counts"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no count {name} in {v}"))
}

/// Unloads the named `pol load` policies on drop, also when the test fails, so a failed
/// run leaves no policy behind for the next (policies outlive their namespaces' links).
pub struct Unload(pub Vec<String>);

impl Unload {
    /// Also unloads them now: left over by an earlier, interrupted run.
    pub fn new(names: &[&str]) -> Unload {
        let u = Unload(names.iter().map(|n| n.to_string()).collect());
        u.unload();
        u
    }
    fn unload(&self) {
        for n in &self.0 {
            let _ = Command::new(env!("CARGO_BIN_EXE_pol"))
                .args(["unload", n])
                .output();
        }
    }
}

impl Drop for Unload {
    fn drop(&mut self) {
        self.unload();
    }
}
