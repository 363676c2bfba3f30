//! The maps a program needs: set maps, counter maps, rule-group maps, and their key layouts.

use super::Lower;
use crate::classify::datapath::Names;
use crate::classify::maps as cmaps;
use crate::hir::fields::{Field, Slot};
use crate::hir::{Filter, SetDef, Ty, Value};
use crate::ir::groups::{self, Classified, Group, Space};
use crate::maps::{BtfTy, MapKind, MapSpec};
use crate::packet::record::{MAC_SIZE, OFF_FLAGS};
use std::collections::HashMap;

/// Keys of hash maps built from sets hold this value.
const PRESENT: u8 = 1;

/// A map the program needs, with the entries the loader must put in it.
#[derive(Debug, Clone, PartialEq)]
pub struct MapDef {
    pub spec: MapSpec,
    pub entries: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The statistics map of a program: how often each rule, the default and the malformed
/// path decided. Kernel map names keep 15 characters; the full name stays in BTF.
pub fn stats_map_name(filter: &str) -> String {
    format!("{filter}_stats")
}

/// Entries of a keyed counter map: when it is full, new keys are not counted.
pub const COUNT_MAX_ENTRIES: u32 = 65536;

/// Where in the record the key of a counter keyed by `f` starts.
pub(super) fn count_key_off(f: &Field) -> i16 {
    match (f.slot, f.ty) {
        // `ip`: {prefixlen, 16 address bytes}: the prefix length tells the family apart.
        (Slot::Addr { off }, Ty::Ip) => off - 4,
        (Slot::Addr { off }, _)
        | (Slot::Int { off, .. }, _)
        | (Slot::Bits { off, .. }, _)
        | (Slot::Eq { off, .. }, _) => off,
        (Slot::Flag(_), _) => OFF_FLAGS,
    }
}

fn count_key_ty(f: &Field) -> BtfTy {
    match (f.slot, f.ty) {
        (Slot::Addr { .. }, Ty::Ip) => BtfTy::Struct {
            name: "ip_key".into(),
            fields: vec![
                ("family_bits".into(), BtfTy::U32),
                ("addr".into(), BtfTy::Bytes(16)),
            ],
        },
        (Slot::Addr { .. }, Ty::Ip6) => BtfTy::Bytes(16),
        (Slot::Addr { .. }, _) => BtfTy::U32,
        (Slot::Int { size: 1, .. }, _) | (Slot::Bits { size: 1, .. }, _) => BtfTy::U8,
        (Slot::Int { size: 2, .. }, _) | (Slot::Bits { size: 2, .. }, _) => BtfTy::U16,
        (Slot::Int { size, .. }, _) if size == MAC_SIZE => BtfTy::Bytes(MAC_SIZE as u32),
        _ => BtfTy::U32,
    }
}

/// The key type of a map keyed by an integer slot of `size` bytes (6: a MAC address).
fn int_key_ty(size: u8) -> BtfTy {
    match size {
        1 => BtfTy::U8,
        2 => BtfTy::U16,
        MAC_SIZE => BtfTy::Bytes(MAC_SIZE as u32),
        _ => BtfTy::U32,
    }
}

impl Lower<'_> {
    /// The map of one key space: keys as the record holds them, values `{rule, action}`.
    pub(super) fn group_map(
        &mut self,
        filter: &Filter,
        g: &Group,
        action_of: &HashMap<u32, u32>,
    ) -> (String, i16) {
        let exact = g.exact();
        let entries: Vec<(Vec<u8>, Vec<u8>)> = groups::resolve(g)
            .into_iter()
            .map(|(v, rule)| {
                let key = match (v, g.space) {
                    (Value::Net { v6, addr, prefix }, _) => {
                        let len = if v6 { 16 } else { 4 };
                        let mut k = Vec::with_capacity(4 + len);
                        if !exact {
                            k.extend_from_slice(&u32::from(prefix).to_le_bytes());
                        }
                        k.extend_from_slice(&addr[..len]);
                        k
                    }
                    (Value::Int { lo, .. }, Space::Int { size, .. }) => {
                        lo.to_le_bytes()[..size as usize].to_vec()
                    }
                    (Value::Int { lo, .. }, _) => lo.to_le_bytes()[..4].to_vec(),
                };
                let act = action_of.get(&rule).copied().unwrap_or(0);
                (key, [rule.to_le_bytes(), act.to_le_bytes()].concat())
            })
            .collect();
        let value = BtfTy::Struct {
            name: "rule_ref".into(),
            fields: vec![("rule".into(), BtfTy::U32), ("action".into(), BtfTy::U32)],
        };
        let base = format!("{}_{}", filter.name, g.field.name.replace('.', "_"));
        let (name, key, kind, key_off) = match g.space {
            Space::Addr { off, v6, .. } => {
                let fam = if v6 { "v6" } else { "v4" };
                let addr = if v6 { BtfTy::Bytes(16) } else { BtfTy::U32 };
                if exact {
                    (format!("{base}_{fam}"), addr, MapKind::Hash, off)
                } else {
                    let key = BtfTy::Struct {
                        name: format!("lpm_key_{fam}"),
                        fields: vec![
                            ("prefixlen".into(), BtfTy::U32),
                            ("addr".into(), BtfTy::Bytes(if v6 { 16 } else { 4 })),
                        ],
                    };
                    (format!("{base}_{fam}"), key, MapKind::LpmTrie, off - 4)
                }
            }
            Space::Int { off, size, .. } => (base, int_key_ty(size), MapKind::Hash, off),
        };
        let spec = MapSpec {
            name,
            kind,
            key,
            value,
            max_entries: entries.len().max(1) as u32,
            // BPF_F_NO_PREALLOC: the kernel refuses an LPM trie without it.
            flags: u32::from(kind == MapKind::LpmTrie),
        };
        (self.add_map(MapDef { spec, entries }), key_off)
    }

