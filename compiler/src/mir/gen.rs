//! A generator of random well-typed MIR modules, for testing that what the MIR verifier
//! accepts the kernel verifier accepts too (issue 8 §8). Programs are tracepoint programs
//! with helper calls, ctx loads, stack slots, map lookups with null checks, ring buffer
//! records, diamonds with block parameters, counted loops, subprogram calls, and enough
//! values kept live to force spills. Deterministic for a seed; no IO.

use super::func::{BlockCall, Function, MapDef, Module, Op, Operand, Term};
use super::helpers;
use super::types::{BinOp, Cond, ExtOp, Hook, IntTy, MapKind, PtrKind, Type};
use super::{Block, FuncId, MapId, Value};

/// xorshift64*: small, deterministic, good enough for test inputs.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> Option<T> {
        xs.get(self.below(xs.len() as u64) as usize).copied()
    }
}

const IMMS: [i64; 10] = [0, 1, 2, 7, 31, 255, -1, 0x7fff_ffff, 0xffff_ffff, 1 << 40];
const SLOT: u32 = 64;

struct Gen<'a> {
    rng: &'a mut Rng,
    f: Function,
    cur: Block,
    /// Values usable here (dominating), by type.
    pool: Vec<(Value, IntTy)>,
    ctx: Value,
    /// Bytes of the slot written on every path to here.
    init: Vec<bool>,
    subs: Vec<FuncId>,
    hash: MapId,
    ring: MapId,
    budget: u32,
    /// Integers only: no memory, helpers or maps (for the differential test).
    pure: bool,
}

/// A random module: two maps, a ring buffer, up to two subprograms and one program.
pub fn module(rng: &mut Rng) -> Module {
    let mut m = Module::default();
    let hash = m.add_map(MapDef {
        name: "h".into(),
        kind: MapKind::Hash,
        key_size: 8,
        value_size: 16,
        max_entries: 64,
        flags: 0,
    });
    let ring = m.add_map(MapDef {
        name: "r".into(),
        kind: MapKind::RingBuf,
        key_size: 0,
        value_size: 0,
        max_entries: 4096,
        flags: 0,
    });
    let nsubs = rng.below(3);
    let mut subs = Vec::new();
    for k in 0..nsubs {
        let f = subprogram(rng, &format!("sub{k}"));
        subs.push(m.add_func(f));
    }
    let mut f = Function::new(
        "prog",
        Some(Hook::Tracepoint {
            category: "syscalls".into(),
            name: "sys_enter_openat".into(),
        }),
        vec![Type::Ptr(PtrKind::Ctx)],
        IntTy::I64,
    );
    f.add_slot(SLOT, 8);
    let ctx = f.block(Block(0)).params[0];
    let mut g = Gen {
        rng,
        f,
        cur: Block(0),
        pool: Vec::new(),
        ctx,
        init: vec![false; SLOT as usize],
        subs,
        hash,
        ring,
        budget: 40,
        pure: false,
    };
    g.seq(3);
    g.finish_program();
    m.add_func(g.f);
    m
}

