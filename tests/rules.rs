//! Security rules as a user runs them: `pol run rules.pol` attaches the rules, a child
//! process does the thing a rule is about, and the test asserts the alert (fields,
//! rule, source), the kill (SIGKILL, the new image never ran), and that unrelated
//! processes are left alone. Bad rule files are span-precise errors.

mod common;
mod rules_support;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{require_kernel, TempDir};
use pol_compiler::driver;
use rules_support::*;

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
    let d = assert_error(
        "rule r on connect { when port == 4444 action kill }",
        "E0532",
        "kill",
    );
    assert!(d.help.as_deref().unwrap_or("").contains("deny"), "{d:#?}");
    assert_error(
        "rule r on connect { when address < 192.0.2.1 action deny }",
        "E0403",
        "address < 192.0.2.1",
    );
    assert_error(
        "rule r on connect { when address == 10.0.0.0/8 action deny }",
        "E0401",
        "10.0.0.0/8",
    );
    assert_error(
        "rule r on bind { when port in 90..80 action deny }",
        "E0401",
        "90..80",
    );
    assert_error(
        "rule r on connect { when address in { 10.0.0.1, \"x\" } action deny }",
        "E0401",
        "\"x\"",
    );
    assert_error(
        "rule r on bind { when path == \"/x\" action deny }",
        "E0302",
        "path",
    );
    let d = assert_error(
        "rule r on setuid { when new_uid == 0 action deny }",
        "E0532",
        "deny",
    );
    assert!(d.message.contains("setuid"), "{d:#?}");
    assert_error(
        "rule r on ptrace { when new_uid == 0 action kill }",
        "E0302",
        "new_uid",
    );
    // argv: by position up to its bound, by its start, on exec only.
    assert_error(
        "rule r on exec { when argv[8] == \"-c\" action kill }",
        "E0542",
        "argv[8]",
    );
    assert_error(
        "rule r on exec { when ends_with(argv[1], \".sh\") action kill }",
        "L0501",
        "ends_with(argv[1], \".sh\")",
    );
    assert_error(
        "rule r on exec { when argv[1] ~ \"*.sh\" action kill }",
        "L0501",
        "argv[1] ~ \"*.sh\"",
    );
    let d = assert_error(
        "rule r on exec { when argv == \"-c\" action kill }",
        "L0501",
        "argv == \"-c\"",
    );
    assert!(
        d.help.as_deref().unwrap_or("").contains("in argv"),
        "{d:#?}"
    );
    assert_error(
        "rule r on open { when \"-c\" in argv action kill }",
        "E0302",
        "argv",
    );
    assert_error(
        "rule r on exec { when argv[1] == \"a-literal-longer-than-the-sixty-three-bytes-an-argument-slot-holds\" action kill }",
        "E0534",
        "\"a-literal-longer-than-the-sixty-three-bytes-an-argument-slot-holds\"",
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
rule d on connect {
    when port in { 3333, 14444..14446 } or address in { 198.51.100.0/24, 2001:db8::/32, ::ffff:192.0.2.0/120 }
    action deny, alert(critical, "{comm} to {address}:{port}")
}
rule e on bind {
    when port < 1024 and uid != 0
    action alert(warning, "{comm} bound {port}")
}
"#;
    let (_, hir, diags) = driver::front(src);
    assert!(diags.is_empty(), "{diags:#?}");
    let hir = hir.expect("checks");
    let out = rule::compile(&hir.security, src, &TableTypes::fixture()).expect("compiles");
    assert_eq!(out.rules.rules.len(), 5);
    assert_eq!(out.rules.rules[0].actions, ["alert", "kill"]);
    assert_eq!(out.rules.rules[3].actions, ["alert", "deny"]);
    let cgroup: Vec<(&str, &str)> = out
        .rules
        .cgroup
        .iter()
        .map(|c| (c.program.as_str(), c.attach))
        .collect();
    assert_eq!(
        cgroup,
        [
            ("rule_connect4", "connect4"),
            ("rule_connect6", "connect6"),
            ("rule_bind4", "bind4"),
            ("rule_bind6", "bind6")
        ]
    );
    assert_eq!(out.rules.mode.as_deref(), Some("pol_rule_mode"));
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
        "one program for both exec rules, one per open system call (cgroup hooks apart)"
    );
    // Without kernel structure layouts, rules cannot be compiled, and say why.
    let err = rule::compile(&hir.security, src, &rule::ktypes::NoTypes).expect_err("no BTF");
    assert_eq!(err[0].code, "L0502");
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn connect_and_bind_rules_deny_in_their_cgroup_only_and_switch_to_audit_while_running() {
    require_kernel();
    common::require_tool("python3");
    common::require_tool("bpftool");
    let dir = TempDir::new("pol_rules_net");
    let cg = TestCgroup::new("pol_rules_net");
    let v4 = std::net::TcpListener::bind("127.0.0.1:0").expect("listen on 127.0.0.1");
    let p4 = v4.local_addr().expect("addr").port();
    let v6 = std::net::TcpListener::bind("[::1]:0").ok();
    let p6 = v6
        .as_ref()
        .and_then(|l| l.local_addr().ok())
        .map_or(0, |a| a.port());
    // A free port to bind, found by binding it once.
    let pb = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let rules = dir.path().join("net.pol");
    std::fs::write(
        &rules,
        format!(
            "rule no_local_port on connect {{\n    when address in {{ 127.0.0.0/8 }} and port == {p4}\n    action deny, alert(critical, \"{{comm}} connected to {{address}}:{{port}}\")\n}}\n\
             rule no_v6_port on connect {{\n    when address == ::1 and port in {{ {p6}, 1..2 }}\n    action deny\n}}\n\
             rule no_bind on bind {{\n    when port == {pb} and family == 2\n    action deny, alert(warning, \"{{comm}} bound {{address}}:{{port}}\")\n}}\n"
        ),
    )
    .expect("write rules");
    let file = rules.to_str().expect("utf-8");
    let pol = start(&[
        "--json",
        "--cgroup",
        cg.path().to_str().expect("utf-8"),
        file,
    ]);
    assert!(!cg.attached().is_empty(), "attached to the test cgroup");

    let inside = cg.sh(&socket_script("connect", false, "127.0.0.1", p4));
    assert_eq!(said(&inside), "EPERM", "refused in the cgroup: {inside:?}");
    // A dual-stack socket reaching the same address as ::ffff:127.0.0.1.
    let mapped = cg.sh(&socket_script("connect", true, "::ffff:127.0.0.1", p4));
    assert_eq!(said(&mapped), "EPERM", "IPv4-mapped: {mapped:?}");
    if v6.is_some() {
        let six = cg.sh(&socket_script("connect", true, "::1", p6));
        assert_eq!(said(&six), "EPERM", "IPv6: {six:?}");
    }
    let bound = cg.sh(&socket_script("bind", false, "127.0.0.1", pb));
    assert_eq!(said(&bound), "EPERM", "bind refused: {bound:?}");
    let other_port = cg.sh(&socket_script(
        "connect",
        false,
        "127.0.0.1",
        v6.as_ref().map_or(p4, |_| p6),
    ));
    assert_ne!(
        said(&other_port),
        "EPERM",
        "no rule matches: {other_port:?}"
    );
    let outside = Command::new("sh")
        .arg("-c")
        .arg(socket_script("connect", false, "127.0.0.1", p4))
        .output()
        .expect("sh");
    assert_eq!(said(&outside), "ok", "another cgroup connects: {outside:?}");

    // Audit: the same connect goes through, and the alert says what would have happened.
    let pol_cmd = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_pol"))
            .args(args)
            .output()
            .expect("run pol")
    };
    // `--pid`: other suites may run a `net.pol` of their own at the same time.
    let pid = pol.id().to_string();
    assert_eq!(said(&pol_cmd(&["mode", file, "--pid", &pid])), "enforce");
    let sw = pol_cmd(&["mode", file, "audit", "--pid", &pid]);
    assert!(sw.status.success(), "{sw:?}");
    assert_eq!(said(&pol_cmd(&["mode", file, "--pid", &pid])), "audit");
    let audited = cg.sh(&socket_script("connect", false, "127.0.0.1", p4));
    assert_eq!(
        said(&audited),
        "ok",
        "audit mode lets it through: {audited:?}"
    );
    assert!(pol_cmd(&["mode", file, "enforce", "--pid", &pid])
        .status
        .success());
    let again = cg.sh(&socket_script("connect", false, "127.0.0.1", p4));
    assert_eq!(said(&again), "EPERM", "enforced again: {again:?}");

    let out = stop(pol);
    assert!(
        cg.attached().is_empty(),
        "nothing left attached: {}",
        cg.attached()
    );
    let got = alerts(&out);
    let of = |rule: &str| -> Vec<&serde_json::Value> {
        got.iter().filter(|a| a["rule"] == rule).collect()
    };
    let local = of("no_local_port");
    assert_eq!(local.len(), 4, "v4, mapped, audited, enforced:\n{out}");
    let a = local[0];
    assert_eq!(a["action"], "deny");
    assert_eq!(a["event"]["address"], "127.0.0.1");
    assert_eq!(a["event"]["port"], p4);
    assert_eq!(a["event"]["family"], 2);
    assert_eq!(a["event"]["protocol"], 6);
    assert_eq!(a["event"]["comm"], "python3");
    assert_eq!(a["message"], format!("python3 connected to 127.0.0.1:{p4}"));
    assert_eq!(local[1]["event"]["address"], "127.0.0.1", "mapped as IPv4");
    assert_eq!(local[2]["action"], "audit");
    assert_eq!(local[2]["would"], serde_json::json!(["deny"]));
    assert_eq!(local[3]["action"], "deny");
    assert_eq!(of("no_v6_port").len(), usize::from(v6.is_some()));
    if v6.is_some() {
        assert_eq!(of("no_v6_port")[0]["event"]["address"], "::1");
        assert_eq!(of("no_v6_port")[0]["event"]["family"], 10);
    }
    let b = of("no_bind");
    assert_eq!(b.len(), 1, "{out}");
    assert_eq!(b[0]["event"]["port"], pb);
    assert!(
        got.iter().all(|a| a["event"]["cgroup"]
            .as_str()
            .is_some_and(|c| c.ends_with(&format!("pol_rules_net_{}", std::process::id())))),
        "only processes of the test cgroup matched:\n{out}"
    );
    drop(v4);
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn a_cgroup_that_cannot_be_used_is_one_sentence_and_nothing_stays_loaded() {
    require_kernel();
    let dir = TempDir::new("pol_rules_badcg");
    let rules = dir.path().join("deny.pol");
    std::fs::write(
        &rules,
        "rule r on connect {\n    when port == 9\n    action deny\n}\nrule e on exec {\n    when comm == \"nothing-here\"\n    action alert(info, \"x\")\n}\n",
    )
    .expect("write rules");
    let out = Command::new(env!("CARGO_BIN_EXE_pol"))
        .args(["run", "--cgroup"])
        .arg(dir.path())
        .arg(&rules)
        .output()
        .expect("run pol");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("is not a cgroup v2 directory"),
        "says why: {err}"
    );
    assert!(!err.contains("attached"), "{err}");

    // Attaching is all or none: a hook that fails after one that worked detaches both.
    let cg = TestCgroup::new("pol_rules_half");
    let src = std::fs::read_to_string(&rules).expect("read rules");
    let c = driver::compile_with_catalog(
        &src,
        &pol_compiler::hir::check::no_files,
        &pol_compiler::catalog::HostCatalog,
    )
    .expect("compiles");
    let obj = pol_runtime::trace::load::ProbeObject::load(&c.probes.expect("programs").spec)
        .expect("loads");
    let fd = pol_runtime::security::cgroup::open(cg.path()).expect("open the cgroup");
    let list = [
        ("rule_connect4".to_string(), "connect4".to_string()),
        ("rule_connect6".to_string(), "bind4".to_string()),
    ];
    let e = pol_runtime::security::cgroup::attach(
        &obj,
        &list,
        std::os::fd::AsFd::as_fd(&fd),
        cg.path(),
    )
    .expect_err("a connect6 program cannot attach as bind4");
    assert!(
        e.to_string().contains("cannot attach `rule_connect6`"),
        "{e}"
    );
    assert!(cg.attached().is_empty(), "{}", cg.attached());
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn lists_macros_and_exceptions_select_execs_as_falco_rules_do() {
    require_kernel();
    let dir = TempDir::new("pol_rules_macros");
    let base = format!("plm{}", std::process::id() % 100_000);
    let names = [format!("{base}a"), format!("{base}b"), format!("{base}c")];
    let progs: Vec<PathBuf> = names.iter().map(|n| program(dir.path(), n)).collect();
    let rules = dir.path().join("macros.pol");
    let src = format!(
        "list first_two = {{ \"{a}\", \"{b}\" }}\nlist watched = {{ first_two, \"nothing-else\" }}\nmacro from_here = path ~ \"{d}/*\"\nmacro watched_exec = comm in watched and from_here\n\nrule watched on exec {{\n    when watched_exec\n    unless comm == \"{b}\"\n    action alert(info, \"{{comm}}\")\n}}\n",
        a = names[0],
        b = names[1],
        d = dir.path().display()
    );
    std::fs::write(&rules, &src).expect("write rules");
    let pol = start(&["--json", rules.to_str().expect("utf-8")]);
    for p in &progs {
        assert!(Command::new(p).status().expect("run").success());
    }
    let out = stop(pol);
    let got = alerts(&out);
    let comms: Vec<&str> = got
        .iter()
        .filter_map(|a| a["event"]["comm"].as_str())
        .collect();
    assert_eq!(
        comms,
        [names[0].as_str()],
        "a: in the list; b: the exception; c: not in the list:\n{out}"
    );
}

