//! Rule analysis at compile time: warnings, with spans, for a rule that can never match
//! (W0539), a rule whose kill or deny never changes what happens because an earlier
//! rule already does it on every event it matches (W0540), and a rule tried in audit
//! mode whose events another rule enforces on anyway (W0541).
//!
//! Each condition is put in disjunctive normal form (at most [`MAX_TERMS`] conjunctions;
//! larger ones are not analysed) over its tests. A conjunction is impossible when two of
//! its tests of one field contradict (two different values, an empty integer range, a
//! value outside a list, two address families); one rule's conjunction implies another's
//! when each test of the other follows from its own. Both are sound and incomplete: a
//! warning is always right, and some cases go unseen.

use super::hir::{Cond, IntOp, Rule, RuleSet, SetValue, StrPat};
use crate::diag::Diagnostic;

/// Conjunctions a condition may expand to before the analysis gives up on it.
pub const MAX_TERMS: usize = 64;

/// A test, or its negation.
#[derive(Debug, Clone, PartialEq)]
struct Lit<'a> {
    cond: &'a Cond,
    yes: bool,
}

type Term<'a> = Vec<Lit<'a>>;

/// `c` (or `not c` when `!yes`) as a disjunction of conjunctions; `None` when too large.
fn dnf(c: &Cond, yes: bool) -> Option<Vec<Term<'_>>> {
    Some(match (c, yes) {
        (Cond::True, true) => vec![vec![]],
        (Cond::True, false) => vec![],
        (Cond::Not(a), _) => dnf(a, !yes)?,
        (Cond::And(a, b), true) | (Cond::Or(a, b), false) => {
            let (x, y) = (dnf(a, yes)?, dnf(b, yes)?);
            if x.len() * y.len() > MAX_TERMS {
                return None;
            }
            let mut out = Vec::new();
            for p in &x {
                for q in &y {
                    out.push(p.iter().chain(q).cloned().collect());
                }
            }
            out
        }
        (Cond::Or(a, b), true) | (Cond::And(a, b), false) => {
            let mut x = dnf(a, yes)?;
            x.extend(dnf(b, yes)?);
            if x.len() > MAX_TERMS {
                return None;
            }
            x
        }
        (leaf, yes) => vec![vec![Lit { cond: leaf, yes }]],
    })
}

/// The field (by record offset) a test reads.
fn offset(c: &Cond) -> Option<u32> {
    match c {
        Cond::Int { field, .. }
        | Cond::Str { field, .. }
        | Cond::Addr { field, .. }
        | Cond::Member { field, .. } => Some(field.offset),
        _ => None,
    }
}

/// The integer range `[lo, hi]` an unmasked integer test (or its negation) allows, and
/// the one value it excludes (`!=`).
fn int_range(l: &Lit) -> Option<(u64, u64, Option<u64>)> {
    let Cond::Int {
        mask: None,
        op,
        value: v,
        ..
    } = l.cond
    else {
        return None;
    };
    let op = match (op, l.yes) {
        (op, true) => *op,
        (IntOp::Eq, false) => IntOp::Ne,
        (IntOp::Ne, false) => IntOp::Eq,
        (IntOp::Lt, false) => IntOp::Ge,
        (IntOp::Le, false) => IntOp::Gt,
        (IntOp::Gt, false) => IntOp::Le,
        (IntOp::Ge, false) => IntOp::Lt,
    };
    let v = *v;
    Some(match op {
        IntOp::Eq => (v, v, None),
        IntOp::Ne => (0, u64::MAX, Some(v)),
        IntOp::Lt if v == 0 => (1, 0, None),
        IntOp::Lt => (0, v - 1, None),
        IntOp::Le => (0, v, None),
        IntOp::Gt if v == u64::MAX => (1, 0, None),
        IntOp::Gt => (v + 1, u64::MAX, None),
        IntOp::Ge => (v, u64::MAX, None),
    })
}

/// The exact string a test says the field holds, when it says one.
fn str_eq<'a>(l: &Lit<'a>) -> Option<&'a [u8]> {
    match (l.cond, l.yes) {
        (
            Cond::Str {
                pat: StrPat::Eq(s), ..
            },
            true,
        ) => Some(s),
        _ => None,
    }
}

/// Whether string `s` passes a string test (`None`: it cannot be told).
fn str_passes(s: &[u8], c: &Cond, set: &RuleSet) -> Option<bool> {
    let plain = |p: &[Option<u8>]| p.iter().copied().collect::<Option<Vec<u8>>>();
    match c {
        Cond::Str { pat, .. } => match pat {
            StrPat::Eq(x) => Some(s == x.as_slice()),
            StrPat::Prefix(p) => Some(s.starts_with(&plain(p)?)),
            StrPat::Suffix(p) => Some(s.ends_with(&plain(p)?)),
            _ => None,
        },
        Cond::Member { set: i, .. } => set
            .sets
            .get(*i)
            .map(|m| m.values.contains(&SetValue::Str(s.to_vec()))),
        _ => None,
    }
}

/// Whether an integer passes a test.
fn int_passes(v: u64, l: &Lit, set: &RuleSet) -> Option<bool> {
    if let Cond::Member { set: i, .. } = l.cond {
        let inside = set.sets.get(*i)?.values.contains(&SetValue::Int(v));
        return Some(inside == l.yes);
    }
    let (lo, hi, ne) = int_range(l)?;
    Some(lo <= v && v <= hi && ne != Some(v))
}