/// A random integer-only module for the differential test: subprograms and an XDP
/// program computing a value from constants (arithmetic, diamonds, counted loops, calls)
/// and returning it, its high half folded into the low one (XDP returns 32 bits).
pub fn pure_module(rng: &mut Rng) -> Module {
    let mut m = Module::default();
    let mut subs = Vec::new();
    for k in 0..rng.below(3) {
        let f = subprogram(rng, &format!("sub{k}"));
        subs.push(m.add_func(f));
    }
    let f = Function::new(
        "prog",
        Some(Hook::Xdp),
        vec![Type::Ptr(PtrKind::Ctx)],
        IntTy::I64,
    );
    let ctx = f.block(Block(0)).params[0];
    let mut g = Gen {
        rng,
        f,
        cur: Block(0),
        pool: Vec::new(),
        ctx,
        init: Vec::new(),
        subs,
        hash: MapId(0),
        ring: MapId(0),
        budget: 40,
        pure: true,
    };
    g.seq(3);
    let vals: Vec<Value> = g
        .pool
        .iter()
        .filter(|p| p.1 == IntTy::U64)
        .map(|p| p.0)
        .collect();
    let mut acc = g.push(Op::Iconst(0x1234_5678_9abc_def0), IntTy::U64);
    for v in vals {
        let k = g.rng.below(63) as i64 + 1;
        let rot = g.push(Op::Binary(BinOp::Shl, acc, Operand::Imm(k)), IntTy::U64);
        acc = g.push(Op::Binary(BinOp::Xor, rot, Operand::Value(v)), IntTy::U64);
    }
    let hi = g.push(Op::Binary(BinOp::Lshr, acc, Operand::Imm(32)), IntTy::U64);
    let r = g.push(Op::Binary(BinOp::Xor, acc, Operand::Value(hi)), IntTy::U64);
    let cur = g.cur;
    g.f.set_term(cur, Term::Return(r));
    m.add_func(g.f);
    m
}

/// `(u64, u64) -> u64` arithmetic, maybe with a counted loop.
fn subprogram(rng: &mut Rng, name: &str) -> Function {
    let f = Function::new(name, None, vec![Type::U64, Type::U64], IntTy::U64);
    let params = f.block(Block(0)).params.clone();
    let mut g = Gen {
        rng,
        f,
        cur: Block(0),
        pool: params.iter().map(|&v| (v, IntTy::U64)).collect(),
        ctx: Value(0),
        init: Vec::new(),
        subs: Vec::new(),
        hash: MapId(0),
        ring: MapId(0),
        budget: 12,
        pure: true,
    };
    for _ in 0..4 {
        g.arith();
    }
    if g.rng.chance(50) {
        g.counted_loop();
    }
    let r = g.value(IntTy::U64);
    let cur = g.cur;
    g.f.set_term(cur, Term::Return(r));
    g.f
}

