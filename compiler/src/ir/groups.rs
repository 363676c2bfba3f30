//! Which rules become map entries: the plan that keeps per-packet cost flat.
//!
//! A rule whose whole condition is "this field equals one of these values" (an address,
//! a prefix, a port, a small integer) is a set of keys in one *key space* — the record
//! slot it reads and the layer it needs. When a key space collects at least `GROUP_MIN`
//! keys from all rules, its rules leave the code: their keys go into one map (a hash map
//! for exact keys, an LPM trie for prefixes) whose value is the rule's index (its
//! priority) and action. At run time each key space costs one lookup, and the smallest
//! rule index among the hits wins, so first-match order is kept whatever the number of
//! rules. Rules that do not fit stay as code, tested in order between the lookups'
//! result and the default.

use crate::classify::tuplemerge::{self, Classifier, Config};
use crate::classify::{self, ClassifyError};
use crate::hir::fields::{Field, Slot};
use crate::hir::{CmpOp, Cond, Filter, Test, Value};
use std::collections::{BTreeMap, HashMap};

/// A key space needs this many keys before a map beats inline compares.
pub const GROUP_MIN: usize = 8;

/// Where a key is read and what guards it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Space {
    /// An integer slot of the record (host order), present when `layer` is set.
    Int { off: i16, size: u8, layer: u32 },
    /// An address slot of family `v6`, present when `layer` is set.
    Addr { off: i16, v6: bool, layer: u32 },
}

impl Space {
    /// The layer bits that must be set before the lookup (0: always present).
    pub fn guard(&self) -> u32 {
        match *self {
            Space::Int { layer, .. } if layer == u32::MAX => 0,
            Space::Int { layer, .. } => layer,
            Space::Addr { layer, .. } => layer,
        }
    }
}

/// One key of a rule: its space, a field naming it, and the value.
type Key = (Space, &'static Field, Value);

/// A filter needs this many rules the classifier holds before it gets one: below, their
/// code costs less than the classifier's walk over its tables.
pub const CLASSIFY_MIN: usize = 32;

/// Where one rule went, and why (for `pol build --explain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Its keys are in these groups (indices into `Plan::groups`).
    Map(Vec<usize>),
    /// It is in the filter's classifier, in these tables (none: an earlier rule in its
    /// bucket covers it, so it never decides).
    Classifier(Vec<usize>),
    /// It stays as code, for this reason.
    Code(String),
}

impl Placement {
    /// Whether the rule is found by a lookup (a rule map or the classifier), not by code.
    pub fn in_maps(&self) -> bool {
        !matches!(self, Placement::Code(_))
    }
}

/// The filter's classifier: the tables of its conjunctive rules.
#[derive(Debug, Clone)]
pub struct Classified {
    pub classifier: Classifier,
    /// The filter's rule index of each classifier rule (a rule may have several variants).
    pub ids: Vec<u32>,
}

/// One map of keys.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub space: Space,
    /// A field of the space, for naming the map and explaining.
    pub field: &'static Field,
    /// `(key value, rule index)`, in rule order; duplicates allowed (the first rule wins).
    pub keys: Vec<(Value, u32)>,
}

