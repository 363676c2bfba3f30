//! Optimisation passes on MIR (issue 8 §6), each keeping a verified function verified:
//!
//! - [`fold`]: constant folding (an ALU op or extension of constants becomes a constant)
//!   and branch folding (a compare of constants, or a branch whose two edges are the
//!   same, becomes a jump); blocks no longer reached are dropped.
//! - [`known`]: a branch whose outcome an earlier branch on the same test already
//!   decided, on every path of an edge into it, is skipped on that edge (a rule's
//!   `ip4` test again after the rule before it tested `ip4` and missed its set).
//! - [`thread`]: jump threading: an edge into an empty block that only jumps on goes
//!   straight to where it goes.
//! - [`layout`]: block order for fall-through: each block is followed, where it can be,
//!   by its `els` successor (lowering puts the way on there: the inside of a bounds
//!   check, the next rule), so most edges on the common path cost no jump.
//!
//! - [`dead_stores`]: stores to stack bytes nothing ever reads are dropped.
//!
//! Identities such as `xor x, 0` are deliberately left alone: lowering uses them to give
//! a value a fresh identity for the kernel verifier (see `ir::to_mir::rules`).

use super::build::{compact, rebuild};
use super::func::{BlockCall, Function, Op, Operand, Term};
use super::interp::{alu, compare};
use super::types::{ExtOp, Type};
use super::{Block, Module, Value};

/// Where each block went: `map[old] = Some(new)`, `None` when it was dropped.
pub type BlockMap = Vec<Option<Block>>;

/// The passes in the order the filter pipeline runs them, on every function; per
/// function, where each of its original blocks went.
pub fn optimize(m: &mut Module) -> Vec<BlockMap> {
    m.funcs.iter_mut().map(optimize_function).collect()
}

pub fn optimize_function(f: &mut Function) -> BlockMap {
    let mut map: BlockMap = f.block_ids().map(Some).collect();
    for pass in [fold, dead_stores, known, thread, layout] {
        if let Some(step) = pass(f) {
            for m in map.iter_mut() {
                *m = m.and_then(|b| step.get(b.index()).copied().flatten());
            }
        }
    }
    map
}

/// Constant and branch folding; the block map when blocks were dropped.
pub fn fold(f: &mut Function) -> Option<BlockMap> {
    // Instructions are visited in block order; an operand defined later (in a block laid
    // out after this one) is simply not folded this time.
    for b in 0..f.blocks.len() {
        let insts = f.blocks[b].insts.clone();
        for i in insts {
            let d = f.inst(i);
            let Some(r) = d.result else { continue };
            let Some(t) = f.ty(r).int() else { continue };
            let folded = match &d.op {
                Op::Binary(op, a, bo) => {
                    let x = f.const_value(*a);
                    let y = match bo {
                        Operand::Imm(c) => Some(*c),
                        Operand::Value(v) => f.const_value(*v),
                    };
                    match (x, y, f.ty(*a).int()) {
                        (Some(x), Some(y), Some(ta)) if ta == t => {
                            Some(alu(*op, t, x as u64, y as u64) as i64)
                        }
                        _ => None,
                    }
                }
                Op::Ext(ExtOp::Zext, a) => f.const_value(*a).and_then(|x| {
                    let from = f.ty(*a).int()?;
                    Some((x as u64 & from.umax()) as i64)
                }),
                _ => None,
            };
            if let Some(c) = folded {
                // Keep the constant in the result type's spelling (u32 bit patterns as
                // non-negative numbers).
                let c = if t.bits < 64 {
                    (c as u64 & t.umax()) as i64
                } else {
                    c
                };
                f.insts[i.index()].op = Op::Iconst(c);
            }
        }
    }
    let mut changed = false;
    for b in 0..f.blocks.len() {
        let Term::Br {
            cond,
            a,
            b: rhs,
            then,
            els,
        } = &f.blocks[b].term
        else {
            continue;
        };
        let taken = if then == els {
            Some(then.clone())
        } else {
            let x = f.const_value(*a);
            let y = match rhs {
                Operand::Imm(c) => Some(*c),
                Operand::Value(v) => f.const_value(*v),
            };
            match (x, y, f.ty(*a)) {
                (Some(x), Some(y), Type::Int(_)) => {
                    let w32 = f.ty(*a).is_32();
                    Some(if compare(*cond, w32, x as u64, y as u64) {
                        then.clone()
                    } else {
                        els.clone()
                    })
                }
                _ => None,
            }
        };
        if let Some(t) = taken {
            f.blocks[b].term = Term::Jump(t);
            changed = true;
        }
    }
    if changed {
        return drop_unreachable(f);
    }
    None
}