impl Gen<'_> {
    fn push(&mut self, op: Op, ty: IntTy) -> Value {
        let v = self.f.push(self.cur, op, Type::Int(ty));
        self.pool.push((v, ty));
        v
    }

    fn konst(&mut self, ty: IntTy) -> i64 {
        loop {
            let c = self.rng.pick(&IMMS).unwrap_or(0);
            if ty.holds(c) {
                return c;
            }
        }
    }

    /// A value of type `ty` from the pool, or a new constant.
    fn value(&mut self, ty: IntTy) -> Value {
        let of: Vec<Value> = self
            .pool
            .iter()
            .filter(|p| p.1 == ty)
            .map(|p| p.0)
            .collect();
        match self.rng.pick(&of) {
            Some(v) if self.rng.chance(85) => v,
            _ => {
                let c = self.konst(ty);
                self.push(Op::Iconst(c), ty)
            }
        }
    }

    fn alu_ty(&mut self) -> IntTy {
        if self.rng.chance(30) {
            IntTy::U32
        } else {
            IntTy::U64
        }
    }

    fn arith(&mut self) {
        let ty = self.alu_ty();
        let op = self.rng.pick(&BinOp::ALL).unwrap_or(BinOp::Add);
        let a = self.value(ty);
        let b = if op.is_shift() {
            Operand::Imm(self.rng.below(u64::from(ty.bits)) as i64)
        } else if self.rng.chance(40) {
            let c = self.konst(ty);
            Operand::Imm(if c == 0 && matches!(op, BinOp::Div | BinOp::Mod) {
                3
            } else {
                c
            })
        } else {
            Operand::Value(self.value(ty))
        };
        self.push(Op::Binary(op, a, b), ty);
        if self.rng.chance(20) {
            let from = self.value(IntTy::U32);
            let (op, to) = if self.rng.chance(50) {
                (ExtOp::Zext, IntTy::U64)
            } else {
                (ExtOp::Sext, IntTy::I64)
            };
            let v = self.f.push(self.cur, Op::Ext(op, from), Type::Int(to));
            if to == IntTy::U64 {
                self.pool.push((v, to));
            }
        }
        if self.rng.chance(15) {
            let a = self.value(IntTy::U64);
            self.push(Op::Ext(ExtOp::Trunc, a), IntTy::U32);
        }
    }

    fn seq(&mut self, depth: u32) {
        let n = 3 + self.rng.below(6);
        for _ in 0..n {
            if self.budget == 0 {
                return;
            }
            self.budget -= 1;
            let kind = self.rng.below(11);
            if self.pure && matches!(kind, 3 | 4 | 5 | 8 | 9) {
                self.arith();
                continue;
            }
            match kind {
                0..=2 => self.arith(),
                3 => self.ctx_load(),
                4 => self.helper(),
                5 => self.stack(),
                6 if depth > 0 => self.diamond(depth - 1),
                7 if depth > 0 => self.counted_loop(),
                8 => self.lookup(),
                9 => self.ring(),
                10 if !self.subs.is_empty() => self.call_sub(),
                _ => self.arith(),
            }
        }
    }

    fn ctx_load(&mut self) {
        let off = 16 + 8 * self.rng.below(4) as i16;
        let ctx = self.ctx;
        self.push(Op::Load { ptr: ctx, off }, IntTy::U64);
    }

    fn helper(&mut self) {
        let (name, ty) = match self.rng.below(4) {
            0 => ("ktime_get_ns", IntTy::U64),
            1 => ("get_current_pid_tgid", IntTy::U64),
            2 => ("get_current_uid_gid", IntTy::U64),
            _ => ("get_smp_processor_id", IntTy::U32),
        };
        if let Some(h) = helpers::by_name(name) {
            self.push(Op::Call(h.id, vec![]), ty);
        }
    }

    fn slot_addr(&mut self) -> Value {
        self.f.push(
            self.cur,
            Op::SlotAddr(super::Slot(0)),
            Type::Ptr(PtrKind::Stack),
        )
    }

    fn stack(&mut self) {
        let wide = self.rng.chance(60);
        let (ty, bytes) = if wide {
            (IntTy::U64, 8)
        } else {
            (IntTy::U32, 4)
        };
        let off = (self.rng.below(u64::from(SLOT) / bytes) * bytes) as usize;
        let p = self.slot_addr();
        let initialised = self
            .init
            .get(off..off + bytes as usize)
            .is_some_and(|s| s.iter().all(|&b| b));
        if initialised && self.rng.chance(50) {
            self.push(
                Op::Load {
                    ptr: p,
                    off: off as i16,
                },
                ty,
            );
        } else {
            let val = if self.rng.chance(30) {
                Operand::Imm(self.konst(ty))
            } else {
                Operand::Value(self.value(ty))
            };
            self.f.push_void(
                self.cur,
                Op::Store {
                    ty,
                    ptr: p,
                    off: off as i16,
                    val,
                },
            );
            for b in self.init.iter_mut().skip(off).take(bytes as usize) {
                *b = true;
            }
        }
    }

    /// `if a cond b { x = .. } else { x = .. }`, x a parameter of the join block.
    fn diamond(&mut self, depth: u32) {
        let ty = self.alu_ty();
        let a = self.value(ty);
        let b = if self.rng.chance(50) {
            Operand::Imm(self.konst(ty))
        } else {
            Operand::Value(self.value(ty))
        };
        let cond = self.rng.pick(&Cond::ALL).unwrap_or(Cond::Eq);
        let (then, els, join) = (self.f.add_block(), self.f.add_block(), self.f.add_block());
        let x = self.f.add_block_param(join, Type::U64);
        let cur = self.cur;
        self.f.set_term(
            cur,
            Term::Br {
                cond,
                a,
                b,
                then: BlockCall::new(then, vec![]),
                els: BlockCall::new(els, vec![]),
            },
        );
        let (pool, init) = (self.pool.clone(), self.init.clone());
        for blk in [then, els] {
            self.cur = blk;
            self.seq(depth);
            let r = self.value(IntTy::U64);
            let cur = self.cur;
            self.f
                .set_term(cur, Term::Jump(BlockCall::new(join, vec![r])));
            self.pool = pool.clone();
            self.init = init.clone();
        }
        self.cur = join;
        self.pool.push((x, IntTy::U64));
    }

    /// `for i in 0..N { acc = f(acc, i) }`.
    fn counted_loop(&mut self) {
        let n = 1 + self.rng.below(16) as i64;
        let zero = self.push(Op::Iconst(0), IntTy::U64);
        let acc0 = self.value(IntTy::U64);
        let (header, exit) = (self.f.add_block(), self.f.add_block());
        let i = self.f.add_block_param(header, Type::U64);
        let acc = self.f.add_block_param(header, Type::U64);
        let cur = self.cur;
        self.f
            .set_term(cur, Term::Jump(BlockCall::new(header, vec![zero, acc0])));
        self.cur = header;
        let saved = self.pool.clone();
        self.pool.push((i, IntTy::U64));
        self.pool.push((acc, IntTy::U64));
        let op = self
            .rng
            .pick(&[BinOp::Add, BinOp::Xor, BinOp::Mul, BinOp::Sub])
            .unwrap_or(BinOp::Add);
        let t = self.push(Op::Binary(op, acc, Operand::Value(i)), IntTy::U64);
        if self.rng.chance(40) && !self.pure {
            self.helper();
        }
        let k = self.konst(IntTy::U64);
        let acc2 = self.push(Op::Binary(BinOp::Add, t, Operand::Imm(k)), IntTy::U64);
        let i2 = self.push(Op::Binary(BinOp::Add, i, Operand::Imm(1)), IntTy::U64);
        self.f.set_term(
            header,
            Term::Br {
                cond: Cond::Ult,
                a: i2,
                b: Operand::Imm(n),
                then: BlockCall::new(header, vec![i2, acc2]),
                els: BlockCall::new(exit, vec![]),
            },
        );
        self.cur = exit;
        self.pool = saved;
        self.pool.push((acc2, IntTy::U64));
    }

    fn key(&mut self) -> Value {
        let p = self.slot_addr();
        let v = self.value(IntTy::U64);
        self.f.push_void(
            self.cur,
            Op::Store {
                ty: IntTy::U64,
                ptr: p,
                off: 0,
                val: Operand::Value(v),
            },
        );
        for b in self.init.iter_mut().take(8) {
            *b = true;
        }
        p
    }

    /// A hash lookup, its null check, a read and a write of the value.
    fn lookup(&mut self) {
        let map = self.f.push(
            self.cur,
            Op::MapRef(self.hash),
            Type::Ptr(PtrKind::Map(self.hash)),
        );
        let key = self.key();
        let found = self.f.push(
            self.cur,
            Op::Call(1, vec![map, key]),
            Type::Ptr(PtrKind::MapValueOrNull(self.hash)),
        );
        let (nn, join) = (self.f.add_block(), self.f.add_block());
        let x = self.f.add_block_param(join, Type::U64);
        let dflt = self.value(IntTy::U64);
        let cur = self.cur;
        self.f.set_term(
            cur,
            Term::Br {
                cond: Cond::Eq,
                a: found,
                b: Operand::Imm(0),
                then: BlockCall::new(join, vec![dflt]),
                els: BlockCall::new(nn, vec![]),
            },
        );
        self.cur = nn;
        let saved = self.pool.clone();
        let off = 8 * self.rng.below(2) as i16;
        let old = self.push(Op::Load { ptr: found, off }, IntTy::U64);
        let new = self.push(Op::Binary(BinOp::Add, old, Operand::Imm(1)), IntTy::U64);
        self.f.push_void(
            self.cur,
            Op::Store {
                ty: IntTy::U64,
                ptr: found,
                off: 8 - off,
                val: Operand::Value(new),
            },
        );
        if self.rng.chance(30) {
            let by = self.value(IntTy::U64);
            self.f.push_void(
                self.cur,
                Op::AtomicAdd {
                    ty: IntTy::U64,
                    ptr: found,
                    off,
                    val: by,
                },
            );
        }
        self.f
            .set_term(nn, Term::Jump(BlockCall::new(join, vec![new])));
        self.pool = saved;
        self.cur = join;
        self.pool.push((x, IntTy::U64));
    }

    /// Reserve a record, fill it, submit or discard it.
    fn ring(&mut self) {
        let map = self.f.push(
            self.cur,
            Op::MapRef(self.ring),
            Type::Ptr(PtrKind::Map(self.ring)),
        );
        let size = self.f.push(self.cur, Op::Iconst(16), Type::U64);
        let zero = self.f.push(self.cur, Op::Iconst(0), Type::U64);
        let rec = self.f.push(
            self.cur,
            Op::Call(131, vec![map, size, zero]),
            Type::Ptr(PtrKind::MemOrNull(16)),
        );
        let (nn, join) = (self.f.add_block(), self.f.add_block());
        let cur = self.cur;
        self.f.set_term(
            cur,
            Term::Br {
                cond: Cond::Eq,
                a: rec,
                b: Operand::Imm(0),
                then: BlockCall::new(join, vec![]),
                els: BlockCall::new(nn, vec![]),
            },
        );
        self.cur = nn;
        let saved = self.pool.clone();
        let v = self.value(IntTy::U64);
        self.f.push_void(
            nn,
            Op::Store {
                ty: IntTy::U64,
                ptr: rec,
                off: 0,
                val: Operand::Value(v),
            },
        );
        let w = self.value(IntTy::U32);
        self.f.push_void(
            nn,
            Op::Store {
                ty: IntTy::U32,
                ptr: rec,
                off: 8,
                val: Operand::Value(w),
            },
        );
        self.f.push_void(
            nn,
            Op::Store {
                ty: IntTy::U32,
                ptr: rec,
                off: 12,
                val: Operand::Imm(0),
            },
        );
        let id = if self.rng.chance(80) { 132 } else { 133 };
        self.f.push_void(nn, Op::Call(id, vec![rec, zero]));
        self.f
            .set_term(nn, Term::Jump(BlockCall::new(join, vec![])));
        self.pool = saved;
        self.cur = join;
    }

    fn call_sub(&mut self) {
        let Some(g) = self.rng.pick(&self.subs.clone()) else {
            return;
        };
        let a = self.value(IntTy::U64);
        let b = self.value(IntTy::U64);
        self.push(Op::CallFn(g, vec![a, b]), IntTy::U64);
    }

    /// Sum every live 64-bit value (keeping them all live to here), store it, return 0.
    fn finish_program(&mut self) {
        let vals: Vec<Value> = self
            .pool
            .iter()
            .filter(|p| p.1 == IntTy::U64)
            .map(|p| p.0)
            .collect();
        let mut acc = self.push(Op::Iconst(0), IntTy::U64);
        for v in vals {
            acc = self.push(Op::Binary(BinOp::Add, acc, Operand::Value(v)), IntTy::U64);
        }
        let p = self.slot_addr();
        self.f.push_void(
            self.cur,
            Op::Store {
                ty: IntTy::U64,
                ptr: p,
                off: 8,
                val: Operand::Value(acc),
            },
        );
        let r = self.f.push(self.cur, Op::Iconst(0), Type::I64);
        let cur = self.cur;
        self.f.set_term(cur, Term::Return(r));
    }
}
