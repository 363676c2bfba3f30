//! Probe HIR to MIR: one tracing program per probe, one per-CPU hash per aggregation map.
//!
//! A program runs its steps in order: a `where` branches to the exit when false; an
//! aggregation fills a zeroed key on the stack (so padding and short strings hash the
//! same), looks it up, and updates the value in place (per-CPU: no other CPU writes it)
//! or inserts the first value. Values are u64 words as `AggFunc::value_words` lists them;
//! histograms add a bucket index to the key.

use super::hir::{AggFunc, ArithOp, Builtin, CmpOp, Expr, ExprKind, ProbeHook, Probes, Step, Ty};
use super::hir::{Probe, COMM_LEN, JOIN_EACH};
use super::ring::{self, Ring};
use crate::mir::{
    helpers, BinOp, Block, BlockCall, Cond, ExtOp, Function, Hook, IntTy, MapDef, MapId, MapKind,
    Module, Op, Operand, PtrKind, Term, Type, Value,
};

/// Entries per aggregation map (bpftrace's default is 4096; distinct keys beyond this
/// are not counted).
pub const MAX_ENTRIES: u32 = 10240;

/// The MIR module of a file's probes: maps in `Probes::maps` order, then one program per
/// probe.
pub fn lower(p: &Probes) -> Module {
    lower_tagged(p).0
}

/// [`lower`], also giving, for each program (in probe order), the step each MIR block
/// belongs to: 1 + the index in `Probe::steps`, 0 for the probe's entry and exit
/// (`pol disasm` puts the statement's line above its instructions).
pub fn lower_tagged(p: &Probes) -> (Module, Vec<Vec<u32>>) {
    let mut m = Module::default();
    // Hash maps allocate an entry when a key first appears rather than all of them when
    // the map is made: preallocating 10,240 per-CPU entries took most of the start-up of
    // a keyed probe (~8 ms of 11). perf_event programs (`profile`) run in NMI context,
    // where the kernel wants preallocated maps, so a file with one keeps them.
    let hash_flags = if p
        .probes
        .iter()
        .any(|pr| matches!(pr.hook, ProbeHook::Profile { .. }))
    {
        0
    } else {
        BPF_F_NO_PREALLOC
    };
    for map in &p.maps {
        let (_, key_size) = map.key_layout();
        let (kind, key_size, max_entries, flags) = if map.is_array() {
            // Slot 0, indexed by the first 4 bytes of the zeroed key.
            (MapKind::PercpuArray, 4, 1, 0)
        } else {
            (MapKind::PercpuHash, key_size, MAX_ENTRIES, hash_flags)
        };
        m.add_map(MapDef {
            name: map.symbol.clone(),
            kind,
            key_size,
            value_size: map.value_size(),
            max_entries,
            flags,
        });
    }
    for v in &p.vars {
        let (_, key_size) = v.key_layout();
        m.add_map(MapDef {
            name: v.symbol.clone(),
            kind: MapKind::Hash,
            key_size,
            value_size: 8,
            max_entries: MAX_ENTRIES,
            flags: hash_flags,
        });
    }
    let stacks = p
        .maps
        .iter()
        .any(|m| m.keys.iter().any(|k| matches!(k.ty, Ty::Stack { .. })))
        .then(|| {
            m.add_map(MapDef {
                name: STACKS_MAP.into(),
                kind: MapKind::StackTrace,
                key_size: 4,
                value_size: STACK_DEPTH * 8,
                max_entries: MAX_STACKS,
                flags: 0,
            })
        });
    let ring = (!p.events.is_empty()).then(|| ring::add_maps(&mut m));
    let mut tags = Vec::new();
    for probe in &p.probes {
        let (f, t) = Lower::program(p, probe, ring, stacks);
        m.add_func(f);
        tags.push(t);
    }
    (m, tags)
}

pub use super::ring::{EVENTS_MAP, LOST_MAP, RING_BYTES};
/// The stack trace map `kstack` keys refer to: up to 127 frames (the kernel's default
/// `perf_event_max_stack`) per stack.
pub const STACKS_MAP: &str = "pol_stacks";
pub const STACK_DEPTH: u32 = 127;
/// `BPF_F_NO_PREALLOC`: a hash map's entries allocated as keys appear.
const BPF_F_NO_PREALLOC: u32 = 1;
/// `get_stackid`'s flag for the user stack.
const BPF_F_USER_STACK: u64 = 1 << 8;
pub const MAX_STACKS: u32 = 4096;

