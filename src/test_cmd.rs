//! `pol test`: runs the `test` blocks of `.pol` files through the kernel (BPF_PROG_TEST_RUN)
//! and reports like `cargo test`.

use crate::compile;
use anyhow::{bail, Result};
use pol_compiler::diag::{render, Diagnostic};
use pol_compiler::driver::verdict_word;
use pol_runtime::testrun;
use std::path::PathBuf;

pub fn run(files: &[PathBuf]) -> Result<bool> {
    if let Err(why) = pol_runtime::sys::bpf_available() {
        bail!("cannot run tests in the kernel: {why}");
    }
    let (mut passed, mut failed) = (0usize, 0usize);
    for path in files {
        let Some(c) = compile(path)? else {
            failed += 1;
            continue;
        };
        let src = std::fs::read_to_string(path)?;
        let name = path.display().to_string();
        let loaded = match testrun::load(&c) {
            Ok(l) => l,
            Err(e) => bail!("{name}: cannot load into the kernel: {e}"),
        };
        let outcomes = testrun::run_tests(&c, &loaded);
        println!(
            "\nrunning {} test case{} from {name}",
            outcomes.len(),
            if outcomes.len() == 1 { "" } else { "s" }
        );
        for o in &outcomes {
            let case = src
                .get(o.span.clone())
                .unwrap_or("")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            let label = format!("{} #{}: {case}", o.test, o.index);
            if o.passed() {
                passed += 1;
                println!("test {label} ... ok");
                continue;
            }
            failed += 1;
            println!("test {label} ... FAILED");
            let msg = match &o.result {
                Ok(got) => format!(
                    "expected {}, got {}",
                    verdict_word(o.expected),
                    verdict_word(*got)
                ),
                Err(e) => e.clone(),
            };
            let d = Diagnostic::error(
                "T0001",
                format!("test `{label}` failed: {msg}"),
                o.span.clone(),
            )
            .with_label(msg);
            eprint!("{}", render(&d, &name, &src));
        }
    }
    println!();
    println!(
        "test result: {}. {passed} passed; {failed} failed",
        if failed == 0 { "ok" } else { "FAILED" }
    );
    println!("{passed} passed, {failed} failed");
    Ok(failed == 0)
}
