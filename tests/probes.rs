//! `pol run` of probes as a user runs it: a file or a `-e` one-liner is compiled, attached
//! to the kernel, and prints its maps when stopped; the test generates the workload (a
//! command under a name of its own, so its counts can be asserted exactly) and checks the
//! printed table and the JSON.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{require_kernel, TempDir};

/// A command named `name` (a symlink to cat, so its comm is `name`) in `dir`.
fn workload(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    std::os::unix::fs::symlink("/bin/cat", &p).expect("symlink cat");
    p
}

/// Runs the workload `n` times; each run opens /etc/hostname (and its libraries).
fn run_workload(cmd: &Path, n: usize) {
    for _ in 0..n {
        let st = Command::new(cmd)
            .arg("/etc/hostname")
            .stdout(Stdio::null())
            .status()
            .expect("run workload");
        assert!(st.success());
    }
}

/// Starts `pol run ARGS` and waits until it says its probes are attached.
fn start(args: &[&str]) -> Child {
    common::pol_run(args).0
}

/// [`start`], keeping what `pol run` says on stderr after attaching (one line a message).
fn start_logged(args: &[&str]) -> (Child, std::sync::mpsc::Receiver<String>) {
    common::pol_run(args)
}

/// Stops `pol run` with SIGINT (as Ctrl-C does) and returns its stdout.
fn stop(child: Child) -> String {
    common::pol_stop(child)
}

/// A python process running `script`, its stdin and stdout piped (scripts wait for a
/// line on stdin before their workload, so probes attach first: see [`go`]).
fn python(script: &str) -> Child {
    Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3")
}

/// Sends the line a [`python`] script waits for.
fn go(p: &mut Child) {
    use std::io::Write;
    p.stdin
        .as_mut()
        .expect("stdin")
        .write_all(b"go\n")
        .expect("go");
}