/// The test a branch makes, up to the identity of its compared value: `(cond, a, b)` with
/// `a` spelled as the pure ALU op that made it (`and v36, 2` in two blocks is one test).
#[derive(PartialEq, Eq, Clone, Copy)]
struct Test {
    cond: super::types::Cond,
    a: (Option<super::types::BinOp>, Value, Operand),
    b: Operand,
}

fn test_of(f: &Function, b: Block) -> Option<Test> {
    let Term::Br {
        cond, a, b: rhs, ..
    } = &f.block(b).term
    else {
        return None;
    };
    // Integers only: pointer tests (bounds, null checks) carry facts the MIR verifier
    // proves by dominance, which a redirected edge would hide from it.
    f.ty(*a).int()?;
    let a = match f.def_op(*a) {
        Some(Op::Binary(op, x, y)) => (Some(*op), *x, *y),
        _ => (None, *a, Operand::Imm(0)),
    };
    Some(Test {
        cond: *cond,
        a,
        b: *rhs,
    })
}

/// Known-outcome branches: for an edge `P -> B` where `B` only computes and branches on a
/// test that a branch above `P` (up a chain of single-predecessor blocks) already made
/// with a known outcome, the edge goes to `B`'s successor for that outcome directly.
/// `B`'s own values must be used by its branch alone, and it must take no parameters.
pub fn known(f: &mut Function) -> Option<BlockMap> {
    use super::types::Cond;
    let n = f.blocks.len();
    let mut preds: Vec<Vec<Block>> = vec![Vec::new(); n];
    for b in f.block_ids() {
        for s in f.succs(b) {
            if !preds[s.index()].contains(&b) {
                preds[s.index()].push(b);
            }
        }
    }
    // How many times each value is used, to know a block's values serve its branch only.
    let mut uses = vec![0u32; f.values.len()];
    for b in f.block_ids() {
        for &i in &f.block(b).insts {
            for a in f.inst(i).op.args() {
                uses[a.index()] += 1;
            }
        }
        for a in f.block(b).term.args() {
            uses[a.index()] += 1;
        }
    }
    let candidate = |f: &Function, b: Block| -> Option<Test> {
        let d = f.block(b);
        if b == f.entry() || !d.params.is_empty() {
            return None;
        }
        let t = test_of(f, b)?;
        let Term::Br { a, then, els, .. } = &d.term else {
            return None;
        };
        for &i in &d.insts {
            let id = f.inst(i);
            let pure = matches!(id.op, Op::Binary(..) | Op::Iconst(_) | Op::Ext(..));
            let r = id.result?;
            if !pure || r != *a || uses[r.index()] != 1 {
                return None;
            }
        }
        let local = |v: &Value| d.insts.iter().any(|&i| f.inst(i).result == Some(*v));
        if then.args.iter().chain(&els.args).any(local) {
            return None;
        }
        Some(t)
    };
    let negated = |c: Cond| match c {
        Cond::Eq => Some(Cond::Ne),
        Cond::Ne => Some(Cond::Eq),
        _ => None,
    };
    let mut changed = false;
    for b in 0..n {
        let b = Block::from_index(b);
        let Some(t) = candidate(f, b) else { continue };
        let (then, els) = match &f.block(b).term {
            Term::Br { then, els, .. } => (then.clone(), els.clone()),
            _ => continue,
        };
        for &p in &preds[b.index()] {
            // Walk up from the edge p -> b.
            let (mut node, mut child) = (p, b);
            let mut outcome = None;
            for _ in 0..16 {
                if let (
                    Some(u),
                    Term::Br {
                        then: ut, els: ue, ..
                    },
                ) = (test_of(f, node), &f.block(node).term)
                {
                    if ut.block != ue.block {
                        let took_then = ut.block == child;
                        if u == t {
                            outcome = Some(took_then);
                        } else if negated(u.cond) == Some(t.cond) && u.a == t.a && u.b == t.b {
                            outcome = Some(!took_then);
                        }
                        if outcome.is_some() {
                            break;
                        }
                    }
                }
                match preds[node.index()].as_slice() {
                    [q] if node != f.entry() => {
                        child = node;
                        node = *q;
                    }
                    _ => break,
                }
            }
            let Some(taken) = outcome else { continue };
            let to = if taken { then.clone() } else { els.clone() };
            let mut term = f.blocks[p.index()].term.clone();
            let redirect = |bc: &mut BlockCall| {
                if bc.block == b && bc.args.is_empty() {
                    *bc = to.clone();
                }
            };
            match &mut term {
                Term::Jump(x) => redirect(x),
                Term::Br { then, els, .. } => {
                    redirect(then);
                    redirect(els);
                }
                Term::Return(_) => {}
            }
            if term != f.blocks[p.index()].term {
                f.blocks[p.index()].term = term;
                changed = true;
            }
        }
    }
    if changed {
        return drop_unreachable(f);
    }
    None
}