#[test]
fn bad_lists_and_macros_are_errors_at_their_span() {
    assert_error(
        "list l = { \"sh\", 22 }\nrule r on exec { when comm in l action kill }",
        "E0401",
        "22",
    );
    assert_error(
        "list l = { \"sh\" }\nrule r on exec { when uid in l action kill }",
        "E0401",
        "\"sh\"",
    );
    assert_error(
        "macro m = comm == \"sh\" and m\nrule r on exec { when m action kill }",
        "E0537",
        "m",
    );
    let d = assert_error(
        "list shells = { \"sh\" }\nrule r on exec { when comm in shels action kill }",
        "E0301",
        "shels",
    );
    assert!(d.help.as_deref().unwrap_or("").contains("shells"), "{d:#?}");
    assert_error(
        "macro m = flags == 1\nrule r on exec { when m action kill }",
        "E0302",
        "flags",
    );
    assert_error(
        "list l = { 1 }\nlist l = { 2 }\nrule r on exec { when uid in l action kill }",
        "E0304",
        "l",
    );
    // An exception holds its own errors.
    assert_error(
        "rule r on exec { when comm == \"sh\" unless pth == \"/x\" action kill }",
        "E0302",
        "pth",
    );
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn ancestry_reaches_past_the_parent() {
    require_kernel();
    let dir = TempDir::new("pol_rules_ancestry");
    let base = format!("pan{}", std::process::id() % 100_000);
    let prog = program(dir.path(), &format!("{base}p"));
    let shell = |name: &str| {
        let p = dir.path().join(name);
        std::fs::copy("/bin/sh", &p).expect("copy /bin/sh");
        p
    };
    let outer = shell(&format!("{base}o"));
    let inner = shell(&format!("{base}i"));
    let rules = dir.path().join("ancestry.pol");
    std::fs::write(
        &rules,
        format!(
            "rule under_outer on exec {{\n    when comm == \"{base}p\" and ancestor.comm == \"{base}o\"\n    action alert(info, \"{{comm}} under {{ancestor.comm}} as {{euid}}\")\n}}\n"
        ),
    )
    .expect("write rules");
    let pol = start(&["--json", rules.to_str().expect("utf-8")]);
    // outer -> inner -> prog (`; true` keeps each shell from exec-ing its command).
    let st = Command::new(&outer)
        .arg("-c")
        .arg(format!(
            "{} -c '{}; true'; true",
            inner.display(),
            prog.display()
        ))
        .status()
        .expect("run the shells");
    assert!(st.success());
    // Not under outer: no alert.
    assert!(Command::new(&prog).status().expect("run").success());
    let out = stop(pol);
    let got = alerts(&out);
    assert_eq!(got.len(), 1, "{out}");
    let ev = &got[0]["event"];
    assert_eq!(ev["parent.comm"], format!("{base}i"));
    let anc: Vec<&str> = ev["ancestor.comm"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(&anc[..2], [format!("{base}i"), format!("{base}o")], "{out}");
    assert_eq!(ev["euid"], 0, "{out}");
}

/// examples/rules/*.pol.
fn rule_examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/rules");
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("examples/rules")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "pol"))
        .collect();
    out.sort();
    out
}

