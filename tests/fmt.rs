//! `pol fmt`'s style on every example and on messy inputs (golden files), and its
//! idempotence: formatting its own output changes nothing.

use pol_compiler::fmt::{format, FormatError};
use std::path::Path;

/// Formats `src` and checks that formatting the result again changes nothing.
fn fmt_twice(src: &str) -> String {
    let once = format(src).unwrap_or_else(|e| panic!("format failed: {e}"));
    let twice = format(&once).unwrap_or_else(|e| panic!("format of the output failed: {e}"));
    assert_eq!(once, twice, "formatting is not idempotent");
    once
}

#[test]
fn examples() {
    insta::glob!("../examples", "*.pol", |path| {
        let src = std::fs::read_to_string(path).expect("read example");
        insta::assert_snapshot!(fmt_twice(&src));
    });
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
