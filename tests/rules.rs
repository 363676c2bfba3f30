//! Security rules as a user runs them: `pol run rules.pol` attaches the rules, a child
//! process does the thing a rule is about, and the test asserts the alert (fields,
//! rule, source), the kill (SIGKILL, the new image never ran), and that unrelated
//! processes are left alone. Bad rule files are span-precise errors.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{require_kernel, TempDir};
use pol_compiler::diag::Diagnostic;
use pol_compiler::driver;

/// Starts `pol run ARGS` and waits until it says its rules are attached.
fn start(args: &[&str]) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pol"))
        .arg("run")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pol run");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = String::new();
    loop {
        assert!(Instant::now() < deadline, "pol run did not attach: {seen}");
        match lines.next() {
            Some(Ok(l)) if l.starts_with("attached") => break,
            Some(Ok(l)) => seen.push_str(&(l + "\n")),
            _ => {
                let _ = child.wait();
                panic!("pol run ended before attaching: {seen}");
            }
        }
    }
    std::thread::spawn(move || for _ in lines {});
    child
}

/// Stops `pol run` with SIGINT (as Ctrl-C does) and returns its stdout.
fn stop(mut child: Child) -> String {
    // Alerts are read every 10 ms: let the last ones arrive.
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read stdout");
    let st = child.wait().expect("wait");
    assert!(st.success(), "pol run failed: {st}\n{out}");
    out
}

/// A copy of `/bin/true` named `name` in `dir` (its comm is `name`).
fn program(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::copy("/bin/true", &p).expect("copy /bin/true");
    p
}

