//! The probe catalog on the fixture in `tests/catalog/` (format files and raw tracepoint
//! arguments copied from a 6.18 host): what the compiler's golden tests see.

use std::path::PathBuf;

use pol_compiler::catalog::{
    ArgTy, Catalog, CatalogError, DirCatalog, NoCatalog, ProbeEntry, TraceArg,
};

fn fixture() -> DirCatalog {
    DirCatalog::new(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/catalog"))
        .expect("fixture")
}

fn types(args: &[TraceArg]) -> Vec<(&str, ArgTy, u32)> {
    args.iter()
        .map(|a| (a.name.as_str(), a.ty, a.offset))
        .collect()
}

const fn int(bytes: u8, signed: bool) -> ArgTy {
    ArgTy::Int { bytes, signed }
}

#[test]
fn tracepoint_records_are_typed_from_their_format_files() {
    let cat = fixture();
    let exec = cat.tracepoint("sched", "sched_process_exec").expect("exec");
    assert_eq!(
        types(&exec),
        vec![
            ("filename", ArgTy::DataLoc { string: true }, 8),
            ("pid", int(4, true), 12),
            ("old_pid", int(4, true), 16),
        ]
    );
    // sched_process_exit has its own layout (comm[16] first), not the template's.
    let exit = cat.tracepoint("sched", "sched_process_exit").expect("exit");
    assert_eq!(
        exit.first().map(|a| (a.decl(), a.ty)),
        Some((
            "char comm[16]".to_string(),
            ArgTy::Array {
                elem_bytes: 1,
                len: 16,
                string: true
            }
        ))
    );
    let read = cat.tracepoint("syscalls", "sys_enter_read").expect("read");
    assert_eq!(
        types(&read),
        vec![
            ("__syscall_nr", int(4, true), 8),
            ("fd", int(8, false), 16),
            (
                "buf",
                ArgTy::Ptr {
                    user: true,
                    string: true
                },
                24
            ),
            ("count", int(8, false), 32),
        ]
    );
    let ret = cat
        .tracepoint("syscalls", "sys_exit_read")
        .expect("exit read");
    assert_eq!(
        types(&ret),
        vec![("__syscall_nr", int(4, true), 8), ("ret", int(8, true), 16)]
    );
    let state = cat.tracepoint("sock", "inet_sock_set_state").expect("sock");
    let names: Vec<&str> = state.iter().map(|a| a.name.as_str()).collect();
    assert!(
        names.starts_with(&["skaddr", "oldstate", "newstate", "sport", "dport"]),
        "{names:?}"
    );
}

#[test]
fn raw_tracepoints_are_typed_from_btf() {
    let cat = fixture();
    let switch = cat.raw_tracepoint("sched_switch").expect("sched_switch");
    let decls: Vec<(String, u32)> = switch.iter().map(|a| (a.decl(), a.offset)).collect();
    assert_eq!(
        decls,
        vec![
            ("bool preempt".to_string(), 0),
            ("struct task_struct * prev".to_string(), 8),
            ("struct task_struct * next".to_string(), 16),
            ("unsigned int prev_state".to_string(), 24),
        ]
    );
    let enter = cat.raw_tracepoint("sys_enter").expect("sys_enter");
    assert_eq!(
        types(&enter),
        vec![
            (
                "regs",
                ArgTy::Ptr {
                    user: false,
                    string: false
                },
                0
            ),
            ("id", int(8, true), 8),
        ]
    );
}

#[test]
fn missing_probes_name_the_nearest() {
    let cat = fixture();
    match cat.tracepoint("syscalls", "sys_enter_opnat") {
        Err(e @ CatalogError::NoSuchTracepoint { .. }) => {
            assert_eq!(
                e.to_string(),
                "tracepoint syscalls:sys_enter_opnat does not exist on this kernel"
            );
            assert_eq!(e.nearest(), Some("syscalls:sys_enter_openat"));
        }
        other => panic!("{other:?}"),
    }
    let e = cat
        .tracepoint("shed", "sched_switch")
        .expect_err("category");
    assert_eq!(e.nearest(), Some("sched:sched_switch"));
    let e = cat.tracepoint("../..", "etc").expect_err("no escape");
    assert!(matches!(e, CatalogError::NoSuchTracepoint { .. }), "{e:?}");
    let e = cat.raw_tracepoint("sched_swtch").expect_err("raw");
    assert_eq!(
        e.to_string(),
        "raw tracepoint sched_swtch does not exist on this kernel"
    );
    assert_eq!(e.nearest(), Some("sched_switch"));
    assert_eq!(
        NoCatalog
            .tracepoint("sched", "sched_switch")
            .expect_err("none")
            .to_string(),
        "no probe catalog available"
    );
}

#[test]
fn list_selects_by_glob() {
    let cat = fixture();
    let names = |p: &str| -> Vec<String> { cat.list(p).iter().map(ToString::to_string).collect() };
    assert_eq!(
        names("syscalls:*open*"),
        vec![
            "tracepoint:syscalls:sys_enter_openat",
            "tracepoint:syscalls:sys_exit_openat"
        ]
    );
    assert_eq!(
        names("raw_tracepoint:sched_process_*"),
        vec![
            "raw_tracepoint:sched_process_exec",
            "raw_tracepoint:sched_process_exit",
            "raw_tracepoint:sched_process_fork"
        ]
    );
    assert_eq!(
        names("*sched_switch"),
        vec![
            "tracepoint:sched:sched_switch",
            "raw_tracepoint:sched_switch"
        ]
    );
    let all = cat.list("*");
    assert_eq!(all.len(), 29, "20 format files and 9 raw tracepoints");
    assert!(all.contains(&ProbeEntry::RawTracepoint {
        name: "sys_enter".into()
    }));
    assert!(cat.list("nothing*").is_empty());
}
