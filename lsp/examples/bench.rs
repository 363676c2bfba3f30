//! Benchmark of `pol lsp` (not a test): time from `didChange` to `publishDiagnostics` on
//! generated 500-, 5,000- and 50,000-line files, and the server's memory with 20 files
//! open. Run on a release build:
//!
//! ```sh
//! cargo build --release && cargo run --release -p pol-lsp --example bench -- target/release/pol
//! ```

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    stdin: ChildStdin,
    rx: Receiver<Value>,
}

impl Server {
    fn start(pol: &str) -> Server {
        let cache = std::env::temp_dir().join(format!("pol_lsp_bench_{}", std::process::id()));
        let mut child = Command::new(pol)
            .arg("lsp")
            .env("XDG_CACHE_HOME", &cache)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pol lsp");
        let stdout = child.stdout.take().expect("stdout");
        let stdin = child.stdin.take().expect("stdin");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            loop {
                let mut len = 0;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if line.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = line.trim().strip_prefix("Content-Length: ") {
                        len = v.parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; len];
                if r.read_exact(&mut body).is_err() {
                    return;
                }
                let Ok(v) = serde_json::from_slice::<Value>(&body) else {
                    return;
                };
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        let mut s = Server { child, stdin, rx };
        s.send(json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize",
                       "params": { "processId": null, "rootUri": null, "capabilities": {} } }));
        s.wait(|v| v["id"] == 1);
        s.send(json!({ "jsonrpc": "2.0", "method": "initialized", "params": {} }));
        s
    }

    fn send(&mut self, v: Value) {
        let body = v.to_string();
        write!(self.stdin, "Content-Length: {}\r\n\r\n{body}", body.len()).expect("write");
        self.stdin.flush().expect("flush");
    }

    fn wait(&mut self, want: impl Fn(&Value) -> bool) -> Value {
        loop {
            let v = self
                .rx
                .recv_timeout(Duration::from_secs(120))
                .expect("server answered");
            if want(&v) {
                return v;
            }
        }
    }

    fn open(&mut self, uri: &str, text: &str) {
        self.send(
            json!({ "jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {
            "textDocument": { "uri": uri, "languageId": "pol", "version": 1, "text": text } } }),
        );
        self.diagnostics(uri, 1);
    }

    fn diagnostics(&mut self, uri: &str, version: i32) -> usize {
        let v = self.wait(|v| {
            v["method"] == "textDocument/publishDiagnostics"
                && v["params"]["uri"] == uri
                && v["params"]["version"] == version
        });
        v["params"]["diagnostics"].as_array().map_or(0, Vec::len)
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }
}

/// A file of about `lines` lines: sets, then filters of ten rules, like a large policy.
fn policy(lines: usize, seed: usize) -> String {
    let mut out =
        String::from("import std.net\n\nset admin: cidr = { 10.20.0.0/16, 2001:db8:1::/64 }\n\n");
    let mut k = 0;
    while out.lines().count() < lines {
        out.push_str(&format!(
            "filter f{seed}_{k} on xdp(\"eth{}\") {{\n\
             \x20   drop ip.src in std.net.bogons count bogons_{k}\n\
             \x20   drop tcp.dport == {} count telnet_{k}\n\
             \x20   pass tcp.dport in {{ 22, 3389 }} and ip.src in admin\n\
             \x20   drop tcp.dport in {{ 22, 3389 }}\n\
             \x20   drop udp.dport in 6000..6063 and not ip.src in std.net.rfc1918\n\
             \x20   pass ip.src in 192.0.{}.0/24\n\
             \x20   drop ip.ttl < 2\n\
             \x20   pass icmp\n\
             \x20   drop tcp.syn and not tcp.ack and tcp.dport == {}\n\
             \x20   default pass\n}}\n\n",
            k % 8,
            1 + k % 60000,
            k % 256,
            1000 + k % 1000,
        ));
        k += 1;
    }
    out
}

fn main() {
    let pol = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "target/release/pol".into());
    println!(
        "didChange -> publishDiagnostics (10 edits each, alternately adding and fixing an error)"
    );
    println!(
        "{:>8} {:>10} {:>10} {:>10} {:>10}",
        "lines", "bytes", "min ms", "median ms", "max ms"
    );
    for lines in [500, 5_000, 50_000] {
        let mut s = Server::start(&pol);
        let text = policy(lines, 0);
        let uri = format!("file:///bench/{lines}.pol");
        s.open(&uri, &text);
        // The `23` of `tcp.dport == 23` in the middle filter's second rule... any rule line
        // in the middle of the file: edit `tcp.dport` to `tcp.dprot` and back.
        let mid = text.lines().count() / 2;
        let line_no = (mid..)
            .find(|&i| {
                text.lines()
                    .nth(i)
                    .is_some_and(|l| l.contains("drop tcp.dport =="))
            })
            .unwrap_or(5);
        let col = text
            .lines()
            .nth(line_no)
            .and_then(|l| l.find("dport"))
            .unwrap_or(0);
        let mut times = Vec::new();
        for (i, word) in ["dprot", "dport"].iter().cycle().take(10).enumerate() {
            let version = i as i32 + 2;
            let t = Instant::now();
            s.send(
                json!({ "jsonrpc": "2.0", "method": "textDocument/didChange", "params": {
                "textDocument": { "uri": uri, "version": version },
                "contentChanges": [{ "range": {
                    "start": { "line": line_no, "character": col },
                    "end": { "line": line_no, "character": col + 5 } }, "text": word }] } }),
            );
            let n = s.diagnostics(&uri, version);
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(
                n,
                usize::from(*word == "dprot"),
                "diagnostics after edit {i}"
            );
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{:>8} {:>10} {:>10.1} {:>10.1} {:>10.1}",
            text.lines().count(),
            text.len(),
            times[0],
            times[times.len() / 2],
            times[times.len() - 1]
        );
        let _ = s.child.kill();
    }
    let mut s = Server::start(&pol);
    let before = s.rss_kib();
    let mut total = 0;
    for i in 0..20 {
        let text = policy(5_000, i);
        total += text.len();
        s.open(&format!("file:///bench/open{i}.pol"), &text);
    }
    println!(
        "memory: {:.1} MiB after initialize, {:.1} MiB with 20 open files of 5,000 lines ({:.1} MiB of text)",
        before as f64 / 1024.0,
        s.rss_kib() as f64 / 1024.0,
        total as f64 / 1048576.0
    );
    let _ = s.child.kill();
}
