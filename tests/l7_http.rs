//! HTTP request lines matched in the kernel (issue 13 §1, §4), with real traffic: an HTTP
//! server in one namespace, clients in the other over a veth pair, `pol run` filtering
//! on tc ingress, tc egress (the client's side) and XDP. Each scenario checks what the
//! server received while the filter was attached, what each client saw, and the counters.
//!
//! The traffic is `tests/l7_http/traffic.py` (raw sockets, so requests include what curl
//! never sends: a lower-case method, a request line split across two segments) and, for
//! named headers, `curl -H`. Every scenario goes through `run`: the server, `pol run` on
//! a policy, the clients, then what the server received while the filter was attached.

mod common;
mod run_support;

use common::{require_kernel, TempDir};
use run_support::{
    assert_clean, count, json, python, require_tools, rule_packets, NetPair, PolRun,
};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const PORT: &str = "8080";

fn script() -> String {
    format!("{}/tests/l7_http/traffic.py", env!("CARGO_MANIFEST_DIR"))
}

/// The server in namespace `ns`, its request log read after the clients ran.
struct Server(Child);

impl Server {
    fn start(ns: &str) -> Server {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, &python(), &script(), "serve", PORT])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the HTTP server");
        let out = child.stdout.as_mut().expect("server stdout");
        let mut line = String::new();
        let _ = BufReader::new(out).read_line(&mut line);
        assert_eq!(line.trim(), "ready", "the HTTP server did not start");
        Server(child)
    }

    /// Stops the server; returns "METHOD TARGET" of every request it received.
    fn received(mut self) -> Vec<String> {
        let _ = self.0.kill();
        let mut out = String::new();
        if let Some(mut o) = self.0.stdout.take() {
            let _ = std::io::Read::read_to_string(&mut o, &mut out);
        }
        let _ = self.0.wait();
        out.lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| {
                let v = json(l);
                format!(
                    "{} {}",
                    v["method"].as_str().unwrap_or(""),
                    v["target"].as_str().unwrap_or("")
                )
            })
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Every client request (of set `which`) at once from `ns`; what each saw (status code,
/// or null).
fn clients(ns: &str, which: &str) -> serde_json::Value {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, &python(), &script(), "client"])
        .args(["10.99.0.1", PORT, "2", which])
        .output()
        .expect("run the clients");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "clients failed: {text}");
    json(text.lines().last().unwrap_or_default())
}

/// `curl ARGS` from `ns` for each `(name, path, args)`, all at once: name -> status code,
/// or null when no answer came within 2 s.
fn curls(ns: &str, reqs: &[(&str, &str, &[&str])]) -> serde_json::Value {
    let children: Vec<(&str, Child)> = reqs
        .iter()
        .map(|(name, path, args)| {
            let url = format!("http://10.99.0.1:{PORT}{path}");
            let child = Command::new("ip")
                .args(["netns", "exec", ns, "curl", "-s", "-o", "/dev/null"])
                .args(["-w", "%{http_code}", "-m", "2"])
                .args(*args)
                .arg(url)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("start curl");
            (*name, child)
        })
        .collect();
    let mut out = serde_json::Map::new();
    for (name, child) in children {
        let o = child.wait_with_output().expect("curl ran");
        let code: Option<u64> = String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse()
            .ok()
            .filter(|&c| c != 0);
        out.insert(name.into(), code.into());
    }
    serde_json::Value::Object(out)
}

const RULES: &str = r#"drop http.method == "DELETE"
    drop starts_with(http.path, "/admin")
    drop http.path in { "/secret", "/private/x" }"#;

/// What one scenario saw: each client's answer, what the server received while the filter
/// was attached ("METHOD TARGET"), and `pol run`'s final counters.
struct Outcome {
    seen: serde_json::Value,
    got: Vec<String>,
    v: serde_json::Value,
}

impl Outcome {
    /// Each named client saw `want` (a status code, or nothing).
    fn expect(&self, what: &str, cases: &[(&str, Option<u64>)]) {
        for (req, want) in cases {
            assert_eq!(
                self.seen[req].as_u64(),
                *want,
                "{what}: client {req} saw {} (all: {}; server got {:?}; {})",
                self.seen[req],
                self.seen,
                self.got,
                self.v
            );
        }
    }

    /// Packets dropped as malformed (incomplete requests among them).
    fn malformed(&self) -> u64 {
        self.v["programs"][0]["malformed"].as_u64().unwrap_or(0)
    }
}

