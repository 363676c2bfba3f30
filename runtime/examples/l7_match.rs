//! bench/l7 part 1: ns per packet of pol's in-kernel HTTP path matching with 10, 1,000 and
//! 100,000 path patterns, beside the same filter with no HTTP rule (the parser alone) and a
//! fixed-offset payload test, in one run (BPF_PROG_TEST_RUN, 10^6 repeats, rounds
//! alternated; median of the rounds). The goal is a cost flat in the pattern count: the
//! patterns are one LPM trie, looked up once per request.
//!   sudo cargo run -p pol-runtime --example l7_match
//! Needs root and bpf().

use pol_compiler::driver;
use pol_runtime::direct::{Direct, Object};

const REPEAT: u32 = 1_000_000;
const ROUNDS: usize = 5;

/// Ethernet, IPv4 and TCP to port 80 around `payload`.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 54];
    f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14] = 0x45;
    f[16..18].copy_from_slice(&((40 + payload.len()) as u16).to_be_bytes());
    f[22] = 64;
    f[23] = 6;
    f[26..30].copy_from_slice(&[10, 0, 0, 1]);
    f[30..34].copy_from_slice(&[10, 0, 0, 2]);
    f[34..36].copy_from_slice(&40000u16.to_be_bytes());
    f[36..38].copy_from_slice(&80u16.to_be_bytes());
    f[46] = 0x50;
    f[47] = 0x18;
    f.extend_from_slice(payload);
    f
}

/// A filter of `n` exact paths and `n / 10` prefixes (at least one), none of which the
/// request matches (every rule is looked at: the worst case).
fn http_filter(n: usize) -> String {
    let exact: Vec<String> = (0..n).map(|i| format!("\"/blocked/{i:06}\"")).collect();
    let prefixes: String = (0..(n / 10).clamp(1, 30))
        .map(|i| format!("    drop starts_with(http.path, \"/deny{i}/\")\n"))
        .collect();
    format!(
        "filter f on xdp(\"eth0\") {{\n    drop http.path in {{ {} }}\n{prefixes}    drop http.method == \"DELETE\"\n    default pass\n}}\n",
        exact.join(", ")
    )
}

fn main() {
    let req = b"GET /api/v1/items/42?full=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/8\r\nAccept: */*\r\n\r\n";
    let packet = frame(req);
    let cases: Vec<(String, String)> = vec![
        (
            "no HTTP rule: tcp.dport == 23".into(),
            "filter f on xdp(\"eth0\") {\n    drop tcp.dport == 23\n    default pass\n}\n".into(),
        ),
        (
            "payload[0..4] == \"DELE\" (fixed offset)".into(),
            "filter f on xdp(\"eth0\") {\n    drop tcp.payload[0..4] == \"DELE\"\n    default pass\n}\n"
                .into(),
        ),
        ("http.path, 10 patterns".into(), http_filter(10)),
        ("http.path, 1,000 patterns".into(), http_filter(1000)),
        ("http.path, 100,000 patterns".into(), http_filter(100_000)),
    ];
    let mut loaded = Vec::new();
    for (name, src) in &cases {
        let c = match driver::compile(src) {
            Ok(c) => c,
            Err(d) => {
                eprintln!("{name}: {} compile errors", d.len());
                std::process::exit(1);
            }
        };
        let d = match Direct::load(&c) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("{name}: load: {e}");
                std::process::exit(1);
            }
        };
        loaded.push((name, d));
    }
    let mut ns: Vec<Vec<f64>> = vec![Vec::new(); loaded.len()];
    for _ in 0..ROUNDS {
        for (k, (name, d)) in loaded.iter().enumerate() {
            match d.test_run("f", &packet, REPEAT) {
                Ok(r) if r.retval == 2 => ns[k].push(f64::from(r.duration_ns)),
                Ok(r) => {
                    eprintln!("{name}: returned {} (expected XDP_PASS)", r.retval);
                    std::process::exit(1);
                }
                Err(e) => {
                    eprintln!("{name}: test run: {e}");
                    std::process::exit(1);
                }
            }
        }
    }
    println!(
        "| filter (XDP, one {}-byte GET request) | ns per packet (median of {ROUNDS}) |",
        req.len()
    );
    println!("| --- | --- |");
    for (k, (name, _)) in loaded.iter().enumerate() {
        let mut v = ns[k].clone();
        v.sort_by(|a, b| a.total_cmp(b));
        let med = v.get(v.len() / 2).copied().unwrap_or(0.0);
        println!("| {name} | {med:.0} |");
    }
}
