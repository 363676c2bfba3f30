//! Lowering: a typed filter becomes a CFG of tests, first match wins.
//!
//! Each rule's condition is lowered with short-circuit jumps: on success to the rule's
//! action block (counts, then return), on failure to the next rule. Every field test first
//! tests the field's layer bit, so a test of an absent header is false. Large named sets
//! become maps (hash for exact keys, LPM trie for prefixes); small ones are inlined.

use super::groups::{self, Group, Placement, Plan, Space};
use super::{Block, BlockId, BrOp, Function, Inst, Term, VReg};
use crate::bpf::record::{F_IP4, F_IP6, OFF_FLAGS};
use crate::hir::fields::{Field, Slot};
use crate::hir::{Action, CmpOp, Cond, Filter, Hir, Hook, SetDef, Test, Ty, Value};
use crate::obj::{BtfTy, MapKind, MapSpec};
use crate::syntax::ast::Verdict;
use std::collections::HashMap;

/// Sets with more values than this become maps.
pub const INLINE_SET_MAX: usize = 8;

/// Keys of hash maps built from sets hold this value.
const PRESENT: u8 = 1;

/// A map the program needs, with the entries the loader must put in it.
#[derive(Debug, Clone, PartialEq)]
pub struct MapDef {
    pub spec: MapSpec,
    pub entries: Vec<(Vec<u8>, Vec<u8>)>,
}

struct Lower<'a> {
    hir: &'a Hir,
    /// The per-CPU array of decision counts of this program.
    stats: String,
    blocks: Vec<Block>,
    vregs: u32,
    rule: Option<u32>,
    maps: &'a mut Vec<MapDef>,
}

/// Return codes per hook.
pub fn verdict_code(hook: &Hook, v: Verdict) -> u32 {
    match (hook, v) {
        (Hook::Xdp { .. }, Verdict::Drop) => 1, // XDP_DROP
        (Hook::Xdp { .. }, Verdict::Pass) => 2, // XDP_PASS
        (Hook::Tc { .. }, Verdict::Pass) => 0,  // TC_ACT_OK
        (Hook::Tc { .. }, Verdict::Drop) => 2,  // TC_ACT_SHOT
    }
}

/// Lowers one filter. `maps` is shared by all filters of a file (sets and counters are
/// file-wide), so a map is emitted once however many programs use it.
pub fn lower_filter(hir: &Hir, filter: &Filter, maps: &mut Vec<MapDef>) -> Function {
    let stats = stats_map_name(&filter.name);
    let n = filter.rules.len() as u32;
    maps.push(MapDef {
        spec: MapSpec {
            name: stats.clone(),
            kind: MapKind::PercpuArray,
            key: BtfTy::U32,
            value: BtfTy::U64,
            max_entries: n + 2,
            flags: 0,
        },
        entries: vec![],
    });
    let mut l = Lower {
        hir,
        stats,
        blocks: Vec::new(),
        vregs: 0,
        rule: None,
        maps,
    };
    let plan = groups::plan(filter);
    if !plan.groups.is_empty() {
        return l.grouped(filter, &plan);
    }
    let entry = l.new_block();
    let mut next = entry;
    for rule in &filter.rules {
        l.rule = Some(rule.index);
        let body = next;
        l.blocks[body.0 as usize].rule = Some(rule.index);
        // Created before `next` so that the layout puts a rule's action right after its
        // tests: the verifier then follows the short matched path first (see ir::cfg).
        let action = l.action(&filter.hook, &rule.action, Some(rule.index));
        next = l.new_block();
        l.cond(body, &rule.cond, action, next);
    }
    l.rule = None;
    let default = l.action(&filter.hook, &filter.default, Some(n));
    l.blocks[next.0 as usize].term = Term::Jump(default);
    let malformed = l.action(&filter.hook, &filter.malformed, Some(n + 1));
    Function {
        name: filter.name.clone(),
        blocks: l.blocks,
        entry,
        malformed,
        vregs: l.vregs,
    }
}

