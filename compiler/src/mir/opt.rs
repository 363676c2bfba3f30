//! Optimisation passes on MIR (issue 8 §6), each keeping a verified function verified:
//!
//! - [`fold`]: constant folding (an ALU op or extension of constants becomes a constant)
//!   and branch folding (a compare of constants, or a branch whose two edges are the
//!   same, becomes a jump); blocks no longer reached are dropped.
//! - [`known`]: a branch whose outcome an earlier branch on the same test already
//!   decided, on every path of an edge into it, is skipped on that edge (a rule's
//!   `ip4` test again after the rule before it tested `ip4` and missed its set).
//! - [`implied`]: a test whose failing outcome the block arguments already imply (a
//!   layer bit before a port compare, where every path without the bit passes port 0)
//!   is skipped.
//! - [`thread`]: jump threading: an edge into an empty block that only jumps on goes
//!   straight to where it goes.
//! - [`layout`]: block order for fall-through: each block is followed, where it can be,
//!   by its `els` successor (lowering puts the way on there: the inside of a bounds
//!   check, the next rule), so most edges on the common path cost no jump.
//!
//! - [`dead_stores`]: stores to stack bytes nothing ever reads are dropped.
//! - [`sink_zeroing`]: a zeroing store of the entry block moves onto the paths that
//!   reach a read of its bytes without overwriting them first.
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

/// The passes in order, each with the name `pol build` times it under.
pub const PASSES: [(&str, Pass); 9] = [
    ("MIR fold", fold),
    ("MIR dead stores", dead_stores),
    ("MIR known", known),
    ("MIR implied", implied),
    ("MIR unused", super::decide::unused),
    ("MIR decide", super::decide::decide),
    // After `decide`: a path it sends past a set lookup no longer needs the key zeroed.
    ("MIR sink zeroing", sink_zeroing),
    ("MIR thread", thread),
    ("MIR layout", layout),
];

/// A pass: it changes the function in place and returns where each block went when it
/// dropped or reordered blocks.
pub type Pass = fn(&mut Function) -> Option<BlockMap>;

pub fn optimize_function(f: &mut Function) -> BlockMap {
    optimize_function_timed(f, &mut [std::time::Duration::ZERO; PASSES.len()])
}

/// [`optimize`], adding each pass's time to `times` (in [`PASSES`] order).
pub fn optimize_timed(m: &mut Module, times: &mut [std::time::Duration]) -> Vec<BlockMap> {
    m.funcs
        .iter_mut()
        .map(|f| optimize_function_timed(f, times))
        .collect()
}

