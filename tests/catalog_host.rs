//! The probe catalog against this host: every tracepoint's format file and every raw
//! tracepoint in vmlinux BTF parses; the fixture in `tests/catalog/` (what the compiler's
//! golden tests read instead of the host) agrees with the host.
//! `POL_BLESS=1` rewrites `tests/catalog/raw_tracepoints.json` from this host.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use pol_compiler::catalog::{ArgTy, Catalog, DirCatalog, HostCatalog, ProbeEntry, TraceArg};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/catalog")
}

/// Raw tracepoints the fixture carries.
const RAW: [&str; 9] = [
    "sys_enter",
    "sys_exit",
    "sched_switch",
    "sched_process_exec",
    "sched_process_exit",
    "sched_process_fork",
    "sched_wakeup",
    "inet_sock_set_state",
    "block_rq_issue",
];

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root to read tracefs, unavailable at build time (CI=true runs it)"
)]
fn every_tracepoint_and_raw_tracepoint_of_this_host_parses() {
    common::require_kernel();
    pol_runtime::trace::attach::ensure_tracefs().expect("tracefs");
    let host = HostCatalog;
    let all = host.list("*");
    let (mut tps, mut raws, mut other, mut fields) = (0, 0, 0, 0);
    for e in &all {
        let args = match e {
            ProbeEntry::Tracepoint { category, name } => {
                tps += 1;
                host.tracepoint(category, name)
            }
            ProbeEntry::RawTracepoint { name } => {
                raws += 1;
                host.raw_tracepoint(name)
            }
        }
        .unwrap_or_else(|err| panic!("{e}: {err}"));
        fields += args.len();
        other += args.iter().filter(|a| a.ty == ArgTy::Other).count();
    }
    eprintln!(
        "{tps} tracepoints, {raws} raw tracepoints, {fields} arguments ({other} not usable yet)"
    );
    assert!(tps > 500 && raws > 500, "{tps} tracepoints, {raws} raw");
    // Nearly everything gets a usable type.
    assert!(other * 20 < fields, "{other} of {fields} arguments untyped");
    let e = host
        .tracepoint("syscalls", "sys_enter_opnat")
        .expect_err("misspelt");
    assert_eq!(e.nearest(), Some("syscalls:sys_enter_openat"));
    let e = host.raw_tracepoint("sched_swich").expect_err("misspelt");
    assert_eq!(e.nearest(), Some("sched_switch"));
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root to read tracefs, unavailable at build time (CI=true runs it)"
)]
fn the_fixture_agrees_with_this_host() {
    common::require_kernel();
    pol_runtime::trace::attach::ensure_tracefs().expect("tracefs");
    let host = HostCatalog;
    let raw: BTreeMap<&str, Vec<TraceArg>> = RAW
        .iter()
        .map(|n| (*n, host.raw_tracepoint(n).unwrap_or_else(|e| panic!("{e}"))))
        .collect();
    let path = fixture().join("raw_tracepoints.json");
    if std::env::var("POL_BLESS").is_ok_and(|v| v == "1") {
        let text = serde_json::to_string_pretty(&raw).expect("json");
        std::fs::write(&path, text + "\n").expect("write fixture");
    }
    let dir = DirCatalog::new(fixture()).expect("fixture");
    for (name, args) in &raw {
        assert_eq!(
            &dir.raw_tracepoint(name).expect("in the fixture"),
            args,
            "{name}: fixture differs from this host (POL_BLESS=1 rewrites it)"
        );
    }
    for e in dir.list("tracepoint:*") {
        let ProbeEntry::Tracepoint { category, name } = &e else {
            unreachable!("tracepoints only")
        };
        assert_eq!(
            dir.tracepoint(category, name).expect("fixture"),
            host.tracepoint(category, name).expect("host"),
            "{e}"
        );
    }
}