/// The MIR hook of a probe.
pub fn mir_hook(h: &ProbeHook) -> Hook {
    match h {
        ProbeHook::Tracepoint { category, name } => Hook::Tracepoint {
            category: category.clone(),
            name: name.clone(),
        },
        ProbeHook::RawTracepoint { name } => Hook::RawTp(name.clone()),
        ProbeHook::BtfTracepoint { name } => Hook::TpBtf(name.clone()),
        // The target is given at attach time (layout.json), so the section stays plain.
        ProbeHook::Uprobe { ret: false, .. } => Hook::Uprobe(String::new()),
        ProbeHook::Uprobe { ret: true, .. } => Hook::Uretprobe(String::new()),
        ProbeHook::Profile { .. } => Hook::PerfEvent,
    }
}

struct Lower<'a> {
    probes: &'a Probes,
    f: Function,
    /// The ring buffer and lost-record maps, when the file emits.
    ring: Option<Ring>,
    /// The lost counter's key slot, shared by every `emit` of the program.
    lost_key: Option<crate::mir::Slot>,
    /// Where the probe returns (reading an absent variable jumps here).
    exit: Block,
    /// The MapId of the first variable map.
    var_base: usize,
    /// The program's context (tracepoint record, raw tracepoint arguments).
    ctx: Value,
    /// The stack trace map, when a key is `kstack`.
    stacks: Option<MapId>,
    /// The context is a `struct pt_regs` (uprobes): arguments are registers.
    regs: bool,
}

fn helper(name: &str) -> u32 {
    helpers::by_name(name).map_or(0, |h| h.id)
}

impl<'a> Lower<'a> {
    fn program(
        probes: &'a Probes,
        probe: &Probe,
        ring: Option<Ring>,
        stacks: Option<MapId>,
    ) -> (Function, Vec<u32>) {
        let mut f = Function::new(
            &probe.symbol,
            Some(mir_hook(&probe.hook)),
            vec![Type::Ptr(PtrKind::Ctx)],
            IntTy::I64,
        );
        let exit = f.add_block();
        let zero = f.iconst(exit, IntTy::I64, 0);
        f.set_term(exit, Term::Return(zero));
        let mut l = Lower {
            probes,
            f,
            ring,
            lost_key: None,
            regs: matches!(probe.hook, ProbeHook::Uprobe { .. }),
            exit,
            var_base: probes.maps.len(),
            ctx: Value(0),
            stacks,
        };
        l.ctx = l.f.block(l.f.entry()).params[0];
        let mut cur = l.f.entry();
        let mut tags: Vec<u32> = Vec::new();
        for (i, step) in probe.steps.iter().enumerate() {
            let tag = i as u32 + 1;
            let first_new = l.f.block_ids().count();
            // A step starting an empty block (after a `where` or an aggregation's join)
            // owns it.
            if l.f.block(cur).insts.is_empty() {
                tags.resize(tags.len().max(cur.index() + 1), 0);
                tags[cur.index()] = tag;
            }
            match step {
                Step::Where(e) => {
                    let next = l.f.add_block();
                    l.cond(cur, e, next, exit);
                    cur = next;
                }
                Step::Aggregate { map, keys, value } => {
                    cur = l.aggregate(cur, *map, keys, value.as_ref());
                }
                Step::Emit { event, fields } => cur = l.emit(cur, *event, fields),
                Step::Assign { var, keys, value } => cur = l.assign(cur, *var, keys, value),
                Step::Delete { var, keys } => cur = l.delete(cur, *var, keys),
            }
            let blocks = l.f.block_ids().count();
            tags.resize(blocks, 0);
            for t in tags.iter_mut().skip(first_new) {
                *t = tag;
            }
        }
        l.jump(cur, exit, vec![]);
        tags.resize(l.f.block_ids().count(), 0);
        (l.f, tags)
    }

    fn jump(&mut self, from: Block, to: Block, args: Vec<Value>) {
        self.f.set_term(from, Term::Jump(BlockCall::new(to, args)));
    }

    fn br(&mut self, from: Block, cond: Cond, a: Value, b: Operand, t: BlockCall, e: BlockCall) {
        self.f.set_term(
            from,
            Term::Br {
                cond,
                a,
                b,
                then: t,
                els: e,
            },
        );
    }

    fn u64c(&mut self, b: Block, c: u64) -> Value {
        self.f.iconst(b, IntTy::U64, c as i64)
    }

    fn call(&mut self, b: Block, name: &str, args: Vec<Value>, ty: Type) -> Value {
        self.f.push(b, Op::Call(helper(name), args), ty)
    }

    fn bin(&mut self, b: Block, op: BinOp, x: Value, y: impl Into<Operand>) -> Value {
        self.f.push(b, Op::Binary(op, x, y.into()), Type::U64)
    }

    fn load(&mut self, b: Block, ptr: Value, off: i16) -> Value {
        self.f.push(b, Op::Load { ptr, off }, Type::U64)
    }

    fn store(&mut self, b: Block, ptr: Value, off: i16, val: impl Into<Operand>) {
        self.f.push_void(
            b,
            Op::Store {
                ty: IntTy::U64,
                ptr,
                off,
                val: val.into(),
            },
        );
    }

