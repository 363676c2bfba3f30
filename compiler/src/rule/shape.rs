//! Rule shapes the lowering takes advantage of, decided from the whole rule set before it
//! is lowered: equality tests of one field that many rules of a kind make become members
//! of that field's set map (one lookup an event, then a bit a rule), and a rule whose
//! condition needs a bit of a looked-up word is skipped with its neighbours, word by
//! word, when the word is zero.

use super::hir::{Cond, Field, FieldTy, IntOp, Kind, MemberSet, RuleSet, SetValue, StrPat};
use super::hir::{INT_SET_MIN, STR_SET_MIN};

/// `set` with every `FIELD == value` test of a field that the rules of one kind test
/// against [`STR_SET_MIN`] (strings) or [`INT_SET_MIN`] (integers) different values or
/// more turned into a test of a one-value set: 1,000 rules `path == ".."` are one hash
/// lookup an event and a bit test a rule, not 1,000 string compares.
pub fn group_equalities(set: &RuleSet) -> RuleSet {
    let mut out = set.clone();
    for kind in set.kinds() {
        // Distinct values tested with `==` per field (by name and offset: each slot of
        // `ancestor.comm` is a key of its own).
        let mut by_field: Vec<((&'static str, u32), Vec<SetValue>)> = Vec::new();
        for r in set.rules.iter().filter(|r| r.kind == kind) {
            eqs(&r.cond, &mut |field, v| {
                let key = (field.name, field.offset);
                let at = match by_field.iter().position(|(k, _)| *k == key) {
                    Some(at) => at,
                    None => {
                        by_field.push((key, Vec::new()));
                        by_field.len() - 1
                    }
                };
                if let Some((_, vs)) = by_field.get_mut(at) {
                    if !vs.contains(&v) {
                        vs.push(v);
                    }
                }
            });
        }
        let grouped: Vec<(&'static str, u32)> = by_field
            .into_iter()
            .filter(|(_, vs)| {
                let min = match vs.first() {
                    Some(SetValue::Int(_)) => INT_SET_MIN,
                    _ => STR_SET_MIN,
                };
                vs.len() >= min
            })
            .map(|(k, _)| k)
            .collect();
        if grouped.is_empty() {
            continue;
        }
        let RuleSet { rules, sets } = &mut out;
        for r in rules.iter_mut().filter(|r| r.kind == kind) {
            r.cond = regroup(&r.cond, &grouped, sets);
        }
    }
    out
}

/// Calls `f` on each unmasked equality test of a string or integer field in `c`.
fn eqs(c: &Cond, f: &mut impl FnMut(Field, SetValue)) {
    match c {
        Cond::And(a, b) | Cond::Or(a, b) => {
            eqs(a, f);
            eqs(b, f);
        }
        Cond::Not(a) => eqs(a, f),
        Cond::Str {
            field,
            pat: StrPat::Eq(s),
        } => f(*field, SetValue::Str(s.clone())),
        Cond::Int {
            field,
            mask: None,
            op: IntOp::Eq,
            value,
        } if field.ty == FieldTy::Int => f(*field, SetValue::Int(*value)),
        _ => {}
    }
}

/// `c` with the equality tests of the `grouped` fields as one-value set tests.
fn regroup(c: &Cond, grouped: &[(&'static str, u32)], sets: &mut Vec<MemberSet>) -> Cond {
    let member = |field: Field, v: SetValue, sets: &mut Vec<MemberSet>| {
        let values = vec![v];
        let set = match sets
            .iter()
            .position(|s| s.field == field.name && s.values == values)
        {
            Some(i) => i,
            None => {
                sets.push(MemberSet {
                    field: field.name,
                    values,
                });
                sets.len() - 1
            }
        };
        Cond::Member { field, set }
    };
    let is_grouped = |field: &Field| grouped.contains(&(field.name, field.offset));
    match c {
        Cond::And(a, b) => Cond::And(
            Box::new(regroup(a, grouped, sets)),
            Box::new(regroup(b, grouped, sets)),
        ),
        Cond::Or(a, b) => Cond::Or(
            Box::new(regroup(a, grouped, sets)),
            Box::new(regroup(b, grouped, sets)),
        ),
        Cond::Not(a) => Cond::Not(Box::new(regroup(a, grouped, sets))),
        Cond::Str {
            field,
            pat: StrPat::Eq(s),
        } if is_grouped(field) => member(*field, SetValue::Str(s.clone()), sets),
        Cond::Int {
            field,
            mask: None,
            op: IntOp::Eq,
            value,
        } if field.ty == FieldTy::Int && is_grouped(field) => {
            member(*field, SetValue::Int(*value), sets)
        }
        other => other.clone(),
    }
}

/// The set bit a condition cannot hold without, as (set index): a set test, or one that
/// a conjunction holds.
pub fn required_set(c: &Cond) -> Option<(Field, usize)> {
    match c {
        Cond::Member { field, set } => Some((*field, *set)),
        Cond::And(a, b) => required_set(a).or_else(|| required_set(b)),
        _ => None,
    }
}

/// Whether rules of `kind` test (not only print) field `name`.
pub fn tests(set: &RuleSet, kind: Kind, name: &str) -> bool {
    set.rules
        .iter()
        .filter(|r| r.kind == kind)
        .any(|r| r.cond.uses(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(src: &str) -> RuleSet {
        let (ast, diags) = crate::syntax::parse(src);
        assert!(diags.is_empty(), "{diags:?}");
        let rules: Vec<_> = ast
            .items
            .iter()
            .filter_map(|i| match i {
                crate::syntax::ast::Item::Rule(r) => Some(r),
                _ => None,
            })
            .collect();
        let (set, diags) = super::super::check::check(&rules, &[], src);
        assert!(diags.is_empty(), "{diags:?}");
        set
    }

    fn many(n: usize, field: &str, value: impl Fn(usize) -> String) -> String {
        (0..n)
            .map(|i| {
                format!(
                    "rule r{i} on open {{\n when {field} == {} and uid != 5\n action alert(info, \"x\")\n}}\n",
                    value(i)
                )
            })
            .collect()
    }

    #[test]
    fn many_equalities_of_one_field_become_one_value_sets() {
        let set = group_equalities(&rules(&many(STR_SET_MIN, "path", |i| {
            format!("\"/x/{i}\"")
        })));
        assert_eq!(set.sets.len(), STR_SET_MIN);
        for (i, r) in set.rules.iter().enumerate() {
            let (field, s) = required_set(&r.cond).expect("a set test");
            assert_eq!(field.name, "path");
            assert_eq!(
                set.sets[s].values,
                vec![SetValue::Str(format!("/x/{i}").into_bytes())]
            );
            // The other test is left as it was.
            assert!(r.cond.uses("uid"));
        }
    }

    #[test]
    fn few_equalities_stay_compares() {
        let src = many(STR_SET_MIN - 1, "path", |i| format!("\"/x/{i}\""));
        let set = group_equalities(&rules(&src));
        assert!(set.sets.is_empty());
        assert!(set.rules.iter().all(|r| required_set(&r.cond).is_none()));
        // Integers need more values than strings.
        let src = many(STR_SET_MIN, "flags", |i| i.to_string());
        assert!(group_equalities(&rules(&src)).sets.is_empty());
        let src = many(INT_SET_MIN, "flags", |i| i.to_string());
        assert_eq!(group_equalities(&rules(&src)).sets.len(), INT_SET_MIN);
    }
}
