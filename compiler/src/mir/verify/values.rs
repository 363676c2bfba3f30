//! What each value is, independent of where it is used: the slot and offset of a stack
//! pointer, the root and offset of a packet pointer, the root and offset range of a map
//! value or record pointer, the largest value of an integer; and the counted-loop form
//! that bounds every loop.

use super::{Cfg, Cx, ErrorKind, Loc, MAX_TRIPS};
use crate::mir::func::{Op, Operand, Term};
use crate::mir::helpers::{self, Arg};
use crate::mir::types::{BinOp, Cond, ExtOp, PtrKind, Type};
use crate::mir::{Block, Slot, Value};

/// Per-value facts that hold wherever the value is used.
#[derive(Debug, Clone, Default)]
pub struct ValueInfo {
    /// Largest value of each integer, when known.
    pub umax: Vec<Option<u64>>,
    /// `(slot, byte offset)` of stack pointers.
    pub stack: Vec<Option<(Slot, i64)>>,
    /// `(root, offset range lo..=hi)` of packet, map value, record and stack-argument
    /// pointers; null checks and bounds apply to the root.
    pub region: Vec<Option<(Value, i64, i64)>>,
}

impl ValueInfo {
    pub fn umax(&self, v: Value) -> Option<u64> {
        self.umax.get(v.index()).copied().flatten()
    }

    pub fn stack(&self, v: Value) -> Option<(Slot, i64)> {
        self.stack.get(v.index()).copied().flatten()
    }

    pub fn region(&self, v: Value) -> Option<(Value, i64, i64)> {
        self.region.get(v.index()).copied().flatten()
    }
}

/// How many bytes an access touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Len {
    Const(u64),
    /// At most this many (a size argument bounded but not constant).
    Max(u64),
}

impl Len {
    pub fn max(self) -> u64 {
        match self {
            Len::Const(n) | Len::Max(n) => n,
        }
    }
}

/// A memory access an instruction makes through a pointer value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    pub ptr: Value,
    pub off: i64,
    pub len: Len,
    pub write: bool,
}

pub(super) fn analyse(cx: &mut Cx<'_>, cfg: &Cfg) -> ValueInfo {
    let f = cx.f;
    let n = f.values.len();
    let mut info = ValueInfo {
        umax: vec![None; n],
        stack: vec![None; n],
        region: vec![None; n],
    };
    let loops = check_loops(cx, cfg);
    for &b in &cfg.rpo {
        for &p in &f.block(b).params {
            let t = f.ty(p);
            info.umax[p.index()] = loops
                .iter()
                .find(|(v, _)| *v == p)
                .map(|&(_, m)| m)
                .or_else(|| t.int().map(|i| i.umax()));
            if let Type::Ptr(k) = t {
                if matches!(
                    k,
                    PtrKind::Packet
                        | PtrKind::MapValue(_)
                        | PtrKind::MapValueOrNull(_)
                        | PtrKind::Mem(_)
                        | PtrKind::MemOrNull(_)
                        | PtrKind::StackArg(_)
                ) {
                    info.region[p.index()] = Some((p, 0, 0));
                }
            }
        }
        for &i in &f.block(b).insts {
            let d = f.inst(i);
            let Some(r) = d.result else { continue };
            let t = f.ty(r);
            let um = |v: &Value| info.umax(*v);
            let type_max = t.int().map(|i| i.umax());
            let umax = match &d.op {
                Op::Iconst(c) => u64::try_from(*c).ok(),
                Op::Binary(BinOp::And, a, Operand::Imm(k)) if *k >= 0 => {
                    Some(um(a).map_or(*k as u64, |m| m.min(*k as u64)))
                }
                Op::Binary(BinOp::Lshr, a, Operand::Imm(k)) => um(a).map(|m| m >> k),
                Op::Binary(BinOp::Mod, a, Operand::Imm(k))
                    if *k > 0 && !t.int().is_some_and(|i| i.signed) =>
                {
                    Some(um(a).map_or(*k as u64 - 1, |m| m.min(*k as u64 - 1)))
                }
                Op::Binary(BinOp::Add, a, Operand::Imm(k)) if *k >= 0 => um(a)
                    .and_then(|m| m.checked_add(*k as u64))
                    .filter(|&s| type_max.is_none_or(|t| s <= t)),
                Op::Ext(ExtOp::Zext, a) => um(a),
                Op::Ext(ExtOp::Trunc, a) => match (um(a), type_max) {
                    (Some(m), Some(t)) => Some(m.min(t)),
                    (_, t) => t,
                },
                _ => None,
            };
            info.umax[r.index()] = umax.or(type_max).map(|m| type_max.map_or(m, |t| m.min(t)));
            match &d.op {
                Op::SlotAddr(s) => info.stack[r.index()] = Some((*s, 0)),
                Op::PtrAdd(p, o) => {
                    if let Some((s, off)) = info.stack(*p) {
                        if let Operand::Imm(k) = o {
                            info.stack[r.index()] = Some((s, off + k));
                        }
                    }
                    match (f.ty(*p), info.region(*p), o) {
                        (Type::Ptr(PtrKind::Packet), Some((root, lo, hi)), Operand::Imm(k)) => {
                            info.region[r.index()] = Some((root, lo + k, hi + k));
                        }
                        // The kernel gives a packet pointer moved by a variable a new id.
                        (Type::Ptr(PtrKind::Packet), _, _) => {
                            info.region[r.index()] = Some((r, 0, 0))
                        }
                        (_, Some((root, lo, hi)), Operand::Imm(k)) => {
                            info.region[r.index()] = Some((root, lo + k, hi + k));
                        }
                        (_, Some((root, lo, hi)), Operand::Value(v)) => {
                            if let Some(m) = info.umax(*v).and_then(|m| i64::try_from(m).ok()) {
                                info.region[r.index()] = Some((root, lo, hi.saturating_add(m)));
                            }
                        }
                        _ => {}
                    }
                }
                Op::Load { .. } if t == Type::Ptr(PtrKind::Packet) => {
                    info.region[r.index()] = Some((r, 0, 0))
                }
                Op::Call(..)
                    if matches!(
                        t,
                        Type::Ptr(PtrKind::MapValueOrNull(_) | PtrKind::MemOrNull(_))
                    ) =>
                {
                    info.region[r.index()] = Some((r, 0, 0));
                }
                _ => {}
            }
        }
    }
    info
}