impl Group {
    /// Whether every key is a full-length address or an integer: a hash map will do.
    pub fn exact(&self) -> bool {
        self.keys.iter().all(|(v, _)| match v {
            Value::Net { v6, prefix, .. } => *prefix == if *v6 { 128 } else { 32 },
            Value::Int { lo, hi } => lo == hi,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub groups: Vec<Group>,
    pub placement: Vec<Placement>,
    pub classifier: Option<Classified>,
}

/// The action ids of a planned filter: 0 is the default, then each distinct action of a
/// rule a lookup finds (a rule map or the classifier), in rule order. Map and classifier
/// entries carry these ids; a rule added without reload can take any of them.
pub fn action_kinds<'a>(filter: &'a Filter, plan: &Plan) -> Vec<&'a crate::hir::Action> {
    let mut kinds: Vec<&crate::hir::Action> = vec![&filter.default];
    for (rule, place) in filter.rules.iter().zip(&plan.placement) {
        if place.in_maps() && !kinds.iter().any(|k| **k == rule.action) {
            kinds.push(&rule.action);
        }
    }
    kinds
}

/// Plans a filter's rules.
pub fn plan(filter: &Filter) -> Plan {
    let keyed: Vec<Result<Vec<Key>, String>> = filter.rules.iter().map(|r| keys(&r.cond)).collect();
    let mut count: HashMap<Space, usize> = HashMap::new();
    for k in keyed.iter().flatten() {
        for (space, _, _) in k {
            *count.entry(*space).or_default() += 1;
        }
    }
    let mut groups: Vec<Group> = Vec::new();
    let mut index: BTreeMap<Space, usize> = BTreeMap::new();
    let mut placement = Vec::new();
    for (rule, k) in filter.rules.iter().zip(keyed) {
        if rule.action.log {
            placement.push(Placement::Code(
                "it logs flows (an event names its rule)".into(),
            ));
            continue;
        }
        let keys = match k {
            Err(why) => {
                placement.push(Placement::Code(why));
                continue;
            }
            Ok(keys) => keys,
        };
        if let Some((space, field, _)) = keys.iter().find(|(s, _, _)| count[s] < GROUP_MIN) {
            placement.push(Placement::Code(format!(
                "only {} key{} of `{}` in this filter: {GROUP_MIN} or more go to a map",
                count[space],
                if count[space] == 1 { "" } else { "s" },
                field.name
            )));
            let _ = space;
            continue;
        }
        let mut used = Vec::new();
        for (space, field, value) in keys {
            let g = *index.entry(space).or_insert_with(|| {
                groups.push(Group {
                    space,
                    field,
                    keys: Vec::new(),
                });
                groups.len() - 1
            });
            groups[g].keys.push((value, rule.index));
            if !used.contains(&g) {
                used.push(g);
            }
        }
        placement.push(Placement::Map(used));
    }
    let classifier = classify_rest(filter, &mut placement);
    Plan {
        groups,
        placement,
        classifier,
    }
}

fn refuse(
    placement: &mut [Placement],
    cands: &mut Vec<(u32, Vec<classify::Rule>)>,
    id: u32,
    why: String,
) {
    if let Some(p) = placement.get_mut(id as usize) {
        *p = Placement::Code(why);
    }
    cands.retain(|(i, _)| *i != id);
}

/// Rules tried in the classifier again after it refused one of them, at most.
const CLASSIFY_RETRIES: usize = 16;

/// The rules left as code that the classifier holds go to it when there are at least
/// [`CLASSIFY_MIN`] of them; a rule the builder refuses stays code, saying why.
fn classify_rest(filter: &Filter, placement: &mut [Placement]) -> Option<Classified> {
    // Classifier ids are rule indices shifted by `classify::PRIO_SHIFT` (NO_MATCH apart).
    if filter.rules.len() >= (classify::NO_MATCH >> classify::PRIO_SHIFT) as usize {
        return None;
    }
    let mut cands: Vec<(u32, Vec<classify::Rule>)> = Vec::new();
    for (rule, place) in filter.rules.iter().zip(placement.iter_mut()) {
        if !matches!(place, Placement::Code(_)) {
            continue;
        }
        match classify::hir::rules(&rule.cond, 0) {
            Ok(variants) => cands.push((rule.index, variants)),
            // A conjunction: the classifier's reason is the one that matters.
            Err(why) if matches!(rule.cond, Cond::And(_)) => {
                *place = Placement::Code(why.to_string());
            }
            Err(_) => {}
        }
    }
    if cands.is_empty() {
        return None;
    }
    if cands.len() < CLASSIFY_MIN {
        for (i, _) in &cands {
            if let Some(Placement::Code(why)) = placement.get_mut(*i as usize) {
                *why = format!(
                    "{why}; only {} rule{} of this filter fit the classifier, which takes                      {CLASSIFY_MIN} or more (fewer cost less as code)",
                    cands.len(),
                    if cands.len() == 1 { "" } else { "s" }
                );
            }
        }
        return None;
    }
    for _ in 0..CLASSIFY_RETRIES {
        let mut rules = Vec::new();
        let mut ids = Vec::new();
        for (i, vs) in &cands {
            rules.extend_from_slice(vs);
            ids.extend(std::iter::repeat_n(*i, vs.len()));
        }
        match tuplemerge::build_with_head(&rules, Config::default()) {
            Ok(c) => {
                let mut tables: HashMap<u32, Vec<usize>> = HashMap::new();
                for (key, members) in &c.buckets {
                    let t = u32::from_le_bytes([key[0], key[1], key[2], key[3]]) as usize;
                    for &k in members {
                        let ts = tables.entry(ids[k as usize]).or_default();
                        if !ts.contains(&t) {
                            ts.push(t);
                        }
                    }
                }
                for (i, _) in &cands {
                    let mut ts = tables.remove(i).unwrap_or_default();
                    ts.sort_unstable();
                    placement[*i as usize] = Placement::Classifier(ts);
                }
                return Some(Classified { classifier: c, ids });
            }
            Err(ClassifyError::BucketFull { rule, max }) => {
                refuse(
                    placement,
                    &mut cands,
                    ids.get(rule).copied()?,
                    format!(
                    "the classifier refused it: {max} earlier rules share every bit it hashes, \
                     and a bucket holds {max}"
                ),
                );
            }
            Err(ClassifyError::TooManyTables { rule, max, .. }) => {
                refuse(
                    placement,
                    &mut cands,
                    ids.get(rule).copied()?,
                    format!(
                        "the classifier refused it: it needs a table past the {max} it searches"
                    ),
                );
            }
            Err(ClassifyError::BadRule { rule, problem }) => {
                refuse(
                    placement,
                    &mut cands,
                    ids.get(rule).copied()?,
                    format!("the classifier refused it: {problem}"),
                );
            }
            Err(e) => {
                for (i, _) in &cands {
                    placement[*i as usize] =
                        Placement::Code(format!("the classifier refused this filter's rules: {e}"));
                }
                return None;
            }
        }
    }
    for (i, _) in &cands {
        placement[*i as usize] = Placement::Code(format!(
            "the classifier refused {CLASSIFY_RETRIES} of this filter's rules, and so all"
        ));
    }
    None
}

/// The keys a condition is made of, or why it is not a plain key match.
fn keys(cond: &Cond) -> Result<Vec<Key>, String> {
    match cond {
        Cond::Or(cs) | Cond::And(cs) if cs.len() == 1 => keys(&cs[0]),
        Cond::Or(cs) => {
            let mut out = Vec::new();
            for c in cs {
                out.extend(keys(c)?);
            }
            Ok(out)
        }
        Cond::And(_) => Err("it tests several conditions together (`and`)".into()),
        Cond::Not(_) => Err("it is negated (`not`, `!=`)".into()),
        Cond::Const(_) => Err("its condition is constant".into()),
        Cond::Test(t) => match *t {
            Test::Int {
                field,
                op: CmpOp::Eq,
                value,
            } => match field.slot {
                Slot::Int { off, size } => Ok(vec![(
                    Space::Int {
                        off,
                        size,
                        layer: field.layer,
                    },
                    field,
                    Value::Int {
                        lo: value,
                        hi: value,
                    },
                )]),
                _ => Err(format!("`{}` is not a key field", field.name)),
            },
            Test::Int { field, .. } => Err(format!(
                "`{}` is compared with an order (`<`, `>`, a range), not an exact key",
                field.name
            )),
            Test::Net { field, net } => match (field.slot, net) {
                (Slot::Addr { off }, Value::Net { v6, .. }) => match field.family_layer(v6) {
                    Some(layer) => Ok(vec![(Space::Addr { off, v6, layer }, field, net)]),
                    None => Err(format!("`{}` never holds this address family", field.name)),
                },
                _ => Err(format!("`{}` is not an address field", field.name)),
            },
            Test::Payload { .. } => Err("it tests payload bytes, not a key field".into()),
            Test::Rate { .. } => Err("it tests a rate limit, which keeps state".into()),
            Test::Ct { .. } => Err("it tests connection tracking, which keeps state".into()),
            Test::L7(_) => Err("it tests an L7 field, read by the L7 stage".into()),
            Test::InSet { field, .. } => Err(format!(
                "`{}` is tested against a named set, which has a map of its own",
                field.name
            )),
            Test::Layer(_) => Err("it tests a layer, not a value".into()),
            Test::Bits { field, .. } => Err(format!("`{}` is a flag, not a key", field.name)),
            Test::Masked { field, .. } => Err(format!(
                "`{}` is masked (`&`), not an exact key",
                field.name
            )),
        },
    }
}

/// The name of a group's map: `FILTER_FIELD` (`edge_ip_src_v4`, `edge_tcp_dport`).
pub fn map_name(filter: &str, g: &Group) -> String {
    let base = format!("{filter}_{}", g.field.name.replace('.', "_"));
    match g.space {
        Space::Addr { v6: true, .. } => format!("{base}_v6"),
        Space::Addr { v6: false, .. } => format!("{base}_v4"),
        Space::Int { .. } => base,
    }
}

/// Blocks that implement the rule maps carry this as their rule id (for listings).
pub const RULE_MAPS: u32 = u32::MAX - 3;

/// The map value of each key of a group: the first-matching rule (smallest index).
///
/// For prefixes, a packet's address matches a prefix and every shorter prefix of the set
/// that contains it, and the LPM trie returns only the longest; so each prefix carries
/// the smallest rule index over itself and all its ancestors in the set. Processed by
/// increasing length, each ancestor lookup is one hash probe per distinct shorter length.
pub fn resolve(group: &Group) -> Vec<(Value, u32)> {
    let mut best: HashMap<Value, u32> = HashMap::new();
    for &(v, r) in &group.keys {
        let e = best.entry(canonical(v)).or_insert(r);
        *e = (*e).min(r);
    }
    let mut entries: Vec<(Value, u32)> = best.into_iter().collect();
    entries.sort_by_key(|(v, _)| sort_key(v));
    if group.exact() {
        return entries;
    }
    let mut lengths: Vec<u8> = Vec::new();
    let mut by_len: HashMap<(u8, [u8; 16]), u32> = HashMap::new();
    let mut out = Vec::with_capacity(entries.len());
    for (v, r) in entries {
        let Value::Net { v6, addr, prefix } = v else {
            continue;
        };
        let mut min = r;
        for &len in &lengths {
            if len >= prefix {
                break;
            }
            if let Some(&a) = by_len.get(&(len, mask(addr, len))) {
                min = min.min(a);
            }
        }
        by_len.insert((prefix, addr), min);
        if lengths.last() != Some(&prefix) {
            lengths.push(prefix);
        }
        out.push((Value::Net { v6, addr, prefix }, min));
    }
    out
}

/// Shorter prefixes first (the ancestor walk needs them), then by address or value.
fn sort_key(v: &Value) -> (u8, [u8; 16]) {
    match *v {
        Value::Net { prefix, addr, .. } => (prefix, addr),
        Value::Int { lo, .. } => (0, u128::from(lo).to_be_bytes()),
    }
}

fn canonical(v: Value) -> Value {
    match v {
        Value::Net { v6, addr, prefix } => Value::Net {
            v6,
            addr: mask(addr, prefix),
            prefix,
        },
        other => other,
    }
}

fn mask(addr: [u8; 16], prefix: u8) -> [u8; 16] {
    let mut a = addr;
    for (i, b) in a.iter_mut().enumerate() {
        let bits = (prefix as usize).saturating_sub(i * 8).min(8);
        *b &= if bits == 0 { 0 } else { 0xffu8 << (8 - bits) };
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver;

    fn filter(src: &str) -> Filter {
        let (_, hir, diags) = driver::front(src);
        assert!(diags.is_empty(), "{diags:?}");
        hir.expect("checks").filters.remove(0)
    }

    fn rules(lines: &[&str]) -> String {
        format!(
            "filter f on xdp(\"eth0\") {{\n{}\n    default pass\n}}\n",
            lines.join("\n")
        )
    }

    #[test]
    fn runs_of_keys_go_to_maps_and_the_rest_stays_code() {
        let mut lines: Vec<String> = (1..=10)
            .map(|i| format!("    drop ip.src == 192.0.2.{i}"))
            .collect();
        lines.insert(3, "    pass tcp.dport == 22 and ip.src == 10.0.0.1".into());
        lines.push("    drop tcp.dport < 1024".into());
        let f = filter(&rules(
            &lines.iter().map(String::as_str).collect::<Vec<_>>(),
        ));
        let p = plan(&f);
        assert_eq!(p.groups.len(), 1);
        assert_eq!(p.groups[0].keys.len(), 10);
        assert!(p.groups[0].exact());
        assert!(matches!(&p.placement[3], Placement::Code(why) if why.contains("`and`")));
        assert!(matches!(&p.placement[11], Placement::Code(why) if why.contains("order")));
        assert_eq!(
            p.placement
                .iter()
                .filter(|x| matches!(x, Placement::Map(_)))
                .count(),
            10
        );
    }

    #[test]
    fn few_keys_stay_code() {
        let f = filter(&rules(&[
            "    drop tcp.dport == 23",
            "    drop tcp.dport == 25",
        ]));
        let p = plan(&f);
        assert!(p.groups.is_empty());
        assert!(matches!(&p.placement[0], Placement::Code(why) if why.contains("only 2 keys")));
    }

    #[test]
    fn a_prefix_carries_the_first_rule_of_its_ancestors() {
        let net = |a: [u8; 4], p: u8| {
            let mut addr = [0; 16];
            addr[..4].copy_from_slice(&a);
            Value::Net {
                v6: false,
                addr,
                prefix: p,
            }
        };
        let g = Group {
            space: Space::Addr {
                off: 20,
                v6: false,
                layer: crate::packet::record::F_IP4,
            },
            field: crate::hir::fields::lookup("ip.src").expect("field"),
            keys: vec![
                (net([10, 1, 0, 0], 16), 5),
                (net([10, 0, 0, 0], 8), 2),
                (net([10, 1, 2, 0], 24), 1),
                (net([10, 1, 3, 0], 24), 9),
                (net([10, 1, 3, 0], 24), 7),
                (net([192, 168, 0, 0], 16), 4),
            ],
        };
        let r: HashMap<Value, u32> = resolve(&g).into_iter().collect();
        assert_eq!(r.len(), 5, "the duplicate /24 is one entry");
        assert_eq!(r[&net([10, 0, 0, 0], 8)], 2);
        assert_eq!(r[&net([10, 1, 0, 0], 16)], 2, "rule 2's /8 comes first");
        assert_eq!(
            r[&net([10, 1, 2, 0], 24)],
            1,
            "its own rule comes before the /8"
        );
        assert_eq!(
            r[&net([10, 1, 3, 0], 24)],
            2,
            "first of 7, 9 and the /8's 2"
        );
        assert_eq!(r[&net([192, 168, 0, 0], 16)], 4);
    }
}
