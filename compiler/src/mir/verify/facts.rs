//! Checks that depend on what is known where a value is used, walked down the dominator
//! tree: a block with one predecessor learns from the branch into it that a pointer is
//! not null, that a packet pointer is below `pkt_end`, or that an integer is below a
//! bound. Every access and helper argument is checked against those facts.

use std::collections::HashMap;

use super::values::{accesses, Access, ValueInfo};
use super::{Cfg, Cx, ErrorKind, Loc};
use crate::mir::func::{Op, Operand, Term};
use crate::mir::helpers::{self, Arg};
use crate::mir::types::{Cond, PtrKind, Type};
use crate::mir::{Block, Value};

/// What the dominating branches prove, kept as one set while the dominator tree is
/// walked depth first: entering a block adds its edge's facts, leaving it undoes them
/// (a clone per block would make deep rule chains quadratic).
#[derive(Debug, Clone, Default)]
struct Facts {
    /// Roots known non-null.
    nonnull: HashMap<Value, u32>,
    /// `root -> k`: packet bytes `root .. root + k` are in bounds.
    pkt: HashMap<Value, Vec<i64>>,
    /// `v -> n`: `v <= n`.
    umax: HashMap<Value, Vec<u64>>,
    /// What was added, in order, to undo it.
    log: Vec<Added>,
}

#[derive(Debug, Clone, Copy)]
enum Added {
    NonNull(Value),
    Pkt(Value),
    Umax(Value),
}

impl Facts {
    fn pkt_range(&self, root: Value) -> Option<i64> {
        self.pkt.get(&root).and_then(|v| v.iter().copied().max())
    }

    fn is_nonnull(&self, root: Value) -> bool {
        self.nonnull.get(&root).is_some_and(|&n| n > 0)
    }

    fn add_nonnull(&mut self, root: Value) {
        *self.nonnull.entry(root).or_default() += 1;
        self.log.push(Added::NonNull(root));
    }

    fn add_pkt(&mut self, root: Value, k: i64) {
        self.pkt.entry(root).or_default().push(k);
        self.log.push(Added::Pkt(root));
    }

    fn add_umax(&mut self, v: Value, m: u64) {
        self.umax.entry(v).or_default().push(m);
        self.log.push(Added::Umax(v));
    }

    fn flow_umax(&self, v: Value) -> Option<u64> {
        self.umax.get(&v).and_then(|x| x.iter().copied().min())
    }

    /// Undoes everything added after the log had `len` entries.
    fn undo_to(&mut self, len: usize) {
        while self.log.len() > len {
            match self.log.pop() {
                Some(Added::NonNull(r)) => {
                    if let Some(n) = self.nonnull.get_mut(&r) {
                        *n -= 1;
                    }
                }
                Some(Added::Pkt(r)) => {
                    if let Some(v) = self.pkt.get_mut(&r) {
                        v.pop();
                    }
                }
                Some(Added::Umax(r)) => {
                    if let Some(v) = self.umax.get_mut(&r) {
                        v.pop();
                    }
                }
                None => {}
            }
        }
    }
}

pub(super) fn check(cx: &mut Cx<'_>, cfg: &Cfg, info: &ValueInfo) {
    let children = cfg.dom_children();
    let mut facts = Facts::default();
    // (block, Some(log length to undo to on leaving) once entered).
    let mut stack: Vec<(Block, Option<usize>)> = vec![(Block(0), None)];
    while let Some((b, entered)) = stack.pop() {
        if let Some(len) = entered {
            facts.undo_to(len);
            continue;
        }
        let len = facts.log.len();
        edge_facts(cx, cfg, info, b, &mut facts);
        check_block(cx, info, b, &facts);
        stack.push((b, Some(len)));
        for &c in children
            .get(b.index())
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            stack.push((c, None));
        }
    }
    check_packet_changes(cx, info);
}

