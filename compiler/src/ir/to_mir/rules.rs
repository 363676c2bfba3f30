//! The rule CFG as MIR: each IR block becomes MIR blocks, each filter pseudo-op a short
//! sequence (a lookup, its null check, an add). Every action ends in one shared "count
//! the decision, return the verdict" block whose parameters are the statistics slot and
//! the return code.

use std::collections::HashMap;

use super::Tags;
use crate::ir::{self, BrOp, Inst, VReg};
use crate::ir::{SRC_DECIDE, SRC_DEFAULT, SRC_MALFORMED};
use crate::mir::build::Builder;
use crate::mir::{
    helpers, BinOp, Block, Cond, ExtOp, FuncId, IntTy, MapId, Op, Operand, PtrKind, Slot, Term,
    Type, Value,
};

/// BPF_NOEXIST: a new keyed counter is inserted only if no other CPU inserted it first.
const BPF_NOEXIST: i64 = 1;

#[derive(Debug, Clone, Copy)]
pub(super) struct Slots {
    /// The packet record.
    pub rec: Slot,
    /// See `parser::P::forget`.
    pub forget: Slot,
    /// A u32 map key (array index).
    pub key: Slot,
    /// The u64 constant 1, the value of a new keyed counter.
    pub one: Slot,
    /// The best rule found by the rule maps: u32 rule index, u32 action id.
    pub best: Slot,
}

pub(super) struct R<'a> {
    pub b: &'a mut Builder,
    pub module: &'a crate::mir::Module,
    pub tags: &'a mut Tags,
    pub slots: Slots,
    pub flags: Value,
    /// The shared tail: `decide(code: i64)`, the slot to count already in the key slot.
    pub decide: Option<Block>,
    /// The MIR block of each IR block.
    pub targets: Vec<Option<Block>>,
    /// The filter's classifier function, when it has one.
    pub classify: Option<FuncId>,
    /// The classifier's header, made on first use.
    pub cls_header: Option<Slot>,
    /// The packet's connection-tracking result, made on first use (`state`).
    pub ct: Option<Slot>,
    /// The program's context (flow events read the interface from it).
    pub ctx: Value,
    /// The flow event being built, made on first use (`state`).
    pub flow: Option<Slot>,
    /// Record fields kept in variables (see `parser::Field`).
    pub fields: &'a [super::parser::Field],
}