/// What `pol run` runs: a file as it is, or one filter on `hook` with `rules` (named
/// after the test's tag and pid: other suites run the same tests at once).
enum Policy<'a> {
    File(&'a str),
    Filter { hook: &'a str, rules: &'a str },
}

/// One scenario: the HTTP server in the pair's namespace A, `pol run` on `policy` in A (in
/// B when `on_client`), the clients `traffic` started from B; then what the server
/// received, the final counters, and a check that nothing of pol's is left.
fn run(
    tag: &str,
    policy: Policy<'_>,
    on_client: bool,
    traffic: impl FnOnce(&str) -> serde_json::Value,
) -> Outcome {
    require_kernel();
    require_tools();
    let net = NetPair::new(tag);
    let dir = TempDir::new(tag);
    let (file, name, extra) = match policy {
        Policy::File(f) => {
            let stem = std::path::Path::new(f)
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            (std::path::PathBuf::from(f), stem, vec!["--iface", "va"])
        }
        Policy::Filter { hook, rules } => {
            let name = format!("{tag}{}", std::process::id());
            let file = dir.path().join(format!("{name}.pol"));
            std::fs::write(
                &file,
                format!("filter {name} on {hook} {{\n    {rules}\n    default pass\n}}\n"),
            )
            .expect("write policy");
            (file, name, vec![])
        }
    };
    let server = Server::start(&net.a);
    let ns = if on_client { &net.b } else { &net.a };
    let file = file.to_str().expect("utf-8 path");
    let mut args = vec![file, "--json", "--interval", "0.5"];
    args.extend(extra);
    let mut pol = PolRun::start(ns, &args, &[]);
    if pol
        .wait_for("\"attached\"", Duration::from_secs(30))
        .is_none()
    {
        let (_, lines, err) = pol.finish(Duration::from_secs(5));
        panic!("pol run did not attach:\nstdout: {lines:?}\nstderr: {err}");
    }
    let seen = traffic(&net.b);
    // Read while the filter is still attached: a dropped request retransmitted after it
    // is gone would reach the server.
    let got = server.received();
    pol.signal("INT");
    let (ok, lines, err) = pol.finish(Duration::from_secs(10));
    assert!(ok, "pol run failed: {err}");
    let last = lines
        .iter()
        .rev()
        .find(|l| l.contains("\"final\""))
        .unwrap_or_else(|| panic!("no final JSON object: {lines:?}\n{err}"));
    let v = json(last);
    // Whichever side it ran on, nothing of it is left (the program, claims, pins; va).
    assert_clean(&net.a, &name);
    Outcome { seen, got, v }
}

/// examples/l7/gateway.pol on the server's tc ingress: GET and HEAD on /api/ (any case),
/// nothing on /admin however it is spelled (`%61`, `..`, `.`, lower case, split).
#[test]
fn gateway_example_allows_get_on_api_and_nothing_on_admin() {
    let file = format!("{}/examples/l7/gateway.pol", env!("CARGO_MANIFEST_DIR"));
    let o = run("h7g", Policy::File(&file), false, |ns| {
        clients(ns, "gateway")
    });
    o.expect(
        "gateway",
        &[
            ("get_api", Some(200)),
            ("head_api", Some(200)),
            ("get_lower_api", Some(200)),
            ("get_index", Some(200)),
            ("post_index", Some(200)),
            ("post_api", None),
            ("delete_lower_api", None),
            ("get_admin", None),
            ("get_pct_admin", None),
            ("get_dot_admin", None),
            ("get_dot2_admin", None),
            ("get_lower_admin", None),
            ("split_admin", None),
        ],
    );
    let (got, v) = (&o.got, &o.v);
    assert_eq!(got.len(), 5, "five requests reached the server: {got:?}");
    for g in got {
        assert!(
            !g.contains("admin")
                && !g.to_ascii_uppercase().starts_with("POST /API")
                && !g.to_ascii_uppercase().starts_with("DELETE"),
            "gateway: the server got {g} (all {got:?})"
        );
    }
    assert!(
        rule_packets(v, 0) >= 2,
        "/admin and get /admin dropped: {v}"
    );
    assert!(
        rule_packets(v, 1) >= 2,
        "POST and delete on /api/ dropped: {v}"
    );
    assert!(
        o.malformed() >= 4,
        "%61, .., . and the split request dropped as incomplete: {v}"
    );
}

