//! Stateful pseudo-ops as MIR (issue 15). A rate limit is GCRA, the token bucket kept as
//! one u64 per key: the theoretical arrival time (TAT) of the key's next packet.
//!
//! ```text
//! now = ktime_get_ns(); p = lookup(map, key)
//! absent:          insert now + T                  -> within (a new key has its burst)
//! TAT <= now:      *p = now + T                    -> within (idle: the bucket is full)
//! TAT - now > tau: nothing                         -> over   (no token left)
//! else:            atomic *p += T                  -> within (one token taken)
//! ```
//!
//! `T` is the interval between packets at the rate, `tau` the tolerance `(burst-1)·T`.
//! The map is shared by every CPU: taking a token is an atomic add, so CPUs racing on one
//! key cannot let more than the rate through; only a reset after an idle spell is a plain
//! store (two CPUs resetting together lose one token, in favour of the packet).

use super::rules::R;
use crate::mir::{
    helpers, BinOp, Block, BlockCall, Cond, IntTy, Op, Operand, PtrKind, Term, Type, Value,
};

/// BPF_ANY: insert or replace.
const BPF_ANY: i64 = 0;

/// One `Inst::Rate`.
pub(super) struct Rate<'a> {
    pub map: &'a str,
    pub keys: &'a [(i16, u8)],
    pub interval_ns: u64,
    pub tolerance_ns: u64,
}

impl R<'_> {
    /// Lowers one rate test in `cur`; returns the block that continues and the result
    /// (u32: 1 over the rate, 0 within).
    pub(super) fn rate(
        &mut self,
        cur: Block,
        src: u32,
        r: &Rate<'_>,
    ) -> Result<(Block, Value), String> {
        let map = self.map(r.map)?;
        let ktime = helpers::by_name("ktime_get_ns").map_or(5, |h| h.id);
        let update = helpers::by_name("map_update_elem").map_or(2, |h| h.id);
        let now = self.b.f.push(cur, Op::Call(ktime, vec![]), Type::U64);
        let key = match r.keys {
            [] => {
                self.store(cur, IntTy::U32, self.slots.key, 0, Operand::Imm(0));
                self.slot_addr(cur, self.slots.key, 0)
            }
            [(off, _)] => self.slot_addr(cur, self.slots.rec, i64::from(*off)),
            pieces => {
                let len: u32 = pieces.iter().map(|&(_, n)| u32::from(n)).sum();
                let slot = self.b.f.add_slot(len.div_ceil(8) * 8, 8);
                let rec = self.slot_addr(cur, self.slots.rec, 0);
                let dst = self.slot_addr(cur, slot, 0);
                let mut at = 0i16;
                for &(off, n) in pieces {
                    let mut k = 0i16;
                    let n = i16::from(n);
                    while k < n {
                        let size = [4i16, 2, 1]
                            .into_iter()
                            .find(|&s| (off + k) % s == 0 && (at + k) % s == 0 && k + s <= n)
                            .unwrap_or(1);
                        let ty = match size {
                            4 => IntTy::U32,
                            2 => IntTy::U16,
                            _ => IntTy::U8,
                        };
                        let v = self.load(cur, ty, rec, off + k);
                        self.b.f.push_void(
                            cur,
                            Op::Store {
                                ty,
                                ptr: dst,
                                off: at + k,
                                val: v.into(),
                            },
                        );
                        k += size;
                    }
                    at += n;
                }
                dst
            }
        };
        let interval = self.b.f.iconst(cur, IntTy::U64, clamp(r.interval_ns));
        let p = self.lookup(cur, map, key);
        let done = self.new_block(src);
        let result = self.b.f.add_block_param(done, Type::U32);
        let hit = self.new_block(src);
        let miss = self.new_block(src);
        self.b.set_term(
            cur,
            Term::Br {
                cond: Cond::Eq,
                a: p,
                b: Operand::Imm(0),
                then: BlockCall::new(miss, vec![]),
                els: BlockCall::new(hit, vec![]),
            },
        );
        // Absent (a new key of an LRU table; never for the array of `rate()`).
        let next = self.b.f.push(
            miss,
            Op::Binary(BinOp::Add, now, interval.into()),
            Type::U64,
        );
        let val = self.b.f.add_slot(8, 8);
        let at = self.slot_addr(miss, val, 0);
        self.b.f.push_void(
            miss,
            Op::Store {
                ty: IntTy::U64,
                ptr: at,
                off: 0,
                val: next.into(),
            },
        );
        let m = self
            .b
            .f
            .push(miss, Op::MapRef(map), Type::Ptr(PtrKind::Map(map)));
        let flags = self.b.f.iconst(miss, IntTy::U64, BPF_ANY);
        // The key again: a value made in `cur` may not survive the call's clobbers as a
        // stack pointer in every allocation, and recomputing it costs one instruction.
        let key2 = match r.keys {
            [] => self.slot_addr(miss, self.slots.key, 0),
            [(off, _)] => self.slot_addr(miss, self.slots.rec, i64::from(*off)),
            _ => key,
        };
        self.b
            .f
            .push(miss, Op::Call(update, vec![m, key2, at, flags]), Type::I64);
        let zero = self.b.f.iconst(miss, IntTy::U32, 0);
        self.jump(miss, done, vec![zero]);
        // Present.
        let tat = self.load(hit, IntTy::U64, p, 0);
        let reset = self.new_block(src);
        let busy = self.new_block(src);
        self.b.set_term(
            hit,
            Term::Br {
                cond: Cond::Ule,
                a: tat,
                b: now.into(),
                then: BlockCall::new(reset, vec![]),
                els: BlockCall::new(busy, vec![]),
            },
        );
        let fresh = self.b.f.push(
            reset,
            Op::Binary(BinOp::Add, now, interval.into()),
            Type::U64,
        );
        self.b.f.push_void(
            reset,
            Op::Store {
                ty: IntTy::U64,
                ptr: p,
                off: 0,
                val: fresh.into(),
            },
        );
        let zero = self.b.f.iconst(reset, IntTy::U32, 0);
        self.jump(reset, done, vec![zero]);
        let ahead = self
            .b
            .f
            .push(busy, Op::Binary(BinOp::Sub, tat, now.into()), Type::U64);
        let tolerance = self.b.f.iconst(busy, IntTy::U64, clamp(r.tolerance_ns));
        let take = self.new_block(src);
        let over = self.new_block(src);
        self.b.set_term(
            busy,
            Term::Br {
                cond: Cond::Ugt,
                a: ahead,
                b: tolerance.into(),
                then: BlockCall::new(over, vec![]),
                els: BlockCall::new(take, vec![]),
            },
        );
        let one = self.b.f.iconst(over, IntTy::U32, 1);
        self.jump(over, done, vec![one]);
        let interval2 = self.b.f.iconst(take, IntTy::U64, clamp(r.interval_ns));
        self.b.f.push_void(
            take,
            Op::AtomicAdd {
                ty: IntTy::U64,
                ptr: p,
                off: 0,
                val: interval2,
            },
        );
        let zero = self.b.f.iconst(take, IntTy::U32, 0);
        self.jump(take, done, vec![zero]);
        Ok((done, result))
    }
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
