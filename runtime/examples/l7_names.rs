//! bench/l7/names.sh: ns per packet of `dns.qname in SET` and `tls.sni in SET` with 10,
//! 1,000 and 100,000 names in the set, and of `tls.alpn` with 1 and 32 tests, beside the
//! same filter testing only the port (the peer: parser and rules without the L7 stage),
//! in one run (BPF_PROG_TEST_RUN, 10^6 repeats, rounds alternating, medians).
//!   sudo bench/l7/names.sh   (cargo run -p pol-runtime --example l7_names)
//! Needs root and bpf().

use pol_compiler::driver;
use pol_runtime::direct::{Direct, Object};
use pol_runtime::packet::Packet;

const REPEAT: u32 = 1_000_000;
const ROUNDS: usize = 5;

/// A DNS query for `name` (A, IN).
fn query(name: &str) -> Vec<u8> {
    let mut m = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for l in name.split('.') {
        m.push(l.len() as u8);
        m.extend(l.as_bytes());
    }
    m.extend([0, 0, 1, 0, 1]);
    m
}

/// A TLS 1.3 ClientHello naming `name`, shaped like openssl's: 31 cipher suites, the
/// server_name, supported_groups, signature_algorithms, ALPN (`h2`, `http/1.1`, as curl
/// offers) and supported_versions extensions.
fn hello(name: &str) -> Vec<u8> {
    let ext = |t: u16, body: &[u8]| {
        let mut e = t.to_be_bytes().to_vec();
        e.extend((body.len() as u16).to_be_bytes());
        e.extend(body);
        e
    };
    let mut sni = ((name.len() + 3) as u16).to_be_bytes().to_vec();
    sni.push(0);
    sni.extend((name.len() as u16).to_be_bytes());
    sni.extend(name.as_bytes());
    let mut exts = ext(0, &sni);
    exts.extend(ext(10, &[0, 4, 0, 0x1d, 0, 0x17]));
    exts.extend(ext(13, &[0, 4, 4, 3, 8, 4]));
    exts.extend(ext(16, b"\x00\x0c\x02h2\x08http/1.1"));
    exts.extend(ext(43, &[4, 3, 4, 3, 3]));
    let mut body = vec![3, 3];
    body.extend([7u8; 32]);
    body.push(32);
    body.extend([9u8; 32]);
    body.extend(62u16.to_be_bytes());
    body.extend([0x13u8, 0x01].repeat(31));
    body.extend([1, 0]);
    body.extend((exts.len() as u16).to_be_bytes());
    body.extend(exts);
    let mut hs = vec![1, 0];
    hs.extend((body.len() as u16).to_be_bytes());
    hs.extend(body);
    let mut rec = vec![22, 3, 1];
    rec.extend((hs.len() as u16).to_be_bytes());
    rec.extend(hs);
    rec
}

fn names(n: usize) -> String {
    let mut v: Vec<String> = (0..n)
        .map(|i| format!("\"host{i}.zone{}.example\"", i % 499))
        .collect();
    v.push("\"*.blocked.test\"".into());
    v.join(", ")
}

struct Case {
    label: String,
    source: String,
    packet: Vec<u8>,
    samples: Vec<u64>,
    loaded: Option<(Direct, String)>,
}

fn main() -> Result<(), String> {
    let dns_pkt = Packet::udp()
        .sport(40000)
        .dport(53)
        .payload(&query("www.wikipedia.example"))
        .build()
        .map_err(|e| e.to_string())?;
    let tls_pkt = Packet::tcp()
        .sport(40000)
        .dport(443)
        .payload(&hello("www.wikipedia.example"))
        .build()
        .map_err(|e| e.to_string())?;
    let mut cases = vec![
        Case {
            label: "peer: udp.dport == 53 only (no L7 stage)".into(),
            source:
                "filter b on xdp(\"eth0\") {\n    drop udp.dport == 5353\n    default pass\n}\n"
                    .into(),
            packet: dns_pkt.clone(),
            samples: vec![],
            loaded: None,
        },
        Case {
            label: "peer: tcp.dport == 443 only (no L7 stage)".into(),
            source:
                "filter b on xdp(\"eth0\") {\n    drop tcp.dport == 4443\n    default pass\n}\n"
                    .into(),
            packet: tls_pkt.clone(),
            samples: vec![],
            loaded: None,
        },
    ];
    for n in [10usize, 1_000, 100_000] {
        let set = format!("set names: dnsname = {{ {} }}\n", names(n));
        cases.push(Case {
            label: format!("dns.qname in SET, {n} names"),
            source: format!(
                "{set}filter b on xdp(\"eth0\") {{\n    drop dns.qname in names\n    default pass\n}}\n"
            ),
            packet: dns_pkt.clone(),
            samples: vec![],
            loaded: None,
        });
        cases.push(Case {
            label: format!("tls.sni in SET, {n} names"),
            source: format!(
                "{set}filter b on xdp(\"eth0\") {{\n    drop tls.sni in names\n    default pass\n}}\n"
            ),
            packet: tls_pkt.clone(),
            samples: vec![],
            loaded: None,
        });
    }
    // ALPN: one test, and the most a file may have (32), no protocol matching.
    for n in [1usize, 32] {
        let rules: String = (0..n)
            .map(|i| format!("    drop tls.alpn == \"proto{i}\"\n"))
            .collect();
        cases.push(Case {
            label: format!("tls.alpn, {n} test{}", if n == 1 { "" } else { "s" }),
            source: format!("filter b on xdp(\"eth0\") {{\n{rules}    default pass\n}}\n"),
            packet: tls_pkt.clone(),
            samples: vec![],
            loaded: None,
        });
    }
    for c in cases.iter_mut() {
        let compiled = driver::compile(&c.source).map_err(|d| format!("{} errors", d.len()))?;
        let d = Direct::load(&compiled).map_err(|e| e.to_string())?;
        let prog = compiled
            .spec
            .programs
            .first()
            .ok_or("no program")?
            .name
            .clone();
        // The packet must pass: the name is in no set.
        let r = d.test_run(&prog, &c.packet, 1).map_err(|e| e.to_string())?;
        if r.retval != 2 {
            return Err(format!(
                "{}: XDP verdict {} (expected pass)",
                c.label, r.retval
            ));
        }
        d.test_run(&prog, &c.packet, 10_000)
            .map_err(|e| e.to_string())?;
        c.loaded = Some((d, prog));
    }
    for _ in 0..ROUNDS {
        for c in cases.iter_mut() {
            if let Some((d, prog)) = &c.loaded {
                let r = d
                    .test_run(prog, &c.packet, REPEAT)
                    .map_err(|e| e.to_string())?;
                c.samples.push(u64::from(r.duration_ns));
            }
        }
    }
    println!("{ROUNDS} rounds x {REPEAT} runs, median ns per packet (XDP, a name in no set)");
    for c in cases.iter_mut() {
        c.samples.sort_unstable();
        let med = c.samples.get(c.samples.len() / 2).copied().unwrap_or(0);
        println!("{:<48} {:>5} ns/packet", c.label, med);
    }
    Ok(())
}
