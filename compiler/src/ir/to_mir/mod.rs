//! Filters lowered onto MIR (issue 8 §5): the packet parser built as MIR
//! ([`parser`]), then the rule CFG of `ir::lower`, whose pseudo-ops (`Count`, `Stat`,
//! `GroupLookup`, ...) become MIR sequences here ([`rules`]): map lookups with their null
//! checks, per-CPU statistics, atomic counters. One module per file: every map of the
//! file, one program per filter. `codegen` then selects, allocates and emits.

mod dns;
mod parser;
mod rules;
mod state;

use crate::classify::datapath;
use crate::classify::tuplemerge::Config;
use crate::hir::{Filter, Hook};
use crate::ir::SRC_PARSER;
use crate::ir::{self, lower::MapDef};
use crate::maps::MapKind;
use crate::mir::build::Builder;
use crate::mir::{self, Block, IntTy, PtrKind, Term, Type};
use crate::packet::needs::{Needs, ParserHook};
use crate::packet::record::{record_size, RECORD_SIZE};

/// The source of each MIR block (a rule index or one of `ir::SRC_*`), for
/// listings and per-rule limits.
#[derive(Debug, Clone, Default)]
pub struct Tags(pub Vec<u32>);

impl Tags {
    fn set(&mut self, b: Block, src: u32) {
        if self.0.len() <= b.index() {
            self.0.resize(b.index() + 1, SRC_PARSER);
        }
        self.0[b.index()] = src;
    }
}

/// A file's filters as one MIR module, with the source of every block of every function.
#[derive(Debug, Clone)]
pub struct FilterModule {
    pub module: mir::Module,
    pub tags: Vec<Tags>,
}

/// The MIR of one map of `ir::lower`.
pub fn map_def(m: &MapDef) -> mir::MapDef {
    let s = &m.spec;
    mir::MapDef {
        name: s.name.clone(),
        kind: match s.kind {
            MapKind::Hash => mir::MapKind::Hash,
            MapKind::Array => mir::MapKind::Array,
            MapKind::PercpuArray => mir::MapKind::PercpuArray,
            MapKind::PercpuHash => mir::MapKind::PercpuHash,
            MapKind::LruHash => mir::MapKind::LruHash,
            MapKind::LpmTrie => mir::MapKind::LpmTrie,
            MapKind::RingBuf => mir::MapKind::RingBuf,
            MapKind::StackTrace => mir::MapKind::StackTrace,
        },
        // A ring buffer has neither.
        key_size: s.key_value_size().0,
        value_size: s.key_value_size().1,
        max_entries: s.max_entries,
        flags: s.flags,
    }
}

