//! TupleMerge table construction: rules (in priority order) into hashed tables of buckets.
//!
//! A table hashes the first `lens[d]` bits of each field `d` of the header. A rule fits a
//! table when every one of the table's lengths is at most what the rule fixes in that field
//! (its prefix length, or for a range the bits `lo` and `hi` share), so every header the
//! rule matches lands in the rule's bucket. Tables are made with *relaxed* lengths (shorter
//! than the rule's own) so later rules with similar shapes fit them too; a bucket holds at
//! most `bucket_target` rules, past which a rule goes to another table (a more specific
//! one if needed), and only rules whose hashed bits are all alike overflow up to
//! `bucket_max`. Rules are placed in priority order, so each table's best rule is the one
//! that created it and the tables come out sorted by it: the data path stops as soon as
//! the next table's best rule cannot beat what it has found.

use std::collections::HashMap;

use super::{ClassifyError, Header, Rule, NO_MATCH};

/// Fields in the order of [`Lens`]: family, protocol, VLAN id, source port, destination
/// port, source address, destination address.
pub const FIELDS: usize = 7;
/// Width in bits of each field.
pub const WIDTH: [u8; FIELDS] = [8, 8, 16, 16, 16, 128, 128];
/// Field names, for reports.
pub const NAMES: [&str; FIELDS] = ["family", "proto", "vlan", "sport", "dport", "src", "dst"];

/// Hashed prefix length per field.
pub type Lens = [u8; FIELDS];

/// A header, or a table's mask, in the key layout of [`super::maps`] (table id bytes 0 to
/// 4, then the fields).
pub type Key = [u8; super::maps::KEY_BYTES];
/// Key of the bucket map: the masked header's fingerprint and the table's slot
/// ([`super::maps::bucket_key`]).
pub type BucketKey = [u8; super::maps::BUCKET_KEY_BYTES];

/// Knobs of the construction; the data path is generated for the same values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Rules per bucket before a rule is sent to another table (TupleMerge's `c`).
    pub bucket_target: usize,
    /// Rules a bucket may hold at all (the data path's inner loop bound).
    pub bucket_max: usize,
    /// Tables the data path probes at most (its outer loop bound).
    pub max_tables: usize,
    /// New tables round address lengths down to a multiple of this. 16 rather than 8:
    /// fewer tables for the data path to walk (ClassBench-shaped sets at 100k rules: acl
    /// 20 to 19, fw 14 to 10, ipc 21 to 9), each step of the walk costing about 13 ns in
    /// the kernel whether or not the table holds a bucket for the header (docs/scale.md).
    pub addr_step: u8,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            bucket_target: 8,
            bucket_max: 16,
            max_tables: 64,
            addr_step: 16,
        }
    }
}

/// One hashed table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub lens: Lens,
    /// Smallest rule index in the table (its best rule).
    pub min_rule: u32,
    pub rules: usize,
}

/// The tables and buckets of a rule list.
#[derive(Debug, Clone)]
pub struct Classifier {
    pub config: Config,
    pub rules: Vec<Rule>,
    /// Sorted by `min_rule`; a table's id is its position.
    pub tables: Vec<Table>,
    /// Bucket key (masked fields' fingerprint + table id) to its rule indices, ascending.
    /// Two masked headers of one table with one fingerprint share a bucket: its entries
    /// test every field, so a shared bucket costs entries scanned, never a wrong answer.
    pub buckets: HashMap<BucketKey, Vec<u32>>,
    /// Rules left out because an earlier rule in their bucket covers them.
    pub shadowed: usize,
    /// The first `head` rules are not in the tables: the data path tests them as code
    /// ahead of the walk (see [`super::head`]).
    pub head: usize,
}

/// The bits of each field a rule fixes.
pub fn rule_lens(r: &Rule) -> Lens {
    fn shared(lo: u16, hi: u16, width: u8) -> u8 {
        let diff = u32::from(lo ^ hi) << (32 - u32::from(width));
        diff.leading_zeros().min(u32::from(width)) as u8
    }
    [
        shared(r.family.lo.into(), r.family.hi.into(), 8),
        shared(r.proto.lo.into(), r.proto.hi.into(), 8),
        shared(r.vlan.lo, r.vlan.hi, 16),
        shared(r.sport.lo, r.sport.hi, 16),
        shared(r.dport.lo, r.dport.hi, 16),
        r.src.len,
        r.dst.len,
    ]
}

pub(super) fn fits(table: &Lens, rule: &Lens) -> bool {
    table.iter().zip(rule).all(|(t, r)| t <= r)
}