/// Jump threading over empty blocks that jump on without arguments.
pub fn thread(f: &mut Function) -> Option<BlockMap> {
    let n = f.blocks.len();
    // Where an edge into each block really goes.
    let forward = |f: &Function, b: Block| -> Option<Block> {
        let d = f.block(b);
        match &d.term {
            Term::Jump(t) if b != Block(0) && d.params.is_empty() && d.insts.is_empty() => {
                t.args.is_empty().then_some(t.block)
            }
            _ => None,
        }
    };
    let resolve = |f: &Function, mut b: Block| {
        // Bounded: a cycle of empty blocks (never built) stops after n steps.
        for _ in 0..n {
            match forward(f, b) {
                Some(t) if t != b => b = t,
                _ => break,
            }
        }
        b
    };
    let mut changed = false;
    for b in 0..n {
        let mut term = f.blocks[b].term.clone();
        let mut redirect = |bc: &mut BlockCall| {
            if bc.args.is_empty() {
                let t = resolve(f, bc.block);
                if t != bc.block {
                    bc.block = t;
                    changed = true;
                }
            }
        };
        match &mut term {
            Term::Jump(t) => redirect(t),
            Term::Br { then, els, .. } => {
                redirect(then);
                redirect(els);
            }
            Term::Return(_) => {}
        }
        if let Term::Br { then, els, .. } = &term {
            if then == els {
                term = Term::Jump(then.clone());
            }
        }
        f.blocks[b].term = term;
    }
    if changed {
        return drop_unreachable(f);
    }
    None
}

/// Reorders blocks for fall-through (the entry stays first).
pub fn layout(f: &mut Function) -> Option<BlockMap> {
    let n = f.blocks.len();
    let mut placed = vec![false; n];
    let mut order = Vec::with_capacity(n);
    for start in 0..n {
        if placed[start] {
            continue;
        }
        let mut b = Block::from_index(start);
        loop {
            placed[b.index()] = true;
            order.push(b);
            // Successors, the "continue" edge of a branch first.
            let succs: Vec<Block> = match &f.block(b).term {
                Term::Jump(t) => vec![t.block],
                Term::Br { then, els, .. } => vec![els.block, then.block],
                Term::Return(_) => vec![],
            };
            let next = succs.into_iter().find(|s| !placed[s.index()]);
            match next {
                Some(s) => b = s,
                None => break,
            }
        }
    }
    if order.iter().enumerate().all(|(i, b)| b.index() == i) {
        return None;
    }
    let (g, map) = rebuild(f, &order);
    *f = g;
    Some(map)
}

fn drop_unreachable(f: &mut Function) -> Option<BlockMap> {
    let mut seen = vec![false; f.blocks.len()];
    let mut work = vec![Block(0)];
    while let Some(b) = work.pop() {
        if std::mem::replace(&mut seen[b.index()], true) {
            continue;
        }
        work.extend(f.succs(b));
    }
    if seen.iter().all(|&s| s) {
        return None;
    }
    let (g, map) = compact(f, &seen);
    *f = g;
    Some(map)
}