/// Lowers every filter (`funcs` from `ir::lower`, `needs` from `hir::needs`) onto MIR.
/// With `registers`, small filters keep their layer flags and some record fields in
/// registers (see [`REGISTER_RULES`]); without, everything goes through the record.
/// An error is a bug in this lowering (the builder's), with what went wrong.
pub fn lower(
    filters: &[&Filter],
    funcs: &[ir::Function],
    maps: &[MapDef],
    needs: &[Needs],
    registers: bool,
) -> Result<FilterModule, String> {
    let mut module = mir::Module::default();
    for m in maps {
        module.add_map(map_def(m));
    }
    // Classifier functions: made per filter that has one, added after the filters (whose
    // calls name them by the ids they will have).
    let mut parts = Vec::new();
    let mut next = filters.len();
    let mut classify = Vec::new();
    for (filter, func) in filters.iter().zip(funcs) {
        let head = func.blocks.iter().find_map(|b| {
            b.insts.iter().find_map(|i| match i {
                ir::Inst::Classify { head, .. } => Some(head),
                _ => None,
            })
        });
        let Some(head) = head else {
            classify.push(None);
            continue;
        };
        let head: Vec<[u8; crate::classify::maps::ENTRY_BYTES]> = head
            .iter()
            .map(|e| e.as_slice().try_into())
            .collect::<Result<_, _>>()
            .map_err(|_| "a classifier head entry of the wrong size".to_string())?;
        let names = datapath::Names::of_filter(&filter.name);
        let size = |n: &str| {
            maps.iter()
                .find(|m| m.spec.name == n)
                .map(|m| m.spec.max_entries as usize)
                .ok_or_else(|| format!("classifier map {n} is missing"))
        };
        let sizes = datapath::Sizes {
            buckets: size(&names.buckets)?,
            entries: size(&names.entries)?,
        };
        let text = datapath::named_text(&names, &Config::default(), sizes, &head);
        let part = mir::parse_module(&text).map_err(|e| format!("the classifier's MIR: {e}"))?;
        let id = part
            .func_by_name(&names.func)
            .ok_or("the classifier's MIR has no entry function")?;
        classify.push(Some(mir::FuncId::from_index(next + id.index())));
        next += part.funcs.len();
        parts.push((part, names.func));
    }
    // The L7 stage's functions, per filter with L7 tests, after the classifiers'.
    let mut stages = Vec::new();
    for (filter, func) in filters.iter().zip(funcs) {
        if dns::scratch_of(func).is_none() {
            stages.push(None);
            continue;
        }
        let (dns_used, tls_used) = crate::l7::protocols(filter);
        let names = crate::l7::dns::Names::of_filter(&filter.name);
        let mut text = crate::l7::dns::text(&names);
        if tls_used {
            text.push('\n');
            // The ALPN map as the lowering made it (`ir::lower::dns::alpn_map`).
            let alpn = if crate::l7::uses_alpn(filter) {
                let max = maps
                    .iter()
                    .find(|m| m.spec.name == crate::l7::tls::ALPN_MAP)
                    .map(|m| m.spec.max_entries)
                    .ok_or("the ALPN map is missing")?;
                Some(max)
            } else {
                None
            };
            text.push_str(&crate::l7::tls::text(&filter.name, &names, alpn));
        }
        let part = mir::parse_module(&text).map_err(|e| format!("the L7 stage's MIR: {e}"))?;
        let id = |name: &str| -> Result<mir::FuncId, String> {
            part.func_by_name(name)
                .map(|id| mir::FuncId::from_index(next + id.index()))
                .ok_or_else(|| format!("the L7 stage's MIR has no function {name}"))
        };
        let dns_id = if dns_used {
            Some(id(&names.func)?)
        } else {
            None
        };
        let tls_id = if tls_used {
            Some(id(&crate::l7::tls::hello_name(&filter.name))?)
        } else {
            None
        };
        stages.push(Some((dns_id, tls_id)));
        next += part.funcs.len();
        parts.push((part, names.func));
    }
    let mut tags = Vec::new();
    for ((((filter, func), needs), cls), stage) in filters
        .iter()
        .zip(funcs)
        .zip(needs)
        .zip(&classify)
        .zip(&stages)
    {
        let mut needs = *needs;
        if cls.is_some() {
            classifier_needs(&mut needs);
        }
        let stage = match (stage, dns::scratch_of(func)) {
            (Some((dns_id, tls_id)), Some(scratch)) => {
                dns::needs(&mut needs);
                let scratch = module
                    .map_by_name(scratch)
                    .ok_or_else(|| format!("map {scratch} is missing"))?;
                Some(dns::Stage {
                    scratch,
                    dns: *dns_id,
                    tls: *tls_id,
                })
            }
            _ => None,
        };
        let insts = || func.blocks.iter().flat_map(|b| b.insts.iter());
        if insts().any(|i| matches!(i, ir::Inst::CtTrack { .. } | ir::Inst::Log { .. })) {
            let related =
                insts().any(|i| matches!(i, ir::Inst::CtTrack { config, .. } if config.related));
            state::ct_needs(&mut needs, related);
        }
        let (f, t) = lower_filter(
            &module,
            filter,
            func,
            needs,
            *cls,
            stage.as_ref(),
            registers,
        )?;
        module.add_func(f);
        tags.push(t);
    }
    for (part, func) in parts {
        datapath::import(&mut module, part, &func)?;
    }
    Ok(FilterModule { module, tags })
}

