//! `--metrics`: `pol run` and `pol status` serve Prometheus metrics, scraped by a plain
//! HTTP client and by a real Prometheus server; the Grafana dashboard asks only for series
//! pol exports.

mod common;
mod run_support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{require_kernel, TempDir};
use run_support::*;

/// `GET http://ADDR/PATH` from inside network namespace `ns` (python's urllib).
fn get_in(ns: &str, url: &str) -> String {
    let script = format!(
        "import urllib.request\nprint(urllib.request.urlopen('{url}', timeout=5).read().decode(), end='')"
    );
    let out = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{ns}"))
        .args([&python(), "-c", &script])
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "GET {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn policy(name: &str) -> String {
    format!(
        "filter {name} on xdp(\"va\") {{\n    drop udp.dport == 9999   count dropped\n    \
         pass udp                 count udp_by_port[udp.dport]\n    default pass\n}}\n"
    )
}

/// The value of the series line starting with `series` (name and labels).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
#[cfg_attr(
    pol_no_netns,
    ignore = "kernel test: needs root, bpf(), iproute2, util-linux, bpftool and python3, unavailable at build time (CI=true runs it)"
)]
fn pol_run_serves_per_rule_and_count_metrics() {
    require_kernel();
    require_tools();
    let net = NetPair::new("mr");
    let dir = TempDir::new("pol_metrics_run");
    let file = dir.path().join("met_run.pol");
    std::fs::write(&file, policy("met_run")).expect("write");
    let file = file.to_str().expect("utf-8");
    let mut pol = PolRun::start(
        &net.a,
        &[
            file,
            "--json",
            "--metrics",
            "127.0.0.1:0",
            "--interval",
            "0.2",
        ],
        &[],
    );
    let attached = pol
        .wait_for("\"attached\"", Duration::from_secs(30))
        .expect("attached");
    let addr = json(&attached)["metrics"]
        .as_str()
        .expect("metrics address")
        .to_string();
    send_udp(&net, 9999, 5);
    send_udp(&net, 5353, 3);
    let text = get_in(&net.a, &format!("http://{addr}/metrics"));
    let p = "{policy=\"met_run\"";
    assert_eq!(
        value(
            &text,
            &format!("pol_rule_packets_total{p},filter=\"met_run\",rule=\"0\",line=\"2\",verdict=\"drop\"}}")
        ),
        Some(5.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            &format!("pol_count_packets_total{p},count=\"dropped\"}}")
        ),
        Some(5.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            &format!("pol_count_packets_total{p},count=\"udp_by_port\",key=\"5353\"}}")
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(value(&text, "pol_up "), Some(1.0), "{text}");
    assert!(
        text.contains(&format!(
            "pol_program_info{p},filter=\"met_run\",iface=\"va\",attach=\"xdp"
        )),
        "{text}"
    );
    assert!(
        text.contains("# TYPE pol_rule_packets_total counter"),
        "{text}"
    );
    // Scrapes read the maps afresh.
    send_udp(&net, 9999, 2);
    let text = get_in(&net.a, &format!("http://{addr}/metrics"));
    assert_eq!(
        value(
            &text,
            &format!("pol_count_packets_total{p},count=\"dropped\"}}")
        ),
        Some(7.0),
        "{text}"
    );
    if common::have("promtool") {
        let mut check = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("promtool");
        use std::io::Write;
        check
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write");
        let out = check.wait_with_output().expect("promtool");
        assert!(
            out.status.success(),
            "promtool check metrics: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    pol.signal("INT");
    let (ok, _, err) = pol.finish(Duration::from_secs(10));
    assert!(ok, "{err}");
    assert_clean(&net.a, "met_run");
}

#[test]
#[cfg_attr(
    pol_no_prometheus,
    ignore = "kernel test: needs root, bpf(), the netns tools and Debian's prometheus, unavailable at build time (CI=true runs it)"
)]
fn a_real_prometheus_scrapes_pol_status() {
    require_kernel();
    require_tools();
    common::require_tool("prometheus");
    let name = format!("met_prom_{}", std::process::id());
    let _unload = Unload::new(&[&name]);
    let net = NetPair::new("mp");
    let dir = TempDir::new("pol_metrics_prom");
    let file = dir.path().join("met_prom.pol");
    std::fs::write(&file, policy("met_prom")).expect("write");
    let file = file.to_str().expect("utf-8");
    let pol = |args: &[&str]| {
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", net.a))
            .arg(env!("CARGO_BIN_EXE_pol"))
            .args(args)
            .output()
            .expect("pol")
    };
    let out = pol(&["load", file, "--name", &name]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    send_udp(&net, 9999, 4);
    // `pol status --metrics` inside A, on a fixed port of A's loopback.
    let mut status = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", net.a))
        .arg(env!("CARGO_BIN_EXE_pol"))
        .args(["status", &name, "--metrics", "127.0.0.1:19464"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("pol status --metrics");
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: pol\n    \
         static_configs:\n      - targets: ['127.0.0.1:19464']\n",
    )
    .expect("write config");
    let mut prom = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", net.a))
        .arg("prometheus")
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .args(["--web.listen-address=127.0.0.1:19090"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus");
    let query = "http://127.0.0.1:19090/api/v1/query?query=pol_count_packets_total%7Bcount%3D%22dropped%22%7D";
    let end = Instant::now() + Duration::from_secs(40);
    let mut last = String::new();
    let mut found = None;
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(500));
        let script = format!(
            "import urllib.request\ntry:\n    print(urllib.request.urlopen('{query}', timeout=2).read().decode())\nexcept Exception as e:\n    print('ERR', e)"
        );
        let out = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", net.a))
            .args([&python(), "-c", &script])
            .output()
            .expect("python");
        last = String::from_utf8_lossy(&out.stdout).into_owned();
        if last.starts_with('{') {
            let v = json(last.trim());
            if let Some(r) = v["data"]["result"].as_array().and_then(|r| r.first()) {
                found = Some(r.clone());
                break;
            }
        }
    }
    let _ = prom.kill();
    let _ = prom.wait();
    let _ = Command::new("kill")
        .args(["-INT", &status.id().to_string()])
        .status();
    let _ = status.wait();
    let out = pol(&["unload", &name]);
    assert!(out.status.success());
    let r = found.unwrap_or_else(|| panic!("Prometheus never got the series: {last}"));
    assert_eq!(r["metric"]["policy"], name.as_str(), "{r}");
    assert_eq!(r["metric"]["job"], "pol", "{r}");
    assert_eq!(r["value"][1], "4", "{r}");
    assert_clean(&net.a, "met_prom");
}

#[test]
fn the_grafana_dashboard_asks_only_for_series_pol_exports() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/grafana/pol-dashboard.json"
    );
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("read dashboard"))
            .expect("dashboard is JSON");
    let mut exprs: Vec<String> = Vec::new();
    for p in dash["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().expect("targets") {
            exprs.push(t["expr"].as_str().expect("expr").to_string());
        }
    }
    for v in dash["templating"]["list"].as_array().into_iter().flatten() {
        if let Some(q) = v["query"].as_str() {
            exprs.push(q.to_string());
        }
    }
    assert!(exprs.len() >= 5, "{exprs:?}");
    let exported = pol_runtime::metrics::SERIES;
    let mut used = std::collections::BTreeSet::new();
    for e in &exprs {
        // Every identifier that looks like a pol series must be one pol exports...
        let names: Vec<&str> = e
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("pol_"))
            .collect();
        // ...and every query must ask for at least one.
        assert!(!names.is_empty(), "a query names no pol series: {e}");
        for n in names {
            assert!(
                exported.contains(&n),
                "`{n}` in `{e}` is not a series pol exports"
            );
            used.insert(n);
        }
    }
    // The dashboard shows every series pol exports.
    for s in exported {
        assert!(used.contains(s), "no panel shows {s}");
    }
}
