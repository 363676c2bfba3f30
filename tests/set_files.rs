//! `file(..)` sets read through `pol check`: devices, FIFOs, directories and oversized
//! files are refused with a sentence, and a file that is not a list is never echoed.

mod common;

use std::process::Command;

fn check(dir: &std::path::Path, target: &str) -> (Option<i32>, String) {
    let f = dir.join("f.pol");
    std::fs::write(
        &f,
        format!(
            "set s: cidr = file(\"{target}\")\nfilter f on xdp(\"eth0\") {{\n    drop ip.src in s\n    default pass\n}}\n"
        ),
    )
    .expect("write");
    let o = Command::new(env!("CARGO_BIN_EXE_pol"))
        .arg("check")
        .arg(&f)
        .output()
        .expect("run pol");
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn devices_fifos_directories_and_huge_files_are_refused() {
    let dir = common::TempDir::new("pol_set_files");
    for (target, what) in [
        ("/dev/zero", "is a character device"),
        ("/dev/stdin", "is a"),
        ("/tmp", "is a directory"),
    ] {
        let (code, err) = check(dir.path(), target);
        assert_eq!(code, Some(1), "{target}: {err}");
        assert!(err.contains(&format!("cannot read `{target}`")), "{err}");
        assert!(err.contains(what), "{target}: {err}");
    }
    let huge = dir.path().join("huge.txt");
    std::fs::File::create(&huge)
        .and_then(|f| f.set_len(65 << 20))
        .expect("sparse file");
    let (code, err) = check(dir.path(), "huge.txt");
    assert_eq!(code, Some(1));
    assert!(
        err.contains("a set file may hold at most 67108864 bytes"),
        "{err}"
    );
}

#[test]
fn a_file_that_is_not_a_list_is_never_echoed() {
    let dir = common::TempDir::new("pol_set_files_secret");
    std::fs::write(
        dir.path().join("shadow"),
        "root:$y$j9T$SECRETSALT$SECRETHASH:19000:0:99999:7:::\n\
         daemon:*:19000:0:99999:7:::\n  hunter2\n",
    )
    .expect("write");
    let (code, err) = check(dir.path(), "shadow");
    assert_eq!(code, Some(1), "{err}");
    for secret in ["SECRET", "root", "daemon", "hunter2", "19000"] {
        assert!(!err.contains(secret), "`{secret}` echoed: {err}");
    }
    assert!(
        err.contains("shadow:1:1: expected an address or prefix such as 192.0.2.0/24")
            && err.contains("(and 2 more bad lines)")
            && err.contains("bad lines: 1, 2, 3"),
        "{err}"
    );
}