/// What the branch into `b` proves, when `b` has a single predecessor reaching it by one edge.
fn edge_facts(cx: &Cx<'_>, cfg: &Cfg, info: &ValueInfo, b: Block, facts: &mut Facts) {
    let f = cx.f;
    let [p] = cfg
        .preds
        .get(b.index())
        .map(Vec::as_slice)
        .unwrap_or_default()
    else {
        return;
    };
    let Term::Br {
        cond,
        a,
        b: rhs,
        then,
        els,
    } = &f.block(*p).term
    else {
        return;
    };
    if then.block == els.block {
        return;
    }
    // Normalise to "cond holds on the edge into b".
    let cond = if then.block == b {
        *cond
    } else {
        cond.negate()
    };
    match (f.ty(*a), rhs) {
        (Type::Ptr(k), Operand::Imm(0)) if k.is_nullable() && cond == Cond::Ne => {
            let root = info.region(*a).map_or(*a, |r| r.0);
            facts.add_nonnull(root);
        }
        (Type::Ptr(PtrKind::Packet), Operand::Value(_)) if cond == Cond::Ule => {
            if let Some((root, lo, _)) = info.region(*a) {
                facts.add_pkt(root, lo);
            }
        }
        (Type::Ptr(PtrKind::PacketEnd), Operand::Value(q)) if cond == Cond::Uge => {
            if let Some((root, lo, _)) = info.region(*q) {
                facts.add_pkt(root, lo);
            }
        }
        (Type::Int(_), Operand::Imm(n)) => {
            let n = *n;
            let bound = match cond {
                Cond::Ule | Cond::Eq => u64::try_from(n).ok(),
                Cond::Ult => u64::try_from(n).ok().and_then(|n| n.checked_sub(1)),
                _ => None,
            };
            if let Some(m) = bound {
                facts.add_umax(*a, m);
            }
        }
        _ => {}
    }
}

