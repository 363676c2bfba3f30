//! `pol list` as a user runs it: on the fixture catalog (`--catalog tests/catalog`), on
//! a binary's symbols (uprobes), and on this host's tracefs.

use std::process::{Command, Output};

fn pol(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pol"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("pol runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn list(pattern: &[&str]) -> Output {
    let mut args = vec!["list", "--catalog", "tests/catalog"];
    args.extend_from_slice(pattern);
    pol(&args)
}

#[test]
fn a_glob_lists_names_only() {
    let o = list(&["syscalls:*open*"]);
    assert!(o.status.success());
    assert_eq!(
        stdout(&o),
        "tracepoint:syscalls:sys_enter_openat\ntracepoint:syscalls:sys_exit_openat\n"
    );
    let o = list(&["raw_tracepoint:sys_*"]);
    assert_eq!(
        stdout(&o),
        "raw_tracepoint:sys_enter\nraw_tracepoint:sys_exit\n"
    );
}

#[test]
fn one_probe_or_verbose_prints_typed_arguments() {
    let o = list(&["tracepoint:sched:sched_process_exec"]);
    assert_eq!(
        stdout(&o),
        "tracepoint:sched:sched_process_exec\n    __data_loc char[] filename\n    pid_t pid\n    pid_t old_pid\n"
    );
    let o = list(&["-v", "raw_tracepoint:sched_sw*"]);
    assert_eq!(
        stdout(&o),
        "raw_tracepoint:sched_switch\n    bool preempt\n    struct task_struct * prev\n    \
         struct task_struct * next\n    unsigned int prev_state\n"
    );
}

#[test]
fn json_has_every_argument_typed() {
    let o = list(&["--json", "syscalls:sys_exit_read"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).expect("one JSON line");
    assert_eq!(v["probe"], "tracepoint:syscalls:sys_exit_read");
    assert_eq!(v["args"][1]["name"], "ret");
    assert_eq!(v["args"][1]["ty"]["Int"]["signed"], true);
    assert_eq!(v["args"][1]["offset"], 16);
}

#[test]
fn nothing_matching_fails_with_a_sentence() {
    let o = list(&["nothing*"]);
    assert!(!o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "no probe matches nothing*\n"
    );
    let o = pol(&["list", "uprobe:/nonexistent/bin:main"]);
    assert!(!o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "error: uprobe target /nonexistent/bin does not exist\n"
    );
}

#[test]
fn uprobes_list_the_function_symbols_of_a_binary() {
    let bin = env!("CARGO_BIN_EXE_pol");
    let o = pol(&["list", &format!("uprobe:{bin}:main")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(stdout(&o), format!("uprobe:{bin}:main\n"));
    let o = pol(&["list", &format!("uretprobe:{bin}:*list_cmd*list_uprobes*")]);
    assert!(
        stdout(&o).starts_with(&format!("uretprobe:{bin}:")) && stdout(&o).contains("list_uprobes"),
        "{}",
        stdout(&o)
    );
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root to read tracefs, unavailable at build time (CI=true runs it)"
)]
fn this_hosts_tracepoints_and_raw_tracepoints() {
    let o = pol(&["list", "syscalls:sys_enter_openat"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        stdout(&o),
        "tracepoint:syscalls:sys_enter_openat\n    int __syscall_nr\n    int dfd\n    \
         const char * filename\n    int flags\n    umode_t mode\n"
    );
    let o = pol(&["list", "raw_tracepoint:sys_enter"]);
    assert_eq!(
        stdout(&o),
        "raw_tracepoint:sys_enter\n    struct pt_regs * regs\n    long int id\n"
    );
    let all = stdout(&pol(&["list"]));
    assert!(all.lines().count() > 1000, "{} probes", all.lines().count());
}
