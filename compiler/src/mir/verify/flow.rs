//! Facts that flow along every CFG path, not just down the dominator tree: which stack
//! bytes are initialised (the kernel refuses to read, or pass to a helper, stack it has
//! not seen written), and which ring buffer records are held (each must be submitted or
//! discarded on every path, once).

use super::values::{accesses, Len, ValueInfo};
use super::{Cfg, Cx, ErrorKind, Loc};
use crate::mir::func::{Op, Operand, Term};
use crate::mir::helpers::{self, Arg, Ret};
use crate::mir::types::{Cond, PtrKind, Type};
use crate::mir::{Block, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
struct State {
    /// One bit per byte of each slot.
    init: Vec<Vec<u64>>,
    /// Ring buffer records reserved and not yet released, sorted.
    refs: Vec<Value>,
}

impl State {
    fn entry(cx: &Cx<'_>) -> State {
        State {
            init: cx
                .f
                .slots
                .iter()
                .map(|s| vec![0; s.size.div_ceil(64) as usize])
                .collect(),
            refs: Vec::new(),
        }
    }

    fn set(&mut self, slot: usize, from: i64, len: u64) {
        let Some(bits) = self.init.get_mut(slot) else {
            return;
        };
        for byte in from.max(0)..from.saturating_add(len as i64) {
            if let Some(w) = bits.get_mut(byte as usize / 64) {
                *w |= 1 << (byte % 64);
            }
        }
    }

    /// The first uninitialised byte in the range, if any.
    fn first_unset(&self, slot: usize, from: i64, len: u64) -> Option<i64> {
        let bits = self.init.get(slot)?;
        (from.max(0)..from.saturating_add(len as i64)).find(|&byte| {
            bits.get(byte as usize / 64)
                .is_none_or(|w| w & (1 << (byte % 64)) == 0)
        })
    }

    fn meet(&mut self, other: &State) {
        for (a, b) in self.init.iter_mut().zip(&other.init) {
            for (x, y) in a.iter_mut().zip(b) {
                *x &= y;
            }
        }
    }
}

pub(super) fn check(cx: &mut Cx<'_>, cfg: &Cfg, info: &ValueInfo) {
    let n = cx.f.blocks.len();
    let mut inputs: Vec<Option<State>> = vec![None; n];
    let mut outs: Vec<Vec<(Block, State)>> = vec![Vec::new(); n];
    let mut mismatch: Vec<Block> = Vec::new();
    // Iterate to a fixpoint without reporting (in reverse post-order, each block sees its
    // forward predecessors' fresh results: one pass for an acyclic CFG, plus one to see
    // nothing change), then once more reporting.
    for round in 0..=n + 1 {
        let mut changed = false;
        for &b in &cfg.rpo {
            let input = if b == Block(0) {
                Some(State::entry(cx))
            } else {
                let mut acc: Option<State> = None;
                for &p in &cfg.preds[b.index()] {
                    for (to, s) in &outs[p.index()] {
                        if *to != b {
                            continue;
                        }
                        match &mut acc {
                            None => acc = Some(s.clone()),
                            Some(a) => {
                                if a.refs != s.refs && !mismatch.contains(&b) {
                                    mismatch.push(b);
                                }
                                a.meet(s);
                            }
                        }
                    }
                }
                acc
            };
            let Some(input) = input else { continue };
            if inputs[b.index()].as_ref() == Some(&input) && round > 0 {
                continue;
            }
            changed = true;
            outs[b.index()] = transfer(cx, info, b, input.clone(), false);
            inputs[b.index()] = Some(input);
        }
        if !changed || round == n + 1 {
            break;
        }
    }
    for b in mismatch {
        cx.err(
            Loc::Block(b),
            ErrorKind::Reference("held on some paths into this block and not on others".into()),
        );
    }
    for &b in &cfg.rpo {
        if let Some(state) = inputs[b.index()].clone() {
            transfer(cx, info, b, state, true);
        }
    }
}

/// Runs block `b` from `state`; returns the state on each outgoing edge.
fn transfer(
    cx: &mut Cx<'_>,
    info: &ValueInfo,
    b: Block,
    mut state: State,
    report: bool,
) -> Vec<(Block, State)> {
    let f = cx.f;
    for (idx, &i) in f.block(b).insts.iter().enumerate() {
        let d = f.inst(i);
        let rt = d.result.map(|v| f.ty(v));
        for acc in accesses(cx, info, &d.op, rt) {
            if f.ty(acc.ptr) != Type::Ptr(PtrKind::Stack) {
                continue;
            }
            let Some((slot, off)) = info.stack(acc.ptr) else {
                continue;
            };
            let from = off + acc.off;
            if acc.write {
                if let Len::Const(n) = acc.len {
                    state.set(slot.index(), from, n);
                }
            } else if let Some(byte) = state.first_unset(slot.index(), from, acc.len.max()) {
                if report {
                    let loc = cx.inst_loc(b, idx);
                    cx.err(loc, ErrorKind::Uninit(format!("byte {byte} of {slot}")));
                }
            }
        }
        if let Op::Call(id, args) = &d.op {
            let Some(h) = helpers::by_id(*id) else {
                continue;
            };
            if h.ret == Ret::MemOrNull {
                if let Some(r) = d.result {
                    state.refs.push(r);
                    state.refs.sort();
                } else if report {
                    let loc = cx.inst_loc(b, idx);
                    cx.err(
                        loc,
                        ErrorKind::Reference(
                            "a reserved record must be kept to be submitted".into(),
                        ),
                    );
                }
            }
            for (&a, kind) in args.iter().zip(h.args) {
                if *kind == Arg::RingRecord {
                    let root = info.region(a).map_or(a, |r| r.0);
                    let before = state.refs.len();
                    state.refs.retain(|&r| r != root);
                    if state.refs.len() == before && report {
                        let loc = cx.inst_loc(b, idx);
                        cx.err(
                            loc,
                            ErrorKind::Reference(format!(
                                "{a} is released twice or was never reserved"
                            )),
                        );
                    }
                }
            }
        }
    }
    let term = &f.block(b).term;
    match term {
        Term::Return(_) => {
            if !state.refs.is_empty() && report {
                let loc = cx.term_loc(b);
                let held: Vec<String> = state.refs.iter().map(|v| v.to_string()).collect();
                cx.err(
                    loc,
                    ErrorKind::Reference(format!(
                        "{} still held at return: submit or discard it",
                        held.join(", ")
                    )),
                );
            }
            vec![]
        }
        Term::Jump(t) => vec![(t.block, state)],
        Term::Br {
            cond,
            a,
            b: rhs,
            then,
            els,
        } => {
            let mut on_then = state.clone();
            let mut on_els = state;
            // On the edge where a reserved record is null, there is nothing to release.
            if *rhs == Operand::Imm(0) && on_then.refs.contains(a) {
                match cond {
                    Cond::Eq => on_then.refs.retain(|r| r != a),
                    Cond::Ne => on_els.refs.retain(|r| r != a),
                    _ => {}
                }
            }
            vec![(then.block, on_then), (els.block, on_els)]
        }
    }
}