    /// Branches to `t` when the boolean `e` holds, else to `f`.
    fn cond(&mut self, mut cur: Block, e: &Expr, t: Block, f: Block) {
        let to = |b: Block| BlockCall::new(b, vec![]);
        match &e.kind {
            ExprKind::Not(a) => self.cond(cur, a, f, t),
            ExprKind::And(a, b) => {
                let mid = self.f.add_block();
                self.cond(cur, a, mid, f);
                self.cond(mid, b, t, f);
            }
            ExprKind::Or(a, b) => {
                let mid = self.f.add_block();
                self.cond(cur, a, t, mid);
                self.cond(mid, b, t, f);
            }
            ExprKind::Cmp(op, a, b) if matches!(a.ty, Ty::Str(_)) => {
                let (t, f) = if *op == CmpOp::Ne { (f, t) } else { (t, f) };
                self.str_eq(cur, a, b, t, f);
            }
            ExprKind::Cmp(op, a, b) => {
                let x = self.int(&mut cur, a);
                let y = self.int(&mut cur, b);
                let signed = a.is_signed() || b.is_signed();
                let c = match (op, signed) {
                    (CmpOp::Eq, _) => Cond::Eq,
                    (CmpOp::Ne, _) => Cond::Ne,
                    (CmpOp::Lt, false) => Cond::Ult,
                    (CmpOp::Le, false) => Cond::Ule,
                    (CmpOp::Gt, false) => Cond::Ugt,
                    (CmpOp::Ge, false) => Cond::Uge,
                    (CmpOp::Lt, true) => Cond::Slt,
                    (CmpOp::Le, true) => Cond::Sle,
                    (CmpOp::Gt, true) => Cond::Sgt,
                    (CmpOp::Ge, true) => Cond::Sge,
                };
                self.br(cur, c, x, y.into(), to(t), to(f));
            }
            // A constant (or anything else boolean): a branch on it keeps both targets
            // reachable, as the MIR verifier wants.
            _ => {
                let v = match e.kind {
                    ExprKind::Bool(b) => b as u64,
                    _ => 0,
                };
                let v = self.u64c(cur, v);
                self.br(cur, Cond::Ne, v, Operand::Imm(0), to(t), to(f));
            }
        }
    }

    /// `value == "literal"` (the checker lets only that shape through): the value read
    /// into a zeroed stack slot, compared word by word up to and including the literal's
    /// NUL. A literal longer than the value can hold never equals it.
    fn str_eq(&mut self, cur: Block, a: &Expr, b: &Expr, t: Block, f: Block) {
        let to = |b: Block| BlockCall::new(b, vec![]);
        let (lit, val) = match (&a.kind, &b.kind) {
            (ExprKind::Str(s), _) => (s.clone(), b),
            (_, ExprKind::Str(s)) => (s.clone(), a),
            _ => (String::new(), a),
        };
        let cap = match val.ty {
            Ty::Str(n) => n,
            _ => 0,
        };
        if lit.len() + 1 > cap as usize || matches!(val.kind, ExprKind::Str(_)) {
            let never = self.u64c(cur, 0);
            self.br(cur, Cond::Ne, never, Operand::Imm(0), to(t), to(f));
            return;
        }
        let size = cap.div_ceil(8) * 8;
        let slot = self.f.add_slot(size, 8);
        let p = self
            .f
            .push(cur, Op::SlotAddr(slot), Type::Ptr(PtrKind::Stack));
        for off in (0..size).step_by(8) {
            self.store(cur, p, off as i16, Operand::Imm(0));
        }
        let cur = self.put_str(cur, val, p, 0, size, Type::Ptr(PtrKind::Stack));
        let mut bytes = lit.into_bytes();
        let words = (bytes.len() + 1).div_ceil(8);
        bytes.resize(words * 8, 0);
        let mut at = cur;
        for (i, chunk) in bytes.chunks(8).enumerate() {
            let mut w = [0u8; 8];
            w.copy_from_slice(chunk);
            let p = self
                .f
                .push(at, Op::SlotAddr(slot), Type::Ptr(PtrKind::Stack));
            let have = self.load(at, p, (i * 8) as i16);
            let want = self.u64c(at, u64::from_le_bytes(w));
            let next = if i + 1 == words {
                t
            } else {
                self.f.add_block()
            };
            self.br(at, Cond::Eq, have, want.into(), to(next), to(f));
            at = next;
        }
    }