/// Whether a conjunction can never hold.
fn impossible(t: &Term, set: &RuleSet) -> bool {
    for (i, a) in t.iter().enumerate() {
        if matches!(a.cond, Cond::True) && !a.yes {
            return true;
        }
        for b in t.iter().skip(i + 1) {
            if offset(a.cond).is_none() || offset(a.cond) != offset(b.cond) {
                continue;
            }
            if a.cond == b.cond && a.yes != b.yes {
                return true;
            }
            if let (Some(x), Some(y)) = (int_range(a), int_range(b)) {
                let (lo, hi) = (x.0.max(y.0), x.1.min(y.1));
                if lo > hi || (lo == hi && (x.2 == Some(lo) || y.2 == Some(lo))) {
                    return true;
                }
            }
            // A value one test says, which the other refuses.
            for (p, q) in [(a, b), (b, a)] {
                if let Some(s) = str_eq(p) {
                    if str_passes(s, q.cond, set).is_some_and(|ok| ok != q.yes) {
                        return true;
                    }
                }
                if let Some((v, w, None)) = int_range(p) {
                    if v == w && int_passes(v, q, set) == Some(false) {
                        return true;
                    }
                }
            }
            if let (Cond::Addr { v6: x, .. }, Cond::Addr { v6: y, .. }, true, true) =
                (a.cond, b.cond, a.yes, b.yes)
            {
                if x != y {
                    return true;
                }
            }
        }
    }
    false
}

/// Whether every event conjunction `t` allows passes test `l`.
fn implies_lit(t: &Term, l: &Lit, set: &RuleSet) -> bool {
    t.iter().any(|m| {
        if m == l {
            return true;
        }
        if offset(m.cond).is_none() || offset(m.cond) != offset(l.cond) {
            return false;
        }
        if let Some(s) = str_eq(m) {
            return str_passes(s, l.cond, set).is_some_and(|ok| ok == l.yes);
        }
        match (int_range(m), int_range(l)) {
            (Some((a, b, None)), Some((lo, hi, ne))) => {
                lo <= a && b <= hi && ne.is_none_or(|n| n < a || n > b)
            }
            (Some((v, w, None)), None) if v == w => int_passes(v, l, set) == Some(true),
            _ => false,
        }
    })
}

/// Whether rule `b`'s condition implies rule `a`'s (both in DNF).
fn implies(b: &[Term], a: &[Term], set: &RuleSet) -> bool {
    b.iter().filter(|t| !impossible(t, set)).all(|tb| {
        a.iter()
            .any(|ta| ta.iter().all(|l| implies_lit(tb, l, set)))
    })
}

fn acts(r: &Rule) -> &'static str {
    if r.kill {
        "kills"
    } else {
        "denies"
    }
}

/// The warnings of a rule set, in rule order.
pub fn analyse(set: &RuleSet, source: &str) -> Vec<Diagnostic> {
    let line = |r: &Rule| {
        source
            .get(..r.header.start)
            .map_or(0, |s| s.matches('\n').count() + 1)
    };
    let forms: Vec<Option<Vec<Term>>> = set.rules.iter().map(|r| dnf(&r.cond, true)).collect();
    let enforcing = |r: &Rule| (r.kill || r.deny) && !r.audit;
    let mut out = Vec::new();
    for (i, (b, fb)) in set.rules.iter().zip(&forms).enumerate() {
        let Some(fb) = fb else { continue };
        if fb.iter().all(|t| impossible(t, set)) {
            out.push(
                Diagnostic::warning(
                    "W0539",
                    format!("rule `{}` can never match", b.name),
                    b.header.clone(),
                )
                .with_label("its conditions contradict each other")
                .with_help("two tests of one field that cannot both hold (two values, an empty range, a value outside a list)"),
            );
            continue;
        }
        for (a, fa) in set.rules.iter().zip(&forms).take(i) {
            let Some(fa) = fa else { continue };
            if a.kind != b.kind || !implies(fb, fa, set) {
                continue;
            }
            if (b.kill || b.deny)
                && !b.audit
                && enforcing(a)
                && (!b.kill || a.kill)
                && (!b.deny || a.deny)
            {
                out.push(
                    Diagnostic::warning(
                        "W0540",
                        format!("rule `{}` is shadowed by rule `{}`", b.name, a.name),
                        b.header.clone(),
                    )
                    .with_label(format!(
                        "its `{}` never changes what happens",
                        if b.kill { "kill" } else { "deny" }
                    ))
                    .with_secondary(
                        a.header.clone(),
                        format!(
                            "line {}: {} every event `{}` matches",
                            line(a),
                            acts(a),
                            b.name
                        ),
                    )
                    .with_help("remove the rule, or narrow the earlier one"),
                );
                break;
            }
        }
    }
    // An audited rule whose every event another rule (before or after it) enforces on.
    for (b, fb) in set.rules.iter().zip(&forms).filter(|(r, _)| r.audit) {
        let Some(fb) = fb else { continue };
        let over = set.rules.iter().zip(&forms).find(|(a, fa)| {
            a.kind == b.kind && enforcing(a) && fa.as_ref().is_some_and(|fa| implies(fb, fa, set))
        });
        if let Some((a, _)) = over {
            out.push(
                Diagnostic::warning(
                    "W0541",
                    format!(
                        "rule `{}` is audited, but rule `{}` enforces on all its events",
                        b.name, a.name
                    ),
                    b.header.clone(),
                )
                .with_label("its audit cannot show what enforcing it would change")
                .with_secondary(
                    a.header.clone(),
                    format!(
                        "line {}: {} every event `{}` matches",
                        line(a),
                        acts(a),
                        b.name
                    ),
                ),
            );
        }
    }
    out
}