/// Host names: exact in any case, with a port and a final dot, a suffix, a header name in
/// any case; a request without Host fails closed.
#[test]
fn host_rules_match_the_host_header() {
    let rules = "drop http.host in { \"evil.com\", \"Evil.org\" }\n    \
                 drop ends_with(http.host, \".bad.net\")";
    let hook = "xdp(\"va\")";
    let o = run("h7h", Policy::Filter { hook, rules }, false, |ns| {
        clients(ns, "hosts")
    });
    o.expect(
        "hosts",
        &[
            ("host_ok", Some(200)),
            ("host_bad_net", Some(200)),
            ("host_evil", None),
            ("host_evil_case", None),
            ("host_evil_port_dot", None),
            ("host_sub", None),
            ("host_lower_header", None),
            ("host_none", None),
        ],
    );
    let (got, v) = (&o.got, &o.v);
    assert_eq!(got.len(), 2, "two requests reached the server: {got:?}");
    assert!(rule_packets(v, 0) >= 4, "evil.com/org dropped: {v}");
    assert!(rule_packets(v, 1) >= 1, "*.bad.net dropped: {v}");
    assert!(
        o.malformed() >= 1,
        "the request without Host failed closed: {v}"
    );
}

/// Named headers with curl: names in any case, values exact, by prefix, in a set, present
/// or not; a header block longer than the bound fails closed.
#[test]
fn header_rules_match_named_headers() {
    let rules = "drop http.header(\"User-Agent\") in { \"evil-bot/1.0\", \"sqlmap/1.7\" }\n    \
                 drop starts_with(http.header(\"user-agent\"), \"Nikto\")\n    \
                 drop http.header(\"X-Debug\")\n    \
                 drop starts_with(http.path, \"/key/\") and http.header(\"X-Api-Key\") != \"k-123\"";
    let hook = "tc(\"va\", ingress)";
    let pad = format!("X-Pad: {}", "p".repeat(300));
    let o = run("h7n", Policy::Filter { hook, rules }, false, |ns| {
        curls(
            ns,
            &[
                ("ua_ok", "/a", &["-A", "curl-ok/1"]),
                ("ua_value_case", "/b", &["-A", "EVIL-BOT/1.0"]),
                ("ua_evil", "/c", &["-A", "evil-bot/1.0"]),
                ("ua_name_case", "/d", &["-H", "user-AGENT: sqlmap/1.7"]),
                ("ua_prefix", "/e", &["-A", "Nikto/2.5.0"]),
                ("debug", "/f", &["-H", "X-Debug: 0"]),
                ("debug_empty", "/g", &["-H", "x-debug;"]),
                ("key_ok", "/key/1", &["-H", "X-Api-Key: k-123"]),
                ("key_spaces", "/key/2", &["-H", "X-API-KEY:\tk-123  "]),
                ("key_bad", "/key/3", &["-H", "X-Api-Key: k-1234"]),
                ("key_none", "/key/4", &[]),
                ("pad", "/h", &["-H", &pad]),
            ],
        )
    });
    o.expect(
        "headers",
        &[
            ("ua_ok", Some(200)),
            ("ua_value_case", Some(200)),
            ("key_ok", Some(200)),
            ("key_spaces", Some(200)),
            ("ua_evil", None),
            ("ua_name_case", None),
            ("ua_prefix", None),
            ("debug", None),
            ("debug_empty", None),
            ("key_bad", None),
            ("key_none", None),
            ("pad", None),
        ],
    );
    let (got, v) = (&o.got, &o.v);
    let mut targets: Vec<&str> = got.iter().map(|g| g.as_str()).collect();
    targets.sort_unstable();
    assert_eq!(
        targets,
        ["GET /a", "GET /b", "GET /key/1", "GET /key/2"],
        "what reached the server: {v}"
    );
    assert!(rule_packets(v, 0) >= 2, "evil-bot and sqlmap dropped: {v}");
    assert!(rule_packets(v, 1) >= 1, "Nikto dropped: {v}");
    assert!(rule_packets(v, 2) >= 2, "X-Debug dropped: {v}");
    assert!(rule_packets(v, 3) >= 2, "bad and missing keys dropped: {v}");
    assert!(o.malformed() >= 1, "the 300-byte header failed closed: {v}");
}

