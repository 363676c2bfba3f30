//! Branches decided by block arguments (issue 8 §6), and the clean-up that exposes them:
//!
//! - [`unused`]: pure instructions whose results nothing uses are dropped;
//! - [`decide`]: an edge into a block whose branch its constant arguments decide goes
//!   straight to the successor it would take. A filter's rules start in a block whose
//!   parameters are the layer flags and fields each parser exit passes: a non-IPv4 exit
//!   passes flags 0, so the `ip4` test of `ip4.src in blocked` is decided there and the
//!   frame goes to the next rule (or the default) without testing anything, as the C peer's
//!   `if (proto != ETH_P_IP) return XDP_PASS` does; an IPv4 exit goes straight into the
//!   lookup, and the flags register is not kept at all.

use std::collections::HashMap;

use super::build::{map_op, map_term, rebuild};
use super::func::{BlockCall, Function, Op, Operand, Term, ValueDef};
use super::interp::{alu, compare};
use super::types::{ExtOp, Type};
use super::verify::Cfg;
use super::{Block, Value};
use crate::mir::opt::BlockMap;

/// Whether an instruction only computes its result (no memory, no call): one whose
/// result nothing uses can go.
fn pure(op: &Op) -> bool {
    matches!(
        op,
        Op::Iconst(_)
            | Op::Binary(..)
            | Op::Neg(_)
            | Op::Bswap(_)
            | Op::Ext(..)
            | Op::SlotAddr(_)
            | Op::PtrAdd(..)
            | Op::MapRef(_)
            | Op::FuncRef(_)
    )
}

/// How many times each value is used (instruction operands and terminator arguments).
fn use_counts(f: &Function) -> Vec<u32> {
    let mut uses = vec![0u32; f.values.len()];
    for b in f.block_ids() {
        let d = f.block(b);
        for &i in &d.insts {
            for a in f.inst(i).op.args() {
                if let Some(u) = uses.get_mut(a.index()) {
                    *u += 1;
                }
            }
        }
        for a in d.term.args() {
            if let Some(u) = uses.get_mut(a.index()) {
                *u += 1;
            }
        }
    }
    uses
}

/// Drops pure instructions whose results are never used (to a fixpoint: an address
/// used only by a dropped add goes too). Blocks stay as they are.
pub fn unused(f: &mut Function) -> Option<BlockMap> {
    let mut uses = use_counts(f);
    let mut changed = false;
    loop {
        let mut again = false;
        for b in 0..f.blocks.len() {
            let insts = std::mem::take(&mut f.blocks[b].insts);
            let mut kept = Vec::with_capacity(insts.len());
            for i in insts {
                let d = f.inst(i);
                let dead = d
                    .result
                    .is_some_and(|r| uses.get(r.index()).copied() == Some(0) && pure(&d.op));
                if dead {
                    for a in d.op.args() {
                        if let Some(u) = uses.get_mut(a.index()) {
                            *u = u.saturating_sub(1);
                        }
                    }
                    again = true;
                    changed = true;
                } else {
                    kept.push(i);
                }
            }
            f.blocks[b].insts = kept;
        }
        if !again {
            break;
        }
    }
    // Values of dropped instructions stay in the arena, unreferenced; a rebuild numbers
    // the rest densely (blocks keep their ids).
    changed.then(|| {
        let order: Vec<Block> = f.block_ids().collect();
        let (g, map) = rebuild(f, &order);
        *f = g;
        map
    })
}

/// The constant a pure instruction computes from constant operands.
fn eval(f: &Function, op: &Op, ty: Type, env: &HashMap<Value, i64>) -> Option<i64> {
    let val = |v: &Value| env.get(v).copied().or_else(|| f.const_value(*v));
    let t = ty.int()?;
    let r = match op {
        Op::Iconst(c) => *c as u64,
        Op::Binary(bop, a, b) => {
            let x = val(a)?;
            let y = match b {
                Operand::Imm(c) => *c,
                Operand::Value(v) => val(v)?,
            };
            if f.ty(*a).int() != Some(t) {
                return None;
            }
            alu(*bop, t, x as u64, y as u64)
        }
        Op::Ext(ExtOp::Zext, a) => val(a)? as u64 & f.ty(*a).int()?.umax(),
        Op::Ext(ExtOp::Trunc, a) => val(a)? as u64 & t.umax(),
        _ => return None,
    };
    Some((r & t.umax()) as i64)
}

