//! The `pol` binary as a user runs it: exit codes, files written, output shape.

mod common;

use std::process::{Command, Output};

fn pol(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pol"))
        .args(args)
        .output()
        .expect("run pol")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn check_accepts_examples_and_rejects_bad_input() {
    let dir = common::TempDir::new("pol_cli_check");
    let good = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/edge.pol");
    let o = pol(&["check", good]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("edge.pol: ok (1 program"), "{out}");

    let bad = dir.path().join("bad.pol");
    std::fs::write(
        &bad,
        "filter f on xdp(\"eth0\") {\n    drop tcp.dprot == 22\n    default pass\n}\n",
    )
    .expect("write");
    let o = pol(&["check", bad.to_str().expect("utf-8")]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err.contains("[E0302] Error: unknown field `tcp.dprot`"),
        "{err}"
    );
    assert!(err.contains("did you mean `tcp.dport`?"), "{err}");
    assert!(err.contains("bad.pol: 1 error"), "{err}");
    assert!(
        !err.contains('\u{1b}'),
        "no colour codes when not on a terminal"
    );

    let o = pol(&[
        "check",
        dir.path().join("missing.pol").to_str().expect("utf-8"),
    ]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err.contains("cannot read") && err.contains("missing.pol"),
        "{err}"
    );
}

#[test]
fn build_writes_object_layout_and_report() {
    let dir = common::TempDir::new("pol_cli_build");
    let out = dir.path().join("edge.o");
    let o = pol(&[
        "build",
        concat!(env!("CARGO_MANIFEST_DIR"), "/examples/edge.pol"),
        "-o",
        out.to_str().expect("utf-8"),
    ]);
    let (stdout, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        stdout.contains("program edge") && stdout.contains("instructions"),
        "{stdout}"
    );
    assert!(
        stdout.contains("map     blocked_v4") && stdout.contains("lpm_trie"),
        "{stdout}"
    );
    assert!(stdout.contains("of kernel memory at load"), "{stdout}");
    // A keyed counter takes memory as keys arrive: its figure is a ceiling.
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("blocked_by_src") && l.contains("up to")),
        "{stdout}"
    );
    let elf = std::fs::read(&out).expect("object written");
    assert_eq!(&elf[..4], b"\x7fELF");
    let layout: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("edge.layout.json")).expect("layout written"),
    )
    .expect("valid JSON");
    assert_eq!(layout["programs"][0]["name"], "edge");
    assert_eq!(layout["programs"][0]["attach"]["iface"], "eth0");

    // The listing of the object names the maps its instructions load.
    let o = pol(&["disasm", out.to_str().expect("utf-8")]);
    let (listing, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(listing.contains("program edge (section xdp"), "{listing}");
    assert!(listing.contains("map[blocked_v4]"), "{listing}");

    let o = pol(&[
        "disasm",
        concat!(env!("CARGO_MANIFEST_DIR"), "/examples/edge.pol"),
    ]);
    let (listing, _) = text(&o);
    assert!(
        listing.contains("; line 15: drop tcp.dport == 23 count telnet"),
        "{listing}"
    );

    let not_elf = dir.path().join("x.o");
    std::fs::write(&not_elf, b"hello").expect("write");
    let o = pol(&["disasm", not_elf.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("not an ELF object"));
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn test_command_reports_like_cargo_test() {
    common::require_kernel();
    let dir = common::TempDir::new("pol_cli_test");
    let file = dir.path().join("t.pol");
    std::fs::write(
        &file,
        "filter f on xdp(\"eth0\") {\n    drop tcp.dport == 23 count telnet\n    default pass count other\n}\n\
         test \"telnet\" on f {\n    packet tcp { dport: 23 } => drop\n    packet tcp { dport: 24 } => drop\n\
             packet tcp { dport: 23 } => drop count telnet\n    packet tcp { dport: 23 } => drop count other\n}\n",
    )
    .expect("write");
    let o = pol(&["test", file.to_str().expect("utf-8")]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(
        out.contains("test telnet #1: packet tcp { dport: 23 } => drop ... ok"),
        "{out}"
    );
    assert!(
        out.contains("test telnet #2: packet tcp { dport: 24 } => drop ... FAILED"),
        "{out}"
    );
    assert!(err.contains("expected drop, got pass"), "{err}");
    assert!(
        out.contains("#3: packet tcp { dport: 23 } => drop count telnet ... ok"),
        "{out}"
    );
    assert!(
        out.contains("#4: packet tcp { dport: 23 } => drop count other ... FAILED"),
        "{out}"
    );
    assert!(
        err.contains("counter `other` went from 1 to 1, not up by one"),
        "{err}"
    );
    assert!(out.trim_end().ends_with("2 passed, 2 failed"), "{out}");

    // `pol test` over every example, as CI runs it.
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let mut examples: Vec<String> = std::fs::read_dir(dir)
        .expect("examples")
        .filter_map(|e| e.ok())
        .map(|e| e.path().display().to_string())
        .filter(|p| p.ends_with(".pol"))
        .collect();
    examples.sort();
    let mut args = vec!["test"];
    args.extend(examples.iter().map(String::as_str));
    let o = pol(&args);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    let last = out.trim_end().lines().last().unwrap_or("");
    assert!(last.ends_with(" passed, 0 failed"), "{out}");
    assert!(
        examples.len() >= 5 && !last.starts_with("0 passed"),
        "{out}"
    );
}

#[test]
fn sets_read_from_files_with_line_precise_errors() {
    let dir = common::TempDir::new("pol_cli_fileset");
    let pol_file = dir.path().join("f.pol");
    std::fs::write(
        &pol_file,
        "set blocked: cidr = file(\"lists/block.txt\")\nfilter f on xdp(\"eth0\") {\n    drop ip.src in blocked\n    default pass\n}\n",
    )
    .expect("write");
    std::fs::create_dir_all(dir.path().join("lists")).expect("mkdir");
    let list: String = (0..2000)
        .map(|i| format!("10.{}.{}.0/24 # entry {i}\n", i / 256, i % 256))
        .collect();
    std::fs::write(
        dir.path().join("lists/block.txt"),
        format!("# blocklist\n{list}\n2001:db8::/32\n"),
    )
    .expect("write");
    let o = pol(&[
        "build",
        pol_file.to_str().expect("utf-8"),
        "-o",
        dir.path().join("f.o").to_str().expect("utf-8"),
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        out.contains("blocked_v4") && out.contains("2000 entries"),
        "{out}"
    );
    let layout = std::fs::read_to_string(dir.path().join("f.layout.json")).expect("layout");
    assert!(
        layout.contains("\"max_entries\": 2500"),
        "the map fits the data"
    );

    std::fs::write(
        dir.path().join("lists/block.txt"),
        "192.0.2.1\n\n  300.1.1.1\n10.0.0.0/8\n",
    )
    .expect("write");
    let o = pol(&["check", pol_file.to_str().expect("utf-8")]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err.contains("lists/block.txt:3:3: expected an address or prefix such as 192.0.2.0/24"),
        "{err}"
    );
    assert!(
        err.contains("set blocked: cidr = file(\"lists/block.txt\")"),
        "{err}"
    );
}

#[test]
fn build_explain_says_where_each_rule_went() {
    let dir = common::TempDir::new("pol_cli_explain");
    let file = dir.path().join("x.pol");
    let mut src = String::from("filter x on xdp(\"eth0\") {\n");
    for i in 1..=9 {
        src.push_str(&format!("    drop ip.src == 192.0.2.{i}\n"));
    }
    src.push_str("    pass tcp.dport == 22 and ip.src in 10.0.0.0/8\n    drop udp.dport < 1024\n    default pass\n}\n");
    std::fs::write(&file, src).expect("write");
    let o = pol(&[
        "build",
        file.to_str().expect("utf-8"),
        "-o",
        dir.path().join("x.o").to_str().expect("utf-8"),
        "--explain",
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        out.contains("filter x: 9 rules in 1 map (one lookup each), 2 as code"),
        "{out}"
    );
    assert!(
        out.contains("map x_ip_src_v4 (hash): 9 keys of `ip.src`"),
        "{out}"
    );
    assert!(
        out.contains("-> code: it tests several conditions together (`and`)"),
        "{out}"
    );
    assert!(
        out.contains("-> code: `udp.dport` is compared with an order"),
        "{out}"
    );
}

/// `packet raw { bytes: "..." }`: a frame given as hex bytes (white space as tcpdump -xx
/// prints it), decided like any other; bad hex is an error at its span.
#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn raw_frames_in_test_blocks() {
    common::require_kernel();
    let dir = common::TempDir::new("pol_cli_raw");
    let file = dir.path().join("raw.pol");
    // Ethernet, IPv4 (20 bytes, UDP), UDP 4660 -> 23; the same behind a 0x9300 tag (not
    // a TPID pol looks through: not IP); an ARP request.
    let udp = "ffffffffffff 020000000001 0800 \
               4500 001c 0000 0000 4011 0000 c0000201 c0000202 \
               1234 0017 0008 0000";
    let tagged = "ffffffffffff 020000000001 9300 0064 0800 \
                  4500 001c 0000 0000 4011 0000 c0000201 c0000202 \
                  1234 0017 0008 0000";
    let arp = "ffffffffffff 020000000001 0806 0001 0800 06 04 0001 \
               020000000001 c0000201 000000000000 c0000202";
    std::fs::write(
        &file,
        format!(
            "filter f on xdp(\"eth0\") {{\n    drop udp.dport == 23\n    drop arp.op == 1\n    default pass\n}}\n\
             test \"raw\" on f {{\n    packet raw {{ bytes: \"{udp}\" }} => drop\n    \
             packet raw {{ bytes: \"{tagged}\" }} => pass\n    packet raw {{ bytes: \"0x{}\" }} => drop\n}}\n",
            arp.replace(' ', "")
        ),
    )
    .expect("write");
    let o = pol(&["test", file.to_str().expect("utf-8")]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.trim_end().ends_with("3 passed, 0 failed"), "{out}");

    let bad = dir.path().join("bad.pol");
    std::fs::write(
        &bad,
        "filter f on xdp(\"eth0\") {\n    default pass\n}\n\
         test \"bad\" on f {\n    packet raw { bytes: \"ffff ffff fff\" } => pass\n    \
         packet raw { bytes: \"ffff zz\" } => pass\n    packet raw { bytes: \"0800\" } => pass\n    \
         packet raw { src: 10.0.0.1 } => pass\n}\n",
    )
    .expect("write");
    let o = pol(&["check", bad.to_str().expect("utf-8")]);
    let (out, err) = text(&o);
    assert!(!o.status.success(), "{out}{err}");
    for want in [
        "11 hex digits: a byte is two, so one is missing",
        "`z` is not a hex digit",
        "2 bytes are not a frame: an Ethernet header alone is 14",
        "a raw packet has one field, `bytes`, not `src`",
    ] {
        assert!(err.contains(want), "{want}: {err}");
    }
}

/// `pol disasm big.pol | head -1`: the reader goes away early; pol must end quietly (as
/// `cat` does, by SIGPIPE) rather than panic in `println!`.
#[test]
fn a_closed_pipe_ends_a_printing_command_without_a_panic() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;

    let dir = common::TempDir::new("pol_cli_pipe");
    let file = dir.path().join("big.pol");
    // Enough rules that the listing is far larger than a pipe's 64 KiB buffer.
    let rules: String = (1..=400)
        .map(|i| {
            format!(
                "    drop tcp.dport == {i} and ip.src == 10.0.{}.{}\n",
                i / 250,
                i % 250
            )
        })
        .collect();
    std::fs::write(
        &file,
        format!("filter f on xdp(\"eth0\") {{\n{rules}    default pass\n}}\n"),
    )
    .expect("write");
    let mut child = Command::new(env!("CARGO_BIN_EXE_pol"))
        .args(["disasm", file.to_str().expect("utf-8")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run pol");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("read");
    // The reader is dropped here: the pipe is closed with most of the listing unwritten.
    let o = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!first.is_empty(), "pol printed nothing: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        o.status.signal() == Some(libc::SIGPIPE) || o.status.success(),
        "{:?}: {err}",
        o.status
    );
}