    /// An integer expression as a u64 value; `cur` moves on when reading a variable
    /// needs a branch (an absent entry ends the probe).
    fn int(&mut self, cur: &mut Block, e: &Expr) -> Value {
        match &e.kind {
            ExprKind::Int(n) => self.u64c(*cur, *n),
            ExprKind::Builtin(b) => self.builtin(*cur, *b),
            ExprKind::Arg {
                offset,
                bytes,
                signed,
            } => {
                // Loads zero-extend (the kernel's rule): narrow signed ones are
                // sign-extended after; every value is then a u64 (compares unsigned).
                let ty = IntTy::new(bytes * 8, false);
                let v = if self.regs && *bytes < 8 {
                    // A register of `struct pt_regs` is read whole (MIR's rule for
                    // uprobe contexts); the value is its low bytes.
                    let r = self.f.push(
                        *cur,
                        Op::Load {
                            ptr: self.ctx,
                            off: *offset as i16,
                        },
                        Type::U64,
                    );
                    self.f.push(*cur, Op::Ext(ExtOp::Trunc, r), Type::Int(ty))
                } else {
                    self.f.push(
                        *cur,
                        Op::Load {
                            ptr: self.ctx,
                            off: *offset as i16,
                        },
                        Type::Int(ty),
                    )
                };
                if *bytes == 8 {
                    v
                } else {
                    let ext = if *signed { ExtOp::Sext } else { ExtOp::Zext };
                    self.f.push(*cur, Op::Ext(ext, v), Type::U64)
                }
            }
            ExprKind::Arith(op, a, b) => {
                let x = self.int(cur, a);
                let y = self.int(cur, b);
                let op = match op {
                    ArithOp::Add => BinOp::Add,
                    ArithOp::Sub => BinOp::Sub,
                    ArithOp::Mul => BinOp::Mul,
                    ArithOp::Div => BinOp::Div,
                };
                self.bin(*cur, op, x, y)
            }
            ExprKind::Var { var, keys } => {
                let (id, kslot) = self.var_key(cur, *var, keys);
                let kp = self
                    .f
                    .push(*cur, Op::SlotAddr(kslot), Type::Ptr(PtrKind::Stack));
                let mref = self
                    .f
                    .push(*cur, Op::MapRef(id), Type::Ptr(PtrKind::Map(id)));
                let r = self.call(
                    *cur,
                    "map_lookup_elem",
                    vec![mref, kp],
                    Type::Ptr(PtrKind::MapValueOrNull(id)),
                );
                let found = self.f.add_block();
                self.br(
                    *cur,
                    Cond::Eq,
                    r,
                    Operand::Imm(0),
                    BlockCall::new(self.exit, vec![]),
                    BlockCall::new(found, vec![]),
                );
                *cur = found;
                self.load(found, r, 0)
            }
            // The checker lets only integers through here.
            _ => self.u64c(*cur, 0),
        }
    }

    /// The map of variable `var` and a stack slot holding the key made of `keys`.
    fn var_key(&mut self, cur: &mut Block, var: usize, keys: &[Expr]) -> (MapId, crate::mir::Slot) {
        let def = &self.probes.vars[var];
        let fields = def.keys.clone();
        let (offs, size) = def.key_layout();
        let slot = self.fill_key(cur, keys, &fields, &offs, size);
        (MapId::from_index(self.var_base + var), slot)
    }

    /// A zeroed stack slot of `size` bytes holding `keys` at `offs`.
    fn fill_key(
        &mut self,
        cur: &mut Block,
        keys: &[Expr],
        fields: &[super::hir::KeyField],
        offs: &[u32],
        size: u32,
    ) -> crate::mir::Slot {
        let kslot = self.f.add_slot(size, 8);
        let kp = self
            .f
            .push(*cur, Op::SlotAddr(kslot), Type::Ptr(PtrKind::Stack));
        for off in (0..size).step_by(8) {
            self.store(*cur, kp, off as i16, Operand::Imm(0));
        }
        for ((k, &off), field) in keys.iter().zip(offs).zip(fields) {
            if let (Ty::Stack { user }, Some(sm)) = (k.ty, self.stacks) {
                // The stack's id (negative when there is none, e.g. a sample in user mode).
                let mref = self
                    .f
                    .push(*cur, Op::MapRef(sm), Type::Ptr(PtrKind::Map(sm)));
                let flags = self.u64c(*cur, if user { BPF_F_USER_STACK } else { 0 });
                let mut id = self.call(*cur, "get_stackid", vec![self.ctx, mref, flags], Type::I64);
                if user {
                    // The process id in the high half, the id (an i32) in the low: user
                    // frames are named in their process's address space.
                    let v = self.call(*cur, "get_current_pid_tgid", vec![], Type::U64);
                    let tgid = self.bin(*cur, BinOp::Lshr, v, Operand::Imm(32));
                    let hi = self.bin(*cur, BinOp::Shl, tgid, Operand::Imm(32));
                    let lo = self.low32(*cur, id);
                    id = self.bin(*cur, BinOp::Or, hi, lo);
                }
                let kp = self
                    .f
                    .push(*cur, Op::SlotAddr(kslot), Type::Ptr(PtrKind::Stack));
                self.store(*cur, kp, off as i16, id);
            } else if matches!(k.ty, Ty::Str(_)) {
                let kp = self
                    .f
                    .push(*cur, Op::SlotAddr(kslot), Type::Ptr(PtrKind::Stack));
                *cur = self.put_str(*cur, k, kp, off, field.size(), Type::Ptr(PtrKind::Stack));
            } else {
                let v = self.int(cur, k);
                let kp = self
                    .f
                    .push(*cur, Op::SlotAddr(kslot), Type::Ptr(PtrKind::Stack));
                self.store(*cur, kp, off as i16, v);
            }
        }
        kslot
    }

