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
