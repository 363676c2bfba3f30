//! `pol fmt`'s style on messy inputs (golden files), every example already in that style,
//! and its idempotence: formatting its own output changes nothing.

mod common;

use pol_compiler::fmt::{format, FormatError};
use std::path::Path;
use std::process::Command;

/// Formats `src` and checks that formatting the result again changes nothing.
fn fmt_twice(src: &str) -> String {
    let once = format(src).unwrap_or_else(|e| panic!("format failed: {e}"));
    let twice = format(&once).unwrap_or_else(|e| panic!("format of the output failed: {e}"));
    assert_eq!(once, twice, "formatting is not idempotent");
    once
}

/// The examples are what users copy: each is written in the canonical style already (so
/// `pol fmt --check examples/*.pol` passes, and no golden copy of them is needed).
#[test]
fn examples_are_in_the_canonical_style() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut n = 0;
    for e in std::fs::read_dir(dir).expect("examples/") {
        let path = e.expect("entry").path();
        if path.extension().is_some_and(|x| x == "pol") {
            let src = std::fs::read_to_string(&path).expect("read example");
            assert!(
                fmt_twice(&src) == src,
                "{} is not formatted: run `pol fmt` on it",
                path.display()
            );
            n += 1;
        }
    }
    assert!(n >= 5, "{n} examples");
}

#[test]
fn messy_inputs() {
    insta::glob!("fmt", "*.pol", |path| {
        let src = std::fs::read_to_string(path).expect("read fixture");
        insta::assert_snapshot!(fmt_twice(&src));
    });
}

#[test]
fn stdlib_and_test_cases_are_stable() {
    let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("stdlib/std")];
    dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases/syntax/ok"));
    for dir in dirs {
        for entry in std::fs::read_dir(&dir).expect("dir") {
            let path = entry.expect("entry").path();
            let src = std::fs::read_to_string(&path).expect("read");
            match format(&src) {
                Ok(_) => {
                    fmt_twice(&src);
                }
                Err(e) => panic!("{}: {e}", path.display()),
            }
        }
    }
}

#[test]
fn refuses_files_with_syntax_errors() {
    assert_eq!(
        format("filter f on xdp(\"e\") { drop tcp.dport == }"),
        Err(FormatError::Syntax { errors: 1 })
    );
}

#[test]
fn pol_fmt_rewrites_and_check_reports() {
    let dir = common::TempDir::new("pol_fmt_cli");
    let messy = dir.path().join("messy.pol");
    let broken = dir.path().join("broken.pol");
    let src = "filter f on xdp(\"e\") {drop tcp.dport==1 # why\n default pass}\n";
    std::fs::write(&messy, src).expect("write");
    std::fs::write(&broken, "filter f on xdp(\"e\") { drop tcp.dport == }\n").expect("write");
    let pol = |args: &[&Path]| {
        let o = Command::new(env!("CARGO_BIN_EXE_pol"))
            .arg("fmt")
            .args(args)
            .output()
            .expect("run pol fmt");
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        (o.status.success(), out, err)
    };
    let check = Path::new("--check");

    let (ok, out, _) = pol(&[check, &messy]);
    assert!(!ok && out.contains("messy.pol: not formatted"), "{out}");
    assert_eq!(
        std::fs::read_to_string(&messy).expect("read"),
        src,
        "--check wrote"
    );

    let (ok, out, err) = pol(&[&messy]);
    assert!(ok && out.contains("formatted"), "{out}{err}");
    assert_eq!(
        std::fs::read_to_string(&messy).expect("read"),
        "filter f on xdp(\"e\") {\n    drop tcp.dport == 1 # why\n    default pass\n}\n"
    );
    let (ok, out, _) = pol(&[check, &messy]);
    assert!(ok && out.is_empty(), "{out}");

    let (ok, _, err) = pol(&[check, &messy, &broken]);
    assert!(
        !ok && err.contains("broken.pol: the file has 1 syntax error"),
        "{err}"
    );
}
