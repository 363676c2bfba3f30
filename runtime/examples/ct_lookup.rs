//! bench/flood part 3: ns per packet of pol's connection tracking with 1,000 and 1,000,000
//! flows in the table, beside the same filter without tracking, in one run
//! (BPF_PROG_TEST_RUN, 10^6 repeats, an ACK of a known established flow, and one of a flow
//! the table does not hold). bench/flood/ct_kfunc.sh runs it beside the kernel's conntrack.
//!   sudo cargo run --release -p pol-runtime --example ct_lookup
//! Needs root and bpf().

use pol_compiler::driver;
use pol_runtime::direct::{Direct, Object};
use pol_runtime::packet::{Packet, ACK};

const REPEAT: u32 = 1_000_000;

/// The flow key as `ir::lower::state::ct_key_ty` lays it out.
fn key(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let mut k = vec![0u8; 40];
    k[..4].copy_from_slice(&src);
    k[16..20].copy_from_slice(&dst);
    k[32..34].copy_from_slice(&sport.to_le_bytes());
    k[34..36].copy_from_slice(&dport.to_le_bytes());
    k[36] = 6;
    k[37] = 4;
    k
}

/// ns per packet of `source`'s first program on each of `packets`, the table filled first.
fn run(source: &str, flows: u32, packets: &[&[u8]]) -> Result<Vec<u32>, String> {
    let c = driver::compile(source).map_err(|d| format!("{} compile errors", d.len()))?;
    let d = Direct::load(&c).map_err(|e| e.to_string())?;
    if source.contains("ct.state") {
        // Established, expiring in a day.
        let mut value = vec![0u8; 16];
        value[..8].copy_from_slice(&(86_400u64 * 1_000_000_000 * 365).to_le_bytes());
        value[8] = 2;
        for i in 0..flows {
            let b = i.to_be_bytes();
            let k = key(
                [10, b[1], b[2], b[3]],
                [192, 0, 2, 1],
                1024 + (i % 50_000) as u16,
                80,
            );
            d.map_update("pol_ct", &k, &value)
                .map_err(|e| e.to_string())?;
        }
        let k = key([198, 51, 100, 7], [192, 0, 2, 1], 40000, 80);
        d.map_update("pol_ct", &k, &value)
            .map_err(|e| e.to_string())?;
    }
    let prog = c.spec.programs.first().ok_or("no program")?.name.clone();
    let mut out = Vec::new();
    for packet in packets {
        // Warm up, then measure.
        d.test_run(&prog, packet, 10_000)
            .map_err(|e| e.to_string())?;
        let r = d
            .test_run(&prog, packet, REPEAT)
            .map_err(|e| e.to_string())?;
        out.push(r.duration_ns);
    }
    Ok(out)
}

fn main() -> Result<(), String> {
    let packet = Packet::tcp()
        .src("198.51.100.7")
        .dst("192.0.2.1")
        .sport(40000)
        .dport(80)
        .flags(ACK)
        .build()
        .map_err(|e| e.to_string())?;
    // Not in the table: with `full: closed` it is invalid and leaves the table as it was.
    let unknown = Packet::tcp()
        .src("203.0.113.9")
        .dst("192.0.2.1")
        .sport(40000)
        .dport(80)
        .flags(ACK)
        .build()
        .map_err(|e| e.to_string())?;
    let plain = "filter ctb on xdp(\"eth0\") {\n    drop tcp.dport == 23\n    default pass\n}\n";
    println!(
        "{:<48} {:>4} ns/packet",
        "no tracking (one port test)",
        run(plain, 0, &[&packet])?[0]
    );
    for flows in [1_000u32, 1_000_000] {
        let size = flows + flows / 4 + 16;
        let src = format!(
            "const conntrack = {{ size: {size} }}\nfilter ctb on xdp(\"eth0\") {{\n    drop tcp.dport == 23\n    drop ct.state == invalid\n    default pass\n}}\n"
        );
        let ns = run(&src, flows, &[&packet, &unknown])?;
        for (kind, ns) in ["known", "unknown"].iter().zip(ns) {
            println!(
                "{:<48} {:>4} ns/packet",
                format!("pol table, {flows} flows, {kind} flow"),
                ns
            );
        }
    }
    Ok(())
}