    /// `NAME[KEYS] = VALUE`.
    fn assign(&mut self, mut cur: Block, var: usize, keys: &[Expr], value: &Expr) -> Block {
        let x = self.int(&mut cur, value);
        let (id, kslot) = self.var_key(&mut cur, var, keys);
        let vslot = self.f.add_slot(8, 8);
        let vp = self
            .f
            .push(cur, Op::SlotAddr(vslot), Type::Ptr(PtrKind::Stack));
        self.store(cur, vp, 0, x);
        let kp = self
            .f
            .push(cur, Op::SlotAddr(kslot), Type::Ptr(PtrKind::Stack));
        let mref = self
            .f
            .push(cur, Op::MapRef(id), Type::Ptr(PtrKind::Map(id)));
        let flags = self.u64c(cur, 0);
        self.call(cur, "map_update_elem", vec![mref, kp, vp, flags], Type::I64);
        cur
    }

    /// `delete NAME[KEYS]`.
    fn delete(&mut self, mut cur: Block, var: usize, keys: &[Expr]) -> Block {
        let (id, kslot) = self.var_key(&mut cur, var, keys);
        let kp = self
            .f
            .push(cur, Op::SlotAddr(kslot), Type::Ptr(PtrKind::Stack));
        let mref = self
            .f
            .push(cur, Op::MapRef(id), Type::Ptr(PtrKind::Map(id)));
        self.call(cur, "map_delete_elem", vec![mref, kp], Type::I64);
        cur
    }

    fn low32(&mut self, cur: Block, v: Value) -> Value {
        let t = self.f.push(cur, Op::Ext(ExtOp::Trunc, v), Type::U32);
        self.f.push(cur, Op::Ext(ExtOp::Zext, t), Type::U64)
    }

    fn builtin(&mut self, cur: Block, b: Builtin) -> Value {
        match b {
            Builtin::Pid | Builtin::Tid => {
                let v = self.call(cur, "get_current_pid_tgid", vec![], Type::U64);
                if b == Builtin::Pid {
                    self.bin(cur, BinOp::Lshr, v, Operand::Imm(32))
                } else {
                    self.low32(cur, v)
                }
            }
            Builtin::Uid | Builtin::Gid => {
                let v = self.call(cur, "get_current_uid_gid", vec![], Type::U64);
                if b == Builtin::Gid {
                    self.bin(cur, BinOp::Lshr, v, Operand::Imm(32))
                } else {
                    self.low32(cur, v)
                }
            }
            Builtin::Cgroup => self.call(cur, "get_current_cgroup_id", vec![], Type::U64),
            Builtin::Nsecs => self.call(cur, "ktime_get_ns", vec![], Type::U64),
            Builtin::Cpu => {
                let v = self.call(cur, "get_smp_processor_id", vec![], Type::U32);
                self.f.push(cur, Op::Ext(ExtOp::Zext, v), Type::U64)
            }
            // `comm` is a string, stacks are keys: only keys and compares read them.
            Builtin::Comm | Builtin::Kstack | Builtin::Ustack => self.u64c(cur, 0),
        }
    }

    /// The power-of-two bucket of `x`: 0 for 0, else floor(log2 x) + 1. Six halving
    /// steps leave `v` at 1 (or 0 for 0) and `n` at floor(log2 x).
    fn hist_bucket(&mut self, mut cur: Block, x: Value) -> (Block, Value) {
        let mut v = x;
        let mut n = self.u64c(cur, 0);
        for k in [32u32, 16, 8, 4, 2, 1] {
            let limit = self.u64c(cur, 1u64 << k);
            let shift = self.f.add_block();
            let next = self.f.add_block();
            let nv = self.f.add_block_param(next, Type::U64);
            let nn = self.f.add_block_param(next, Type::U64);
            self.br(
                cur,
                Cond::Uge,
                v,
                limit.into(),
                BlockCall::new(shift, vec![]),
                BlockCall::new(next, vec![v, n]),
            );
            let sv = self.bin(shift, BinOp::Lshr, v, Operand::Imm(k as i64));
            let sn = self.bin(shift, BinOp::Add, n, Operand::Imm(k as i64));
            self.jump(shift, next, vec![sv, sn]);
            cur = next;
            v = nv;
            n = nn;
        }
        let bucket = self.bin(cur, BinOp::Add, n, v);
        (cur, bucket)
    }