impl Lower<'_> {
    /// Lowering with rule maps: look every key space up once, then test the rules that
    /// stayed code, each only while no map hit with a smaller index was found, then act
    /// on the best rule (which is the default when nothing matched).
    fn grouped(mut self, filter: &Filter, plan: &Plan) -> Function {
        let n = filter.rules.len() as u32;
        // Action ids: 0 is the default; then each distinct action of a map rule.
        let mut kinds: Vec<&Action> = vec![&filter.default];
        let mut action_of: HashMap<u32, u32> = HashMap::new();
        for (rule, place) in filter.rules.iter().zip(&plan.placement) {
            if let Placement::Map(_) = place {
                let id = match kinds.iter().position(|k| **k == rule.action) {
                    Some(i) => i,
                    None => {
                        kinds.push(&rule.action);
                        kinds.len() - 1
                    }
                };
                action_of.insert(rule.index, id as u32);
            }
        }
        self.rule = Some(groups::RULE_MAPS);
        let entry = self.new_block();
        self.push(entry, Inst::InitBest { rule: n, action: 0 });
        let mut cur = entry;
        for g in &plan.groups {
            let (map, key_off) = self.group_map(filter, g, &action_of);
            let look = self.new_block();
            let next = self.new_block();
            match g.space.guard() {
                0 => self.set_term(cur, Term::Jump(look)),
                mask => self.set_term(
                    cur,
                    Term::Flags {
                        mask,
                        t: look,
                        f: next,
                    },
                ),
            }
            self.push(look, Inst::GroupLookup { map, key_off });
            self.set_term(look, Term::Jump(next));
            cur = next;
        }
        let apply = self.new_block();
        self.rule = None;
        let mut checked = 0u32;
        for (rule, place) in filter.rules.iter().zip(&plan.placement) {
            if let Placement::Map(_) = place {
                continue;
            }
            self.rule = Some(rule.index);
            // A map rule before this one may already have matched.
            let earlier = (checked..rule.index)
                .any(|i| matches!(plan.placement[i as usize], Placement::Map(_)));
            checked = rule.index;
            let body = self.new_block();
            if earlier {
                let v = self.vreg();
                self.push(
                    cur,
                    Inst::LoadBest {
                        dst: v,
                        action: false,
                    },
                );
                self.set_term(
                    cur,
                    Term::Branch {
                        op: BrOp::Lt,
                        wide: false,
                        lhs: v,
                        imm: rule.index,
                        t: apply,
                        f: body,
                    },
                );
            } else {
                self.set_term(cur, Term::Jump(body));
            }
            let action = self.action(&filter.hook, &rule.action, Some(rule.index));
            let next = self.new_block();
            self.cond(body, &rule.cond, action, next);
            cur = next;
        }
        self.rule = Some(groups::RULE_MAPS);
        self.set_term(cur, Term::Jump(apply));
        let mut at = apply;
        for (id, kind) in kinds.iter().enumerate() {
            let block = self.action(&filter.hook, kind, None);
            if id + 1 == kinds.len() {
                self.set_term(at, Term::Jump(block));
            } else {
                let v = self.vreg();
                self.push(
                    at,
                    Inst::LoadBest {
                        dst: v,
                        action: true,
                    },
                );
                let next = self.new_block();
                self.set_term(
                    at,
                    Term::Branch {
                        op: BrOp::Eq,
                        wide: false,
                        lhs: v,
                        imm: id as u32,
                        t: block,
                        f: next,
                    },
                );
                at = next;
            }
        }
        self.rule = None;
        let malformed = self.action(&filter.hook, &filter.malformed, Some(n + 1));
        Function {
            name: filter.name.clone(),
            blocks: self.blocks,
            entry,
            malformed,
            vregs: self.vregs,
        }
    }

    /// The map of one key space: keys as the record holds them, values `{rule, action}`.
    fn group_map(
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
            Space::Addr { off, v6 } => {
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
            Space::Int { off, size, .. } => {
                let key = match size {
                    1 => BtfTy::U8,
                    2 => BtfTy::U16,
                    _ => BtfTy::U32,
                };
                (base, key, MapKind::Hash, off)
            }
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

    fn new_block(&mut self) -> BlockId {
        self.blocks.push(Block {
            insts: vec![],
            term: Term::Return(0),
            rule: self.rule,
        });
        BlockId(self.blocks.len() as u32 - 1)
    }

    fn vreg(&mut self) -> VReg {
        self.vregs += 1;
        VReg(self.vregs - 1)
    }

    fn push(&mut self, b: BlockId, i: Inst) {
        self.blocks[b.0 as usize].insts.push(i);
    }

    fn set_term(&mut self, b: BlockId, t: Term) {
        self.blocks[b.0 as usize].term = t;
    }

    /// A block that counts and returns; `stat` is its slot in the statistics map (`None`:
    /// the slot of the best rule the rule maps found).
    fn action(&mut self, hook: &Hook, a: &Action, stat: Option<u32>) -> BlockId {
        let b = self.new_block();
        for &c in &a.counts {
            let counter = &self.hir.counters[c];
            let map = self.counter_map(c);
            let key_off = counter.key.map(count_key_off);
            self.push(b, Inst::Count { map, key_off });
        }
        // The statistics update comes last, right before the return, so that instruction
        // selection can share one copy of it among all actions (see `bpf::select`).
        let map = self.stats.clone();
        match stat {
            Some(index) => self.push(b, Inst::Stat { map, index }),
            None => self.push(b, Inst::StatBest { map }),
        }
        self.set_term(b, Term::Return(verdict_code(hook, a.verdict)));
        b
    }

    /// Lowers `cond` into block `at`: control reaches `t` when it holds, else `f`.
    fn cond(&mut self, at: BlockId, cond: &Cond, t: BlockId, f: BlockId) {
        match cond {
            Cond::Const(true) => self.set_term(at, Term::Jump(t)),
            Cond::Const(false) => self.set_term(at, Term::Jump(f)),
            Cond::Not(c) => self.cond(at, c, f, t),
            Cond::And(cs) | Cond::Or(cs) if cs.is_empty() => {
                let v = matches!(cond, Cond::And(_));
                self.cond(at, &Cond::Const(v), t, f)
            }
            // Short circuit: each part but the last goes on to the next part when it
            // decides nothing (true for `and`, false for `or`).
            Cond::And(cs) | Cond::Or(cs) => {
                let and = matches!(cond, Cond::And(_));
                let mut cur = at;
                for (i, c) in cs.iter().enumerate() {
                    if i + 1 == cs.len() {
                        self.cond(cur, c, t, f);
                    } else {
                        let next = self.new_block();
                        let (ct, cf) = if and { (next, f) } else { (t, next) };
                        self.cond(cur, c, ct, cf);
                        cur = next;
                    }
                }
            }
            Cond::Test(test) => self.test(at, test, t, f),
        }
    }

    /// Tests the field's layer bits in `at`; returns the block where the field may be read.
    fn layer(&mut self, at: BlockId, field: &Field, mask: u32, f: BlockId) -> BlockId {
        if field.always_present() {
            return at;
        }
        let then = self.new_block();
        self.set_term(at, Term::Flags { mask, t: then, f });
        then
    }

    fn test(&mut self, at: BlockId, test: &Test, t: BlockId, f: BlockId) {
        match *test {
            Test::Layer(mask) => self.set_term(at, Term::Flags { mask, t, f }),
            Test::Int { field, op, value } => {
                let b = self.layer(at, field, field.layer, f);
                let Slot::Int { off, size } = field.slot else {
                    return self.set_term(b, Term::Jump(f));
                };
                let v = self.load(b, off, size);
                let op = match op {
                    CmpOp::Eq => BrOp::Eq,
                    CmpOp::Ne => BrOp::Ne,
                    CmpOp::Lt => BrOp::Lt,
                    CmpOp::Le => BrOp::Le,
                    CmpOp::Gt => BrOp::Gt,
                    CmpOp::Ge => BrOp::Ge,
                };
                self.set_term(
                    b,
                    Term::Branch {
                        op,
                        wide: false,
                        lhs: v,
                        imm: value as u32,
                        t,
                        f,
                    },
                );
            }
            Test::Bits { field, mask } => {
                let b = self.layer(at, field, field.layer, f);
                let Slot::Bits { off, size, .. } = field.slot else {
                    return self.set_term(b, Term::Jump(f));
                };
                let v = self.load(b, off, size);
                self.set_term(
                    b,
                    Term::Branch {
                        op: BrOp::Set,
                        wide: false,
                        lhs: v,
                        imm: mask,
                        t,
                        f,
                    },
                );
            }
            Test::Net { field, net } => self.net(at, field, net, t, f),
            Test::InSet { field, set } => {
                let def = &self.hir.sets[set];
                if def.values.len() <= INLINE_SET_MAX {
                    let c = inline_set(field, def);
                    return self.cond(at, &c, t, f);
                }
                self.set_lookup(at, field, set, t, f);
            }
        }
    }

    fn load(&mut self, b: BlockId, off: i16, size: u8) -> VReg {
        let v = self.vreg();
        self.push(b, Inst::LoadRecord { dst: v, off, size });
        v
    }

    /// `field in net`: compares the address 32 bits at a time, masking the last chunk.
    fn net(&mut self, at: BlockId, field: &Field, net: Value, t: BlockId, f: BlockId) {
        let Value::Net { v6, addr, prefix } = net else {
            return self.set_term(at, Term::Jump(f));
        };
        let Slot::Addr { off } = field.slot else {
            return self.set_term(at, Term::Jump(f));
        };
        let fam = if v6 { F_IP6 } else { F_IP4 };
        let mut cur = if field.layer == fam {
            self.layer(at, field, fam, f)
        } else {
            // `ip.*` fields: the family of the prefix decides.
            let then = self.new_block();
            self.set_term(
                at,
                Term::Flags {
                    mask: fam,
                    t: then,
                    f,
                },
            );
            then
        };
        let chunks: Vec<(usize, u32)> = (0..if v6 { 4 } else { 1 })
            .map(|i| (i, (prefix as usize).saturating_sub(i * 32).min(32) as u32))
            .filter(|&(_, bits)| bits > 0)
            .collect();
        if chunks.is_empty() {
            return self.set_term(cur, Term::Jump(t));
        }
        for (n, &(i, bits)) in chunks.iter().enumerate() {
            let bytes: [u8; 4] = [
                addr[i * 4],
                addr[i * 4 + 1],
                addr[i * 4 + 2],
                addr[i * 4 + 3],
            ];
            let mask_be: u32 = if bits == 32 {
                u32::MAX
            } else {
                !(u32::MAX >> bits)
            };
            // The record holds network order; a 32-bit load reads it little-endian.
            let mask = u32::from_le_bytes(mask_be.to_be_bytes());
            let want = u32::from_le_bytes(bytes);
            let mut v = self.load(cur, off + (i as i16) * 4, 4);
            if bits < 32 {
                let m = self.vreg();
                self.push(
                    cur,
                    Inst::AndImm {
                        dst: m,
                        src: v,
                        imm: mask,
                    },
                );
                v = m;
            }
            let next = if n + 1 == chunks.len() {
                t
            } else {
                self.new_block()
            };
            self.set_term(
                cur,
                Term::Branch {
                    op: BrOp::Eq,
                    wide: false,
                    lhs: v,
                    imm: want,
                    t: next,
                    f,
                },
            );
            cur = next;
        }
    }

    /// `field in SET` through maps: one lookup per address family the set holds.
    fn set_lookup(
        &mut self,
        at: BlockId,
        field: &'static Field,
        set: usize,
        t: BlockId,
        f: BlockId,
    ) {
        let def = &self.hir.sets[set];
        match field.slot {
            Slot::Addr { off } => {
                let mut cur = at;
                let fams: Vec<bool> = [false, true]
                    .into_iter()
                    .filter(|&v6| field.layer & if v6 { F_IP6 } else { F_IP4 } != 0)
                    .filter(|&v6| {
                        def.values
                            .iter()
                            .any(|v| matches!(v, Value::Net { v6: w, .. } if *w == v6))
                    })
                    .collect();
                if fams.is_empty() {
                    return self.set_term(at, Term::Jump(f));
                }
                for (n, &v6) in fams.iter().enumerate() {
                    let miss = if n + 1 == fams.len() {
                        f
                    } else {
                        self.new_block()
                    };
                    let fam = if v6 { F_IP6 } else { F_IP4 };
                    let b = self.new_block();
                    self.set_term(
                        cur,
                        Term::Flags {
                            mask: fam,
                            t: b,
                            f: miss,
                        },
                    );
                    let (map, exact) = self.addr_set_map(def, v6);
                    let key_off = if exact { off } else { off - 4 };
                    let p = self.vreg();
                    self.push(
                        b,
                        Inst::Lookup {
                            dst: p,
                            map,
                            key_off,
                        },
                    );
                    self.set_term(
                        b,
                        Term::Branch {
                            op: BrOp::Ne,
                            wide: true,
                            lhs: p,
                            imm: 0,
                            t,
                            f: miss,
                        },
                    );
                    cur = miss;
                }
            }
            Slot::Int { off, size } => {
                // Ranges stay inline; single values go to a hash map.
                let ranges: Vec<Cond> = def
                    .values
                    .iter()
                    .filter(|v| matches!(v, Value::Int { lo, hi } if lo != hi))
                    .map(|v| value_test(field, v))
                    .collect();
                let b = self.layer(at, field, field.layer, f);
                let mut cur = b;
                if !ranges.is_empty() {
                    let next = self.new_block();
                    self.cond(cur, &Cond::Or(ranges), t, next);
                    cur = next;
                }
                let map = self.int_set_map(def, size);
                let p = self.vreg();
                self.push(
                    cur,
                    Inst::Lookup {
                        dst: p,
                        map,
                        key_off: off,
                    },
                );
                self.set_term(
                    cur,
                    Term::Branch {
                        op: BrOp::Ne,
                        wide: true,
                        lhs: p,
                        imm: 0,
                        t,
                        f,
                    },
                );
            }
            _ => self.set_term(at, Term::Jump(f)),
        }
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
    fn addr_set_map(&mut self, set: &SetDef, v6: bool) -> (String, bool) {
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

    fn int_set_map(&mut self, set: &SetDef, size: u8) -> String {
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
        let key = match size {
            1 => BtfTy::U8,
            2 => BtfTy::U16,
            _ => BtfTy::U32,
        };
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

    fn counter_map(&mut self, c: usize) -> String {
        let counter = &self.hir.counters[c];
        let spec = match counter.key {
            None => MapSpec {
                name: counter.name.clone(),
                kind: MapKind::Array,
                key: BtfTy::U32,
                value: BtfTy::U64,
                max_entries: 1,
                flags: 0,
            },
            Some(f) => MapSpec {
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

/// The statistics map of a program: how often each rule, the default and the malformed
/// path decided. Kernel map names keep 15 characters; the full name stays in BTF.
pub fn stats_map_name(filter: &str) -> String {
    format!("{filter}_stats")
}

/// Entries of a keyed counter map: when it is full, new keys are not counted.
pub const COUNT_MAX_ENTRIES: u32 = 65536;

/// Where in the record the key of a counter keyed by `f` starts.
fn count_key_off(f: &Field) -> i16 {
    match (f.slot, f.ty) {
        // `ip`: {prefixlen, 16 address bytes}: the prefix length tells the family apart.
        (Slot::Addr { off }, Ty::Ip) => off - 4,
        (Slot::Addr { off }, _) | (Slot::Int { off, .. }, _) | (Slot::Bits { off, .. }, _) => off,
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
        _ => BtfTy::U32,
    }
}

fn value_test(field: &'static Field, v: &Value) -> Cond {
    match *v {
        Value::Int { lo, hi } if lo == hi => Cond::Test(Test::Int {
            field,
            op: CmpOp::Eq,
            value: lo,
        }),
        Value::Int { lo, hi } => Cond::And(vec![
            Cond::Test(Test::Int {
                field,
                op: CmpOp::Ge,
                value: lo,
            }),
            Cond::Test(Test::Int {
                field,
                op: CmpOp::Le,
                value: hi,
            }),
        ]),
        net @ Value::Net { v6, .. } => {
            let fam = if v6 { F_IP6 } else { F_IP4 };
            if field.layer & fam == 0 {
                Cond::Const(false)
            } else {
                Cond::Test(Test::Net { field, net })
            }
        }
    }
}

fn inline_set(field: &'static Field, set: &SetDef) -> Cond {
    Cond::Or(set.values.iter().map(|v| value_test(field, v)).collect())
}

/// Lowers every filter of a file.
pub fn lower(hir: &Hir) -> (Vec<Function>, Vec<MapDef>) {
    let mut maps = Vec::new();
    let funcs = hir
        .filters
        .iter()
        .map(|f| lower_filter(hir, f, &mut maps))
        .collect();
    (funcs, maps)
}