    /// The three maps of the filter's classifier (`classify::maps` holds their layout),
    /// each rule's entries carrying the filter's rule index and action id. Returns the
    /// entries of its head (the rules its code tests ahead of the tables).
    pub(super) fn classifier_maps(
        &mut self,
        filter: &Filter,
        c: &Classified,
        action_of: &HashMap<u32, u32>,
    ) -> Vec<Vec<u8>> {
        let mut built = c.classifier.clone();
        for (r, id) in built.rules.iter_mut().zip(&c.ids) {
            r.action = action_of.get(id).copied().unwrap_or(0);
        }
        let m = cmaps::Maps::with_ids(&built, |i| {
            c.ids.get(i as usize).copied().unwrap_or(0) << crate::classify::PRIO_SHIFT
        });
        let names = Names::of_filter(&filter.name);
        let index = |i: usize| (i as u32).to_le_bytes().to_vec();
        let descs = m
            .descs
            .iter()
            .enumerate()
            .map(|(i, d)| (index(i), d.to_vec()))
            .collect::<Vec<_>>();
        let buckets = m
            .buckets
            .iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect::<Vec<_>>();
        let entries = m
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (index(i), e.to_vec()))
            .collect::<Vec<_>>();
        // Sizes as `classify::datapath::maps_text` declares them for the same contents.
        let specs = [
            (
                names.descs,
                MapKind::Array,
                BtfTy::U32,
                cmaps::DESC_BYTES,
                crate::classify::datapath::generations(&built.config),
                descs,
            ),
            (
                names.buckets,
                MapKind::Hash,
                BtfTy::Bytes(cmaps::BUCKET_KEY_BYTES as u32),
                cmaps::BUCKET_BYTES,
                2 * crate::classify::edit::room(buckets.len()),
                buckets,
            ),
            (
                names.entries,
                MapKind::Array,
                BtfTy::U32,
                cmaps::ENTRY_BYTES,
                2 * crate::classify::edit::room(entries.len()),
                entries,
            ),
        ];
        // Generation 0 (descriptors from slot 0), ids shifted by PRIO_SHIFT.
        let mut gen = 0u32.to_le_bytes().to_vec();
        gen.extend_from_slice(&crate::classify::PRIO_SHIFT.to_le_bytes());
        let gen = (
            names.gen,
            MapKind::Array,
            BtfTy::U32,
            8,
            1,
            vec![(index(0), gen)],
        );
        for (name, kind, key, value, max, entries) in specs.into_iter().chain([gen]) {
            let spec = MapSpec {
                name,
                kind,
                key,
                value: BtfTy::Bytes(value as u32),
                max_entries: max.max(1) as u32,
                flags: 0,
            };
            self.add_map(MapDef { spec, entries });
        }
        m.head.iter().map(|e| e.to_vec()).collect()
    }

    fn add_map(&mut self, def: MapDef) -> String {
        let name = def.spec.name.clone();
        if !self.maps.iter().any(|m| m.spec.name == name) {
            self.maps.push(def);
        }
        name
    }

    /// The map of one family of an address set: hash when every entry is a full address
    /// (`true`), else an LPM trie keyed `{prefixlen, addr}`.
    pub(super) fn addr_set_map(&mut self, set: &SetDef, v6: bool) -> (String, bool) {
        // Room to grow at run time (`pol set add`): count + max(count / 4, 64).
        let set_capacity = |n: usize| (n + (n / 4).max(64)).min(u32::MAX as usize) as u32;
        let full = if v6 { 128 } else { 32 };
        let len = if v6 { 16 } else { 4 };
        let vals: Vec<(&[u8; 16], u8)> = set
            .values
            .iter()
            .filter_map(|v| match v {
                Value::Net {
                    v6: w,
                    addr,
                    prefix,
                } if *w == v6 => Some((addr, *prefix)),
                _ => None,
            })
            .collect();
        let exact = vals.iter().all(|&(_, p)| p == full);
        let fam = if v6 { "v6" } else { "v4" };
        let name = format!("{}_{fam}", set.name);
        let addr_ty = if v6 { BtfTy::Bytes(16) } else { BtfTy::U32 };
        let mut entries: Vec<(Vec<u8>, Vec<u8>)> = vals
            .iter()
            .map(|&(a, p)| {
                let mut k = Vec::new();
                if !exact {
                    k.extend_from_slice(&u32::from(p).to_le_bytes());
                }
                k.extend_from_slice(&a[..len]);
                (k, vec![PRESENT])
            })
            .collect();
        entries.sort();
        entries.dedup();
        let spec = if exact {
            MapSpec {
                name,
                kind: MapKind::Hash,
                key: addr_ty,
                value: BtfTy::U8,
                max_entries: set_capacity(entries.len()),
                flags: 0,
            }
        } else {
            let key = BtfTy::Struct {
                name: format!("lpm_key_{fam}"),
                fields: vec![
                    ("prefixlen".into(), BtfTy::U32),
                    ("addr".into(), BtfTy::Bytes(len as u32)),
                ],
            };
            // BPF_F_NO_PREALLOC: the kernel refuses an LPM trie without it.
            MapSpec {
                name,
                kind: MapKind::LpmTrie,
                key,
                value: BtfTy::U8,
                max_entries: set_capacity(entries.len()),
                flags: 1,
            }
        };
        (self.add_map(MapDef { spec, entries }), exact)
    }

    pub(super) fn int_set_map(&mut self, set: &SetDef, size: u8) -> String {
        // Room to grow at run time (`pol set add`): count + max(count / 4, 64).
        let set_capacity = |n: usize| (n + (n / 4).max(64)).min(u32::MAX as usize) as u32;
        let mut entries: Vec<(Vec<u8>, Vec<u8>)> = set
            .values
            .iter()
            .filter_map(|v| match *v {
                Value::Int { lo, hi } if lo == hi => {
                    Some((lo.to_le_bytes()[..size as usize].to_vec(), vec![PRESENT]))
                }
                _ => None,
            })
            .collect();
        entries.sort();
        entries.dedup();
        let key = int_key_ty(size);
        let name = if size == 2 {
            set.name.clone()
        } else {
            format!("{}_u{}", set.name, size as u32 * 8)
        };
        let spec = MapSpec {
            name,
            kind: MapKind::Hash,
            key,
            value: BtfTy::U8,
            max_entries: set_capacity(entries.len()),
            flags: 0,
        };
        self.add_map(MapDef { spec, entries })
    }

    pub(super) fn counter_map(&mut self, c: usize) -> String {
        let counter = &self.hir.counters[c];
        let spec = match (counter.key, counter.l7) {
            (None, Some(k)) => MapSpec {
                name: counter.name.clone(),
                kind: MapKind::Hash,
                key: match k.buf_off() {
                    None => BtfTy::U8,
                    Some(_) => BtfTy::Bytes(crate::l7::http::COUNT_KEY as u32),
                },
                value: BtfTy::U64,
                max_entries: COUNT_MAX_ENTRIES,
                flags: 1,
            },
            (None, None) => MapSpec {
                name: counter.name.clone(),
                kind: MapKind::Array,
                key: BtfTy::U32,
                value: BtfTy::U64,
                max_entries: 1,
                flags: 0,
            },
            (Some(f), _) => MapSpec {
                name: counter.name.clone(),
                kind: MapKind::Hash,
                key: count_key_ty(f),
                value: BtfTy::U64,
                max_entries: COUNT_MAX_ENTRIES,
                // BPF_F_NO_PREALLOC: memory as keys arrive, not 65536 elements at load.
                flags: 1,
            },
        };
        self.add_map(MapDef {
            spec,
            entries: vec![],
        })
    }
}