    /// The linear bucket of `x`: 0 below `min`, `1 + (x - min) / step` inside, and one
    /// past the last for `max` and above.
    fn lhist_bucket(
        &mut self,
        cur: Block,
        x: Value,
        min: u64,
        max: u64,
        step: u64,
    ) -> (Block, Value) {
        let buckets = (max - min).div_ceil(step);
        let join = self.f.add_block();
        let out = self.f.add_block_param(join, Type::U64);
        let check_max = self.f.add_block();
        let inside = self.f.add_block();
        let vmin = self.u64c(cur, min);
        let zero = self.u64c(cur, 0);
        self.br(
            cur,
            Cond::Ult,
            x,
            vmin.into(),
            BlockCall::new(join, vec![zero]),
            BlockCall::new(check_max, vec![]),
        );
        let vmax = self.u64c(check_max, max);
        let last = self.u64c(check_max, buckets + 1);
        self.br(
            check_max,
            Cond::Uge,
            x,
            vmax.into(),
            BlockCall::new(join, vec![last]),
            BlockCall::new(inside, vec![]),
        );
        let d = self.bin(inside, BinOp::Sub, x, vmin);
        let vstep = self.u64c(inside, step);
        let q = self.bin(inside, BinOp::Div, d, vstep);
        let b = self.bin(inside, BinOp::Add, q, Operand::Imm(1));
        self.jump(inside, join, vec![b]);
        (join, out)
    }

    /// Writes a string expression's bytes (NUL-padded to `size`) at `ptr + off`.
    /// Returns the block where the code goes on (`join` branches).
    fn put_str(
        &mut self,
        cur: Block,
        e: &Expr,
        ptr: Value,
        off: u32,
        size: u32,
        ptr_ty: Type,
    ) -> Block {
        match &e.kind {
            ExprKind::Join { ptr: src, user, n } => {
                return self.put_join(cur, src, *user, *n, ptr, off, size, ptr_ty)
            }
            ExprKind::Builtin(Builtin::Comm) => {
                let p = if off == 0 {
                    ptr
                } else {
                    self.f
                        .push(cur, Op::PtrAdd(ptr, Operand::Imm(off as i64)), ptr_ty)
                };
                let n = self.u64c(cur, COMM_LEN as u64);
                self.call(cur, "get_current_comm", vec![p, n], Type::I64);
            }
            ExprKind::StrRead {
                ptr: src,
                user,
                len,
            } => {
                let mut c = cur;
                let from = self.int(&mut c, src);
                let p = if off == 0 {
                    ptr
                } else {
                    self.f
                        .push(c, Op::PtrAdd(ptr, Operand::Imm(off as i64)), ptr_ty)
                };
                let n = self.u64c(c, (*len).min(size) as u64);
                let helper = if *user {
                    "probe_read_user_str"
                } else {
                    "probe_read_kernel_str"
                };
                self.call(c, helper, vec![p, n, from], Type::I64);
            }
            ExprKind::RecordStr {
                offset,
                len,
                data_loc,
            } => {
                // A `__data_loc` u32 at `offset` locates the data: its low 16 bits are
                // where it starts in the record. The string is copied up to its NUL by
                // probe_read_kernel_str (from the record's address as a number: a moved
                // context pointer cannot be loaded through), so the bytes after it stay
                // as they were (zero in keys: a char array's stale bytes after its NUL
                // would make equal names different keys).
                let start: Operand = if *data_loc {
                    let loc = self.f.push(
                        cur,
                        Op::Load {
                            ptr: self.ctx,
                            off: *offset as i16,
                        },
                        Type::U32,
                    );
                    let loc = self.f.push(cur, Op::Ext(ExtOp::Zext, loc), Type::U64);
                    self.bin(cur, BinOp::And, loc, Operand::Imm(0xffff)).into()
                } else {
                    Operand::Imm(i64::from(*offset))
                };
                let from = self.f.push(cur, Op::PtrAdd(self.ctx, start), Type::U64);
                let p = if off == 0 {
                    ptr
                } else {
                    self.f
                        .push(cur, Op::PtrAdd(ptr, Operand::Imm(off as i64)), ptr_ty)
                };
                let n = self.u64c(cur, u64::from((*len).min(size)));
                self.call(cur, "probe_read_kernel_str", vec![p, n, from], Type::I64);
            }
            ExprKind::Str(s) => {
                let mut bytes = s.as_bytes().to_vec();
                bytes.resize(size as usize, 0);
                for (i, chunk) in bytes.chunks(8).enumerate() {
                    let mut w = [0u8; 8];
                    w[..chunk.len()].copy_from_slice(chunk);
                    let v = self.u64c(cur, u64::from_le_bytes(w));
                    self.store(cur, ptr, (off as usize + i * 8) as i16, v);
                }
            }
            _ => {}
        }
        cur
    }

