//! Lowering: a typed filter becomes a CFG of tests, first match wins.
//!
//! Each rule's condition is lowered with short-circuit jumps: on success to the rule's
//! action block (counts, then return), on failure to the next rule. Every field test first
//! tests the field's layer bit, so a test of an absent header is false. Large named sets
//! become maps (hash for exact keys, LPM trie for prefixes); small ones are inlined.

mod conds;
mod dns;
mod maps;
mod state;

use super::groups::{self, Plan};
use super::{Block, BlockId, BrOp, Function, Inst, Term, VReg};
use crate::hir::{Action, Filter, Hir, Hook};
use crate::maps::{BtfTy, MapKind, MapSpec};
use crate::syntax::ast::Verdict;
use std::collections::HashMap;

use maps::count_key_off;
pub use maps::{stats_map_name, MapDef, COUNT_MAX_ENTRIES};

pub use crate::hir::INLINE_SET_MAX;

struct Lower<'a> {
    hir: &'a Hir,
    /// The per-CPU array of decision counts of this program.
    stats: String,
    blocks: Vec<Block>,
    vregs: u32,
    rule: Option<u32>,
    maps: &'a mut Vec<MapDef>,
    /// The filter's index in the file (flow events name it).
    filter_index: u16,
    /// The filter's L7 string tests, numbered.
    l7: crate::l7::Bits,
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
    let f = lower_rules(hir, filter, maps);
    let f = l7_passes(hir, filter, maps, f);
    state::track(hir, maps, f)
}

