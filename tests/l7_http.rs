//! HTTP request lines matched in the kernel (issue 13 §1, §4), with real traffic: an HTTP
//! server in one namespace, clients in the other over a veth pair, `pol run` filtering
//! on tc ingress, tc egress (the client's side) and XDP. Each scenario checks what the
//! server received while the filter was attached, what each client saw, and the counters.
//!
//! The traffic is `tests/l7_http/traffic.py`: raw sockets, so requests include what curl
//! never sends (a lower-case method, a request line split across two segments).

mod common;
mod run_support;

use common::{require_kernel, TempDir};
use run_support::{assert_clean, json, python, require_tools, rule_packets, NetPair, PolRun};
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

const RULES: &str = r#"drop http.method == "DELETE"
    drop starts_with(http.path, "/admin")
    drop http.path in { "/secret", "/private/x" }"#;

/// Starts `pol run FILE ARGS` in `ns` and waits until it attached.
fn start(ns: &str, args: &[&str]) -> PolRun {
    let mut pol = PolRun::start(ns, args, &[]);
    if pol
        .wait_for("\"attached\"", Duration::from_secs(30))
        .is_none()
    {
        let (_, lines, err) = pol.finish(Duration::from_secs(5));
        panic!("pol run did not attach:\nstdout: {lines:?}\nstderr: {err}");
    }
    pol
}

/// Stops `pol`; its final counters.
fn stop(pol: PolRun) -> serde_json::Value {
    pol.signal("INT");
    let (ok, lines, err) = pol.finish(Duration::from_secs(10));
    assert!(ok, "pol run failed: {err}");
    let last = lines
        .iter()
        .rev()
        .find(|l| l.contains("\"final\""))
        .unwrap_or_else(|| panic!("no final JSON object: {lines:?}\n{err}"));
    json(last)
}

/// examples/l7/gateway.pol on the server's tc ingress: GET and HEAD on /api/ (any case),
/// nothing on /admin however it is spelled (`%61`, `..`, `.`, lower case, split).
#[test]
fn gateway_example_allows_get_on_api_and_nothing_on_admin() {
    require_kernel();
    require_tools();
    let net = NetPair::new("h7g");
    let file = format!("{}/examples/l7/gateway.pol", env!("CARGO_MANIFEST_DIR"));
    let server = Server::start(&net.a);
    let pol = start(
        &net.a,
        &[&file, "--iface", "va", "--json", "--interval", "0.5"],
    );
    let seen = clients(&net.b, "gateway");
    let got = server.received();
    let v = stop(pol);
    assert_clean(&net.a, "gateway");
    for (req, want) in [
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
    ] {
        assert_eq!(
            seen[req].as_u64(),
            want,
            "gateway: client {req} saw {} (all: {seen}; server got {got:?}; {v})",
            seen[req]
        );
    }
    assert_eq!(got.len(), 5, "five requests reached the server: {got:?}");
    for g in &got {
        assert!(
            !g.contains("admin")
                && !g.to_ascii_uppercase().starts_with("POST /API")
                && !g.to_ascii_uppercase().starts_with("DELETE"),
            "gateway: the server got {g} (all {got:?})"
        );
    }
    assert!(
        rule_packets(&v, 0) >= 2,
        "/admin and get /admin dropped: {v}"
    );
    assert!(
        rule_packets(&v, 1) >= 2,
        "POST and delete on /api/ dropped: {v}"
    );
    assert!(
        v["programs"][0]["malformed"].as_u64().unwrap_or(0) >= 4,
        "%61, .., . and the split request dropped as incomplete: {v}"
    );
}

/// Host names: exact in any case, with a port and a final dot, a suffix, a header name in
/// any case; a request without Host fails closed.
#[test]
fn host_rules_match_the_host_header() {
    require_kernel();
    require_tools();
    let net = NetPair::new("h7h");
    let dir = TempDir::new("h7h");
    let name = format!("h7h{}", std::process::id());
    let file = dir.path().join(format!("{name}.pol"));
    std::fs::write(
        &file,
        format!(
            "filter {name} on xdp(\"va\") {{\n    drop http.host in {{ \"evil.com\", \"Evil.org\" }}\n    \
             drop ends_with(http.host, \".bad.net\")\n    default pass\n}}\n"
        ),
    )
    .expect("write policy");
    let server = Server::start(&net.a);
    let file = file.to_str().expect("utf-8 path");
    let pol = start(&net.a, &[file, "--json", "--interval", "0.5"]);
    let seen = clients(&net.b, "hosts");
    let got = server.received();
    let v = stop(pol);
    assert_clean(&net.a, &name);
    for (req, want) in [
        ("host_ok", Some(200)),
        ("host_bad_net", Some(200)),
        ("host_evil", None),
        ("host_evil_case", None),
        ("host_evil_port_dot", None),
        ("host_sub", None),
        ("host_lower_header", None),
        ("host_none", None),
    ] {
        assert_eq!(
            seen[req].as_u64(),
            want,
            "hosts: client {req} saw {} (all: {seen}; server got {got:?}; {v})",
            seen[req]
        );
    }
    assert_eq!(got.len(), 2, "two requests reached the server: {got:?}");
    assert!(rule_packets(&v, 0) >= 4, "evil.com/org dropped: {v}");
    assert!(rule_packets(&v, 1) >= 1, "*.bad.net dropped: {v}");
    assert!(
        v["programs"][0]["malformed"].as_u64().unwrap_or(0) >= 1,
        "the request without Host failed closed: {v}"
    );
}

/// One scenario: the filter `hook` run in namespace `filter_ns` of the pair.
fn scenario(tag: &str, hook: &str, on_client: bool) {
    require_kernel();
    require_tools();
    let net = NetPair::new(tag);
    let dir = TempDir::new(tag);
    let name = format!("{tag}{}", std::process::id());
    let file = dir.path().join(format!("{name}.pol"));
    std::fs::write(
        &file,
        format!("filter {name} on {hook} {{\n    {RULES}\n    default pass\n}}\n"),
    )
    .expect("write policy");
    let server = Server::start(&net.a);
    let ns = if on_client { &net.b } else { &net.a };
    let file = file.to_str().expect("utf-8 path");
    let mut pol = PolRun::start(ns, &[file, "--json", "--interval", "0.5"], &[]);
    if pol
        .wait_for("\"attached\"", Duration::from_secs(30))
        .is_none()
    {
        let (_, lines, err) = pol.finish(Duration::from_secs(5));
        panic!("pol run did not attach:\nstdout: {lines:?}\nstderr: {err}");
    }
    let seen = clients(&net.b, "basic");
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

    for (req, want) in [
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
    ] {
        assert_eq!(
            seen[req].as_u64(),
            want,
            "{hook}: client {req} saw {} (all: {seen}; server got {got:?}; {v})",
            seen[req]
        );
    }
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
    for g in &got {
        let bad = g.starts_with("DELETE")
            || g.starts_with("delete")
            || g.contains(" /admin")
            || g == "GET /secret";
        assert!(!bad, "{hook}: the server got {g} (all {got:?})");
    }
    // DELETE and delete, each retransmitted; the two /admin requests; /secret.
    assert!(rule_packets(&v, 0) >= 2, "{hook}: DELETE dropped: {v}");
    assert!(rule_packets(&v, 1) >= 2, "{hook}: /admin dropped: {v}");
    assert!(rule_packets(&v, 2) >= 1, "{hook}: /secret dropped: {v}");
    // The split request line fails closed: counted as malformed.
    assert!(
        v["programs"][0]["malformed"].as_u64().unwrap_or(0) >= 1,
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