    /// `join(src, n)`: each chunk's first byte zeroed (a record in the ring buffer is
    /// not), then pointer i of the array read and, until one is NULL, its string copied
    /// into chunk i. Every path reaches the returned block.
    #[allow(clippy::too_many_arguments)]
    fn put_join(
        &mut self,
        cur: Block,
        src: &Expr,
        user: bool,
        n: u32,
        ptr: Value,
        off: u32,
        size: u32,
        ptr_ty: Type,
    ) -> Block {
        let chunks = n.min(size / JOIN_EACH);
        for i in 0..chunks {
            self.f.push_void(
                cur,
                Op::Store {
                    ty: IntTy::U8,
                    ptr,
                    off: (off + i * JOIN_EACH) as i16,
                    val: Operand::Imm(0),
                },
            );
        }
        let mut c = cur;
        let base = self.int(&mut c, src);
        let tmp = self.f.add_slot(8, 8);
        let done = self.f.add_block();
        let (read, read_str) = if user {
            ("probe_read_user", "probe_read_user_str")
        } else {
            ("probe_read_kernel", "probe_read_kernel_str")
        };
        for i in 0..chunks {
            let tp = self.f.push(c, Op::SlotAddr(tmp), Type::Ptr(PtrKind::Stack));
            self.store(c, tp, 0, Operand::Imm(0));
            let eight = self.u64c(c, 8);
            let at = self.bin(c, BinOp::Add, base, Operand::Imm(i64::from(i) * 8));
            self.call(c, read, vec![tp, eight, at], Type::I64);
            let tp = self.f.push(c, Op::SlotAddr(tmp), Type::Ptr(PtrKind::Stack));
            let s = self.load(c, tp, 0);
            let next = self.f.add_block();
            self.br(
                c,
                Cond::Eq,
                s,
                Operand::Imm(0),
                BlockCall::new(done, vec![]),
                BlockCall::new(next, vec![]),
            );
            c = next;
            let d = self.f.push(
                c,
                Op::PtrAdd(ptr, Operand::Imm(i64::from(off + i * JOIN_EACH))),
                ptr_ty,
            );
            let m = self.u64c(c, u64::from(JOIN_EACH));
            self.call(c, read_str, vec![d, m, s], Type::I64);
        }
        self.jump(c, done, vec![]);
        done
    }

    /// `emit`: reserve a record in the ring buffer, fill it, submit it; when the buffer
    /// is full, count the lost record instead.
    fn emit(&mut self, mut cur: Block, event: usize, fields: &[Expr]) -> Block {
        let Some(Ring { ring, lost }) = self.ring else {
            return cur;
        };
        let def = &self.probes.events[event];
        let (offs, size) = def.layout();
        let sizes: Vec<u32> = def.fields.iter().map(|f| f.size()).collect();
        // Integer fields are computed before the reservation: between reserve and submit
        // nothing may fail to reach the submit.
        let mut ints: Vec<Option<Value>> = Vec::new();
        for e in fields {
            ints.push((e.ty == Ty::Int).then(|| self.int(&mut cur, e)));
        }
        let mref = self
            .f
            .push(cur, Op::MapRef(ring), Type::Ptr(PtrKind::Map(ring)));
        let n = self.u64c(cur, size as u64);
        let flags = self.u64c(cur, 0);
        let r = self.call(
            cur,
            "ringbuf_reserve",
            vec![mref, n, flags],
            Type::Ptr(PtrKind::MemOrNull(size)),
        );
        let fill = self.f.add_block();
        let full = self.f.add_block();
        let join = self.f.add_block();
        self.br(
            cur,
            Cond::Eq,
            r,
            Operand::Imm(0),
            BlockCall::new(full, vec![]),
            BlockCall::new(fill, vec![]),
        );
        self.store(fill, r, 0, Operand::Imm(event as i64));
        let mut fill = fill;
        for (((e, &off), &fsize), int) in fields.iter().zip(&offs).zip(&sizes).zip(ints) {
            match int {
                Some(v) => self.store(fill, r, off as i16, v),
                None => fill = self.put_str(fill, e, r, off, fsize, Type::Ptr(PtrKind::Mem(size))),
            }
        }
        let zero = self.u64c(fill, 0);
        self.f
            .push_void(fill, Op::Call(helper("ringbuf_submit"), vec![r, zero]));
        self.jump(fill, join, vec![]);

        // No room: count it, so the user is told how many records were lost.
        ring::count_lost(&mut self.f, full, lost, &mut self.lost_key, join);
        join
    }