fn alerts(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .filter(|v: &serde_json::Value| v["type"] == "alert")
        .collect()
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn an_exec_rule_alerts_with_the_event_fields_and_ignores_other_execs() {
    require_kernel();
    let dir = TempDir::new("pol_rules_exec");
    let name = format!("prx{}", std::process::id() % 100_000);
    let prog = program(dir.path(), &name);
    let other = program(dir.path(), &format!("{name}o"));
    let rules = dir.path().join("rules.pol");
    let src = format!(
        "# exec rules\nrule odd_exec on exec {{\n    when comm == \"{name}\" and path ~ \"{}/*\"\n    action alert(error, \"{{parent.comm}} ran {{path}} ({{argv}})\")\n}}\n",
        dir.path().display()
    );
    std::fs::write(&rules, &src).expect("write rules");
    let pol = start(&["--json", rules.to_str().expect("utf-8")]);
    let child = Command::new(&prog)
        .args(["one", "two words"])
        .spawn()
        .expect("run the program");
    let pid = child.id();
    let st = child.wait_with_output().expect("wait").status;
    assert!(st.success());
    assert!(Command::new(&other).status().expect("run other").success());
    let out = stop(pol);
    let got = alerts(&out);
    assert_eq!(
        got.len(),
        1,
        "one alert, for the matching exec only:\n{out}"
    );
    let a = &got[0];
    let me = std::fs::read_to_string("/proc/thread-self/comm").expect("comm");
    let me = me.trim();
    assert_eq!(a["rule"], "odd_exec");
    assert_eq!(a["severity"], "error");
    assert_eq!(a["action"], "alert");
    assert_eq!(a["source"]["line"], 2);
    assert_eq!(a["source"]["column"], 1);
    assert_eq!(
        a["source"]["span"][0],
        src.find("rule odd").expect("rule") as u64
    );
    let ev = &a["event"];
    assert_eq!(ev["kind"], "exec");
    assert_eq!(ev["pid"], pid);
    assert_eq!(ev["ppid"], std::process::id());
    assert_eq!(ev["comm"], name.as_str());
    assert_eq!(ev["parent.comm"], me);
    assert_eq!(ev["path"], prog.display().to_string());
    assert_eq!(
        ev["argv"],
        serde_json::json!([prog.display().to_string(), "one", "two words"])
    );
    assert_eq!(ev["uid"], 0);
    assert_eq!(
        a["message"],
        format!(
            "{me} ran {} ({} one two words)",
            prog.display(),
            prog.display()
        )
    );
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn kill_stops_an_exec_before_the_new_program_runs() {
    require_kernel();
    let dir = TempDir::new("pol_rules_kill");
    let marker = dir.path().join("ran");
    let script = dir
        .path()
        .join(format!("mark{}.sh", std::process::id() % 100_000));
    std::fs::write(&script, format!("#!/bin/sh\ntouch {}\n", marker.display()))
        .expect("write script");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let untouched = program(dir.path(), "innocent");
    let rules = dir.path().join("kill.pol");
    std::fs::write(
        &rules,
        format!(
            "rule no_marks on exec {{\n    when ends_with(path, \"{}\")\n    action kill, alert(critical, \"killed {{comm}}\")\n}}\n",
            script.file_name().and_then(|n| n.to_str()).expect("name")
        ),
    )
    .expect("write rules");
    let pol = start(&[rules.to_str().expect("utf-8")]);
    let st = Command::new(&script).status().expect("run the script");
    let ok = Command::new(&untouched).status().expect("run innocent");
    let out = stop(pol);
    assert_eq!(
        st.signal(),
        Some(libc::SIGKILL),
        "the script was killed: {st}"
    );
    assert!(!marker.exists(), "the killed script never ran");
    assert!(ok.success(), "an unrelated program ran: {ok}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "a header and one alert:\n{out}");
    assert!(lines[0].starts_with("SEVERITY RULE"), "{out}");
    let cols: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(&cols[..3], ["critical", "no_marks", "kill"], "{out}");
    assert!(
        lines[1].contains("kill.pol:1:1 "),
        "the rule's source: {out}"
    );
    assert!(
        lines[1].ends_with(&format!(
            " killed {}",
            script.file_name().and_then(|n| n.to_str()).expect("name")
        )),
        "{out}"
    );
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn an_open_for_writing_is_killed_before_a_byte_reaches_the_file() {
    require_kernel();
    let dir = TempDir::new("pol_rules_open");
    let file = dir.path().join("passwd");
    std::fs::write(&file, "root:x:0:0::/root:/bin/sh\n").expect("write file");
    let rules = dir.path().join("open.pol");
    std::fs::write(
        &rules,
        format!(
            "rule passwd_write on open {{\n    when path == \"{f}\" and write and not comm in {{ \"passwd\", \"chpasswd\" }}\n    action kill, alert(critical, \"{{comm}} opened {{path}} for writing\")\n}}\n\nrule passwd_read on open {{\n    when path == \"{f}\" and flags & 0x3 == 0\n    action alert(info, \"{{comm}} read {{path}}\")\n}}\n",
            f = file.display()
        ),
    )
    .expect("write rules");
    let pol = start(&["--json", rules.to_str().expect("utf-8")]);
    let writer = Command::new("sh")
        .arg("-c")
        .arg(format!("echo evil >> {}", file.display()))
        .status()
        .expect("run the writer");
    let reader = Command::new("cat")
        .arg(&file)
        .stdout(Stdio::null())
        .status()
        .expect("run the reader");
    let out = stop(pol);
    assert_eq!(
        writer.signal(),
        Some(libc::SIGKILL),
        "the writer was killed: {writer}"
    );
    assert!(reader.success(), "the reader was left alone: {reader}");
    assert_eq!(
        std::fs::read_to_string(&file).expect("read file"),
        "root:x:0:0::/root:/bin/sh\n",
        "not a byte of the write reached the file"
    );
    let got = alerts(&out);
    let kinds: Vec<(&str, &str)> = got
        .iter()
        .map(|a| {
            (
                a["rule"].as_str().unwrap_or(""),
                a["action"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [("passwd_write", "kill"), ("passwd_read", "alert")],
        "{out}"
    );
    assert_eq!(got[0]["event"]["comm"], "sh");
    assert_eq!(got[0]["event"]["write"], 1);
    assert_eq!(got[0]["event"]["kind"], "open");
    assert_eq!(got[1]["event"]["comm"], "cat");
    assert_eq!(got[1]["event"]["write"], 0);
    assert_eq!(got[1]["source"]["line"], 6);
}

/// The diagnostics of a rule file (front end only: no kernel needed).
fn errors(src: &str) -> Vec<Diagnostic> {
    let (_, _, diags) = driver::front(src);
    diags
}

/// Asserts exactly one error with `code`, whose primary span covers `text`.
fn assert_error(src: &str, code: &str, text: &str) -> Diagnostic {
    let d = errors(src);
    assert_eq!(d.len(), 1, "one diagnostic: {d:#?}");
    let d = d.into_iter().next().expect("one");
    assert_eq!(d.code, code, "{d:#?}");
    let span = d.primary_span();
    assert_eq!(&src[span], text, "{d:#?}");
    d
}

#[test]
fn bad_rules_are_errors_at_their_span() {
    let d = assert_error(
        "rule r on exec { when parent.cmm == \"sh\" action alert(info, \"x\") }",
        "E0302",
        "parent.cmm",
    );
    assert!(
        d.help.as_deref().unwrap_or("").contains("parent.comm"),
        "{d:#?}"
    );
    assert_error(
        "rule r on exce { when comm == \"sh\" action kill }",
        "E0501",
        "exce",
    );
    let d = assert_error(
        "rule r on exec { when comm == \"sh\" action deny }",
        "E0532",
        "deny",
    );
    assert!(d.message.contains("exec"), "names the hook: {d:#?}");
    assert_error(
        "rule r on exec { when path ~ \"/a/*/b/*\" action kill }",
        "E0535",
        "\"/a/*/b/*\"",
    );
    assert_error(
        "rule r on exec { when comm == \"a-command-name-of-20\" action kill }",
        "E0534",
        "\"a-command-name-of-20\"",
    );
    assert_error("rule r on exec { when comm == \"sh\" }", "E0530", "r");
    assert_error(
        "rule r on exec { when comm < \"sh\" action kill }",
        "E0403",
        "comm < \"sh\"",
    );
    assert_error(
        "rule r on exec { when uid == \"root\" action kill }",
        "E0401",
        "\"root\"",
    );
    assert_error(
        "rule r on exec { when comm == \"sh\" action alert(loud, \"x\") }",
        "E0533",
        "loud",
    );
    assert_error(
        "rule r on exec { when comm == \"sh\" action alert(info, \"{comm} {pth}\") }",
        "E0302",
        "{pth}",
    );
    assert_error(
        "rule r on exec { when comm == \"sh\" action kill }\nrule r on exec { when comm == \"x\" action kill }",
        "E0304",
        "r",
    );
}

#[test]
fn rules_compile_to_a_verifiable_program_for_a_known_kernel_layout() {
    use pol_compiler::rule::{self, ktypes::TableTypes};
    let src = r#"
rule a on exec {
    when comm in { "sh", "bash", "dash" } and not parent.comm == "sshd"
    when path ~ "/tmp/*" or ends_with(path, ".sh") or path ~ "/usr/?in/*sh" or comm ~ "*ash"
    action kill, alert(critical, "{path}")
}
rule b on exec {
    when uid >= 1000 and starts_with(comm, "py")
    action alert(notice, "{comm}")
}
rule c on open {
    when write and path ~ "/etc/*shadow" and flags & 0x200 != 0
    action kill
}
"#;
    let (_, hir, diags) = driver::front(src);
    assert!(diags.is_empty(), "{diags:#?}");
    let hir = hir.expect("checks");
    let out = rule::compile(&hir.security, src, &TableTypes::fixture()).expect("compiles");
    assert_eq!(out.rules.rules.len(), 3);
    assert_eq!(out.rules.rules[0].actions, ["alert", "kill"]);
    let sections: Vec<&str> = out
        .probes
        .layout
        .probes
        .iter()
        .map(|p| p.section.as_str())
        .collect();
    assert_eq!(
        sections,
        [
            "tp_btf/sched_process_exec",
            "tracepoint/syscalls/sys_enter_openat",
            "tracepoint/syscalls/sys_enter_open",
            "tracepoint/syscalls/sys_enter_creat",
            "tracepoint/syscalls/sys_enter_openat2"
        ],
        "one program for both exec rules, one per open system call"
    );
    // Without kernel structure layouts, rules cannot be compiled, and say why.
    let err = rule::compile(&hir.security, src, &rule::ktypes::NoTypes).expect_err("no BTF");
    assert_eq!(err[0].code, "L0502");
}