/// Each loop must be a counted loop: the header has a parameter `i`, every entry passes
/// it a non-negative constant, the one back edge comes from `br ult i2, N, header(.., i2,
/// ..), exit` (or `ule`, or the negation with the targets swapped) where
/// `i2 = add i, STEP` with STEP > 0. Returns each induction variable with its largest
/// value inside the loop.
fn check_loops(cx: &mut Cx<'_>, cfg: &Cfg) -> Vec<(Value, u64)> {
    let f = cx.f;
    let mut out = Vec::new();
    let mut headers: Vec<Block> = Vec::new();
    for &(latch, header) in &cfg.back_edges {
        if !cfg.dominates(header, latch) {
            cx.err(
                Loc::Block(header),
                ErrorKind::Loop(
                    "irreducible: a cycle entered other than through its header".into(),
                ),
            );
            continue;
        }
        if headers.contains(&header) {
            cx.err(
                Loc::Block(header),
                ErrorKind::Loop("more than one back edge to this header".into()),
            );
            continue;
        }
        headers.push(header);
        match counted(cx, cfg, latch, header) {
            Ok(iv) => out.push(iv),
            Err(msg) => {
                let loc = cx.term_loc(latch);
                cx.err(loc, ErrorKind::Loop(msg));
            }
        }
    }
    let _ = f;
    out
}

fn counted(cx: &Cx<'_>, cfg: &Cfg, latch: Block, header: Block) -> Result<(Value, u64), String> {
    let f = cx.f;
    let Term::Br {
        cond,
        a,
        b: Operand::Imm(limit),
        then,
        els,
    } = &f.block(latch).term
    else {
        return Err(
            "the back edge must be a `br` comparing the induction variable with a constant".into(),
        );
    };
    // Normalise to "continue while a < limit" (or <=).
    let (back, inclusive) = match (cond, then.block == header, els.block == header) {
        (Cond::Ult, true, false) | (Cond::Uge, false, true) => {
            (if then.block == header { then } else { els }, false)
        }
        (Cond::Ule, true, false) | (Cond::Ugt, false, true) => {
            (if then.block == header { then } else { els }, true)
        }
        _ => return Err(
            "the back edge must continue while `ult`/`ule` a constant bound and leave otherwise"
                .into(),
        ),
    };
    let k = back
        .args
        .iter()
        .position(|v| v == a)
        .ok_or("the compared value must be passed back to the header")?;
    let iv = *f
        .block(header)
        .params
        .get(k)
        .ok_or("header parameter missing")?;
    match f.def_op(*a) {
        Some(Op::Binary(BinOp::Add, x, Operand::Imm(step))) if *x == iv && *step > 0 => {}
        _ => return Err(format!("{a} must be `add {iv}, STEP` with STEP > 0")),
    }
    let mut start_max = 0u64;
    for &p in &cfg.preds[header.index()] {
        if p == latch {
            continue;
        }
        for t in f.block(p).term.targets() {
            if t.block != header {
                continue;
            }
            let init = t.args.get(k).and_then(|&v| f.const_value(v));
            match init.and_then(|c| u64::try_from(c).ok()) {
                Some(c) => start_max = start_max.max(c),
                None => {
                    return Err(format!(
                        "{iv} must enter the loop as a non-negative constant"
                    ))
                }
            }
        }
    }
    let limit = u64::try_from(*limit).map_err(|_| "negative loop bound".to_string())?;
    let last = if inclusive {
        limit
    } else {
        limit.saturating_sub(1)
    };
    if last > MAX_TRIPS {
        return Err(format!(
            "bound {limit} exceeds {MAX_TRIPS} iterations; use bpf_loop"
        ));
    }
    Ok((iv, last.max(start_max)))
}