/// Whether every header `b` matches, `a` matches too.
pub(super) fn covers(a: &Rule, b: &Rule) -> bool {
    fn within<T: PartialOrd>(a: &super::Range<T>, b: &super::Range<T>) -> bool {
        a.lo <= b.lo && b.hi <= a.hi
    }
    within(&a.family, &b.family)
        && within(&a.proto, &b.proto)
        && within(&a.vlan, &b.vlan)
        && within(&a.sport, &b.sport)
        && within(&a.dport, &b.dport)
        && a.src.len <= b.src.len
        && a.src.contains(&b.src.addr)
        && a.dst.len <= b.dst.len
        && a.dst.contains(&b.dst.addr)
}

/// The lengths of a table made for a rule: small fields all or nothing, addresses rounded
/// down to the step, so rules of similar shape share the table.
pub(super) fn relax(l: &Lens, cfg: &Config) -> Lens {
    let all_or_none = |d: usize| if l[d] == WIDTH[d] { WIDTH[d] } else { 0 };
    let step = cfg.addr_step.max(1);
    [
        all_or_none(0),
        all_or_none(1),
        all_or_none(2),
        all_or_none(3),
        all_or_none(4),
        l[5] - l[5] % step,
        l[6] - l[6] % step,
    ]
}

/// The mask of a table's lengths, in the key layout (table id bytes zero).
pub fn mask(lens: &Lens) -> Key {
    let mut m = [0u8; super::maps::KEY_BYTES];
    // The top `bits` of a `width`-bit field.
    let small = |bits: u8, width: u8| -> u16 {
        let full = (1u32 << width) - 1;
        let low = (1u32 << (width - bits.min(width))) - 1;
        (full & !low) as u16
    };
    m[4] = small(lens[0], 8) as u8;
    m[5] = small(lens[1], 8) as u8;
    m[6..8].copy_from_slice(&small(lens[2], 16).to_le_bytes());
    m[8..10].copy_from_slice(&small(lens[3], 16).to_le_bytes());
    m[10..12].copy_from_slice(&small(lens[4], 16).to_le_bytes());
    m[16..32].copy_from_slice(&super::mask16(lens[5]));
    m[32..48].copy_from_slice(&super::mask16(lens[6]));
    m
}

/// A header in the key layout, table id 0.
pub fn header_bytes(h: &Header) -> Key {
    let mut k = [0u8; super::maps::KEY_BYTES];
    k[4] = h.family;
    k[5] = h.proto;
    k[6..8].copy_from_slice(&h.vlan.to_le_bytes());
    k[8..10].copy_from_slice(&h.sport.to_le_bytes());
    k[10..12].copy_from_slice(&h.dport.to_le_bytes());
    k[16..32].copy_from_slice(&h.src);
    k[32..48].copy_from_slice(&h.dst);
    k
}

/// The bucket key of `bytes` (a header's) in table `table` with mask `mask`.
pub fn key(bytes: &Key, mask: &Key, table: u32) -> BucketKey {
    let k: Key = std::array::from_fn(|i| bytes[i] & mask[i]);
    super::maps::bucket_key(&k, table)
}

/// A header every header the rule matches shares its fixed bits with.
pub(super) fn representative(r: &Rule) -> Header {
    Header {
        family: r.family.lo,
        proto: r.proto.lo,
        vlan: r.vlan.lo,
        sport: r.sport.lo,
        dport: r.dport.lo,
        src: r.src.addr,
        dst: r.dst.addr,
    }
}

/// Builds the tables of `rules` (first match wins: index 0 is the best priority).
pub fn build(rules: &[Rule], cfg: Config) -> Result<Classifier, ClassifyError> {
    build_from(rules, cfg, 0)
}

/// Builds the tables of `rules` after the head [`super::head::choose`] picks for them: a
/// filter's classifier.
pub fn build_with_head(rules: &[Rule], cfg: Config) -> Result<Classifier, ClassifyError> {
    build_from(rules, cfg, super::head::choose(rules).0)
}

