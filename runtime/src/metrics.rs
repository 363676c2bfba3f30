//! Prometheus metrics: a reading of a running policy in the text exposition format
//! (version 0.0.4), and a small HTTP server for `GET /metrics`.
//!
//! Series (every one labelled `policy`, the `pol load` name or the `pol run` file stem):
//!
//! | series | type | labels | what |
//! | --- | --- | --- | --- |
//! | `pol_rule_packets_total` | counter | `filter`, `rule`, `line`, `verdict` | packets each rule decided; `rule` is the rule's index, or `default` / `malformed` |
//! | `pol_count_packets_total` | counter | `count`, and `key` for keyed counts | the `count` statements |
//! | `pol_count_keys` | gauge | `count` | keys a keyed count holds (series beyond [`MAX_KEYS`] are left out) |
//! | `pol_map_entries`, `pol_map_max_entries` | gauge | `map` | how full each map is |
//! | `pol_program_info` | gauge (1) | `filter`, `iface`, `attach`, `prog_id` | what is attached where |
//! | `pol_up` | gauge | | 1 when the reading succeeded |
//! | `pol_scrape_duration_seconds` | gauge | | how long the reading took |
//!
//! Names follow Prometheus conventions: `pol_` prefix, snake case, `_total` for counters,
//! base units (seconds). Rule texts are not labels: they can be long and change with every
//! edit; `line` and `rule` identify a rule, and `pol status` shows its text.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::live::Snapshot;
use crate::sys::MapInfo;

/// Keyed counts export at most this many keys each (the largest first).
pub const MAX_KEYS: usize = 1000;

/// Every series name pol exports, for checks such as "every dashboard query names one".
pub const SERIES: [&str; 8] = [
    "pol_rule_packets_total",
    "pol_count_packets_total",
    "pol_count_keys",
    "pol_map_entries",
    "pol_map_max_entries",
    "pol_program_info",
    "pol_up",
    "pol_scrape_duration_seconds",
];

/// One attached program, for `pol_program_info`.
#[derive(Debug, Clone)]
pub struct ProgramLabel {
    pub filter: String,
    pub iface: String,
    pub attach: String,
    pub prog_id: u32,
}

/// What one policy's reading holds.
#[derive(Debug, Clone, Default)]
pub struct PolicyReading {
    pub policy: String,
    pub snapshot: Option<Snapshot>,
    pub maps: Vec<(String, MapInfo, usize)>,
    pub programs: Vec<ProgramLabel>,
}

/// A label value escaped for the text format: backslash, double quote and newline.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn labels(pairs: &[(&str, &str)]) -> String {
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", esc(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// The text exposition of the readings of several policies, with `pol_up` and the time
/// the reading took.
pub fn render(readings: &[PolicyReading], took: Duration) -> String {
    let mut out = String::new();
    let head = |out: &mut String, name: &str, ty: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {ty}");
    };
    head(
        &mut out,
        "pol_rule_packets_total",
        "counter",
        "Packets decided by each rule of a filter (rule index, or default/malformed).",
    );
    for r in readings {
        let Some(s) = &r.snapshot else { continue };
        for p in &s.programs {
            for rule in &p.rules {
                let l = labels(&[
                    ("policy", &r.policy),
                    ("filter", &p.name),
                    ("rule", &rule.index.to_string()),
                    ("line", &rule.line.to_string()),
                    ("verdict", &rule.verdict),
                ]);
                let _ = writeln!(out, "pol_rule_packets_total{l} {}", rule.packets);
            }
            for (what, n) in [("default", p.default), ("malformed", p.malformed)] {
                let l = labels(&[
                    ("policy", &r.policy),
                    ("filter", &p.name),
                    ("rule", what),
                    ("line", ""),
                    ("verdict", ""),
                ]);
                let _ = writeln!(out, "pol_rule_packets_total{l} {n}");
            }
        }
    }
    head(
        &mut out,
        "pol_count_packets_total",
        "counter",
        "Packets counted by each count statement (per key for keyed counts).",
    );
    for r in readings {
        let Some(s) = &r.snapshot else { continue };
        for c in &s.counters {
            match &c.key_field {
                None => {
                    let l = labels(&[("policy", &r.policy), ("count", &c.name)]);
                    let _ = writeln!(out, "pol_count_packets_total{l} {}", c.total());
                }
                Some(_) => {
                    for (k, n) in c.entries.iter().take(MAX_KEYS) {
                        let l = labels(&[("policy", &r.policy), ("count", &c.name), ("key", k)]);
                        let _ = writeln!(out, "pol_count_packets_total{l} {n}");
                    }
                }
            }
        }
    }
    head(
        &mut out,
        "pol_count_keys",
        "gauge",
        "Keys held by each keyed count.",
    );
    for r in readings {
        let Some(s) = &r.snapshot else { continue };
        for c in s.counters.iter().filter(|c| c.key_field.is_some()) {
            let l = labels(&[("policy", &r.policy), ("count", &c.name)]);
            let _ = writeln!(out, "pol_count_keys{l} {}", c.entries.len());
        }
    }
    head(&mut out, "pol_map_entries", "gauge", "Entries in each map.");
    for r in readings {
        for (m, _, used) in &r.maps {
            let l = labels(&[("policy", &r.policy), ("map", m)]);
            let _ = writeln!(out, "pol_map_entries{l} {used}");
        }
    }
    head(
        &mut out,
        "pol_map_max_entries",
        "gauge",
        "Capacity of each map.",
    );
    for r in readings {
        for (m, info, _) in &r.maps {
            let l = labels(&[("policy", &r.policy), ("map", m)]);
            let _ = writeln!(out, "pol_map_max_entries{l} {}", info.max_entries);
        }
    }
    head(
        &mut out,
        "pol_program_info",
        "gauge",
        "Each attached filter: interface, how it is attached, kernel program id (value 1).",
    );
    for r in readings {
        for p in &r.programs {
            let l = labels(&[
                ("policy", &r.policy),
                ("filter", &p.filter),
                ("iface", &p.iface),
                ("attach", &p.attach),
                ("prog_id", &p.prog_id.to_string()),
            ]);
            let _ = writeln!(out, "pol_program_info{l} 1");
        }
    }
    let up = readings.iter().all(|r| r.snapshot.is_some());
    head(
        &mut out,
        "pol_up",
        "gauge",
        "1 when every policy's maps could be read.",
    );
    let _ = writeln!(out, "pol_up {}", u8::from(up));
    head(
        &mut out,
        "pol_scrape_duration_seconds",
        "gauge",
        "Seconds taken to read the maps for this scrape.",
    );
    let _ = writeln!(out, "pol_scrape_duration_seconds {:.6}", took.as_secs_f64());
    out
}