/// Counts keyed by the method, path and host of the requests pol read, in `pol run`'s
/// final counters: exact numbers (passed requests are sent once; handshakes, ACKs and
/// answers are no requests).
#[test]
fn counts_by_method_path_and_host() {
    let rules = "pass http.method in { \"GET\", \"HEAD\" } count by_method[http.method] \
                 count by_path[http.path] count by_host[http.host]";
    let hook = "xdp(\"va\")";
    let o = run("h7c", Policy::Filter { hook, rules }, false, |ns| {
        curls(
            ns,
            &[
                ("a1", "/a", &[]),
                ("a2", "/a?x=1", &[]),
                ("a3", "/a", &["-H", "Host: API.Example.com"]),
                ("b", "/b/c", &["-I"]),
                ("post", "/p", &["-d", "x=1"]),
            ],
        )
    });
    o.expect(
        "counts",
        &[
            ("a1", Some(200)),
            ("a2", Some(200)),
            ("a3", Some(200)),
            ("b", Some(200)),
            ("post", Some(200)),
        ],
    );
    let v = &o.v;
    let entries = |name: &str| -> Vec<(String, u64)> {
        let mut e: Vec<(String, u64)> = count(v, name)["entries"]
            .as_array()
            .unwrap_or_else(|| panic!("{name} has no entries: {v}"))
            .iter()
            .map(|e| {
                (
                    e["key"].as_str().unwrap_or("").to_string(),
                    e["packets"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        e.sort();
        e
    };
    let own = |pairs: &[(&str, u64)]| -> Vec<(String, u64)> {
        pairs.iter().map(|(k, n)| (k.to_string(), *n)).collect()
    };
    assert_eq!(entries("by_method"), own(&[("GET", 3), ("HEAD", 1)]), "{v}");
    assert_eq!(entries("by_path"), own(&[("/a", 3), ("/b/c", 1)]), "{v}");
    assert_eq!(
        entries("by_host"),
        own(&[("10.99.0.1", 3), ("api.example.com", 1)]),
        "{v}"
    );
    assert_eq!(count(v, "by_path")["key"], "http.path", "{v}");
}

/// The request-line rules (`RULES`) with the filter on `hook`, on the client's side when
/// `on_client`.
fn scenario(tag: &str, hook: &str, on_client: bool) {
    let policy = Policy::Filter { hook, rules: RULES };
    let o = run(tag, policy, on_client, |ns| clients(ns, "basic"));
    o.expect(
        hook,
        &[
            ("get_ok", Some(200)),
            ("head_ok", Some(200)),
            ("get_secret2", Some(200)),
            ("get_query", Some(200)),
            ("http10", Some(200)),
            ("post", Some(200)),
            ("get_admin", None),
            ("get_admin_query", None),
            ("get_secret", None),
            ("delete", None),
            ("delete_lower", None),
            ("split", None),
        ],
    );
    let (got, v) = (&o.got, &o.v);
    for want in [
        "GET /ok",
        "HEAD /ok",
        "GET /secret2",
        "GET /ok?next=/admin",
        "POST /ok",
    ] {
        assert!(
            got.iter().any(|g| g == want),
            "{hook}: the server got {want}: {got:?}"
        );
    }
    for g in got {
        let bad = g.starts_with("DELETE")
            || g.starts_with("delete")
            || g.contains(" /admin")
            || g == "GET /secret";
        assert!(!bad, "{hook}: the server got {g} (all {got:?})");
    }
    // DELETE and delete, each retransmitted; the two /admin requests; /secret.
    assert!(rule_packets(v, 0) >= 2, "{hook}: DELETE dropped: {v}");
    assert!(rule_packets(v, 1) >= 2, "{hook}: /admin dropped: {v}");
    assert!(rule_packets(v, 2) >= 1, "{hook}: /secret dropped: {v}");
    // The split request line fails closed: counted as malformed.
    assert!(
        o.malformed() >= 1,
        "{hook}: the split request line was dropped as incomplete: {v}"
    );
    assert!(
        v["programs"][0]["default"].as_u64().unwrap_or(0) >= 10,
        "{hook}: the allowed requests passed: {v}"
    );
}

#[test]
fn tc_ingress_drops_requests_by_method_and_path() {
    scenario("h7i", "tc(\"va\", ingress)", false);
}

#[test]
fn tc_egress_on_the_client_drops_requests_by_method_and_path() {
    scenario("h7e", "tc(\"vb\", egress)", true);
}

#[test]
fn xdp_drops_requests_by_method_and_path() {
    scenario("h7x", "xdp(\"va\")", false);
}