/// Jump threading through branches decided by constant block arguments. For a block
/// `H` (parameters, pure instructions, a branch on an integer) and an edge `P -> H(args)`
/// whose constant arguments decide the branch, the edge goes to the successor `X` the
/// branch would take, with `H`'s arguments to `X` in terms of `P`'s. Where `H`'s
/// parameters are used below `X` (the port a later rule compares), `X` must have `H` as
/// its only predecessor; it gets parameters of its own for them, and `H` passes them on
/// its remaining edges. Nothing is done for a block on a cycle (a loop), where a new edge
/// could make a loop the verifier cannot bound.
pub fn decide(f: &mut Function) -> Option<BlockMap> {
    // A fixpoint-free pass over candidates, each on a fresh CFG; bounded for functions of
    // thousands of rules (only small filters pass flags as block arguments).
    if f.insts.len() > 20_000 {
        return None;
    }
    let mut changed = false;
    // A block of parameters and no instructions that jumps without arguments into its
    // only successor's only edge (a parser's exit block before the first rule's test)
    // hands its parameters to that successor: the test then sits in the block the
    // arguments arrive at.
    for b in 0..f.blocks.len() {
        changed |= hand_params(f, Block::from_index(b));
    }
    for h in 0..f.blocks.len() {
        changed |= decide_block(f, Block::from_index(h));
    }
    changed.then(|| {
        let cfg = Cfg::new(f);
        let order: Vec<Block> = f.block_ids().filter(|&b| cfg.reachable(b)).collect();
        let (g, map) = rebuild(f, &order);
        *f = g;
        map
    })
}

/// `b(params): jump s` with `s` reached from `b` alone and taking no parameters: `s` takes
/// `b`'s parameters, and every edge into `b` goes to `s`.
fn hand_params(f: &mut Function, b: Block) -> bool {
    let d = f.block(b);
    if b == f.entry() || d.params.is_empty() || !d.insts.is_empty() {
        return false;
    }
    let Term::Jump(t) = &d.term else { return false };
    let s = t.block;
    if !t.args.is_empty() || s == b || s == f.entry() || !f.block(s).params.is_empty() {
        return false;
    }
    let edges_into_s = f
        .block_ids()
        .flat_map(|p| f.block(p).term.targets().into_iter().map(|t| t.block))
        .filter(|&x| x == s)
        .count();
    if edges_into_s != 1 {
        return false;
    }
    let params = std::mem::take(&mut f.blocks[b.index()].params);
    for (k, v) in params.iter().enumerate() {
        f.values[v.index()].def = ValueDef::Param(s, k as u32);
    }
    f.blocks[s.index()].params = params;
    for p in 0..f.blocks.len() {
        let mut term = f.blocks[p].term.clone();
        let mut moved = false;
        retarget(&mut term, |bc| {
            if bc.block == b {
                bc.block = s;
                moved = true;
            }
        });
        if moved {
            f.blocks[p].term = term;
        }
    }
    true
}

/// Applies `m` to every block call of a terminator.
fn retarget(t: &mut Term, mut m: impl FnMut(&mut BlockCall)) {
    match t {
        Term::Jump(x) => m(x),
        Term::Br { then, els, .. } => {
            m(then);
            m(els);
        }
        Term::Return(_) => {}
    }
}

