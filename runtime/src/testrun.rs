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
            let TestCase::Packet {
                expect,
                span,
                counts,
                ..
            } = case
            else {
                continue;
            };
            let expected_counts: Result<Vec<ExpectedCount>, String> =
                counts.iter().map(|k| expected_count(c, k)).collect();
            let result = expected_counts.and_then(|wanted| {
                let before = read_counts(loaded, &wanted)?;
                let pkt = testcase::build(case).map_err(|CaseError { message, .. }| message)?;
                let run = loaded
                    .test_run(&filter.name, &pkt, 1)
                    .map_err(|e| e.to_string())?;
                let verdict = verdict_of(&filter.hook, run.retval)
                    .ok_or(format!("the program returned {}", run.retval))?;
                if verdict != expect.verdict {
                    return Ok(verdict);
                }
                let after = read_counts(loaded, &wanted)?;
                for ((name, key), (b, a)) in wanted.iter().zip(before.iter().zip(&after)) {
                    if a.wrapping_sub(*b) != 1 {
                        let which = key.as_ref().map(|_| " (that key)").unwrap_or("");
                        return Err(format!(
                            "the verdict was right, but counter `{name}`{which} went from {b} to {a}, not up by one"
                        ));
                    }
                }
                Ok(verdict)
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

/// A counter a test case expects to go up: its map, and the key bytes for keyed ones.
type ExpectedCount = (String, Option<Vec<u8>>);

/// A `count NAME[KEY]` of a test case: the counter's map and the key bytes, encoded as the
/// program keys it (see `ir::lower::maps::count_key_off`).
fn expected_count(
    c: &Compiled,
    k: &pol_compiler::syntax::ast::CountClause,
) -> Result<ExpectedCount, String> {
    use pol_compiler::hir::fields::Slot;
    use pol_compiler::hir::Ty;
    use pol_compiler::syntax::ast::ExprKind;
    let counter = c
        .hir
        .counters
        .iter()
        .find(|x| x.name == k.map.name)
        .ok_or(format!("no counter `{}`", k.map.name))?;
    let (Some(field), Some(key)) = (counter.key, &k.key) else {
        return Ok((counter.name.clone(), None));
    };
    let bytes = match (&key.kind, field.ty, field.slot) {
        (ExprKind::Ip4(a), Ty::Ip, _) => {
            [32u32.to_le_bytes().to_vec(), a.to_vec(), vec![0; 12]].concat()
        }
        (ExprKind::Ip6(a), Ty::Ip, _) => [128u32.to_le_bytes().to_vec(), a.to_vec()].concat(),
        (ExprKind::Ip4(a), Ty::Ip4, _) => a.to_vec(),
        (ExprKind::Ip6(a), Ty::Ip6, _) => a.to_vec(),
        (ExprKind::Int(v), _, Slot::Int { size, .. }) => v.to_le_bytes()[..size as usize].to_vec(),
        (ExprKind::Mac(m), Ty::Mac, Slot::Int { size, .. }) => {
            pol_compiler::hir::values::mac_value(m).to_le_bytes()[..size as usize].to_vec()
        }
        _ => {
            return Err(format!(
                "`{}`: this key does not fit the counter",
                k.map.name
            ))
        }
    };
    Ok((counter.name.clone(), Some(bytes)))
}

/// The current value of each expected counter (0 for a key not yet in the map).
fn read_counts(loaded: &dyn Object, wanted: &[ExpectedCount]) -> Result<Vec<u64>, String> {
    wanted
        .iter()
        .map(|(name, key)| {
            let entries = loaded.map_entries(name).map_err(|e| e.to_string())?;
            let value = |v: &[u8]| {
                let mut b = [0u8; 8];
                b[..v.len().min(8)].copy_from_slice(&v[..v.len().min(8)]);
                u64::from_le_bytes(b)
            };
            Ok(match key {
                None => entries.iter().map(|(_, v)| value(v)).sum(),
                Some(key) => entries
                    .iter()
                    .find(|(k, _)| k == key)
                    .map_or(0, |(_, v)| value(v)),
            })
        })
        .collect()
}