/// A comm no other process on the machine has: `pw` and this test's pid.
fn unique_comm(tag: &str) -> String {
    format!("pw{tag}{}", std::process::id() % 100_000)
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn counting_opens_by_comm_prints_the_workload() {
    require_kernel();
    let dir = TempDir::new("pol_probe_opens");
    let comm = unique_comm("o");
    let cmd = workload(dir.path(), &comm);
    let file = dir.path().join("opens.pol");
    std::fs::write(
        &file,
        "probe opens on tracepoint(syscalls.sys_enter_openat) {\n    count by comm into opens\n}\n",
    )
    .expect("write");
    let child = start(&[file.to_str().expect("path")]);
    run_workload(&cmd, 20);
    let out = stop(child);
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("@opens[{comm}]: ")))
        .unwrap_or_else(|| panic!("no line for {comm} in:\n{out}"));
    let n: u64 = line
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("count");
    assert!(
        n >= 20,
        "{line}: each of 20 runs opens at least /etc/hostname"
    );
    // Sorted by value, as bpftrace prints: counts never decrease down the table.
    let counts: Vec<u64> = out
        .lines()
        .filter(|l| l.starts_with("@opens["))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    assert!(
        counts.windows(2).all(|w| w[0] <= w[1]),
        "not sorted:\n{out}"
    );
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn one_liner_with_a_predicate_prints_json() {
    require_kernel();
    let dir = TempDir::new("pol_probe_json");
    let comm = unique_comm("j");
    let cmd = workload(dir.path(), &comm);
    let program = format!(
        "probe tracepoint(syscalls.sys_enter_openat) {{ where comm == \"{comm}\" and pid > 0 count by comm, pid }}"
    );
    let child = start(&["--json", "-e", &program]);
    run_workload(&cmd, 5);
    let out = stop(child);
    let maps: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(maps.len(), 1, "{out}");
    assert_eq!(maps[0]["map"], "@");
    assert_eq!(maps[0]["function"], "count");
    let entries = maps[0]["entries"].as_array().expect("entries");
    // One entry per run of the workload (each its own pid), and no other comm.
    assert_eq!(entries.len(), 5, "{out}");
    for e in entries {
        assert_eq!(e["key"]["comm"], comm.as_str());
        assert!(e["key"]["pid"].as_u64().is_some_and(|p| p > 0));
        assert!(e["value"].as_u64().is_some_and(|v| v >= 1));
    }
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn a_missing_tracepoint_is_named_and_nothing_stays_attached() {
    require_kernel();
    let dir = TempDir::new("pol_probe_missing");
    let file = dir.path().join("missing.pol");
    // Checked against this kernel's catalog before anything loads: a span and the nearest.
    std::fs::write(
        &file,
        "probe good on tracepoint(syscalls.sys_enter_openat) {\n    count\n}\nprobe gone on tracepoint(syscalls.sys_enter_opnat) {\n    count\n}\n",
    )
    .expect("write");
    let (ok, _, err) = run_for(&["--duration", "5", file.to_str().expect("path")]);
    assert!(!ok);
    assert!(
        err.contains(
            "[E0513] Error: tracepoint syscalls:sys_enter_opnat does not exist on this kernel"
        ),
        "{err}"
    );
    assert!(
        err.contains("did you mean `syscalls.sys_enter_openat`?"),
        "{err}"
    );
    assert!(!err.contains("attached"), "{err}");
    // A probe that fails only when attaching (a uprobe on a symbol the binary lacks), after
    // one that attached: one sentence, and the first is detached again.
    std::fs::write(
        &file,
        format!("probe good on tracepoint(syscalls.sys_enter_openat) {{\n    count\n}}\nprobe gone on uprobe(\"{}\", pol_no_such_function) {{\n    count\n}}\n", libc_path()),
    )
    .expect("write");
    let (ok, _, err) = run_for(&["--duration", "5", file.to_str().expect("path")]);
    assert!(!ok);
    // (aya, asked for a symbol the table lacks, also looks for the debuglink file: the
    // sentence may name either.)
    assert!(err.contains("libc"), "{err}");
    assert!(!err.contains("attached 2"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one sentence: {err}");
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn emitted_records_print_as_columns_and_json_lines() {
    require_kernel();
    let dir = TempDir::new("pol_probe_emit");
    let comm = unique_comm("e");
    let cmd = workload(dir.path(), &comm);
    let file = dir.path().join("execs.pol");
    std::fs::write(
        &file,
        format!(
            "probe execs on tracepoint(sched.sched_process_exec) {{\n    where comm == \"{comm}\"\n    emit {{ pid, comm, tag: 7 }}\n}}\n"
        ),
    )
    .expect("write");
    for json in [false, true] {
        let mut args = vec![file.to_str().expect("path")];
        if json {
            args.insert(0, "--json");
        }
        let child = start(&args);
        run_workload(&cmd, 3);
        let out = stop(child);
        let lines: Vec<&str> = out.lines().collect();
        if json {
            assert_eq!(lines.len(), 3, "{out}");
            for l in lines {
                let v: serde_json::Value = serde_json::from_str(l).expect("JSON line");
                assert_eq!(v["type"], "event");
                assert_eq!(v["probe"], "execs");
                assert_eq!(v["comm"], comm.as_str());
                assert_eq!(v["tag"], 7);
                assert!(v["pid"].as_u64().is_some_and(|p| p > 0));
            }
        } else {
            assert_eq!(lines.len(), 4, "a header and 3 records: {out}");
            assert_eq!(
                lines[0].split_whitespace().collect::<Vec<_>>(),
                ["PID", "COMM", "TAG"]
            );
            for l in &lines[1..] {
                let cols: Vec<&str> = l.split_whitespace().collect();
                assert_eq!(cols[1], comm, "{l}");
                assert_eq!(cols[2], "7", "{l}");
                // Aligned: every column starts where its header does.
                assert_eq!(l.find(&comm), lines[0].find("COMM"), "{out}");
            }
        }
    }
}

/// The shared libc this test runs on (it has a symbol table; /bin tools may not).
fn libc_path() -> String {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.contains("/libc.so") || p.contains("/libc-"))
        .expect("this test runs on a shared libc")
        .to_string()
}

/// `pol run --duration SECS ARGS`: (success, stdout, stderr).
fn run_for(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pol"))
        .arg("run")
        .args(args)
        .output()
        .expect("run pol");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn raw_and_btf_tracepoints_uprobes_and_profile_attach_and_count() {
    require_kernel();
    let dir = TempDir::new("pol_probe_hooks");
    let comm = unique_comm("h");
    let cmd = workload(dir.path(), &comm);
    // raw_tracepoint and tp_btf on syscall entry / exec, filtered to the workload; a
    // uretprobe on libc's malloc (the libc this test runs on), which cat calls.
    let libc = libc_path();
    let program = format!(
        "probe raw_tracepoint(sys_enter) {{ where comm == \"{comm}\" count into raw }}\n\
         probe tp_btf(sched_process_exec) {{ where comm == \"{comm}\" count into btf }}\n\
         probe uretprobe(\"{libc}\", malloc) {{ where comm == \"{comm}\" count into up }}"
    );
    let child = start(&["-e", &program]);
    run_workload(&cmd, 4);
    let out = stop(child);
    let value = |map: &str| -> u64 {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("@{map}: ")))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no @{map} in:\n{out}"))
    };
    assert!(
        value("raw") >= 4 * 3,
        "every run makes several syscalls:\n{out}"
    );
    assert_eq!(value("btf"), 4, "one exec per run:\n{out}");
    assert!(value("up") >= 4, "every run allocates:\n{out}");

    // profile(hz): every CPU sampled for half a second.
    let (ok, out, err) = run_for(&[
        "--duration",
        "0.5",
        "-e",
        "probe profile(50) { count by cpu }",
    ]);
    assert!(ok, "{err}");
    let total: u64 = out
        .lines()
        .filter_map(|l| {
            l.strip_prefix("@[")?
                .split(": ")
                .nth(1)?
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert!(total >= 10, "50 Hz on every CPU for 0.5 s:\n{out}");
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn kprobes_fentry_and_lsm_are_refused_in_one_sentence_on_this_kernel() {
    require_kernel();
    for (program, lacks) in [
        ("probe kprobe(do_sys_openat2) { count }", "kprobe"),
        ("probe fentry(do_sys_openat2) { count }", "fentry"),
        ("probe lsm(file_open) { count }", "LSM"),
    ] {
        let (ok, _, err) = run_for(&["--duration", "0.1", "-e", program]);
        if ok {
            // A kernel that has them: then the language says they are not compiled yet.
            continue;
        }
        assert!(
            err.contains("this kernel has no") && err.contains(lacks),
            "{program}: {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "one sentence: {err}");
    }
}

/// examples/probes/NAME.pol, checked to be in `pol fmt`'s style.
fn example(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/probes")
        .join(name);
    let src = std::fs::read_to_string(&p).expect("read example");
    let formatted = pol_compiler::fmt::format(&src).expect("formats");
    assert_eq!(formatted, src, "{name} is not in pol fmt's style");
    p
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn example_syscount_counts_the_workloads_syscalls() {
    require_kernel();
    let dir = TempDir::new("pol_ex_syscount");
    let comm = unique_comm("s");
    let cmd = workload(dir.path(), &comm);
    let file = example("syscount.pol");
    let path = file.to_str().expect("path");
    for json in [false, true] {
        let args: Vec<&str> = if json {
            vec!["--json", path]
        } else {
            vec![path]
        };
        let child = start(&args);
        run_workload(&cmd, 3);
        let out = stop(child);
        let n = if json {
            let map: serde_json::Value =
                serde_json::from_str(out.lines().next().expect("a line")).expect("JSON");
            assert_eq!(map["map"], "@syscalls");
            map["entries"]
                .as_array()
                .expect("entries")
                .iter()
                .find(|e| e["key"]["comm"] == comm.as_str())
                .and_then(|e| e["value"].as_u64())
                .unwrap_or_else(|| panic!("{comm} missing: {out}"))
        } else {
            out.lines()
                .find_map(|l| l.strip_prefix(&format!("@syscalls[{comm}]: ")))
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{comm} missing:\n{out}"))
        };
        // execve, mmaps, openat, read, write, close, exit_group: dozens per run.
        assert!(n >= 3 * 20, "{n} syscalls for 3 runs");
    }
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn example_execsnoop_prints_each_exec() {
    require_kernel();
    let dir = TempDir::new("pol_ex_execsnoop");
    let comm = unique_comm("x");
    let cmd = workload(dir.path(), &comm);
    let file = example("execsnoop.pol");
    let child = start(&["--json", file.to_str().expect("path")]);
    run_workload(&cmd, 3);
    let out = stop(child);
    let path = cmd.to_str().expect("path");
    let mine: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .filter(|v: &serde_json::Value| v["file"] == path)
        .collect();
    assert_eq!(mine.len(), 3, "three execs of {path}: {out}");
    let uid = unsafe { libc::getuid() } as u64;
    for v in &mine {
        assert_eq!(v["probe"], "execs");
        assert_eq!(v["uid"], uid);
        // argv, joined: the program as invoked, then its one argument.
        assert_eq!(v["args"], format!("{path} /etc/hostname").as_str(), "{out}");
        // The process asking is this test (its threads' comm is the test's name).
        assert!(v["pid"].as_u64().is_some_and(|p| p > 0));
    }
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn example_opensnoop_prints_the_files_each_process_opens() {
    require_kernel();
    let dir = TempDir::new("pol_ex_opensnoop");
    let comm = unique_comm("f");
    let cmd = workload(dir.path(), &comm);
    let file = example("opensnoop.pol");
    for json in [false, true] {
        let mut args = vec![file.to_str().expect("path")];
        if json {
            args.insert(0, "--json");
        }
        let child = start(&args);
        run_workload(&cmd, 2);
        let out = stop(child);
        if json {
            let hits = out
                .lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON line"))
                .filter(|v| v["comm"] == comm.as_str() && v["file"] == "/etc/hostname")
                .count();
            assert_eq!(hits, 2, "{out}");
        } else {
            assert!(out.starts_with("    PID COMM"), "a header first: {out}");
            let hits = out
                .lines()
                .filter(|l| l.contains(&comm) && l.trim_end().ends_with(" /etc/hostname"))
                .count();
            assert_eq!(hits, 2, "{out}");
        }
    }
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn example_tcpstates_follows_a_loopback_connection() {
    require_kernel();
    let file = example("tcpstates.pol");
    let child = start(&["--json", file.to_str().expect("path")]);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = listener.local_addr().expect("addr").port();
    let client = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    drop(client);
    drop(server);
    drop(listener);
    std::thread::sleep(Duration::from_millis(200));
    let out = stop(child);
    let changes: Vec<(u64, u64)> = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON line"))
        .filter(|v| v["dport"] == port || v["sport"] == port)
        .map(|v| {
            (
                v["old"].as_u64().unwrap_or(0),
                v["new"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    // The client: CLOSE -> SYN_SENT -> ESTABLISHED; the server's child: SYN_RECV ->
    // ESTABLISHED; both end in CLOSE.
    for want in [(7, 2), (2, 1), (3, 1)] {
        assert!(
            changes.contains(&want),
            "{want:?} missing from {changes:?}\n{out}"
        );
    }
    assert!(changes.iter().any(|&(_, new)| new == 7), "{changes:?}");
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn example_biosizes_histograms_direct_writes() {
    require_kernel();
    let file = example("biosizes.pol");
    let child = start(&["--json", file.to_str().expect("path")]);
    // 16 direct 64 KiB writes under a name of our own: each one block request.
    let dir = TempDir::new("pol_ex_bio");
    let comm = unique_comm("b");
    let dd = dir.path().join(&comm);
    std::os::unix::fs::symlink("/bin/dd", &dd).expect("symlink dd");
    let target = std::path::PathBuf::from("/var/tmp").join(format!("{comm}.data"));
    let st = Command::new(&dd)
        .args([
            "if=/dev/zero".to_string(),
            format!("of={}", target.display()),
            "bs=64k".into(),
            "count=16".into(),
            "oflag=direct".into(),
        ])
        .stderr(Stdio::null())
        .status()
        .expect("dd");
    let _ = std::fs::remove_file(&target);
    assert!(st.success());
    let out = stop(child);
    let map: serde_json::Value =
        serde_json::from_str(out.lines().next().expect("a line")).expect("JSON");
    let mine = map["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["key"]["comm"] == comm.as_str())
        .unwrap_or_else(|| panic!("{comm} missing: {out}"));
    let big: u64 = mine["buckets"]
        .as_array()
        .expect("buckets")
        .iter()
        .filter(|b| b["min"].as_u64().is_some_and(|m| m >= 32 * 1024))
        .filter_map(|b| b["count"].as_u64())
        .sum();
    // The filesystem may split or merge requests, but most bytes go in large ones.
    assert!(big >= 4, "{out}");
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn example_readlatency_histograms_the_workloads_reads() {
    require_kernel();
    let dir = TempDir::new("pol_ex_readlat");
    let comm = unique_comm("r");
    let cmd = workload(dir.path(), &comm);
    let file = example("readlatency.pol");
    let child = start(&["--json", file.to_str().expect("path")]);
    run_workload(&cmd, 5);
    let out = stop(child);
    let map: serde_json::Value =
        serde_json::from_str(out.lines().next().expect("a line")).expect("JSON");
    assert_eq!(map["map"], "@latency");
    assert_eq!(map["function"], "hist");
    let mine = map["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["key"]["comm"] == comm.as_str())
        .unwrap_or_else(|| panic!("{comm} missing: {out}"));
    let buckets = mine["buckets"].as_array().expect("buckets");
    let reads: u64 = buckets.iter().filter_map(|b| b["count"].as_u64()).sum();
    // cat reads the file and then its end, at least twice per run.
    assert!(reads >= 10, "{reads} reads: {out}");
    // A read takes more than a nanosecond and less than a second.
    for b in buckets {
        let lo = b["min"].as_u64().expect("min");
        assert!((1..1_000_000_000).contains(&lo), "bucket {b}");
    }
    // The text form: a histogram under the process's key.
    let child = start(&[file.to_str().expect("path")]);
    run_workload(&cmd, 2);
    let out = stop(child);
    assert!(out.contains(&format!("@latency[{comm}]:\n")), "{out}");
    assert!(
        out.lines().any(|l| l.starts_with('[') && l.contains(" |@")),
        "{out}"
    );
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn example_profile_samples_a_busy_process() {
    require_kernel();
    let file = example("profile.pol");
    let child = start(&[file.to_str().expect("path")]);
    // Keep one CPU busy for a while under a name of our own (a shell counting).
    let dir = TempDir::new("pol_ex_profile");
    let comm = unique_comm("p");
    let sh = dir.path().join(&comm);
    std::os::unix::fs::symlink("/bin/sh", &sh).expect("symlink sh");
    let st = Command::new(&sh)
        .args(["-c", "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done"])
        .status()
        .expect("busy loop");
    assert!(st.success());
    let out = stop(child);
    let n: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix(&format!("@samples[{comm}]: ")))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{comm} missing:\n{out}"));
    // 99 Hz on the CPU it runs on, for the fraction of a second the loop takes.
    assert!(n >= 5, "{n} samples");
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn interval_probes_print_and_clear_and_end_chooses_what_is_printed() {
    require_kernel();
    let dir = TempDir::new("pol_probe_interval");
    let comm = unique_comm("i");
    let cmd = workload(dir.path(), &comm);
    let file = dir.path().join("every.pol");
    std::fs::write(
        &file,
        format!(
            "probe opens on tracepoint(syscalls.sys_enter_openat) {{\n    where comm == \"{comm}\"\n    count by comm into opens\n    count into total\n}}\n\n\
             probe every on interval(200ms) {{\n    print opens\n    clear opens\n}}\n\n\
             probe end {{\n    print total\n}}\n"
        ),
    )
    .expect("write");
    let child = start(&["--json", file.to_str().expect("path")]);
    run_workload(&cmd, 2);
    std::thread::sleep(Duration::from_millis(500));
    run_workload(&cmd, 2);
    std::thread::sleep(Duration::from_millis(500));
    let out = stop(child);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let opens: Vec<u64> = lines
        .iter()
        .filter(|l| l["map"] == "@opens")
        .map(|l| {
            l["entries"]
                .as_array()
                .expect("entries")
                .iter()
                .filter_map(|e| e["value"].as_u64())
                .sum()
        })
        .collect();
    // Printed every 200 ms, each time only what came since the last clear.
    assert!(opens.len() >= 4, "{out}");
    assert!(
        opens.iter().filter(|&&n| n > 0).count() >= 2,
        "two bursts: {out}"
    );
    let total: u64 = opens.iter().sum();
    // `end` prints `total` (never cleared) and nothing else.
    let last = lines.last().expect("a line");
    assert_eq!(last["map"], "@total", "{out}");
    assert_eq!(last["entries"][0]["value"].as_u64(), Some(total), "{out}");
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn example_kprofile_names_kernel_stacks_and_draws_a_flame_graph() {
    require_kernel();
    let dir = TempDir::new("pol_ex_kprofile");
    let svg = dir.path().join("cpu.svg");
    let file = example("kprofile.pol");
    let child = start(&[
        "--flamegraph",
        svg.to_str().expect("path"),
        file.to_str().expect("path"),
    ]);
    // Time in the kernel: zeroing and copying 1 GiB through read(2)/write(2).
    let st = Command::new("dd")
        .args(["if=/dev/zero", "of=/dev/null", "bs=1M", "count=1024"])
        .stderr(Stdio::null())
        .status()
        .expect("dd");
    assert!(st.success());
    let out = stop(child);
    // bpftrace's layout: `@stacks[`, a frame a line, `]: N`.
    assert!(out.contains("@stacks[\n        "), "{out}");
    let frames: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("        "))
        .map(str::trim)
        .collect();
    assert!(
        frames.iter().any(|f| f
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')),
        "frames are named from /proc/kallsyms: {out}"
    );
    let graph = std::fs::read_to_string(&svg).expect("the flame graph was written");
    assert!(
        graph.contains("<svg") && graph.contains("@stacks"),
        "an SVG titled by the map"
    );
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn cgroup_ids_are_shown_as_the_cgroups_paths() {
    require_kernel();
    let Some(root) = pol_runtime::trace::cgroups::cgroup2_root() else {
        common::cannot_run("no cgroup2 file system is mounted");
    };
    let dir = TempDir::new("pol_probe_cgroup");
    let comm = unique_comm("c");
    let cmd = workload(dir.path(), &comm);
    let name = format!("pol_test_{}", std::process::id());
    let cg = root.join(&name);
    std::fs::create_dir(&cg).expect("create a cgroup");
    let program = format!(
        "probe tracepoint(syscalls.sys_enter_openat) {{ where comm == \"{comm}\" count by cgroup, comm }}"
    );
    let child = start(&["--json", "-e", &program]);
    // The workload moves itself into the new cgroup, then becomes the command.
    let script = format!(
        "echo $$ > {}/cgroup.procs && exec {} /etc/hostname",
        cg.display(),
        cmd.display()
    );
    let st = Command::new("sh")
        .args(["-c", &script])
        .stdout(Stdio::null())
        .status()
        .expect("run in the cgroup");
    let out = stop(child);
    let _ = std::fs::remove_dir(&cg);
    assert!(st.success());
    let map: serde_json::Value =
        serde_json::from_str(out.lines().next().expect("a line")).expect("JSON");
    let e = &map["entries"][0];
    assert_eq!(e["key"]["cgroup"], format!("/{name}"), "{out}");
    assert_eq!(e["key"]["comm"], comm.as_str());
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn signed_arguments_compare_and_print_signed() {
    require_kernel();
    let dir = TempDir::new("pol_probe_signed");
    let comm = unique_comm("n");
    let cmd = workload(dir.path(), &comm);
    // openat returns -ENOENT (-2) for a file that is not there.
    let program = format!(
        "probe tracepoint(syscalls.sys_exit_openat) {{ where comm == \"{comm}\" and args.ret < 0 emit {{ ret: args.ret }} }}"
    );
    let child = start(&["--json", "-e", &program]);
    let _ = Command::new(&cmd)
        .arg(dir.path().join("no such file"))
        .stderr(Stdio::null())
        .status()
        .expect("run workload");
    let out = stop(child);
    let rets: Vec<i64> = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON line"))
        .filter_map(|v| v["ret"].as_i64())
        .collect();
    assert!(rets.contains(&-2), "{out}");
    assert!(
        rets.iter().all(|&r| r < 0),
        "only failures pass `args.ret < 0`: {out}"
    );
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn print_formats_lines_in_probes_and_in_begin_and_end() {
    require_kernel();
    let dir = TempDir::new("pol_probe_print");
    let comm = unique_comm("p");
    let cmd = workload(dir.path(), &comm);
    let prog = format!(
        "probe begin {{\n    print(\"tracing opens\")\n}}\n\
         probe tracepoint(syscalls.sys_enter_openat) {{\n    where comm == \"{comm}\"\n    \
         print(\"{{}} opened {{}} ({{}})\", comm, str(args.filename, 64), uid)\n}}\n\
         probe end {{\n    print(\"done\")\n}}\n"
    );
    for json in [false, true] {
        let mut args = vec!["-e", prog.as_str()];
        if json {
            args.insert(0, "--json");
        }
        let child = start(&args);
        run_workload(&cmd, 3);
        std::thread::sleep(Duration::from_millis(300));
        let out = stop(child);
        let want = format!("{comm} opened /etc/hostname (0)");
        if json {
            let lines: Vec<serde_json::Value> = out
                .lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
                .collect();
            let texts: Vec<&str> = lines
                .iter()
                .filter(|v| v["type"] == "print")
                .filter_map(|v| v["text"].as_str())
                .collect();
            assert_eq!(texts.first(), Some(&"tracing opens"), "{out}");
            assert_eq!(texts.last(), Some(&"done"), "{out}");
            assert_eq!(texts.iter().filter(|t| **t == want).count(), 3, "{out}");
        } else {
            let lines: Vec<&str> = out.lines().filter(|l| !l.is_empty()).collect();
            assert_eq!(lines.first(), Some(&"tracing opens"), "{out}");
            assert_eq!(lines.last(), Some(&"done"), "{out}");
            assert_eq!(lines.iter().filter(|l| **l == want).count(), 3, "{out}");
        }
    }
    // Mistakes are compile errors at the statement.
    for (bad, code) in [
        (
            "probe tracepoint(syscalls.sys_enter_openat) { print(\"{} {}\", pid) }",
            "E0512",
        ),
        (
            "probe tracepoint(syscalls.sys_enter_openat) { print(pid) }",
            "E0512",
        ),
        (
            "probe tracepoint(syscalls.sys_enter_openat) { print(\"{\", pid) }",
            "E0512",
        ),
        ("probe begin { print(\"{}\", 1) }", "E0515"),
    ] {
        let diags = pol_compiler::driver::compile(bad).expect_err(bad);
        assert!(diags.iter().any(|d| d.code == code), "{bad}: {diags:?}");
    }
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn a_full_ring_buffer_counts_and_shows_every_lost_record() {
    require_kernel();
    // A thread named like no other process makes N getppid calls in a burst, far faster
    // than `pol run` can print them into a pipe this test reads only at the end: the
    // 256 KiB ring buffer fills, records are lost, and each must be printed or counted.
    const N: usize = 300_000;
    let name = unique_comm("l");
    let prog = format!(
        "probe tracepoint(syscalls.sys_enter_getppid) {{\n    where comm == \"{name}\"\n    \
         emit {{ pid, comm, nsecs }}\n}}\n"
    );
    let (child, stderr) = start_logged(&["--json", "-e", &prog]);
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(|| {
            for _ in 0..N {
                // SAFETY: getppid takes no arguments and cannot fail.
                unsafe { libc::syscall(libc::SYS_getppid) };
            }
        })
        .expect("spawn")
        .join()
        .expect("the burst");
    std::thread::sleep(Duration::from_millis(300));
    let out = stop(child);
    let mut printed = 0;
    let mut lost = None;
    for l in out.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        match v["type"].as_str() {
            Some("event") if v["comm"] == name.as_str() => printed += 1,
            Some("lost") => lost = v["count"].as_u64(),
            _ => {}
        }
    }
    let lost = lost.unwrap_or_else(|| panic!("no lost count in the JSON ({printed} printed)"));
    assert!(lost > 0, "nothing lost: {printed} printed");
    assert_eq!(
        printed + lost as usize,
        N,
        "printed {printed} + lost {lost}"
    );
    let said: Vec<String> = stderr.try_iter().collect();
    assert!(
        said.iter()
            .any(|l| l.starts_with(&format!("{lost} events lost: the ring buffer was full"))),
        "stderr: {said:?}"
    );
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn pid_limits_uprobes_to_one_process() {
    require_kernel();
    // Two processes list a directory 40 times each (CPython's listdir calls libc's
    // opendir); `--pid` counts only the first.
    let script =
        "import os, sys, time\nsys.stdin.readline()\nfor _ in range(40):\n    os.listdir('/')\n";
    let (mut a, mut b) = (python(script), python(script));
    let pid = a.id().to_string();
    let prog = format!(
        "probe uprobe(\"{}\", opendir) {{\n    count by pid\n}}\n",
        libc_path()
    );
    let child = start(&["--json", "--pid", &pid, "-e", &prog]);
    for p in [&mut a, &mut b] {
        go(p);
        assert!(p.wait().expect("wait").success());
    }
    let out = stop(child);
    let map: serde_json::Value = serde_json::from_str(out.lines().next().unwrap_or("{}"))
        .unwrap_or_else(|e| panic!("{e}: {out}"));
    let entries = map["entries"].as_array().unwrap_or_else(|| panic!("{out}"));
    assert_eq!(entries.len(), 1, "only the one process: {out}");
    assert_eq!(entries[0]["key"]["pid"].to_string(), pid, "{out}");
    assert!(entries[0]["value"].as_u64().unwrap_or(0) >= 40, "{out}");
}

/// Voluntary context switches of process `pid` so far (each wake from a sleep is one).
fn wakeups(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("voluntary_ctxt_switches")
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn an_idle_run_sleeps_until_a_record_or_a_signal() {
    require_kernel();
    // `pol run` blocks in epoll on the ring buffer and a signal pipe: without records it
    // does not wake (it used to every 10 ms, 100 times a second), with a ring buffer it
    // wakes once a second to look for lost records, and a record wakes it at once.
    let name = unique_comm("i");
    let counting = start(&[
        "-e",
        "probe tracepoint(syscalls.sys_enter_getppid) { count }",
    ]);
    let printing_prog = format!(
        "probe tracepoint(syscalls.sys_enter_getppid) {{\n    where comm == \"{name}\"\n    \
         print(\"woke {{}}\", pid)\n}}\n"
    );
    let mut printing = start(&["-e", &printing_prog]);
    std::thread::sleep(Duration::from_millis(200));
    let before = (wakeups(counting.id()), wakeups(printing.id()));
    std::thread::sleep(Duration::from_secs(2));
    let after = (wakeups(counting.id()), wakeups(printing.id()));
    assert!(
        after.0 - before.0 <= 2,
        "a run without records woke {} times in 2 s",
        after.0 - before.0
    );
    assert!(
        after.1 - before.1 <= 5,
        "a run with an idle ring buffer woke {} times in 2 s",
        after.1 - before.1
    );
    // A record is printed as soon as it is submitted, not at the next look.
    let mut lines = BufReader::new(printing.stdout.take().expect("stdout")).lines();
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(|| {
            // SAFETY: getppid takes no arguments and cannot fail.
            unsafe { libc::syscall(libc::SYS_getppid) };
        })
        .expect("spawn")
        .join()
        .expect("the call");
    let line = lines.next().and_then(Result::ok).unwrap_or_default();
    assert!(line.starts_with("woke "), "{line:?}");
    // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
    unsafe { libc::kill(printing.id() as i32, libc::SIGINT) };
    assert!(printing.wait().expect("wait").success());
    stop(counting);
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn disasm_lists_each_probes_instructions() {
    require_kernel();
    let dir = TempDir::new("probe-disasm");
    let file = dir.path().join("p.pol");
    std::fs::write(
        &file,
        "probe counted on tracepoint(syscalls.sys_enter_getpid) {\n    count into calls\n}\n\
         probe tracepoint(syscalls.sys_enter_getppid) {\n    print(\"{}\", pid)\n}\n",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_pol"))
        .arg("disasm")
        .arg(&file)
        .output()
        .expect("pol disasm");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first = text.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(
            "probe counted: program probe_counted (section tracepoint/syscalls/sys_enter_getpid, "
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "probe (anonymous): program probe_1 (section tracepoint/syscalls/sys_enter_getppid, "
        ),
        "{text}"
    );
    // Each statement's line over its instructions (also the object's line_info).
    assert!(text.contains("; line 2: count into calls\n"), "{text}");
    assert!(text.contains("; line 5: print(\"{}\", pid)\n"), "{text}");
    assert!(text.contains("= map[calls] ll"), "{text}");
    assert!(text.contains("call map_lookup_elem#1"), "{text}");
    assert!(text.contains("call ringbuf_reserve#131"), "{text}");
    assert!(text.contains("= map[pol_lost] ll"), "{text}");
    assert!(text.contains("exit"), "{text}");
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn char_arrays_and_data_loc_strings_read_from_the_record() {
    require_kernel();
    // task_rename has `char oldcomm[16]` and `char newcomm[16]` at 4-byte offsets (12,
    // 28); sched_process_fork two `__data_loc char[]` fields, the second located after
    // the first's variable length. Naming a thread renames it; a fork of this test
    // process has this test's comm for both.
    let name = unique_comm("r");
    let prog = format!(
        "probe renames on tracepoint(task.task_rename) {{\n    where args.newcomm == \"{name}\"\n    \
         print(\"renamed {{}} -> {{}}\", args.oldcomm, args.newcomm)\n}}\n\
         probe forks on tracepoint(sched.sched_process_fork) {{\n    where args.parent_comm == \"{name}\"\n    \
         count by args.parent_comm, args.child_comm into forks\n}}\n"
    );
    let child = start(&["--json", "-e", &prog]);
    let me = std::fs::read_to_string("/proc/thread-self/comm").unwrap_or_default();
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(|| {
            // A thread fork()s: its child is a process whose parent comm is this name.
            let st = Command::new("/bin/true").status().expect("true");
            assert!(st.success());
        })
        .expect("spawn")
        .join()
        .expect("the thread");
    std::thread::sleep(Duration::from_millis(300));
    let out = stop(child);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let renamed = format!("renamed {} -> {name}", me.trim());
    assert!(
        lines
            .iter()
            .any(|v| v["type"] == "print" && v["text"] == renamed.as_str()),
        "no `{renamed}` in {out}"
    );
    let forks = lines
        .iter()
        .find(|v| v["map"] == "@forks")
        .unwrap_or_else(|| panic!("no @forks in {out}"));
    let entries = forks["entries"].as_array().cloned().unwrap_or_default();
    assert_eq!(entries.len(), 1, "{out}");
    assert_eq!(entries[0]["key"]["parent_comm"], name.as_str(), "{out}");
    assert_eq!(entries[0]["key"]["child_comm"], name.as_str(), "{out}");
    assert_eq!(entries[0]["value"], 1, "{out}");
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn uprobe_arguments_are_read_as_their_declaration_types_them() {
    require_kernel();
    // A python process lists a directory named for this test (libc's opendir(name)) and
    // closes a bad fd 3 times (libc's close returns the int -1): the declared `const
    // char *name` is read as a user string, the declared `int` return value as signed.
    let dir = TempDir::new("uprobe-args");
    let script = format!(
        "import os, sys\nsys.stdin.readline()\nos.listdir({:?})\nfor _ in range(3):\n    \
         try:\n        os.close(987654)\n    except OSError:\n        pass\n",
        dir.path().display().to_string()
    );
    let mut py = python(&script);
    let libc = libc_path();
    let prog = format!(
        "probe dirs on uprobe(\"{libc}\", opendir, \"const char *name\") {{\n    \
         print(\"opendir {{}}\", str(args.name, 200))\n}}\n\
         probe closes on uretprobe(\"{libc}\", close, \"int\") {{\n    \
         where args.ret < 0\n    count by args.ret into failed\n}}\n\
         probe words on uprobe(\"{libc}\", close) {{\n    where args.arg0 == 987654\n    count into bad_fds\n}}\n"
    );
    let pid = py.id().to_string();
    let child = start(&["--json", "--pid", &pid, "-e", &prog]);
    go(&mut py);
    assert!(py.wait().expect("wait").success());
    std::thread::sleep(Duration::from_millis(200));
    let out = stop(child);
    let want = format!("opendir {}", dir.path().display());
    assert!(
        out.lines()
            .any(|l| l.contains(&format!("\"text\":{want:?}"))),
        "no `{want}` in {out}"
    );
    let map = |name: &str| -> serde_json::Value {
        out.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["map"] == name)
            .unwrap_or_else(|| panic!("no {name} in {out}"))
    };
    let failed = map("@failed");
    assert_eq!(failed["entries"][0]["key"]["ret"], -1, "{out}");
    assert_eq!(failed["entries"][0]["value"], 3, "{out}");
    assert_eq!(map("@bad_fds")["entries"][0]["value"], 3, "{out}");
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn a_bad_uprobe_declaration_is_an_error_at_it() {
    require_kernel();
    let libc = libc_path();
    let prog = format!(
        "probe uprobe(\"{libc}\", stat, \"const char *path, struct stat st\") {{ count }}\n"
    );
    let (ok, _, err) = run_for(&["-e", &prog]);
    assert!(!ok, "{err}");
    assert!(
        err.contains("[E0502] Error: `struct stat` (parameter `st`) is not a type pol can read"),
        "{err}"
    );
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn ustack_keys_name_the_frames_of_the_traced_process() {
    require_kernel();
    // A python process calls getppid 50 times, then waits (alive while pol names its
    // frames): its user stacks end in libc's getppid wrapper.
    let script = "import os, sys\nsys.stdin.readline()\nfor _ in range(50):\n    os.getppid()\n\
                  print('done', flush=True)\nsys.stdin.readline()\n";
    let mut py = python(script);
    let pid = py.id();
    let prog = format!(
        "probe tracepoint(syscalls.sys_enter_getppid) {{\n    where pid == {pid}\n    count by ustack\n}}\n"
    );
    let child = start(&["--json", "-e", &prog]);
    go(&mut py);
    let mut done = String::new();
    BufReader::new(py.stdout.take().expect("stdout"))
        .read_line(&mut done)
        .expect("done");
    let out = stop(child);
    drop(py.stdin.take()); // its last readline returns: it exits
    let _ = py.wait();
    let map: serde_json::Value = serde_json::from_str(out.lines().next().unwrap_or("{}"))
        .unwrap_or_else(|e| panic!("{e}: {out}"));
    let entries = map["entries"].as_array().cloned().unwrap_or_default();
    // The loop's 50 calls share one stack, whose innermost named frame is libc's
    // getppid (the interpreter may make a few calls of its own, elsewhere).
    let named = |e: &serde_json::Value| {
        e["key"]["ustack"].as_array().is_some_and(|frames| {
            frames
                .iter()
                .any(|f| f.as_str().is_some_and(|f| f.contains("getppid")))
        })
    };
    assert!(
        entries
            .iter()
            .any(|e| named(e) && e["value"].as_u64().is_some_and(|v| v >= 50)),
        "no stack through getppid counted 50 times: {out}"
    );
}