fn optimize_function_timed(f: &mut Function, times: &mut [std::time::Duration]) -> BlockMap {
    let mut map: BlockMap = f.block_ids().map(Some).collect();
    for (k, (_, pass)) in PASSES.iter().enumerate() {
        let at = std::time::Instant::now();
        let step = pass(f);
        if let Some(t) = times.get_mut(k) {
            *t += at.elapsed();
        }
        if let Some(step) = step {
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

/// The `(slot, offset)` each stack pointer value points at, when constant; `None` when a
/// stack pointer escapes that analysis (a load, store, call or block argument through a
/// stack pointer of unknown offset): then nothing about stack bytes can be proved.
fn stack_addrs(f: &Function) -> Option<Vec<Option<(usize, i64)>>> {
    use super::types::PtrKind;
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
    let opaque = |v: &Value| at[v.index()].is_none() && f.ty(*v) == Type::Ptr(PtrKind::Stack);
    for b in f.block_ids() {
        for &i in &f.block(b).insts {
            let escapes = match &f.inst(i).op {
                Op::Load { ptr, .. } | Op::AtomicAdd { ptr, .. } | Op::Store { ptr, .. } => {
                    opaque(ptr)
                }
                Op::Call(_, args) | Op::CallFn(_, args) => args.iter().any(opaque),
                _ => false,
            };
            if escapes {
                return None;
            }
        }
        if f.block(b)
            .term
            .args()
            .iter()
            .any(|a| f.ty(*a) == Type::Ptr(PtrKind::Stack))
        {
            return None;
        }
    }
    Some(at)
}

/// What an instruction does to the bytes `[lo, hi)` of slot `s`: (read, fully written,
/// partly written).
fn touches(
    f: &Function,
    at: &[Option<(usize, i64)>],
    i: super::Inst,
    (s, lo, hi): (usize, i64, i64),
) -> (bool, bool, bool) {
    let span = |v: &Value, off: i64, len: Option<i64>| {
        at.get(v.index()).copied().flatten().and_then(|(vs, vo)| {
            let from = vo + off;
            let to = len.map_or(i64::MAX, |l| from + l);
            (vs == s && from < hi && to > lo).then_some((from, to))
        })
    };
    let d = f.inst(i);
    match &d.op {
        Op::Load { ptr, off } => {
            let len = d
                .result
                .and_then(|r| f.ty(r).int())
                .map_or(8, |t| i64::from(t.bytes()));
            (
                span(ptr, i64::from(*off), Some(len)).is_some(),
                false,
                false,
            )
        }
        Op::AtomicAdd { ptr, off, ty, .. } => {
            let len = i64::from(ty.bytes());
            (
                span(ptr, i64::from(*off), Some(len)).is_some(),
                false,
                false,
            )
        }
        Op::Store { ptr, off, ty, .. } => {
            match span(ptr, i64::from(*off), Some(i64::from(ty.bytes()))) {
                Some((from, to)) => (false, from <= lo && to >= hi, !(from <= lo && to >= hi)),
                None => (false, false, false),
            }
        }
        // A pointer handed on: everything from it to the end of its slot may be read.
        Op::Call(_, args) | Op::CallFn(_, args) => (
            args.iter().any(|a| span(a, 0, None).is_some()),
            false,
            false,
        ),
        _ => (false, false, false),
    }
}

/// Zeroing stores sunk to the paths that need them. A store of zero in the entry block
/// to stack bytes that most paths overwrite before anything reads them (the record word
/// of a set lookup's key, which the IPv4 parser fills) moves to where the bytes are still
/// unwritten when something may read them: before that read, or onto the edges where an
/// unwritten path joins a written one (a non-IPv4 frame on its way to the rules). Paths
/// that write the bytes then execute no zeroing store. Applied when it adds at most one
/// store to the code; the MIR verifier's initialised-stack check still holds, since every
/// read is preceded on every path by the sunk store or an overwrite.
pub fn sink_zeroing(f: &mut Function) -> Option<BlockMap> {
    // A fixpoint over the CFG per zeroing store: for the hot paths of small filters, not
    // worth its time on a function of thousands of rules in code.
    if f.insts.len() > 20_000 {
        return None;
    }
    let mut at = stack_addrs(f)?;
    let entry = f.entry();
    let n = f.blocks.len();
    let mut preds: Vec<Vec<Block>> = vec![Vec::new(); n];
    for b in f.block_ids() {
        for s in f.succs(b) {
            if !preds[s.index()].contains(&b) {
                preds[s.index()].push(b);
            }
        }
    }
    let mut changed = false;
    // The block the zeroing happens in: the entry, or the block it jumps to (a parser's
    // first block, a loop header on tc, where a pass after a pull starts afresh).
    let zb = match &f.block(entry).term {
        Term::Jump(t)
            if f.block(entry)
                .insts
                .iter()
                .all(|&i| !is_zero_store(f, &at, i)) =>
        {
            t.block
        }
        _ => entry,
    };
    let zeros: Vec<super::Inst> = f
        .block(zb)
        .insts
        .iter()
        .copied()
        .filter(|&i| is_zero_store(f, &at, i))
        .collect();
    // Bytes read anywhere, per slot: only those of a zeroing store need a zero (the rest
    // of its word is dead, and a store of the read part alone counts as an overwrite).
    let mut read: Vec<Vec<bool>> = f
        .slots
        .iter()
        .map(|s| vec![false; s.size as usize])
        .collect();
    for b in f.block_ids() {
        for &i in &f.block(b).insts {
            let d = f.inst(i);
            let spans: Vec<(Value, i64, Option<i64>)> = match &d.op {
                Op::Load { ptr, off } => {
                    let len = d
                        .result
                        .and_then(|r| f.ty(r).int())
                        .map_or(8, |t| t.bytes());
                    vec![(*ptr, i64::from(*off), Some(i64::from(len)))]
                }
                Op::AtomicAdd { ptr, off, ty, .. } => {
                    vec![(*ptr, i64::from(*off), Some(i64::from(ty.bytes())))]
                }
                Op::Call(_, args) | Op::CallFn(_, args) => {
                    args.iter().map(|a| (*a, 0, None)).collect()
                }
                _ => Vec::new(),
            };
            for (p, off, len) in spans {
                let Some((s, o)) = at[p.index()] else {
                    continue;
                };
                let Some(bytes) = read.get_mut(s) else {
                    continue;
                };
                let from = o + off;
                let to = len.map_or(bytes.len() as i64, |l| from + l);
                for k in from.max(0)..to.min(bytes.len() as i64) {
                    bytes[k as usize] = true;
                }
            }
        }
    }
    for z in zeros {
        let Op::Store { ptr, off, ty, .. } = &f.inst(z).op else {
            continue;
        };
        let Some((s, o)) = at[ptr.index()] else {
            continue;
        };
        let lo = o + i64::from(*off);
        let used: Vec<i64> = (lo..lo + i64::from(ty.bytes()))
            .filter(|&k| {
                read.get(s)
                    .and_then(|r| r.get(k as usize))
                    .copied()
                    .unwrap_or(true)
            })
            .collect();
        let (Some(&first), Some(&last)) = (used.first(), used.last()) else {
            continue;
        };
        let bytes = (s, first, last + 1);
        if let Some(plan) = sink_plan(f, &at, &preds, (zb, z), bytes) {
            apply_sink(f, (zb, z), (s, lo), plan);
            changed = true;
            // The placed stores have addresses of their own.
            at = stack_addrs(f)?;
        }
    }
    if changed {
        let order: Vec<Block> = f.block_ids().collect();
        let (g, map) = rebuild(f, &order);
        *f = g;
        return Some(map);
    }
    None
}

/// A store of zero through a stack pointer of known slot and offset.
fn is_zero_store(f: &Function, at: &[Option<(usize, i64)>], i: super::Inst) -> bool {
    match &f.inst(i).op {
        Op::Store { ptr, val, .. } => {
            at[ptr.index()].is_some()
                && match val {
                    Operand::Imm(c) => *c == 0,
                    Operand::Value(v) => f.const_value(*v) == Some(0),
                }
        }
        _ => false,
    }
}

/// Where a sunk store goes: before an instruction of a block, or at the end of a block.
enum At {
    Before(Block, super::Inst),
    End(Block),
}

/// Forward over the CFG from `z`: is every path to a point still "pending" (the bytes
/// neither zeroed by a sunk store nor overwritten)? The sunk stores go where a pending
/// path first reads, or leaves a pending block into a block not wholly pending. `None`
/// when that is not an improvement or not possible (a partial overwrite, a pending block
/// with two ways out into a join, more than two stores).
fn sink_plan(
    f: &Function,
    at: &[Option<(usize, i64)>],
    preds: &[Vec<Block>],
    (zb, z): (Block, super::Inst),
    bytes: (usize, i64, i64),
) -> Option<Vec<At>> {
    #[derive(Clone, Copy, PartialEq)]
    enum S {
        Unreached,
        Pending,
        Done,
    }
    let n = f.blocks.len();
    // State at each block's exit; a block's entry state is the meet of its preds' exits.
    // In `zb` the state is pending from `z` on, whatever came in.
    let mut out = vec![S::Unreached; n];
    let block_out = |b: Block, inp: S| -> Option<(S, Option<super::Inst>)> {
        let insts = &f.block(b).insts;
        let (start, inp) = if b == zb {
            (insts.iter().position(|&i| i == z)? + 1, S::Pending)
        } else {
            (0, inp)
        };
        if inp != S::Pending {
            return Some((inp, None));
        }
        for &i in &insts[start..] {
            let (read, full, part) = touches(f, at, i, bytes);
            if read {
                return Some((S::Done, Some(i)));
            }
            if part {
                return None;
            }
            if full {
                return Some((S::Done, None));
            }
        }
        Some((S::Pending, None))
    };
    let entry_state = |b: Block, out: &[S]| -> S {
        if b == zb {
            return S::Pending;
        }
        let ins: Vec<S> = preds[b.index()]
            .iter()
            .map(|p| out[p.index()])
            .filter(|&s| s != S::Unreached)
            .collect();
        if ins.is_empty() {
            S::Unreached
        } else if ins.iter().all(|&s| s == S::Pending) {
            S::Pending
        } else {
            S::Done
        }
    };
    let mut changed = true;
    let mut rounds = 0;
    while changed {
        changed = false;
        rounds += 1;
        if rounds > 4 * n + 8 {
            return None;
        }
        for b in f.block_ids() {
            let inp = entry_state(b, &out);
            let (o, _) = block_out(b, inp)?;
            if o != out[b.index()] {
                out[b.index()] = o;
                changed = true;
            }
        }
    }
    // Backwards: where the bytes may still be read before something overwrites them.
    // Only there must a path that has not written them carry the zero (the malformed
    // exit, which never reads a key, needs none).
    let scan = |b: Block| -> Option<bool> {
        for &i in &f.block(b).insts {
            let (read, full, _) = touches(f, at, i, bytes);
            if read {
                return Some(true);
            }
            if full {
                return Some(false);
            }
        }
        None
    };
    let own: Vec<Option<bool>> = f.block_ids().map(scan).collect();
    let mut live = vec![false; n];
    let mut again = true;
    while again {
        again = false;
        for b in f.block_ids().collect::<Vec<_>>().into_iter().rev() {
            let l = own[b.index()].unwrap_or_else(|| f.succs(b).iter().any(|s| live[s.index()]));
            if l != live[b.index()] {
                live[b.index()] = l;
                again = true;
            }
        }
    }
    let mut plan = Vec::new();
    for b in f.block_ids() {
        let inp = entry_state(b, &out);
        if let (_, Some(i)) = block_out(b, inp)? {
            if b == zb {
                return None; // read right after it: nothing to sink
            }
            plan.push(At::Before(b, i));
        }
        if inp == S::Done && b != zb && live[b.index()] {
            for &p in &preds[b.index()] {
                if out[p.index()] == S::Pending {
                    if f.succs(p).len() != 1 {
                        return None;
                    }
                    plan.push(At::End(p));
                }
            }
        }
    }
    // An empty plan: no path reads the bytes before writing them, the store goes.
    (plan.len() <= 2).then_some(plan)
}

/// Moves `z` (a zeroing store of slot `s` from byte `lo`) out of `zb` to the plan's
/// places, each with its own slot address (rematerialised in codegen, so free, and
/// defined where it is used whatever dominates what).
fn apply_sink(
    f: &mut Function,
    (zb, z): (Block, super::Inst),
    (s, lo): (usize, i64),
    plan: Vec<At>,
) {
    let Op::Store { ty, .. } = f.inst(z).op else {
        return;
    };
    let Ok(off) = i16::try_from(lo) else { return };
    f.blocks[zb.index()].insts.retain(|&i| i != z);
    for p in plan {
        let (b, before) = match p {
            At::End(b) => (b, None),
            At::Before(b, i) => (b, Some(i)),
        };
        let addr = f.push(
            b,
            Op::SlotAddr(super::Slot::from_index(s)),
            Type::Ptr(super::types::PtrKind::Stack),
        );
        let store = f.push_void(
            b,
            Op::Store {
                ty,
                ptr: addr,
                off,
                val: Operand::Imm(0),
            },
        );
        if let Some(before) = before {
            let insts = &mut f.blocks[b.index()].insts;
            insts.truncate(insts.len() - 2);
            let k = insts.iter().position(|&x| x == before).unwrap_or(0);
            let addr_inst = f.values[addr.index()].def;
            if let super::func::ValueDef::Inst(ai) = addr_inst {
                let insts = &mut f.blocks[b.index()].insts;
                insts.insert(k, store);
                insts.insert(k, ai);
            }
        }
    }
}

/// Guards implied by block arguments. Two tests in a row, `B1: br (flags & 8), B2, F`
/// then `B2: br eq port, 23, T, F`, where `flags` and `port` are parameters of one block
/// `H`: if on every edge into `H` where B1 would go to `F` the `port` argument is a
/// constant that B2 also sends to `F`, B1's test decides nothing and B1 jumps to B2. The
/// shape of a small filter's `tcp.dport == 23`: its layer flags and port are block
/// parameters, and each parser exit that does not set the TCP bit passes port 0 (the C
/// peer's `dport = 0; ... if (dport == htons(23))`).
pub fn implied(f: &mut Function) -> Option<BlockMap> {
    let mut changed = false;
    for b1 in f.block_ids().collect::<Vec<_>>() {
        if let Some(b2) = implied_guard(f, b1) {
            let d = &mut f.blocks[b1.index()];
            d.term = Term::Jump(BlockCall::new(b2, vec![]));
            // The flags test's pure op (used by the branch alone) goes with it.
            d.insts.clear();
            changed = true;
        }
    }
    if changed {
        let order: Vec<Block> = f.block_ids().collect();
        let (g, map) = rebuild(f, &order);
        *f = g;
        return Some(map);
    }
    None
}

/// `b1`'s successor `B2` when `b1`'s test is implied as described in [`implied`].
fn implied_guard(f: &Function, b1: Block) -> Option<Block> {
    use super::func::ValueDef;
    let d1 = f.block(b1);
    let Term::Br {
        cond: c1,
        a: t1,
        b: Operand::Imm(k1),
        then: th1,
        els: el1,
    } = &d1.term
    else {
        return None;
    };
    // B1 computes at most the one pure op its branch tests, on a block parameter.
    let (op, v, m) = match d1.insts.as_slice() {
        [] => (None, *t1, 0),
        [i] => match (&f.inst(*i).op, f.inst(*i).result) {
            (Op::Binary(op, v, Operand::Imm(m)), Some(r)) if r == *t1 => (Some(*op), *v, *m),
            _ => return None,
        },
        _ => return None,
    };
    let ty1 = f.ty(v).int()?;
    // The op's result must serve the branch alone: it goes with the test.
    let used_elsewhere = || {
        op.is_some()
            && f.block_ids().any(|b| {
                let d = f.block(b);
                d.insts.iter().any(|&i| f.inst(i).op.args().contains(t1))
                    || (b != b1 && d.term.args().contains(t1))
            })
    };
    if !th1.args.is_empty() || !el1.args.is_empty() || th1.block == el1.block {
        return None;
    }
    // Which side is B2: a block of no instructions and no parameters whose branch tests
    // another parameter of the same block against a constant, one way to B1's other side.
    for (b2, fail, b2_on_true) in [(th1.block, el1.block, true), (el1.block, th1.block, false)] {
        let d2 = f.block(b2);
        if b2 == b1 || !d2.params.is_empty() || !d2.insts.is_empty() {
            continue;
        }
        let Term::Br {
            cond: c2,
            a: x,
            b: Operand::Imm(k2),
            then: th2,
            els: el2,
        } = &d2.term
        else {
            continue;
        };
        if !th2.args.is_empty() || !el2.args.is_empty() {
            continue;
        }
        let x_fails_on = match (th2.block == fail, el2.block == fail) {
            (true, false) => true,
            (false, true) => false,
            _ => continue,
        };
        let (ValueDef::Param(h, vi), ValueDef::Param(h2, xi)) =
            (f.values[v.index()].def, f.values[x.index()].def)
        else {
            continue;
        };
        let Some(tyx) = f.ty(*x).int() else { continue };
        if h != h2 || h == f.entry() {
            continue;
        }
        // Every edge into H.
        let mut ok = true;
        let mut edges = 0;
        for p in f.block_ids() {
            let calls: Vec<&BlockCall> = match &f.block(p).term {
                Term::Jump(t) => vec![t],
                Term::Br { then, els, .. } => vec![then, els],
                Term::Return(_) => vec![],
            };
            for bc in calls.into_iter().filter(|bc| bc.block == h) {
                edges += 1;
                let arg = |i: u32| bc.args.get(i as usize).and_then(|a| f.const_value(*a));
                let Some(fv) = arg(vi) else {
                    ok = false;
                    break;
                };
                let tested = match op {
                    Some(op) => alu(op, ty1, fv as u64, m as u64),
                    None => fv as u64,
                };
                let to_b2 = compare(*c1, ty1.bits <= 32, tested, *k1 as u64) == b2_on_true;
                if to_b2 {
                    continue;
                }
                // B1 would fail here: B2 must fail too, for this edge's constant.
                let Some(xv) = arg(xi) else {
                    ok = false;
                    break;
                };
                let x_true = compare(*c2, tyx.bits <= 32, xv as u64, *k2 as u64);
                if x_true != x_fails_on {
                    ok = false;
                    break;
                }
            }
            if !ok {
                break;
            }
        }
        if ok && edges > 0 && !used_elsewhere() {
            return Some(b2);
        }
    }
    None
}
