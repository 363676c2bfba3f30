//! Running a file's `test` blocks: each packet through its filter with BPF_PROG_TEST_RUN.
//! [`load`] goes through aya and the ELF object; [`load_direct`] is the direct path.

use crate::direct::{Direct, Object};
use crate::load::{LoadError, Loaded};
use crate::testcase::{self, CaseError};
use pol_compiler::driver::Compiled;
use pol_compiler::hir::Hook;
use pol_compiler::ir::lower::verdict_code;
use pol_compiler::syntax::ast::{Item, Span, TestCase, Verdict};

/// Loads a compiled file on the direct path (no ELF, no aya: see [`crate::direct`]), set
/// and rule maps filled in batches. What `pol run` uses.
pub fn load_direct(c: &Compiled) -> Result<Direct, LoadError> {
    Direct::load(c)
}

/// Loads a compiled file's ELF object through aya and puts the contents of its set and
/// rule maps in place, one update per key.
pub fn load(c: &Compiled) -> Result<Loaded, LoadError> {
    let loaded = Loaded::from_bytes(&c.object)?;
    for m in &c.maps {
        for (k, v) in &m.entries {
            loaded.map_update(&m.spec.name, k, v)?;
        }
    }
    Ok(loaded)
}

/// What a filter returned, in the language's words.
pub fn verdict_of(hook: &Hook, retval: u32) -> Option<Verdict> {
    [Verdict::Pass, Verdict::Drop]
        .into_iter()
        .find(|v| verdict_code(hook, *v) == retval)
}

#[derive(Debug, Clone)]
pub struct CaseOutcome {
    /// The `test "NAME"` the case belongs to, and its position there (from 1).
    pub test: String,
    pub index: usize,
    pub span: Span,
    pub expected: Verdict,
    pub result: Result<Verdict, String>,
}

impl CaseOutcome {
    pub fn passed(&self) -> bool {
        self.result.as_ref().is_ok_and(|v| *v == self.expected)
    }
}

/// Runs every packet of every `test` block of the file.
pub fn run_tests(c: &Compiled, loaded: &dyn Object) -> Vec<CaseOutcome> {
    let mut out = Vec::new();
    for item in &c.ast.items {
        let Item::Test(t) = item else { continue };
        let Some(filter) = c.hir.filters.iter().find(|f| f.name == t.target.name) else {
            continue;
        };
        for (i, case) in t.cases.iter().enumerate() {
            let TestCase::Packet { expect, span, .. } = case else {
                continue;
            };
            let result = testcase::build(case)
                .map_err(|CaseError { message, .. }| message)
                .and_then(|pkt| {
                    loaded
                        .test_run(&filter.name, &pkt, 1)
                        .map_err(|e| e.to_string())
                })
                .and_then(|run| {
                    verdict_of(&filter.hook, run.retval)
                        .ok_or(format!("the program returned {}", run.retval))
                });
            out.push(CaseOutcome {
                test: t.name.clone(),
                index: i + 1,
                span: span.clone(),
                expected: expect.verdict,
                result,
            });
        }
    }
    out
}