/// Builds the tables of `rules[head..]`; the first `head` rules are the data path's code.
pub fn build_from(rules: &[Rule], cfg: Config, head: usize) -> Result<Classifier, ClassifyError> {
    let max = NO_MATCH as usize;
    if rules.len() >= max {
        return Err(ClassifyError::TooManyRules {
            rules: rules.len(),
            max: max - 1,
        });
    }
    let mut c = Classifier {
        config: cfg,
        rules: rules.to_vec(),
        tables: Vec::new(),
        buckets: HashMap::new(),
        shadowed: 0,
        head: head.min(rules.len()),
    };
    let mut masks: Vec<Key> = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        if i < head {
            r.check()
                .map_err(|problem| ClassifyError::BadRule { rule: i, problem })?;
            continue;
        }
        r.check()
            .map_err(|problem| ClassifyError::BadRule { rule: i, problem })?;
        let lens = rule_lens(r);
        let rep = header_bytes(&representative(r));
        let idx = i as u32;
        let size_in = |c: &Classifier, t: usize, m: &Key| {
            c.buckets.get(&key(&rep, m, t as u32)).map_or(0, Vec::len)
        };
        // The first table (best rule first) that fits and has room. A full bucket is
        // searched for a rule covering this one: then this one can never be the first
        // match and is left out (duplicates and shadowed rules do not fill buckets).
        let mut room = None;
        let mut covered = false;
        for (t, (table, m)) in c.tables.iter().zip(&masks).enumerate() {
            if !fits(&table.lens, &lens) {
                continue;
            }
            let Some(b) = c.buckets.get(&key(&rep, m, t as u32)) else {
                room = Some(t);
                break;
            };
            if b.len() < cfg.bucket_target {
                room = Some(t);
                break;
            }
            if b.iter().any(|&j| covers(&rules[j as usize], r)) {
                covered = true;
                break;
            }
        }
        if covered {
            c.shadowed += 1;
            continue;
        }
        let target = match room {
            Some(t) => t,
            None => {
                let relaxed = relax(&lens, &cfg);
                // Then the range bits the rule's ports share, then all the rule fixes.
                let mut ports = relaxed;
                ports[3] = lens[3];
                ports[4] = lens[4];
                // The last table the data path can probe hashes nothing, so every later
                // rule fits somewhere (its bucket may then fill up).
                let last = c.tables.len() + 1 == cfg.max_tables;
                let candidates = if last {
                    vec![[0; FIELDS]]
                } else {
                    vec![relaxed, ports, lens]
                };
                let fresh = candidates
                    .into_iter()
                    .find(|l| !c.tables.iter().any(|t| t.lens == *l));
                match fresh {
                    Some(l) if c.tables.len() < cfg.max_tables => {
                        c.tables.push(Table {
                            lens: l,
                            min_rule: idx,
                            rules: 0,
                        });
                        masks.push(mask(&l));
                        c.tables.len() - 1
                    }
                    _ => {
                        // Overflow: the fitting table with the smallest bucket.
                        let best = (0..c.tables.len())
                            .filter(|&t| fits(&c.tables[t].lens, &lens))
                            .min_by_key(|&t| size_in(&c, t, &masks[t]));
                        match best {
                            Some(t) if size_in(&c, t, &masks[t]) < cfg.bucket_max => t,
                            Some(_) => {
                                return Err(ClassifyError::BucketFull {
                                    rule: i,
                                    max: cfg.bucket_max,
                                })
                            }
                            None => {
                                return Err(ClassifyError::TooManyTables {
                                    rule: i,
                                    tables: c.tables.len() + 1,
                                    max: cfg.max_tables,
                                })
                            }
                        }
                    }
                }
            }
        };
        c.tables[target].rules += 1;
        c.buckets
            .entry(key(&rep, &masks[target], target as u32))
            .or_default()
            .push(idx);
    }
    Ok(c)
}

/// Shape of a built classifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    pub tables: usize,
    pub buckets: usize,
    pub largest_bucket: usize,
}

impl Classifier {
    pub fn shape(&self) -> Shape {
        Shape {
            tables: self.tables.len(),
            buckets: self.buckets.len(),
            largest_bucket: self.buckets.values().map(Vec::len).max().unwrap_or(0),
        }
    }

    /// One line per table: its lengths, best rule and rule count (for reports).
    pub fn describe_tables(&self) -> String {
        let mut s = String::new();
        for (i, t) in self.tables.iter().enumerate() {
            let lens: Vec<String> = NAMES
                .iter()
                .zip(t.lens)
                .filter(|(_, l)| *l > 0)
                .map(|(n, l)| format!("{n}/{l}"))
                .collect();
            s.push_str(&format!(
                "table {i}: best rule {}, {} rules, hashes {}\n",
                t.min_rule,
                t.rules,
                if lens.is_empty() {
                    "nothing".to_string()
                } else {
                    lens.join(" ")
                }
            ));
        }
        s
    }
}