/// Threads the decided edges into `h`; whether anything changed.
fn decide_block(f: &mut Function, h: Block) -> bool {
    let d = f.block(h);
    if h == f.entry() || d.params.is_empty() {
        return false;
    }
    let Term::Br {
        cond,
        a,
        b: rhs,
        then,
        els,
    } = d.term.clone()
    else {
        return false;
    };
    if then.block == els.block || then.block == h || els.block == h || f.ty(a).int().is_none() {
        return false;
    }
    if d.insts.iter().any(|&i| !pure(&f.inst(i).op)) {
        return false;
    }
    let params = d.params.clone();
    let own: Vec<Value> = d.insts.iter().filter_map(|&i| f.inst(i).result).collect();
    // H's instruction results may serve H alone: an edge that skips H cannot carry them.
    if then.args.iter().chain(&els.args).any(|v| own.contains(v)) {
        return false;
    }
    let cfg = Cfg::new(f);
    if !cfg.reachable(h) {
        return false;
    }
    // No cycle through H: no predecessor reachable from H.
    let mut from_h = vec![false; f.blocks.len()];
    let mut work = vec![h];
    while let Some(x) = work.pop() {
        for s in f.succs(x) {
            if !std::mem::replace(&mut from_h[s.index()], true) {
                work.push(s);
            }
        }
    }
    if from_h[h.index()] || cfg.preds[h.index()].iter().any(|p| from_h[p.index()]) {
        return false;
    }
    // Which of H's values each successor's region uses (outside H itself).
    let mut below: [Vec<Value>; 2] = [Vec::new(), Vec::new()];
    for u in f.block_ids().filter(|&u| u != h && cfg.reachable(u)) {
        let ud = f.block(u);
        let mut used: Vec<Value> = ud.insts.iter().flat_map(|&i| f.inst(i).op.args()).collect();
        used.extend(ud.term.args());
        for v in used {
            if own.contains(&v) {
                return false;
            }
            if !params.contains(&v) {
                continue;
            }
            let side = if cfg.dominates(then.block, u) {
                0
            } else if cfg.dominates(els.block, u) {
                1
            } else {
                return false; // a join below both sides needs H's value itself
            };
            if !below[side].contains(&v) {
                below[side].push(v);
            }
        }
    }
    for (side, x) in [then.block, els.block].into_iter().enumerate() {
        if !below[side].is_empty() && cfg.preds[x.index()].as_slice() != [h] {
            return false;
        }
    }
    // Which edge into H is decided, and where to.
    let mut decided = Vec::new();
    for &p in &cfg.preds[h.index()] {
        for bc in f.block(p).term.targets() {
            if bc.block != h || bc.args.len() != params.len() {
                continue;
            }
            let mut env: HashMap<Value, i64> = HashMap::new();
            for (&pv, &av) in params.iter().zip(&bc.args) {
                if let Some(c) = f.const_value(av) {
                    env.insert(pv, c);
                }
            }
            for &i in &f.block(h).insts {
                let id = f.inst(i);
                if let Some(r) = id.result {
                    if let Some(c) = eval(f, &id.op, f.ty(r), &env) {
                        env.insert(r, c);
                    }
                }
            }
            let x = env.get(&a).copied().or_else(|| f.const_value(a));
            let y = match rhs {
                Operand::Imm(c) => Some(c),
                Operand::Value(v) => env.get(&v).copied().or_else(|| f.const_value(v)),
            };
            if let (Some(x), Some(y)) = (x, y) {
                let taken = compare(cond, f.ty(a).is_32(), x as u64, y as u64);
                decided.push((p, bc.args.clone(), usize::from(!taken)));
            }
        }
    }
    if decided.is_empty() {
        return false;
    }
    // Successors that use H's parameters take them as parameters of their own.
    let mut then = then;
    let mut els = els;
    for (side, call) in [&mut then, &mut els].into_iter().enumerate() {
        let x = call.block;
        let mut rename: HashMap<Value, Value> = HashMap::new();
        for &v in &below[side] {
            let nv = f.add_block_param(x, f.ty(v));
            call.args.push(v);
            rename.insert(v, nv);
        }
        if rename.is_empty() {
            continue;
        }
        for u in f.block_ids().collect::<Vec<_>>() {
            if u == h || !cfg.dominates(x, u) {
                continue;
            }
            let m = |v: Value| rename.get(&v).copied().unwrap_or(v);
            for k in 0..f.blocks[u.index()].insts.len() {
                let i = f.blocks[u.index()].insts[k];
                map_op(&mut f.insts[i.index()].op, m);
            }
            map_term(&mut f.blocks[u.index()].term, m);
        }
    }
    if let Term::Br {
        then: t, els: e, ..
    } = &mut f.blocks[h.index()].term
    {
        *t = then.clone();
        *e = els.clone();
    }
    // Each decided edge goes where H would send it, H's parameters replaced by its
    // arguments.
    for (p, args, side) in decided {
        let to = if side == 0 { &then } else { &els };
        let subst = |v: &Value| {
            params
                .iter()
                .position(|pv| pv == v)
                .and_then(|k| args.get(k).copied())
                .unwrap_or(*v)
        };
        let new = BlockCall::new(to.block, to.args.iter().map(subst).collect());
        let mut term = f.blocks[p.index()].term.clone();
        retarget(&mut term, |bc| {
            if bc.block == h && bc.args == args {
                *bc = new.clone();
            }
        });
        f.blocks[p.index()].term = term;
    }
    true
}