/// The classifier's header is made of these record fields, whichever rules test them:
/// `hir::needs` leaves out stores the rules' code can do without (the protocol of a packet
/// known to be TCP, say), the header cannot.
fn classifier_needs(n: &mut Needs) {
    use crate::packet::needs::span;
    use crate::packet::record::{
        OFF_DPORT, OFF_DST, OFF_IP_PROTO, OFF_SPORT, OFF_SRC, OFF_VLAN_OUTER,
    };
    let vlan = span(OFF_VLAN_OUTER, 2);
    let ports = span(OFF_SPORT, 2) | span(OFF_DPORT, 2);
    let ip4 = span(OFF_IP_PROTO, 1) | span(OFF_SRC, 4) | span(OFF_DST, 4);
    let ip6 = span(OFF_IP_PROTO, 1) | span(OFF_SRC, 16) | span(OFF_DST, 16);
    n.reads |= vlan | ports | ip6;
    n.store_link |= vlan;
    n.store4 |= ip4;
    n.store6 |= ip6;
    n.store_tcp |= ports;
    n.store_udp |= ports;
    n.store_sctp |= ports;
}

/// At most this many rules, a filter keeps its layer flags and the record fields its rules
/// only compare in registers. More, and the kernel verifier's cost decides: constants per
/// parser path multiply the states it walks through the rules (see `parser::P::forget`).
pub const REGISTER_RULES: usize = 64;

/// At most this many record fields live in variables: with the layer flags they fill the
/// four registers a call preserves (r6–r9); more would spill to 8-byte stack slots, each
/// bigger than the field it holds.
const REGISTER_FIELDS: usize = 3;

/// The record fields a filter's rules read whole and never use as a lookup key (`(offset,
/// size)`): they can live in variables. Every read of a field's bytes must be of exactly
/// that field, and no key may overlap it. The most read first, at most
/// [`REGISTER_FIELDS`], none of the payload window.
fn register_fields(module: &mir::Module, func: &ir::Function) -> Vec<(i16, u8)> {
    let mut reads: Vec<(i16, u8)> = Vec::new();
    let mut count: Vec<usize> = Vec::new();
    let mut keys: Vec<(i16, i16)> = Vec::new();
    let key_len = |map: &str| {
        module
            .map_by_name(map)
            .and_then(|m| module.map(m))
            .map_or(crate::packet::record::RECORD_SIZE, |d| d.key_size as i16)
    };
    for blk in &func.blocks {
        for inst in &blk.insts {
            match inst {
                ir::Inst::LoadRecord { off, size, .. } => {
                    match reads.iter().position(|&r| r == (*off, *size)) {
                        Some(k) => count[k] += 1,
                        None => {
                            reads.push((*off, *size));
                            count.push(1);
                        }
                    }
                }
                ir::Inst::Lookup { map, key_off, .. } | ir::Inst::GroupLookup { map, key_off } => {
                    keys.push((*key_off, key_len(map)))
                }
                ir::Inst::Count {
                    map,
                    key_off: Some(k),
                } => keys.push((*k, key_len(map))),
                ir::Inst::AndImm { .. }
                | ir::Inst::Count { key_off: None, .. }
                | ir::Inst::Stat { .. }
                | ir::Inst::StatBest { .. }
                | ir::Inst::InitBest { .. }
                | ir::Inst::LoadBest { .. }
                | ir::Inst::Ct { .. } => {}
                // These read record bytes of their own (rate keys, the flow tuple, flow
                // events, the classifier's header): every field stays in the record.
                ir::Inst::Classify { .. }
                | ir::Inst::Rate { .. }
                | ir::Inst::CtTrack { .. }
                | ir::Inst::Http(_)
                | ir::Inst::L7Count { .. }
                | ir::Inst::Log { .. }
                | ir::Inst::L7Load { .. }
                | ir::Inst::L7Lookup { .. } => return Vec::new(),
            }
        }
    }
    let overlap = |a: i16, an: i16, b: i16, bn: i16| a < b + bn && b < a + an;
    let mut fields: Vec<(usize, (i16, u8))> = count
        .into_iter()
        .zip(reads.iter().copied())
        .filter(|&(_, (off, size))| {
            let n = i16::from(size);
            off < crate::packet::record::OFF_PAYLOAD
                && !keys.iter().any(|&(k, kn)| overlap(off, n, k, kn))
                && !reads
                    .iter()
                    .any(|&(o, s)| (o, s) != (off, size) && overlap(off, n, o, i16::from(s)))
        })
        .collect();
    fields.sort_by_key(|&(n, f)| (std::cmp::Reverse(n), f));
    fields
        .into_iter()
        .take(REGISTER_FIELDS)
        .map(|(_, f)| f)
        .collect()
}