/// The memory accesses of an instruction, with the length of each (helper accesses take
/// their length from the size argument).
pub(super) fn accesses(
    cx: &Cx<'_>,
    info: &ValueInfo,
    op: &Op,
    result_ty: Option<Type>,
) -> Vec<Access> {
    let f = cx.f;
    let len_of = |v: Value| match f.const_value(v) {
        Some(c) => Len::Const(c.max(0) as u64),
        None => Len::Max(info.umax(v).unwrap_or(u64::MAX)),
    };
    match op {
        Op::Load { ptr, off } => {
            let bytes = match result_ty {
                Some(Type::Int(i)) => u64::from(i.bytes()),
                _ => 4,
            };
            vec![Access {
                ptr: *ptr,
                off: i64::from(*off),
                len: Len::Const(bytes),
                write: false,
            }]
        }
        Op::Store { ty, ptr, off, .. } => vec![Access {
            ptr: *ptr,
            off: i64::from(*off),
            len: Len::Const(u64::from(ty.bytes())),
            write: true,
        }],
        // Reads, then writes, the same bytes.
        Op::AtomicAdd { ty, ptr, off, .. } => [false, true]
            .into_iter()
            .map(|write| Access {
                ptr: *ptr,
                off: i64::from(*off),
                len: Len::Const(u64::from(ty.bytes())),
                write,
            })
            .collect(),
        Op::Call(id, args) => {
            let Some(h) = helpers::by_id(*id) else {
                return vec![];
            };
            let map = args.first().and_then(|&m| match f.ty(m) {
                Type::Ptr(PtrKind::Map(id)) => cx.m.map(id),
                _ => None,
            });
            let mut out = Vec::new();
            for (&a, kind) in args.iter().zip(h.args) {
                let (len, write) = match kind {
                    Arg::Key => (Len::Const(map.map_or(0, |m| u64::from(m.key_size))), false),
                    Arg::MapValue => (
                        Len::Const(map.map_or(0, |m| u64::from(m.value_size))),
                        false,
                    ),
                    Arg::MemWrite(k) | Arg::MemRead(k) => {
                        let Some(&sz) = args.get(usize::from(*k)) else {
                            continue;
                        };
                        (len_of(sz), matches!(kind, Arg::MemWrite(_)))
                    }
                    Arg::CallbackCtx if f.ty(a).ptr().is_some() => {
                        let cb = args.get(1).and_then(|&c| match f.ty(c) {
                            Type::Ptr(PtrKind::Func(g)) => cx.m.func(g),
                            _ => None,
                        });
                        let n = cb.and_then(|g| match g.params.get(1) {
                            Some(Type::Ptr(PtrKind::StackArg(n))) => Some(*n),
                            _ => None,
                        });
                        (Len::Const(u64::from(n.unwrap_or(0))), false)
                    }
                    _ => continue,
                };
                out.push(Access {
                    ptr: a,
                    off: 0,
                    len,
                    write,
                });
            }
            out
        }
        Op::CallFn(g, args) => {
            let Some(callee) = cx.m.func(*g) else {
                return vec![];
            };
            args.iter()
                .zip(&callee.params)
                .filter_map(|(&a, p)| match p {
                    Type::Ptr(PtrKind::StackArg(n)) => Some(Access {
                        ptr: a,
                        off: 0,
                        len: Len::Const(u64::from(*n)),
                        write: false,
                    }),
                    _ => None,
                })
                .collect()
        }
        _ => vec![],
    }
}