/// Serves `GET /metrics` on a listening socket from a thread; stops when dropped.
pub struct Server {
    stop: Arc<AtomicBool>,
    addr: SocketAddr,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Listens on `addr` (`127.0.0.1:9464`, `[::]:9464`, port 0 for any) and answers each
    /// scrape with `body()`, called on the server's thread.
    pub fn start<F>(addr: &str, body: F) -> std::io::Result<Server>
    where
        F: Fn() -> String + Send + 'static,
    {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(c) = conn {
                    let _ = answer(c, &body);
                }
            }
        });
        Ok(Server {
            stop,
            addr,
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One HTTP/1.0-style exchange: read the request head, answer, close.
fn answer<F: Fn() -> String>(mut c: TcpStream, body: &F) -> std::io::Result<()> {
    c.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut buf = [0u8; 4096];
    let mut head = Vec::new();
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16384 {
        let n = c.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let path = line.split_whitespace().nth(1).unwrap_or("");
    let (status, ctype, text) =
        if line.starts_with("GET ") && (path == "/metrics" || path.starts_with("/metrics?")) {
            ("200 OK", "text/plain; version=0.0.4; charset=utf-8", body())
        } else if line.starts_with("GET ") && path == "/" {
            (
                "200 OK",
                "text/plain; charset=utf-8",
                "pol metrics: GET /metrics\n".to_string(),
            )
        } else {
            (
                "404 Not Found",
                "text/plain; charset=utf-8",
                "not found: pol serves /metrics\n".to_string(),
            )
        };
    write!(
        c,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    )?;
    c.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::{CounterCounts, ProgramCounts, RuleCount};

    fn reading() -> PolicyReading {
        PolicyReading {
            policy: "edge".into(),
            snapshot: Some(Snapshot {
                programs: vec![ProgramCounts {
                    name: "edge".into(),
                    rules: vec![RuleCount {
                        index: 0,
                        line: 3,
                        text: "drop tcp.dport == 23".into(),
                        verdict: "drop".into(),
                        packets: 7,
                    }],
                    default: 2,
                    malformed: 0,
                }],
                counters: vec![CounterCounts {
                    name: "by_src".into(),
                    key_field: Some("ip.src".into()),
                    entries: vec![("192.0.2.1".into(), 5), ("a\"b\\".into(), 1)],
                }],
            }),
            maps: vec![],
            programs: vec![],
        }
    }

    #[test]
    fn text_format_names_labels_and_escapes() {
        let t = render(&[reading()], Duration::from_millis(3));
        assert!(t.contains(
            "pol_rule_packets_total{policy=\"edge\",filter=\"edge\",rule=\"0\",line=\"3\",verdict=\"drop\"} 7\n"
        ), "{t}");
        assert!(
            t.contains("rule=\"default\",line=\"\",verdict=\"\"} 2\n"),
            "{t}"
        );
        assert!(
            t.contains(
                "pol_count_packets_total{policy=\"edge\",count=\"by_src\",key=\"192.0.2.1\"} 5\n"
            ),
            "{t}"
        );
        assert!(t.contains("key=\"a\\\"b\\\\\"} 1\n"), "{t}");
        assert!(
            t.contains("pol_count_keys{policy=\"edge\",count=\"by_src\"} 2\n"),
            "{t}"
        );
        assert!(t.contains("# TYPE pol_rule_packets_total counter\n"), "{t}");
        assert!(t.contains("pol_up 1\n"), "{t}");
        for s in SERIES {
            assert!(t.contains(&format!("# TYPE {s} ")), "{s} declared");
        }
    }

    #[test]
    fn serves_metrics_and_404() {
        let srv = Server::start("127.0.0.1:0", || "pol_up 1\n".to_string()).expect("bind");
        let get = |path: &str| {
            let mut c = TcpStream::connect(srv.addr()).expect("connect");
            write!(c, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
            let mut s = String::new();
            c.read_to_string(&mut s).expect("read");
            s
        };
        let r = get("/metrics");
        assert!(
            r.starts_with("HTTP/1.1 200 OK") && r.ends_with("\r\n\r\npol_up 1\n"),
            "{r}"
        );
        assert!(r.contains("text/plain; version=0.0.4"), "{r}");
        assert!(get("/nope").starts_with("HTTP/1.1 404"));
    }
}