fn umax(info: &ValueInfo, facts: &Facts, v: Value) -> Option<u64> {
    let flow = facts.flow_umax(v);
    match (info.umax(v), flow) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn check_block(cx: &mut Cx<'_>, info: &ValueInfo, b: Block, facts: &Facts) {
    let f = cx.f;
    let insts = f.block(b).insts.clone();
    for (idx, &i) in insts.iter().enumerate() {
        let d = f.inst(i);
        let mut problems: Vec<ErrorKind> = Vec::new();
        // Every use of a nullable pointer needs its null check.
        for v in d.op.args() {
            if let Some(e) = null_use(info, facts, f.ty(v), v) {
                problems.push(e);
            }
        }
        let rt = d.result.map(|v| f.ty(v));
        for acc in accesses(cx, info, &d.op, rt) {
            if let Err(e) = check_access(cx, info, facts, acc) {
                problems.push(e);
            }
        }
        if let Op::Call(id, args) = &d.op {
            problems.extend(check_helper(cx, info, facts, *id, args));
        }
        for e in problems {
            let loc = cx.inst_loc(b, idx);
            cx.err(loc, e);
        }
    }
    let term = f.block(b).term.clone();
    let mut problems = Vec::new();
    let null_compare = match &term {
        Term::Br {
            a,
            b: Operand::Imm(0),
            cond: Cond::Eq | Cond::Ne,
            ..
        } => Some(*a),
        _ => None,
    };
    for v in term.args() {
        if Some(v) != null_compare {
            problems.extend(null_use(info, facts, f.ty(v), v));
        }
    }
    if let Term::Return(v) = term {
        let c = f.const_value(v);
        if let (Some(h), Some(c)) = (&f.hook, c) {
            if let Some((lo, hi)) = h.return_range() {
                if !(lo..=hi).contains(&c) {
                    problems.push(ErrorKind::Return(format!(
                        "{c} is outside {lo}..={hi} for this hook"
                    )));
                }
            }
        }
        if cx.ctx.is_callback && umax(info, facts, v).is_none_or(|m| m > 1) {
            problems.push(ErrorKind::Return(
                "a bpf_loop callback returns 0 or 1".into(),
            ));
        }
    }
    for e in problems {
        let loc = cx.term_loc(b);
        cx.err(loc, e);
    }
}

fn null_use(info: &ValueInfo, facts: &Facts, t: Type, v: Value) -> Option<ErrorKind> {
    match t {
        Type::Ptr(k) if k.is_nullable() => {
            let root = info.region(v).map_or(v, |r| r.0);
            (!facts.is_nonnull(root)).then(|| ErrorKind::NullUnchecked(v.to_string()))
        }
        _ => None,
    }
}

fn check_access(
    cx: &Cx<'_>,
    info: &ValueInfo,
    facts: &Facts,
    acc: Access,
) -> Result<(), ErrorKind> {
    let f = cx.f;
    let len = i64::try_from(acc.len.max()).unwrap_or(i64::MAX);
    let what = || {
        let n = match acc.len.max() {
            u64::MAX => "unbounded".to_string(),
            n => n.to_string(),
        };
        let (root, lo, _) = info.region(acc.ptr).unwrap_or((acc.ptr, 0, 0));
        match info.stack(acc.ptr) {
            Some((slot, off)) => format!("{n} bytes at {slot}{:+}", off + acc.off),
            None => format!("{n} bytes at {root}{:+}", lo + acc.off),
        }
    };
    let within = |lo: i64, hi: i64, size: i64, name: &str| {
        if lo + acc.off < 0 || hi.saturating_add(acc.off).saturating_add(len) > size {
            Err(ErrorKind::OutOfBounds(format!(
                "{}{} in {size} bytes of {name}",
                what(),
                if lo == hi {
                    String::new()
                } else {
                    format!(
                        " (offset {}..={})",
                        lo + acc.off,
                        hi.saturating_add(acc.off)
                    )
                }
            )))
        } else {
            Ok(())
        }
    };
    let Type::Ptr(kind) = f.ty(acc.ptr) else {
        return Err(ErrorKind::Type(format!("{} is not a pointer", acc.ptr)));
    };
    match kind {
        PtrKind::Ctx => {
            if acc.write {
                return Err(ErrorKind::Ctx("programs do not write their context".into()));
            }
            Ok(())
        }
        PtrKind::Stack => {
            let (slot, off) = info.stack(acc.ptr).ok_or_else(|| {
                ErrorKind::OutOfBounds(format!(
                    "{}: stack pointer of unknown slot (passed through a block parameter?)",
                    acc.ptr
                ))
            })?;
            let size = f.slots.get(slot.index()).map_or(0, |s| i64::from(s.size));
            within(off, off, size, &slot.to_string())
        }
        PtrKind::StackArg(n) => {
            let (_, lo, hi) = info.region(acc.ptr).unwrap_or((acc.ptr, 0, 0));
            within(lo, hi, i64::from(n), "the caller's stack")
        }
        PtrKind::Packet => {
            let (root, lo, hi) = info.region(acc.ptr).unwrap_or((acc.ptr, 0, 0));
            let k = facts.pkt_range(root).ok_or_else(|| {
                ErrorKind::PacketUnchecked(format!(
                    "{} is not below a checked bound (compare against pkt_end first)",
                    what()
                ))
            })?;
            if lo + acc.off < 0 || hi + acc.off + len > k {
                return Err(ErrorKind::PacketUnchecked(format!(
                    "{} but only {k} bytes from {root} are checked",
                    what()
                )));
            }
            Ok(())
        }
        PtrKind::MapValue(m) | PtrKind::MapValueOrNull(m) => {
            let (root, lo, hi) = info.region(acc.ptr).unwrap_or((acc.ptr, 0, 0));
            if kind.is_nullable() && !facts.is_nonnull(root) {
                return Err(ErrorKind::NullUnchecked(acc.ptr.to_string()));
            }
            let size = cx.m.map(m).map_or(0, |d| i64::from(d.value_size));
            let name =
                cx.m.map(m)
                    .map_or(String::new(), |d| format!("a {} value", d.name));
            within(lo, hi, size, &name)
        }
        PtrKind::Mem(n) | PtrKind::MemOrNull(n) => {
            let (root, lo, hi) = info.region(acc.ptr).unwrap_or((acc.ptr, 0, 0));
            if kind.is_nullable() && !facts.is_nonnull(root) {
                return Err(ErrorKind::NullUnchecked(acc.ptr.to_string()));
            }
            within(lo, hi, i64::from(n), "the record")
        }
        _ => Err(ErrorKind::Type(format!(
            "cannot access memory through {}",
            cx.ty_name(acc.ptr)
        ))),
    }
}

fn check_helper(
    cx: &Cx<'_>,
    info: &ValueInfo,
    facts: &Facts,
    id: u32,
    args: &[Value],
) -> Vec<ErrorKind> {
    let f = cx.f;
    let Some(h) = helpers::by_id(id) else {
        return vec![];
    };
    let mut out = Vec::new();
    let mut bad = |reason: String| {
        out.push(ErrorKind::Helper {
            helper: h.name.into(),
            reason,
        });
    };
    for k in cx.hook_kinds() {
        if !h.allowed_in(k) {
            bad(format!("not allowed in {k:?} programs"));
        }
    }
    for (n, (&a, kind)) in args.iter().zip(h.args).enumerate() {
        let n = n + 1;
        match kind {
            Arg::ConstSize => match f.const_value(a) {
                Some(c) if c >= 1 => {}
                _ => bad(format!(
                    "argument {n} must be a constant size of at least 1"
                )),
            },
            Arg::Size if umax(info, facts, a).is_none_or(|m| m > u64::from(u32::MAX)) => {
                bad(format!(
                    "argument {n} needs a known upper bound (mask or compare it)"
                ));
            }
            Arg::RingRecord => {
                let root = info.region(a).map(|r| r.0);
                if root != Some(a) || info.region(a).is_some_and(|(_, lo, hi)| lo != 0 || hi != 0) {
                    bad(format!(
                        "argument {n} must be the ringbuf_reserve result itself"
                    ));
                }
            }
            Arg::Callback => {
                let Type::Ptr(PtrKind::Func(g)) = f.ty(a) else {
                    continue;
                };
                let Some(cb) = cx.m.func(g) else { continue };
                let ctx_ok = match args.get(2).map(|&c| f.ty(c)) {
                    Some(Type::Ptr(PtrKind::Stack)) => {
                        matches!(cb.params.get(1), Some(Type::Ptr(PtrKind::StackArg(_))))
                    }
                    _ => matches!(cb.params.get(1), Some(Type::Int(_))),
                };
                if cb.params.len() != 2
                    || cb.params.first().and_then(|t| t.int()).is_none()
                    || !ctx_ok
                {
                    bad(format!(
                        "callback {} must take (index: integer, ctx: stack(N) or integer)",
                        cb.name
                    ));
                }
            }
            _ => {}
        }
    }
    out
}

/// After a helper that changes packet data (`skb_pull_data`), the kernel forgets every
/// packet pointer. So no packet pointer may be used on a path from such a call that does
/// not pass its definition again: a parser may pull and then parse afresh (a loop back to
/// its start, or a second copy of it), but never keep a pointer across the pull.
fn check_packet_changes(cx: &mut Cx<'_>, _info: &ValueInfo) {
    let f = cx.f;
    let changes = |op: &Op| matches!(op, Op::Call(id, _) if helpers::by_id(*id).is_some_and(|h| h.changes_packet));
    let mut calls = Vec::new();
    for b in f.block_ids() {
        for (idx, &i) in f.block(b).insts.iter().enumerate() {
            if changes(&f.inst(i).op) {
                calls.push((b, idx));
            }
        }
    }
    if calls.is_empty() {
        return;
    }
    let is_pkt = |v: Value| matches!(f.ty(v), Type::Ptr(PtrKind::Packet | PtrKind::PacketEnd));
    // Where each value is defined: (block, index of its instruction, or None for a parameter).
    let mut def_at: Vec<Option<(Block, Option<usize>)>> = vec![None; f.values.len()];
    for b in f.block_ids() {
        for &p in &f.block(b).params {
            if let Some(d) = def_at.get_mut(p.index()) {
                *d = Some((b, None));
            }
        }
        for (idx, &i) in f.block(b).insts.iter().enumerate() {
            if let Some(r) = f.inst(i).result {
                if let Some(d) = def_at.get_mut(r.index()) {
                    *d = Some((b, Some(idx)));
                }
            }
        }
    }
    for &(cb, ci) in &calls {
        // Walk forward from just after the call; a value is stale until its definition.
        for v in (0..f.values.len()).map(Value::from_index) {
            if !is_pkt(v) {
                continue;
            }
            let Some((db, di)) = def_at[v.index()] else {
                continue;
            };
            let mut seen = vec![false; f.blocks.len()];
            let mut work = vec![(cb, ci + 1)];
            let mut bad = None;
            while let Some((b, from)) = work.pop() {
                if from == 0 {
                    if seen[b.index()] {
                        continue;
                    }
                    seen[b.index()] = true;
                    if b == db && di.is_none() {
                        continue;
                    }
                }
                let insts = &f.block(b).insts;
                let mut redefined = false;
                for (idx, &i) in insts.iter().enumerate().skip(from) {
                    if b == db && di == Some(idx) {
                        redefined = true;
                        break;
                    }
                    if f.inst(i).op.args().contains(&v) {
                        bad = Some(cx.inst_loc(b, idx));
                        break;
                    }
                }
                if bad.is_some() {
                    break;
                }
                if redefined {
                    continue;
                }
                if f.block(b).term.args().contains(&v) {
                    bad = Some(Loc::Block(b));
                    break;
                }
                for s in f.succs(b) {
                    work.push((s, 0));
                }
            }
            if let Some(loc) = bad {
                cx.err(
                    loc,
                    ErrorKind::PacketUnchecked(format!(
                        "{v} is a packet pointer from before skb_pull_data, which invalidates it"
                    )),
                );
            }
        }
    }
}