/// Dead-store elimination on the stack: a store to bytes of a slot that nothing in the
/// function ever reads (no load, no helper or callee given a pointer that can reach
/// them) is dropped. Flow-insensitive, so it only removes what is never read at all:
/// the parser's record bytes no rule and no map key reads.
pub fn dead_stores(f: &mut Function) -> Option<BlockMap> {
    use super::types::PtrKind;
    // The (slot, offset) a stack pointer value points at, when constant.
    let mut at: Vec<Option<(usize, i64)>> = vec![None; f.values.len()];
    for b in f.block_ids() {
        for &i in &f.block(b).insts {
            let d = f.inst(i);
            let Some(r) = d.result else { continue };
            at[r.index()] = match &d.op {
                Op::SlotAddr(s) => Some((s.index(), 0)),
                Op::PtrAdd(p, Operand::Imm(k)) => at[p.index()].map(|(s, o)| (s, o + k)),
                _ => None,
            };
        }
    }
    // Bytes read per slot (one bit each; slots are at most 512 bytes).
    let mut read: Vec<Vec<bool>> = f
        .slots
        .iter()
        .map(|s| vec![false; s.size as usize])
        .collect();
    let mark = |read: &mut Vec<Vec<bool>>, (s, o): (usize, i64), len: Option<i64>| {
        if let Some(bytes) = read.get_mut(s) {
            let end = len.map_or(bytes.len() as i64, |l| o + l);
            for k in o.max(0)..end.min(bytes.len() as i64) {
                bytes[k as usize] = true;
            }
        }
    };
    let mut opaque = false;
    for b in f.block_ids() {
        for &i in &f.block(b).insts {
            let d = f.inst(i);
            match &d.op {
                Op::Load { ptr, off } => {
                    if let Some(p) = at[ptr.index()] {
                        let len = d
                            .result
                            .and_then(|r| f.ty(r).int())
                            .map(|t| i64::from(t.bytes()));
                        mark(&mut read, (p.0, p.1 + i64::from(*off)), len.or(Some(8)));
                    } else if f.ty(*ptr) == Type::Ptr(PtrKind::Stack) {
                        opaque = true;
                    }
                }
                Op::AtomicAdd { ptr, off, ty, .. } => {
                    if let Some(p) = at[ptr.index()] {
                        mark(
                            &mut read,
                            (p.0, p.1 + i64::from(*off)),
                            Some(i64::from(ty.bytes())),
                        );
                    } else if f.ty(*ptr) == Type::Ptr(PtrKind::Stack) {
                        opaque = true;
                    }
                }
                // A pointer handed on: everything from it to the end of its slot.
                Op::Call(_, args) | Op::CallFn(_, args) => {
                    for a in args {
                        if let Some(p) = at[a.index()] {
                            mark(&mut read, p, None);
                        } else if f.ty(*a) == Type::Ptr(PtrKind::Stack) {
                            opaque = true;
                        }
                    }
                }
                _ => {}
            }
        }
        // Stack pointers passed to other blocks: give up on precision.
        for a in f.block(b).term.args() {
            if f.ty(a) == Type::Ptr(PtrKind::Stack) {
                opaque = true;
            }
        }
    }
    if opaque {
        return None;
    }
    let mut removed = false;
    for b in 0..f.blocks.len() {
        let insts = f.blocks[b].insts.clone();
        let keep: Vec<_> = insts
            .iter()
            .copied()
            .filter(|&i| match &f.inst(i).op {
                Op::Store { ty, ptr, off, .. } => match at[ptr.index()] {
                    Some((s, o)) => {
                        let from = o + i64::from(*off);
                        let bytes = &read[s];
                        (from..from + i64::from(ty.bytes()))
                            .any(|k| bytes.get(k as usize).copied().unwrap_or(true))
                    }
                    None => true,
                },
                _ => true,
            })
            .collect();
        if keep.len() != insts.len() {
            removed = true;
            f.blocks[b].insts = keep;
        }
    }
    // Dropped stores leave their instructions unreferenced: rebuild densely.
    if removed {
        let order: Vec<Block> = f.block_ids().collect();
        let (g, map) = rebuild(f, &order);
        *f = g;
        return Some(map);
    }
    None
}