impl R<'_> {
    pub(super) fn map(&self, name: &str) -> Result<MapId, String> {
        self.module
            .map_by_name(name)
            .ok_or_else(|| format!("map {name} is not in the module"))
    }

    fn lookup_id() -> u32 {
        helpers::by_name("map_lookup_elem").map_or(1, |h| h.id)
    }

    pub(super) fn slot_addr(&mut self, cur: Block, s: Slot, off: i64) -> Value {
        let a = self
            .b
            .f
            .push(cur, Op::SlotAddr(s), Type::Ptr(PtrKind::Stack));
        if off == 0 {
            a
        } else {
            self.b.f.push(
                cur,
                Op::PtrAdd(a, Operand::Imm(off)),
                Type::Ptr(PtrKind::Stack),
            )
        }
    }

    pub(super) fn store(&mut self, cur: Block, ty: IntTy, s: Slot, off: i16, val: Operand) {
        let at = self.slot_addr(cur, s, 0);
        self.b.f.push_void(
            cur,
            Op::Store {
                ty,
                ptr: at,
                off,
                val,
            },
        );
    }

    pub(super) fn load(&mut self, cur: Block, ty: IntTy, ptr: Value, off: i16) -> Value {
        self.b.f.push(cur, Op::Load { ptr, off }, Type::Int(ty))
    }

    /// `map_lookup_elem(map, key)`: a value pointer or null.
    pub(super) fn lookup(&mut self, cur: Block, map: MapId, key: Value) -> Value {
        let m = self
            .b
            .f
            .push(cur, Op::MapRef(map), Type::Ptr(PtrKind::Map(map)));
        self.b.f.push(
            cur,
            Op::Call(Self::lookup_id(), vec![m, key]),
            Type::Ptr(PtrKind::MapValueOrNull(map)),
        )
    }

    pub(super) fn new_block(&mut self, src: u32) -> Block {
        let b = self.b.add_block();
        self.tags.set(b, src);
        b
    }

    pub(super) fn jump(&mut self, from: Block, to: Block, args: Vec<Value>) {
        self.b.jump(from, to, args);
    }

    /// Looks `key` up; continues in the returned block with the non-null pointer, or in
    /// `miss` when absent.
    fn lookup_hit(
        &mut self,
        cur: Block,
        map: MapId,
        key: Value,
        miss: Block,
        src: u32,
    ) -> (Block, Value) {
        let p = self.lookup(cur, map, key);
        let hit = self.new_block(src);
        self.b.br(cur, Cond::Eq, p, 0, miss, hit);
        (hit, p)
    }

    /// `L7Count`: counts a request the HTTP pass read under its method, path or host.
    fn l7_count(
        &mut self,
        cur: Block,
        map: &str,
        key: crate::l7::http::CountKey,
        buf: &str,
        src: u32,
    ) -> Result<Block, String> {
        use crate::l7::http::STATE_REQUEST;
        use crate::packet::record::{OFF_HTTP_METHOD, OFF_HTTP_STATE};
        let map = self.map(map)?;
        let done = self.new_block(src);
        let rec = self.slot_addr(cur, self.slots.rec, 0);
        let state = self.load(cur, IntTy::U8, rec, OFF_HTTP_STATE);
        let state = self.b.f.push(cur, Op::Ext(ExtOp::Zext, state), Type::U32);
        let request = self.new_block(src);
        self.b.br(
            cur,
            Cond::Ne,
            state,
            i64::from(STATE_REQUEST),
            done,
            request,
        );
        let cur = request;
        let (cur, k) = match key.buf_off() {
            None => (
                cur,
                self.slot_addr(cur, self.slots.rec, i64::from(OFF_HTTP_METHOD)),
            ),
            Some(off) => {
                let bm = self.map(buf)?;
                self.store(cur, IntTy::U32, self.slots.key, 0, Operand::Imm(0));
                let k0 = self.slot_addr(cur, self.slots.key, 0);
                let p = self.lookup(cur, bm, k0);
                let got = self.new_block(src);
                self.b.br(cur, Cond::Eq, p, 0, done, got);
                let k = self.b.f.push(
                    got,
                    Op::PtrAdd(p, Operand::Imm(off)),
                    Type::Ptr(PtrKind::MapValue(bm)),
                );
                (got, k)
            }
        };
        let miss = self.new_block(src);
        let (hit, p) = self.lookup_hit(cur, map, k, miss, src);
        let one = self.b.f.iconst(hit, IntTy::U64, 1);
        self.b.f.push_void(
            hit,
            Op::AtomicAdd {
                ty: IntTy::U64,
                ptr: p,
                off: 0,
                val: one,
            },
        );
        self.jump(hit, done, vec![]);
        // Absent: insert 1 (a lost race loses one count, as for `Count`).
        self.store(miss, IntTy::U64, self.slots.one, 0, Operand::Imm(1));
        let m = self
            .b
            .f
            .push(miss, Op::MapRef(map), Type::Ptr(PtrKind::Map(map)));
        let val = self.slot_addr(miss, self.slots.one, 0);
        let flags = self.b.f.iconst(miss, IntTy::U64, BPF_NOEXIST);
        let id = helpers::by_name("map_update_elem").map_or(2, |h| h.id);
        self.b
            .f
            .push(miss, Op::Call(id, vec![m, k, val, flags]), Type::I64);
        self.jump(miss, done, vec![]);
        Ok(done)
    }

    /// One IR block into MIR block `blk` (and the blocks its pseudo-ops need).
    pub fn block(
        &mut self,
        func: &ir::Function,
        ib: ir::BlockId,
        blk: Block,
    ) -> Result<(), String> {
        let data = &func.blocks[ib.0 as usize];
        let src = match data.rule {
            Some(r) => r,
            None if ib == func.malformed => SRC_MALFORMED,
            None => SRC_DEFAULT,
        };
        self.tags.set(blk, src);
        let mut vals: HashMap<VReg, Value> = HashMap::new();
        let get = |vals: &HashMap<VReg, Value>, v: &VReg| {
            vals.get(v)
                .copied()
                .ok_or_else(|| format!("{v} used before its definition"))
        };
        let mut cur = blk;
        // `Stat` right before `Return`: the shared tail does it.
        let shared = matches!(
            (data.insts.last(), &data.term),
            (
                Some(Inst::Stat { .. } | Inst::StatBest { .. }),
                ir::Term::Return(_)
            )
        );
        let body = if shared {
            &data.insts[..data.insts.len() - 1]
        } else {
            &data.insts[..]
        };
        for inst in body {
            match inst {
                Inst::LoadRecord { dst, off, size }
                    if self.fields.iter().any(|f| f.off == *off && f.size == *size) =>
                {
                    let var = self
                        .fields
                        .iter()
                        .find(|f| f.off == *off && f.size == *size)
                        .map(|f| f.var)
                        .ok_or("field variable missing")?;
                    let v = self.b.get(cur, var);
                    vals.insert(*dst, v);
                }
                Inst::LoadRecord { dst, off, size } => {
                    let rec = self.slot_addr(cur, self.slots.rec, 0);
                    let ty = match size {
                        1 => IntTy::U8,
                        2 => IntTy::U16,
                        4 => IntTy::U32,
                        _ => IntTy::U64,
                    };
                    let mut v = self.load(cur, ty, rec, *off);
                    if ty.bits < 32 {
                        v = self.b.f.push(cur, Op::Ext(ExtOp::Zext, v), Type::U32);
                    }
                    // The record is 8-aligned: the verifier links a load from an 8-aligned
                    // slot to the register the parser stored there, and a rule's `==`
                    // then pins it for every later rule (each match a new state: a few
                    // hundred rules exhaust its budget). An ALU op gives the value an
                    // identity of its own.
                    if off % 8 == 0 {
                        let ty = self.b.f.ty(v);
                        v = self
                            .b
                            .f
                            .push(cur, Op::Binary(BinOp::Xor, v, Operand::Imm(0)), ty);
                    }
                    vals.insert(*dst, v);
                }
                Inst::AndImm { dst, src: s, imm } => {
                    let a = get(&vals, s)?;
                    let ty = self.b.f.ty(a);
                    let v = self.b.f.push(
                        cur,
                        Op::Binary(BinOp::And, a, Operand::Imm(i64::from(*imm))),
                        ty,
                    );
                    vals.insert(*dst, v);
                }
                Inst::Lookup { dst, map, key_off } => {
                    let map = self.map(map)?;
                    let key = self.slot_addr(cur, self.slots.rec, i64::from(*key_off));
                    let p = self.lookup(cur, map, key);
                    vals.insert(*dst, p);
                }
                Inst::L7Count { map, key, buf } => {
                    cur = self.l7_count(cur, map, *key, buf, src)?;
                }
                Inst::Count { map, key_off } => {
                    let map = self.map(map)?;
                    let done = self.new_block(src);
                    let key = match key_off {
                        Some(k) => self.slot_addr(cur, self.slots.rec, i64::from(*k)),
                        None => {
                            self.store(cur, IntTy::U32, self.slots.key, 0, Operand::Imm(0));
                            self.slot_addr(cur, self.slots.key, 0)
                        }
                    };
                    let miss = if key_off.is_some() {
                        self.new_block(src)
                    } else {
                        done
                    };
                    let (hit, p) = self.lookup_hit(cur, map, key, miss, src);
                    let one = self.b.f.iconst(hit, IntTy::U64, 1);
                    self.b.f.push_void(
                        hit,
                        Op::AtomicAdd {
                            ty: IntTy::U64,
                            ptr: p,
                            off: 0,
                            val: one,
                        },
                    );
                    self.jump(hit, done, vec![]);
                    if key_off.is_some() {
                        // Absent: insert 1 (if another CPU won the race, this packet's
                        // count is lost, which a counter may tolerate).
                        self.store(miss, IntTy::U64, self.slots.one, 0, Operand::Imm(1));
                        let m = self
                            .b
                            .f
                            .push(miss, Op::MapRef(map), Type::Ptr(PtrKind::Map(map)));
                        let key = match key_off {
                            Some(k) => self.slot_addr(miss, self.slots.rec, i64::from(*k)),
                            None => self.slot_addr(miss, self.slots.key, 0),
                        };
                        let val = self.slot_addr(miss, self.slots.one, 0);
                        let flags = self.b.f.iconst(miss, IntTy::U64, BPF_NOEXIST);
                        let id = helpers::by_name("map_update_elem").map_or(2, |h| h.id);
                        self.b
                            .f
                            .push(miss, Op::Call(id, vec![m, key, val, flags]), Type::I64);
                        self.jump(miss, done, vec![]);
                    }
                    cur = done;
                }
                Inst::Stat { map, index } => {
                    let map = self.map(map)?;
                    let idx = self.b.f.iconst(cur, IntTy::U32, i64::from(*index));
                    cur = self.stat(cur, map, idx, src);
                }
                Inst::StatBest { map } => {
                    let map = self.map(map)?;
                    let best = self.slot_addr(cur, self.slots.best, 0);
                    let idx = self.load(cur, IntTy::U32, best, 0);
                    cur = self.stat(cur, map, idx, src);
                }
                Inst::InitBest { rule, action } => {
                    self.store(
                        cur,
                        IntTy::U32,
                        self.slots.best,
                        0,
                        Operand::Imm(i64::from(*rule)),
                    );
                    self.store(
                        cur,
                        IntTy::U32,
                        self.slots.best,
                        4,
                        Operand::Imm(i64::from(*action)),
                    );
                }
                Inst::GroupLookup { map, key_off } => {
                    let map = self.map(map)?;
                    let done = self.new_block(src);
                    let key = self.slot_addr(cur, self.slots.rec, i64::from(*key_off));
                    let (hit, p) = self.lookup_hit(cur, map, key, done, src);
                    let rule = self.load(hit, IntTy::U32, p, 0);
                    let best = self.slot_addr(hit, self.slots.best, 0);
                    let cur_best = self.load(hit, IntTy::U32, best, 0);
                    let better = self.new_block(src);
                    self.b.br(hit, Cond::Uge, rule, cur_best, done, better);
                    self.store(better, IntTy::U32, self.slots.best, 0, rule.into());
                    let action = self.load(better, IntTy::U32, p, 4);
                    self.store(better, IntTy::U32, self.slots.best, 4, action.into());
                    self.jump(better, done, vec![]);
                    cur = done;
                }
                Inst::Classify { .. } => cur = self.classify(cur, src)?,
                Inst::CtTrack { map, config } => cur = self.ct_track(cur, src, map, config)?,
                Inst::Http(p) => {
                    let at = crate::l7::http::At {
                        ctx: self.ctx,
                        rec: self.slots.rec,
                        scratch: self.b.f.add_slot(16, 8),
                        flags: self.flags,
                    };
                    cur = crate::l7::http::lower_pass(self.b, cur, self.module, p, &at)?;
                }
                Inst::Log {
                    filter,
                    rule,
                    hook,
                    verdict,
                    ct,
                    interval_ns,
                    burst,
                } => {
                    let l = super::state::Log {
                        filter: *filter,
                        rule: *rule,
                        hook: *hook,
                        verdict: *verdict,
                        ct: *ct,
                        interval_ns: *interval_ns,
                        burst: *burst,
                    };
                    cur = self.log(cur, src, &l)?;
                }
                Inst::Ct { dst } => {
                    let v = self.ct_result(cur);
                    vals.insert(*dst, v);
                }
                Inst::L7Load {
                    dst,
                    scratch,
                    off,
                    size,
                } => {
                    let (next, v) = self.l7_load(cur, src, scratch, *off, *size)?;
                    vals.insert(*dst, v);
                    cur = next;
                }
                Inst::L7Lookup {
                    dst,
                    scratch,
                    map,
                    status,
                } => {
                    let (next, v) = self.l7_lookup(cur, src, scratch, map, *status)?;
                    vals.insert(*dst, v);
                    cur = next;
                }
                Inst::Rate {
                    dst,
                    map,
                    keys,
                    interval_ns,
                    tolerance_ns,
                } => {
                    let r = super::state::Rate {
                        map,
                        keys,
                        interval_ns: *interval_ns,
                        tolerance_ns: *tolerance_ns,
                    };
                    let (next, v) = self.rate(cur, src, &r)?;
                    vals.insert(*dst, v);
                    cur = next;
                }
                Inst::LoadBest { dst, action } => {
                    let best = self.slot_addr(cur, self.slots.best, 0);
                    let v = self.load(cur, IntTy::U32, best, if *action { 4 } else { 0 });
                    vals.insert(*dst, v);
                }
            }
        }
        match &data.term {
            ir::Term::Return(code) => {
                let code_v = self.b.f.iconst(cur, IntTy::I64, i64::from(*code));
                if shared {
                    let idx = match data.insts.last() {
                        Some(Inst::Stat { index, .. }) => {
                            self.b.f.iconst(cur, IntTy::U32, i64::from(*index))
                        }
                        _ => {
                            let best = self.slot_addr(cur, self.slots.best, 0);
                            self.load(cur, IntTy::U32, best, 0)
                        }
                    };
                    let map = match data.insts.last() {
                        Some(Inst::Stat { map, .. } | Inst::StatBest { map }) => self.map(map)?,
                        _ => return Err("shared tail without a statistics map".into()),
                    };
                    // The slot goes to the statistics key here, as a store of a
                    // constant (`*(u32 *)(r10 - k) = 2`), not as a block argument the
                    // tail stores: one instruction less on every path.
                    let key = self.slot_addr(cur, self.slots.key, 0);
                    self.b.f.push_void(
                        cur,
                        Op::Store {
                            ty: IntTy::U32,
                            ptr: key,
                            off: 0,
                            val: idx.into(),
                        },
                    );
                    let decide = self.decide(map);
                    self.jump(cur, decide, vec![code_v]);
                } else {
                    self.b.set_term(cur, Term::Return(code_v));
                }
            }
            ir::Term::Jump(t) => {
                let t = self.target(*t)?;
                self.jump(cur, t, vec![]);
            }
            ir::Term::Branch {
                op,
                wide,
                lhs,
                imm,
                t,
                f,
            } => {
                let (t, f) = (self.target(*t)?, self.target(*f)?);
                let mut a = get(&vals, lhs)?;
                let mut imm = i64::from(*imm);
                let is_ptr = self.b.f.ty(a).ptr().is_some();
                if !is_ptr {
                    let ty = self.b.f.ty(a).int().unwrap_or(IntTy::U32);
                    if *wide && ty.bits < 64 {
                        a = self.b.f.push(cur, Op::Ext(ExtOp::Zext, a), Type::U64);
                    } else if !*wide && ty.bits > 32 {
                        a = self.b.f.push(cur, Op::Ext(ExtOp::Trunc, a), Type::U32);
                    }
                }
                let cond = match op {
                    BrOp::Eq => Cond::Eq,
                    BrOp::Ne => Cond::Ne,
                    BrOp::Lt => Cond::Ult,
                    BrOp::Le => Cond::Ule,
                    BrOp::Gt => Cond::Ugt,
                    BrOp::Ge => Cond::Uge,
                    BrOp::Set => {
                        let ty = self.b.f.ty(a);
                        a = self
                            .b
                            .f
                            .push(cur, Op::Binary(BinOp::And, a, Operand::Imm(imm)), ty);
                        imm = 0;
                        Cond::Ne
                    }
                };
                self.br(cur, cond, a, imm, t, f);
            }
            ir::Term::Flags { mask, t, f } => {
                let (t, f) = (self.target(*t)?, self.target(*f)?);
                let bits = self.b.f.push(
                    cur,
                    Op::Binary(BinOp::And, self.flags, Operand::Imm(i64::from(*mask))),
                    Type::U32,
                );
                self.br(cur, Cond::Ne, bits, 0, t, f);
            }
        }
        Ok(())
    }

    /// The classifier's header (`classify::maps` key layout, table id 0) from the record,
    /// the call, and its first match kept when it beats the best so far.
    fn classify(&mut self, cur: Block, src: u32) -> Result<Block, String> {
        use crate::classify::hir::{L4_LAYERS, NO_VLAN};
        use crate::classify::{L4, V4, V6};
        use crate::packet::record::{
            F_IP4, F_IP6, F_VLAN, OFF_DPORT, OFF_DST, OFF_IP_PROTO, OFF_SPORT, OFF_SRC,
            OFF_VLAN_OUTER,
        };
        let func = self
            .classify
            .ok_or("the filter's classifier function is missing")?;
        let slot = match self.cls_header {
            Some(s) => s,
            None => {
                let s = self
                    .b
                    .f
                    .add_slot(crate::classify::maps::KEY_BYTES as u32, 8);
                self.cls_header = Some(s);
                s
            }
        };
        let f = &mut self.b.f;
        let bin = |f: &mut crate::mir::Function, op: BinOp, a: Value, b: i64| {
            f.push(cur, Op::Binary(op, a, Operand::Imm(b)), Type::U32)
        };
        let bit = |f: &mut crate::mir::Function, flags: Value, mask: u32| {
            let shifted = bin(f, BinOp::Lshr, flags, i64::from(mask.trailing_zeros()));
            bin(f, BinOp::And, shifted, 1)
        };
        // family = 4 (IPv4) or 6 (IPv6) or 0, plus L4 when an L4 header was parsed.
        let flags = self.flags;
        let ip4 = bit(f, flags, F_IP4);
        let ip6 = bit(f, flags, F_IP6);
        let fam4 = bin(f, BinOp::Mul, ip4, i64::from(V4));
        let fam6 = bin(f, BinOp::Mul, ip6, i64::from(V6));
        let fam = f.push(cur, Op::Binary(BinOp::Add, fam4, fam6.into()), Type::U32);
        let l4 = bin(f, BinOp::And, flags, i64::from(L4_LAYERS));
        // Any L4 bit set → 1: L4_LAYERS < 2^width, so l4 + 2^width - 1 carries into bit
        // `width` exactly when l4 is not zero.
        let width = 32 - L4_LAYERS.leading_zeros();
        let carry = bin(f, BinOp::Add, l4, (1i64 << width) - 1);
        let any = bin(f, BinOp::Lshr, carry, i64::from(width));
        let any = bin(f, BinOp::Mul, any, i64::from(L4));
        let fam = f.push(cur, Op::Binary(BinOp::Add, fam, any.into()), Type::U32);
        // vlan = the outer VLAN id when tagged, else NO_VLAN (no `vlan.id` test holds).
        let tagged = bit(f, flags, F_VLAN);
        let untagged = bin(f, BinOp::Xor, tagged, 1);
        let fill = bin(f, BinOp::Mul, untagged, i64::from(NO_VLAN));
        let rec = self.slot_addr(cur, self.slots.rec, 0);
        let hdr = self.slot_addr(cur, slot, 0);
        let f = &mut self.b.f;
        let vlan_id = f.push(
            cur,
            Op::Load {
                ptr: rec,
                off: OFF_VLAN_OUTER,
            },
            Type::Int(IntTy::U16),
        );
        let vlan_id = f.push(cur, Op::Ext(ExtOp::Zext, vlan_id), Type::U32);
        let vlan = f.push(cur, Op::Binary(BinOp::Or, vlan_id, fill.into()), Type::U32);
        let proto = f.push(
            cur,
            Op::Load {
                ptr: rec,
                off: OFF_IP_PROTO,
            },
            Type::Int(IntTy::U8),
        );
        let sport = f.push(
            cur,
            Op::Load {
                ptr: rec,
                off: OFF_SPORT,
            },
            Type::Int(IntTy::U16),
        );
        let dport = f.push(
            cur,
            Op::Load {
                ptr: rec,
                off: OFF_DPORT,
            },
            Type::Int(IntTy::U16),
        );
        let store = |f: &mut crate::mir::Function, ty: IntTy, off: i16, val: Operand| {
            f.push_void(
                cur,
                Op::Store {
                    ty,
                    ptr: hdr,
                    off,
                    val,
                },
            );
        };
        store(f, IntTy::U32, 0, Operand::Imm(0));
        store(f, IntTy::U8, 4, fam.into());
        store(f, IntTy::U8, 5, proto.into());
        store(f, IntTy::U16, 6, vlan.into());
        store(f, IntTy::U16, 8, sport.into());
        store(f, IntTy::U16, 10, dport.into());
        store(f, IntTy::U32, 12, Operand::Imm(0));
        for (from, to) in [(OFF_SRC, 16), (OFF_DST, 32)] {
            for k in 0..4 {
                let w = f.push(
                    cur,
                    Op::Load {
                        ptr: rec,
                        off: from + 4 * k,
                    },
                    Type::Int(IntTy::U32),
                );
                store(f, IntTy::U32, to + 4 * k, w.into());
            }
        }
        let found = f.push(cur, Op::CallFn(func, vec![hdr]), Type::U64);
        let rule = f.push(cur, Op::Ext(ExtOp::Trunc, found), Type::U32);
        let best = self.slot_addr(cur, self.slots.best, 0);
        let cur_best = self.load(cur, IntTy::U32, best, 0);
        let done = self.new_block(src);
        let better = self.new_block(src);
        self.b.br(cur, Cond::Uge, rule, cur_best, done, better);
        // The best slot is {u32 rule, u32 action}: the classifier's result as it is.
        self.store(better, IntTy::U64, self.slots.best, 0, found.into());
        self.jump(better, done, vec![]);
        Ok(done)
    }

    fn br(&mut self, cur: Block, cond: Cond, a: Value, imm: i64, t: Block, f: Block) {
        self.b.br(cur, cond, a, imm, t, f);
    }

    fn target(&self, t: ir::BlockId) -> Result<Block, String> {
        self.targets
            .get(t.0 as usize)
            .copied()
            .flatten()
            .ok_or_else(|| format!("jump to unknown block {t}"))
    }

    /// `map[idx] += 1` on a per-CPU array (no other CPU writes the slot: no atomic);
    /// returns the block that continues.
    pub(super) fn stat(&mut self, cur: Block, map: MapId, idx: Value, src: u32) -> Block {
        let key = self.slot_addr(cur, self.slots.key, 0);
        self.b.f.push_void(
            cur,
            Op::Store {
                ty: IntTy::U32,
                ptr: key,
                off: 0,
                val: idx.into(),
            },
        );
        self.count(cur, map, src)
    }

    /// Adds one to the per-CPU counter whose index the key slot holds.
    fn count(&mut self, cur: Block, map: MapId, src: u32) -> Block {
        let done = self.new_block(src);
        let key = self.slot_addr(cur, self.slots.key, 0);
        let (hit, p) = self.lookup_hit(cur, map, key, done, src);
        let v = self.load(hit, IntTy::U64, p, 0);
        let v = self
            .b
            .f
            .push(hit, Op::Binary(BinOp::Add, v, Operand::Imm(1)), Type::U64);
        self.b.f.push_void(
            hit,
            Op::Store {
                ty: IntTy::U64,
                ptr: p,
                off: 0,
                val: v.into(),
            },
        );
        self.jump(hit, done, vec![]);
        done
    }

    /// The shared tail, made on first use: count the decision, return the verdict.
    fn decide(&mut self, map: MapId) -> Block {
        if let Some(d) = self.decide {
            return d;
        }
        let d = self.new_block(SRC_DECIDE);
        let code = self.b.f.add_block_param(d, Type::I64);
        let done = self.count(d, map, SRC_DECIDE);
        self.b.set_term(done, Term::Return(code));
        self.decide = Some(d);
        d
    }
}