fn lower_rules(hir: &Hir, filter: &Filter, maps: &mut Vec<MapDef>) -> Function {
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
        filter_index: hir
            .filters
            .iter()
            .position(|f| f.name == filter.name)
            .unwrap_or(0) as u16,
        l7: crate::l7::Bits::of_filter(filter),
    };
    let plan = groups::plan(filter);
    if !plan.groups.is_empty() || plan.classifier.is_some() {
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
        let kinds: Vec<&Action> = groups::action_kinds(filter, plan);
        let mut action_of: HashMap<u32, u32> = HashMap::new();
        for (rule, place) in filter.rules.iter().zip(&plan.placement) {
            if place.in_maps() {
                let id = kinds.iter().position(|k| **k == rule.action).unwrap_or(0);
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
        if let Some(c) = &plan.classifier {
            let head = self.classifier_maps(filter, c, &action_of);
            self.push(
                cur,
                Inst::Classify {
                    filter: filter.name.clone(),
                    head,
                },
            );
        }
        let apply = self.new_block();
        self.rule = None;
        let mut checked = 0u32;
        for (rule, place) in filter.rules.iter().zip(&plan.placement) {
            if place.in_maps() {
                continue;
            }
            self.rule = Some(rule.index);
            // A map rule before this one may already have matched.
            let earlier = (checked..rule.index).any(|i| plan.placement[i as usize].in_maps());
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
        if a.log {
            self.log(b, hook, a, stat);
        }
        for &c in &a.counts {
            let counter = &self.hir.counters[c];
            let map = self.counter_map(c);
            if let Some(key) = counter.l7 {
                let filter = self
                    .hir
                    .filters
                    .get(usize::from(self.filter_index))
                    .map_or("", |f| f.name.as_str());
                let buf = crate::l7::http::map_names(filter).0;
                self.push(b, Inst::L7Count { map, key, buf });
                continue;
            }
            let key_off = counter.key.map(count_key_off);
            self.push(b, Inst::Count { map, key_off });
        }
        // The statistics update comes last, right before the return, so that instruction
        // the lowering onto MIR can share one copy of it among all actions (`to_mir::rules`).
        let map = self.stats.clone();
        match stat {
            Some(index) => self.push(b, Inst::Stat { map, index }),
            None => self.push(b, Inst::StatBest { map }),
        }
        self.set_term(b, Term::Return(verdict_code(hook, a.verdict)));
        b
    }
}

/// Puts the L7 passes before the rules of a filter that tests L7 fields: the HTTP pass
/// (with its maps: the per-CPU buffer and the LPM tries of path and host patterns) when a
/// rule tests an HTTP field, then the *incomplete gate*, the one place where a message an
/// L7 pass could not read whole (HTTP here, DNS and TLS in the stage `ir::to_mir` puts
/// before the IR entry) is dropped and counted in the malformed slot, for each protocol
/// `l7::incomplete_drops` says (docs/l7.md). The filter's `malformed` action is not
/// involved: it is for packets the L2–L4 parser refuses.
fn l7_passes(hir: &Hir, filter: &Filter, maps: &mut Vec<MapDef>, mut f: Function) -> Function {
    use crate::l7::http::{map_names, Pass, BUF_SIZE, KEY_DATA, STATE_INCOMPLETE};
    use crate::l7::{dns, tls, Proto};
    use crate::packet::record::OFF_HTTP_STATE;
    let gated: Vec<Proto> = Proto::ALL
        .into_iter()
        .filter(|&p| crate::l7::incomplete_drops(filter, p))
        .collect();
    let mut next = f.entry;
    if !gated.is_empty() {
        f.blocks.push(Block {
            insts: vec![Inst::Stat {
                map: stats_map_name(&filter.name),
                index: filter.rules.len() as u32 + 1,
            }],
            term: Term::Return(verdict_code(&filter.hook, Verdict::Drop)),
            rule: Some(crate::ir::SRC_PARSER),
        });
        let drop = BlockId(f.blocks.len() as u32 - 1);
        for &proto in gated.iter().rev() {
            let dst = VReg(f.vregs);
            f.vregs += 1;
            let (load, imm) = match proto {
                Proto::Http => (
                    Inst::LoadRecord {
                        dst,
                        off: OFF_HTTP_STATE,
                        size: 1,
                    },
                    u32::from(STATE_INCOMPLETE),
                ),
                Proto::Dns | Proto::Tls => (
                    Inst::L7Load {
                        dst,
                        scratch: crate::ir::lower::dns::scratch_map(maps, &filter.name),
                        off: if proto == Proto::Dns {
                            dns::S_STATUS
                        } else {
                            tls::S_TLS_STATUS
                        },
                        size: 1,
                    },
                    dns::ST_INCOMPLETE as u32,
                ),
            };
            f.blocks.push(Block {
                insts: vec![load],
                term: Term::Branch {
                    op: BrOp::Eq,
                    wide: false,
                    lhs: dst,
                    imm,
                    t: drop,
                    f: next,
                },
                rule: Some(crate::ir::SRC_PARSER),
            });
            next = BlockId(f.blocks.len() as u32 - 1);
        }
    }
    let [_, count_path, count_host] = crate::l7::http::counts_by(hir, filter);
    if !crate::l7::uses(filter, Proto::Http)
        && !crate::l7::http::counts_by(hir, filter).iter().any(|&c| c)
    {
        f.entry = next;
        return f;
    }
    let bits = crate::l7::Bits::of_filter(filter);
    let (buf, paths, hosts) = map_names(&filter.name);
    maps.push(MapDef {
        spec: MapSpec {
            name: buf.clone(),
            kind: MapKind::PercpuArray,
            key: BtfTy::U32,
            value: BtfTy::Bytes(BUF_SIZE),
            max_entries: 1,
            flags: 0,
        },
        entries: vec![],
    });
    let mut trie = |field: &str, name: String, ty: &str, data: usize| {
        let entries = bits.lpm_entries(field, data);
        (!entries.is_empty()).then(|| {
            maps.push(MapDef {
                spec: MapSpec {
                    name: name.clone(),
                    kind: MapKind::LpmTrie,
                    key: BtfTy::Struct {
                        name: ty.into(),
                        fields: vec![
                            ("prefixlen".into(), BtfTy::U32),
                            ("data".into(), BtfTy::Bytes(data as u32)),
                        ],
                    },
                    value: BtfTy::U32,
                    max_entries: entries.len() as u32,
                    // BPF_F_NO_PREALLOC: the kernel refuses an LPM trie without it.
                    flags: 1,
                },
                entries,
            });
            name
        })
    };
    let paths = trie("http.path", paths, "pol_http_path", KEY_DATA);
    let hosts = trie("http.host", hosts, "pol_http_host", KEY_DATA);
    let headers = trie(
        "http.header",
        crate::l7::http::header_map(&filter.name),
        "pol_http_header",
        crate::l7::http::HEADER_KEY_DATA,
    )
    .map(|m| (m, crate::l7::http::header_names(&bits)));
    let pass = Pass {
        buf,
        paths,
        hosts,
        headers,
        xdp: matches!(filter.hook, Hook::Xdp { .. }),
        count_path,
        count_host,
    };
    f.blocks.push(Block {
        insts: vec![Inst::Http(Box::new(pass))],
        term: Term::Jump(next),
        rule: Some(crate::ir::SRC_PARSER),
    });
    f.entry = BlockId(f.blocks.len() as u32 - 1);
    f
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