#[test]
fn rule_examples_check_and_are_in_pol_fmt_style() {
    let paths = rule_examples();
    assert!(!paths.is_empty());
    for p in paths {
        let src = std::fs::read_to_string(&p).expect("read example");
        let (_, hir, diags) = driver::front(&src);
        assert!(diags.is_empty(), "{}: {diags:#?}", p.display());
        // The starter file is a set; the others are one example each.
        let want = if p.ends_with("starter.pol") { 5 } else { 1 };
        assert!(
            hir.is_some_and(|h| h.security.rules.len() >= want),
            "{}: at least {want} rules",
            p.display()
        );
        assert_eq!(
            pol_compiler::fmt::format(&src).as_deref(),
            Ok(src.as_str()),
            "{} is in pol fmt's style",
            p.display()
        );
    }
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn the_starter_rules_act_on_each_behaviour_they_name() {
    // examples/rules/starter.pol itself, enforcing, against the behaviours its rules
    // name, each performed for real: a shell spawned by a process named like a web
    // server, /etc/passwd opened for writing, a connection to a mining pool port, a
    // program run from /tmp, a setuid-root program run by another user.
    require_kernel();
    common::require_tool("python3");
    common::require_tool("unshare");
    common::require_tool("setpriv");
    let starter = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/rules/starter.pol");
    let cg = TestCgroup::new("pol_rules_starter");
    let dir = TempDir::new("pol_rules_starter");
    assert!(dir.path().starts_with("/tmp"), "a temporary directory");
    let base = format!("pst{}", std::process::id() % 100_000);
    // A web server: a copy of /bin/sh named `nginx`, in a directory of its own.
    let web = dir.path().join("web");
    std::fs::create_dir(&web).expect("mkdir");
    let nginx = web.join("nginx");
    std::fs::copy("/bin/sh", &nginx).expect("copy /bin/sh");
    let spawned = dir.path().join("spawned");
    // A stand-in for /etc/passwd, bound over it in a mount namespace of the writer's
    // own: the rule sees the path `/etc/passwd`, and a write the rule failed to stop
    // would land in the stand-in.
    let passwd = dir.path().join("passwd");
    std::fs::write(&passwd, "root:x:0:0::/root:/bin/sh\n").expect("write passwd");
    // A setuid-root program, run as nobody.
    let suid = program(dir.path(), &format!("{base}u"));
    std::fs::set_permissions(&suid, std::os::unix::fs::PermissionsExt::from_mode(0o4755))
        .expect("chmod u+s");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod the directory");
    let prog = program(dir.path(), &base);
    let pol = start(&[
        "--json",
        "--cgroup",
        cg.path().to_str().expect("utf-8"),
        starter.to_str().expect("utf-8"),
    ]);
    // `; true` keeps nginx from exec-ing the shell in its own process.
    let web_shell = Command::new(&nginx)
        .arg("-c")
        .arg(format!("sh -c 'touch {}'; echo $?", spawned.display()))
        .output()
        .expect("run nginx");
    let writer = Command::new("unshare")
        .args(["-m", "sh", "-c"])
        .arg(format!(
            "mount --bind {} /etc/passwd && sh -c 'echo evil >> /etc/passwd'; echo $?",
            passwd.display()
        ))
        .output()
        .expect("run the writer");
    let mined = cg.sh(&socket_script("connect", false, "127.0.0.1", 3333));
    assert!(Command::new(&prog).status().expect("run").success());
    let as_nobody = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&suid)
        .status()
        .expect("run setpriv");
    let out = stop(pol);
    let got = alerts(&out);
    let rule = |r: &str, comm: &str| {
        got.iter()
            .find(|a| a["rule"] == r && a["event"]["comm"] == comm)
            .unwrap_or_else(|| panic!("no {r} alert for {comm}:\n{out}"))
    };

    // The shell under nginx died by SIGKILL before it ran a byte of its own.
    assert_eq!(String::from_utf8_lossy(&web_shell.stdout).trim(), "137");
    assert!(!spawned.exists(), "the shell never ran its command");
    let a = rule("shell_from_web_server", "sh");
    assert_eq!(a["action"], "kill");
    assert_eq!(a["event"]["parent.comm"], "nginx");

    // The writer of /etc/passwd died before a byte reached the file.
    assert!(writer.status.success(), "{writer:?}");
    assert_eq!(
        String::from_utf8_lossy(&writer.stdout).trim(),
        "137",
        "{writer:?}"
    );
    assert_eq!(
        std::fs::read_to_string(&passwd).expect("read passwd"),
        "root:x:0:0::/root:/bin/sh\n"
    );
    let a = rule("account_db_write", "sh");
    assert_eq!(a["action"], "kill");
    assert_eq!(a["event"]["path"], "/etc/passwd");

    assert_eq!(said(&mined), "EPERM", "{mined:?}");
    let a = got
        .iter()
        .find(|a| a["rule"] == "mining_pool_connect")
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(a["action"], "deny");
    assert_eq!(a["event"]["port"], 3333);

    rule("exec_from_temp", &base);

    assert!(as_nobody.success(), "{as_nobody}");
    let a = rule("setuid_root_exec", &format!("{base}u"));
    assert_eq!(a["event"]["uid"], 65534);
    assert_eq!(a["event"]["euid"], 0);
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn repeated_alerts_are_rate_limited_and_the_suppressed_are_counted() {
    require_kernel();
    let dir = TempDir::new("pol_rules_rate");
    let name = format!("prr{}", std::process::id() % 100_000);
    let prog = program(dir.path(), &name);
    let rules = dir.path().join("rate.pol");
    std::fs::write(
        &rules,
        format!("rule noisy on exec {{\n    when comm == \"{name}\"\n    action alert(info, \"{{comm}}\")\n}}\n"),
    )
    .expect("write rules");
    let pol = start(&[
        "--json",
        "--alert-rate",
        "2",
        rules.to_str().expect("utf-8"),
    ]);
    let runs = 12;
    for _ in 0..runs {
        assert!(Command::new(&prog).status().expect("run").success());
    }
    let out = stop(pol);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let sent = lines.iter().filter(|v| v["type"] == "alert").count() as u64;
    let suppressed = lines
        .iter()
        .filter(|v| v["type"] == "suppressed" && v["rule"] == "noisy")
        .filter_map(|v| v["count"].as_u64())
        .max()
        .unwrap_or(0);
    // 2 a rule per CPU per window; the runs may straddle one window boundary.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    assert!(sent >= 2 && sent <= 2 * 2 * cpus, "{sent} sent:\n{out}");
    assert_eq!(
        sent + suppressed,
        runs,
        "every match is sent or counted:\n{out}"
    );
}

#[test]
fn too_many_rules_on_one_kind_are_l0601_at_the_first_of_them() {
    use pol_compiler::rule::{self, ktypes::TableTypes};
    // Prefixes stay byte compares (1,000 `comm == ..` rules are set lookups, and
    // compile: tests/rules_scale.rs).
    let src: String = (0..3000)
        .map(|i| format!("rule r{i} on exec {{\n    when starts_with(path, \"/a{i}\")\n    action alert(info, \"x\")\n}}\n"))
        .collect();
    let (_, hir, diags) = driver::front(&src);
    assert!(diags.is_empty(), "{diags:#?}");
    let hir = hir.expect("checks");
    let err = rule::compile(&hir.security, &src, &TableTypes::fixture()).expect_err("too long");
    assert_eq!(err.len(), 1, "{err:#?}");
    assert_eq!(err[0].code, "L0601", "{err:#?}");
    assert!(err[0].message.starts_with("3000 `exec` rules"), "{err:#?}");
    assert_eq!(&src[err[0].primary_span()], "rule r0 on exec");
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn setuid_is_killed_and_ptrace_is_seen() {
    require_kernel();
    common::require_tool("python3");
    let dir = TempDir::new("pol_rules_setuid");
    // Symlinks to python3: the command name is the link's name.
    let link = |name: &str| {
        let p = dir.path().join(name);
        // The interpreter itself (`python3` on PATH may be a pyenv shim script).
        let exe = Command::new("python3")
            .args([
                "-c",
                "import os, sys; print(os.path.realpath(sys.executable))",
            ])
            .output()
            .expect("python3");
        let py = PathBuf::from(String::from_utf8_lossy(&exe.stdout).trim());
        std::os::unix::fs::symlink(py, &p).expect("symlink");
        p
    };
    let base = format!("psu{}", std::process::id() % 100_000);
    let su = link(&format!("{base}s"));
    let tr = link(&format!("{base}t"));
    let rules = dir.path().join("ids.pol");
    std::fs::write(
        &rules,
        format!(
            "rule to_nobody on setuid {{\n    when comm == \"{base}s\" and new_uid == 65534\n    action kill, alert(critical, \"{{comm}} setuid {{new_uid}}\")\n}}\n\nrule traced on ptrace {{\n    when comm == \"{base}t\"\n    action alert(info, \"{{comm}} ptrace {{request}} {{target}}\")\n}}\n"
        ),
    )
    .expect("write rules");
    let pol = start(&["--json", rules.to_str().expect("utf-8")]);
    let py = |p: &Path, code: &str| {
        Command::new(p)
            .args(["-c", code])
            .output()
            .expect("run python3")
    };
    let killed = py(&su, "import os; os.setuid(65534); print('after')");
    let kept = py(&su, "import os; os.setuid(0); print('after')");
    let traced = py(
        &tr,
        "import ctypes; ctypes.CDLL(None).ptrace(0, 0, 0, 0); print('ok')",
    );
    let out = stop(pol);
    assert_eq!(killed.status.signal(), Some(libc::SIGKILL), "{killed:?}");
    assert!(!String::from_utf8_lossy(&killed.stdout).contains("after"));
    assert_eq!(said(&kept), "after", "setuid(0) matches no rule: {kept:?}");
    assert_eq!(said(&traced), "ok", "{traced:?}");
    let got = alerts(&out);
    let s: Vec<&serde_json::Value> = got.iter().filter(|a| a["rule"] == "to_nobody").collect();
    assert_eq!(s.len(), 1, "{out}");
    assert_eq!(s[0]["action"], "kill");
    assert_eq!(s[0]["event"]["new_uid"], 65534);
    let t: Vec<&serde_json::Value> = got.iter().filter(|a| a["rule"] == "traced").collect();
    assert_eq!(t.len(), 1, "{out}");
    assert_eq!(t[0]["event"]["request"], 0);
    assert_eq!(t[0]["message"], format!("{base}t ptrace 0 0"));
}