    /// One aggregation statement; returns the block where the probe continues.
    fn aggregate(
        &mut self,
        mut cur: Block,
        map: usize,
        keys: &[Expr],
        value: Option<&Expr>,
    ) -> Block {
        let def = &self.probes.maps[map];
        let func = def.func;
        let (offs, key_size) = def.key_layout();
        let id = MapId::from_index(map);
        let fields = def.keys.clone();
        let kslot = self.fill_key(&mut cur, keys, &fields, &offs, key_size);
        let x = value.map(|e| self.int(&mut cur, e));
        let xv = x.unwrap_or_else(|| self.u64c(cur, 0));
        if let Some(x) = x {
            let bucket = match func {
                AggFunc::Hist => Some(self.hist_bucket(cur, x)),
                AggFunc::Lhist { min, max, step } => {
                    Some(self.lhist_bucket(cur, x, min, max, step))
                }
                _ => None,
            };
            if let Some((next, b)) = bucket {
                cur = next;
                let off = offs.last().copied().unwrap_or(0);
                let kp2 = self
                    .f
                    .push(cur, Op::SlotAddr(kslot), Type::Ptr(PtrKind::Stack));
                self.store(cur, kp2, off as i16, b);
            }
        }
        let kp = self
            .f
            .push(cur, Op::SlotAddr(kslot), Type::Ptr(PtrKind::Stack));
        let mref = self
            .f
            .push(cur, Op::MapRef(id), Type::Ptr(PtrKind::Map(id)));
        let r = self.call(
            cur,
            "map_lookup_elem",
            vec![mref, kp],
            Type::Ptr(PtrKind::MapValueOrNull(id)),
        );
        let array = def.is_array();
        let update = self.f.add_block();
        let join = self.f.add_block();
        // An array's slot always exists (the check is for the verifier): nothing to insert.
        let insert = if array { join } else { self.f.add_block() };
        self.br(
            cur,
            Cond::Eq,
            r,
            Operand::Imm(0),
            BlockCall::new(insert, vec![]),
            BlockCall::new(update, vec![]),
        );

        // Update in place.
        let one = Operand::Imm(1);
        match func {
            AggFunc::Count | AggFunc::Hist | AggFunc::Lhist { .. } | AggFunc::Sum => {
                let add: Operand = if func == AggFunc::Sum {
                    x.map_or(one, Operand::Value)
                } else {
                    one
                };
                let c = self.load(update, r, 0);
                let c1 = self.bin(update, BinOp::Add, c, add);
                self.store(update, r, 0, c1);
                self.jump(update, join, vec![]);
            }
            AggFunc::Min | AggFunc::Max | AggFunc::Avg | AggFunc::Stats => {
                let x = xv;
                let c = self.load(update, r, 0);
                let c1 = self.bin(update, BinOp::Add, c, one);
                self.store(update, r, 0, c1);
                let s = self.load(update, r, 8);
                let s1 = self.bin(update, BinOp::Add, s, x);
                self.store(update, r, 8, s1);
                // This CPU's first value (the entry may have been made on another CPU,
                // leaving this CPU's copy zeroed) sets min and max.
                let first = self.f.add_block();
                let check_min = self.f.add_block();
                let set_min = self.f.add_block();
                let check_max = self.f.add_block();
                let set_max = self.f.add_block();
                let to = |b: Block| BlockCall::new(b, vec![]);
                self.br(
                    update,
                    Cond::Eq,
                    c,
                    Operand::Imm(0),
                    to(first),
                    to(check_min),
                );
                self.store(first, r, 16, x);
                self.store(first, r, 24, x);
                self.jump(first, join, vec![]);
                let mn = self.load(check_min, r, 16);
                self.br(
                    check_min,
                    Cond::Ult,
                    x,
                    mn.into(),
                    to(set_min),
                    to(check_max),
                );
                self.store(set_min, r, 16, x);
                self.jump(set_min, check_max, vec![]);
                let mx = self.load(check_max, r, 24);
                self.br(check_max, Cond::Ugt, x, mx.into(), to(set_max), to(join));
                self.store(set_max, r, 24, x);
                self.jump(set_max, join, vec![]);
            }
        }

        if array {
            return join;
        }
        // Insert the first value.
        let vslot = self.f.add_slot(def.value_size(), 8);
        let vp = self
            .f
            .push(insert, Op::SlotAddr(vslot), Type::Ptr(PtrKind::Stack));
        let first: Vec<Operand> = match func {
            AggFunc::Count | AggFunc::Hist | AggFunc::Lhist { .. } => vec![one],
            AggFunc::Sum => vec![x.map_or(one, Operand::Value)],
            _ => {
                let x = Operand::Value(xv);
                vec![one, x, x, x]
            }
        };
        for (i, v) in first.into_iter().enumerate() {
            self.store(insert, vp, (i * 8) as i16, v);
        }
        let kp = self
            .f
            .push(insert, Op::SlotAddr(kslot), Type::Ptr(PtrKind::Stack));
        let flags = self.u64c(insert, 0);
        self.call(
            insert,
            "map_update_elem",
            vec![mref, kp, vp, flags],
            Type::I64,
        );
        self.jump(insert, join, vec![]);
        join
    }
}