fn lower_filter(
    module: &mir::Module,
    filter: &Filter,
    func: &ir::Function,
    needs: Needs,
    classify: Option<mir::FuncId>,
    stage: Option<&dns::Stage>,
    registers: bool,
) -> Result<(mir::Function, Tags), String> {
    // Not behind tunnels: the inner window's fields are stored at a base offset by the
    // same parser paths, which keeping fields in registers has not been checked against.
    let small =
        registers && filter.rules.len() <= REGISTER_RULES && classify.is_none() && !needs.tunnel;
    let mut fields = if small {
        register_fields(module, func)
    } else {
        Vec::new()
    };
    loop {
        match lower_with(module, filter, func, needs, classify, stage, &fields, small)? {
            Ok(done) => return Ok(done),
            // The parser stores part of that field: keep it in the record.
            Err(off) => fields.retain(|&(o, _)| o != off),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn lower_with(
    module: &mir::Module,
    filter: &Filter,
    func: &ir::Function,
    needs: Needs,
    classify: Option<mir::FuncId>,
    stage: Option<&dns::Stage>,
    fields: &[(i16, u8)],
    small: bool,
) -> Result<Result<(mir::Function, Tags), i16>, String> {
    let (hook, phook) = match filter.hook {
        Hook::Xdp { .. } => (mir::Hook::Xdp, ParserHook::Xdp),
        Hook::Tc { .. } => (mir::Hook::Tc, ParserHook::Tc),
    };
    let f = mir::Function::new(
        &filter.name,
        Some(hook),
        vec![Type::Ptr(PtrKind::Ctx)],
        IntTy::I64,
    );
    let mut b = Builder::new(f);
    let ctx = b.f.block(b.f.entry()).params[0];
    let slots = rules::Slots {
        rec: b.f.add_slot(needs.record_size() as u32, 8),
        forget: b.f.add_slot(8, 8),
        key: b.f.add_slot(8, 8),
        one: b.f.add_slot(8, 8),
        best: b.f.add_slot(8, 8),
    };
    let fields: Vec<parser::Field> = fields
        .iter()
        .map(|&(off, size)| parser::Field {
            off,
            size,
            var: b.var(if size == 8 { Type::U64 } else { Type::U32 }),
        })
        .collect();
    let mut tags = Tags::default();
    tags.set(b.f.entry(), SRC_PARSER);
    // The rule blocks in the layout the old back end used (a rule's action right after
    // its tests: the verifier follows the short matched path first).
    let order = ir::cfg::layout(func);
    let mut map = vec![None; func.blocks.len()];
    // The malformed block first: the parser jumps to it.
    let malformed = b.add_block();
    map[func.malformed.0 as usize] = Some(malformed);
    let out = match parser::build(
        &mut b,
        &mut tags,
        phook,
        needs,
        ctx,
        slots.rec,
        slots.forget,
        malformed,
        parser::Out {
            fields: &fields,
            forget_flags: !small,
        },
    ) {
        Ok(out) => out,
        Err(off) => return Ok(Err(off)),
    };
    for &ib in &order {
        if map[ib.0 as usize].is_none() {
            map[ib.0 as usize] = Some(b.add_block());
        }
    }
    let rules_entry = map[func.entry.0 as usize].ok_or("rule entry block missing")?;
    match stage {
        Some(st) => dns::stage(
            &mut b,
            &mut tags,
            st,
            phook,
            ctx,
            out.flags,
            (slots.rec, slots.key),
            out.rules,
            rules_entry,
        ),
        None => b.jump(out.rules, rules_entry, vec![]),
    }
    let mut rl = rules::R {
        b: &mut b,
        module,
        tags: &mut tags,
        slots,
        flags: out.flags,
        decide: None,
        targets: map.clone(),
        classify,
        cls_header: None,
        ct: None,
        ctx,
        flow: None,
        fields: &fields,
    };
    for &ib in &order {
        let blk = map[ib.0 as usize].ok_or("rule block missing")?;
        rl.block(func, ib, blk)?;
    }
    let (f, bmap) = b.finish().map_err(|e| e.to_string())?;
    let mut out_tags = Tags(vec![SRC_PARSER; f.blocks.len()]);
    for (old, new) in bmap.iter().enumerate() {
        if let Some(n) = new {
            out_tags.0[n.index()] = tags.0.get(old).copied().unwrap_or(SRC_PARSER);
        }
    }
    Ok(Ok((f, out_tags)))
}

/// What a parser test program does after the parser (`tests/pkt_parser.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// The record pre-filled with the 8-byte `fill`, the parser, then the record stored
    /// in entry 0 of map `dump` (an array of records) and 0 returned; a malformed packet
    /// returns `malformed`.
    Dump { fill: i64, malformed: i64 },
    /// The parser, then a load of every byte of `needs.reads`: verifies only if every
    /// path writes (or zeroes) each of them.
    Reads,
}

/// A program of the parser alone, for the parser's own tests.
pub fn parser_probe(hook: ParserHook, needs: Needs, probe: Probe) -> Result<mir::Module, String> {
    use crate::mir::{Op, Operand};
    let mut module = mir::Module::default();
    let dump = module.add_map(mir::MapDef {
        name: "dump".into(),
        kind: mir::MapKind::Array,
        key_size: 4,
        value_size: RECORD_SIZE as u32,
        max_entries: 1,
        flags: 0,
    });
    let (mhook, name) = match hook {
        ParserHook::Xdp => (mir::Hook::Xdp, "parser_xdp"),
        ParserHook::Tc => (mir::Hook::Tc, "parser_tc"),
    };
    let f = mir::Function::new(name, Some(mhook), vec![Type::Ptr(PtrKind::Ctx)], IntTy::I64);
    let mut b = Builder::new(f);
    let entry = b.f.entry();
    let ctx = b.f.block(entry).params[0];
    let rec = b.f.add_slot(
        needs.record_size().max(record_size(!0, needs.payload)) as u32,
        8,
    );
    let forget = b.f.add_slot(8, 8);
    let key = b.f.add_slot(8, 8);
    let stack = Type::Ptr(PtrKind::Stack);
    if let Probe::Dump { fill, .. } = probe {
        let at = b.f.push(entry, Op::SlotAddr(rec), stack);
        for k in 0..RECORD_SIZE / 8 {
            b.f.push_void(
                entry,
                Op::Store {
                    ty: IntTy::U64,
                    ptr: at,
                    off: 8 * k,
                    val: Operand::Imm(fill),
                },
            );
        }
    }
    let malformed = b.add_block();
    let code = match probe {
        Probe::Dump { malformed, .. } => malformed,
        Probe::Reads => 0,
    };
    let c = b.f.iconst(malformed, IntTy::I64, code);
    b.set_term(malformed, Term::Return(c));
    let mut tags = Tags::default();
    let out = parser::build(
        &mut b,
        &mut tags,
        hook,
        needs,
        ctx,
        rec,
        forget,
        malformed,
        parser::Out {
            fields: &[],
            forget_flags: true,
        },
    )
    .map_err(|off| format!("the parser stored part of field {off}"))?;
    let cur = out.rules;
    let at = b.f.push(cur, Op::SlotAddr(rec), stack);
    match probe {
        Probe::Dump { .. } => {
            let k = b.f.push(cur, Op::SlotAddr(key), stack);
            b.f.push_void(
                cur,
                Op::Store {
                    ty: IntTy::U32,
                    ptr: k,
                    off: 0,
                    val: Operand::Imm(0),
                },
            );
            let m =
                b.f.push(cur, Op::MapRef(dump), Type::Ptr(PtrKind::Map(dump)));
            let flags = b.f.iconst(cur, IntTy::U64, 0);
            let id = mir::helpers::by_name("map_update_elem").map_or(2, |h| h.id);
            b.f.push(cur, Op::Call(id, vec![m, k, at, flags]), Type::I64);
        }
        Probe::Reads => {
            for byte in 0..RECORD_SIZE {
                if needs.reads & crate::packet::needs::span(byte, 1) != 0 {
                    b.f.push(cur, Op::Load { ptr: at, off: byte }, Type::Int(IntTy::U8));
                }
            }
        }
    }
    let zero = b.f.iconst(cur, IntTy::I64, 0);
    b.set_term(cur, Term::Return(zero));
    let (f, _) = b.finish().map_err(|e| e.to_string())?;
    module.add_func(f);
    Ok(module)
}
