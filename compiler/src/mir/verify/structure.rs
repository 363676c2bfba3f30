//! Ids, arity and types: every reference in range, every value defined once, every
//! operand of the right type, every use dominated by its definition; maps well formed;
//! the call graph acyclic, shallow and consistent with callbacks.

use std::collections::HashSet;

use super::{Cfg, Cx, ErrorKind, Loc, VerifyError, MAX_CALL_DEPTH};
use crate::mir::func::{Module, Op, Operand, Term, ValueDef};
use crate::mir::helpers::{self, Arg, Ret};
use crate::mir::types::{ctx_load, BinOp, Cond, CtxField, ExtOp, HookKind, MapKind, PtrKind, Type};
use crate::mir::{Block, FuncId, Value};

pub(super) fn check_maps(m: &Module, errors: &mut Vec<VerifyError>) {
    let mut err = |map: &str, msg: String| {
        errors.push(VerifyError {
            func: String::new(),
            loc: Loc::Func,
            kind: ErrorKind::Map(format!("{map}: {msg}")),
        })
    };
    let mut names = HashSet::new();
    for map in &m.maps {
        if !names.insert(&map.name) {
            err(&map.name, "defined twice".into());
        }
        if map.max_entries == 0 {
            err(&map.name, "max is 0".into());
        }
        match map.kind {
            MapKind::RingBuf => {
                if !map.max_entries.is_power_of_two() || map.max_entries < 4096 {
                    err(
                        &map.name,
                        "ring buffer size must be a power of two >= 4096".into(),
                    );
                }
                if map.key_size != 0 || map.value_size != 0 {
                    err(&map.name, "ring buffers have no key or value".into());
                }
            }
            kind => {
                if map.key_size == 0 || map.value_size == 0 {
                    err(&map.name, "key and value sizes must be non-zero".into());
                }
                if matches!(kind, MapKind::Array | MapKind::PercpuArray) && map.key_size != 4 {
                    err(&map.name, "array maps have 4-byte keys".into());
                }
                // The kernel's limit is sysctl kernel.perf_event_max_stack (127 by default).
                if kind == MapKind::StackTrace
                    && (map.key_size != 4
                        || !map.value_size.is_multiple_of(8)
                        || map.value_size > 127 * 8)
                {
                    err(
                        &map.name,
                        "stack trace maps have 4-byte keys and values of 8 bytes per frame, at most 127 frames".into(),
                    );
                }
            }
        }
    }
}

/// What the call graph says about each function.
pub(super) struct Calls {
    /// Program types reaching each function.
    pub hooks: Vec<Vec<HookKind>>,
    pub callbacks: HashSet<FuncId>,
}

pub(super) fn check_calls(m: &Module, errors: &mut Vec<VerifyError>) -> Calls {
    let n = m.funcs.len();
    let mut edges: Vec<Vec<FuncId>> = vec![Vec::new(); n];
    let mut callbacks = HashSet::new();
    for (i, f) in m.funcs.iter().enumerate() {
        for d in &f.insts {
            match &d.op {
                Op::CallFn(g, _) => edges[i].push(*g),
                Op::FuncRef(g) => {
                    edges[i].push(*g);
                    callbacks.insert(*g);
                }
                _ => {}
            }
        }
    }
    let mut err = |func: &str, msg: String| {
        errors.push(VerifyError {
            func: func.to_owned(),
            loc: Loc::Func,
            kind: ErrorKind::Calls(msg),
        })
    };
    let mut names = HashSet::new();
    for f in &m.funcs {
        if !names.insert(&f.name) {
            err(&f.name, "function defined twice".into());
        }
    }
    for (i, es) in edges.iter().enumerate() {
        for g in es {
            match m.func(*g) {
                None => err(&m.funcs[i].name, format!("calls unknown {g}")),
                Some(callee) if callee.hook.is_some() => err(
                    &m.funcs[i].name,
                    format!("calls {}, a program, not a subprogram", callee.name),
                ),
                _ => {}
            }
        }
    }
    // Depth from each program; a cycle is recursion, which the kernel refuses.
    let mut hooks: Vec<Vec<HookKind>> = vec![Vec::new(); n];
    for (i, f) in m.funcs.iter().enumerate() {
        let Some(h) = &f.hook else { continue };
        let kind = h.kind();
        let mut path = vec![FuncId::from_index(i)];
        walk(m, &edges, &mut path, kind, &mut hooks, &mut err);
    }
    Calls { hooks, callbacks }
}

fn walk(
    m: &Module,
    edges: &[Vec<FuncId>],
    path: &mut Vec<FuncId>,
    kind: HookKind,
    hooks: &mut [Vec<HookKind>],
    err: &mut impl FnMut(&str, String),
) {
    let Some(&cur) = path.last() else { return };
    if let Some(h) = hooks.get_mut(cur.index()) {
        if !h.contains(&kind) {
            h.push(kind);
        }
    }
    for &g in edges
        .get(cur.index())
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let name = |id: FuncId| m.func(id).map(|f| f.name.clone()).unwrap_or_default();
        if path.contains(&g) {
            err(&name(g), format!("recursion through {}", name(cur)));
            continue;
        }
        if path.len() >= MAX_CALL_DEPTH {
            err(
                &name(g),
                format!("call chain deeper than {MAX_CALL_DEPTH} frames"),
            );
            continue;
        }
        if m.func(g).is_some_and(|f| f.hook.is_none()) {
            path.push(g);
            walk(m, edges, path, kind, hooks, err);
            path.pop();
        }
    }
}

/// Ids in range, values defined once and where they say, arity of jumps and signatures.
pub(super) fn check_structure(cx: &mut Cx<'_>) {
    let f = cx.f;
    if f.blocks.is_empty() {
        cx.err(Loc::Func, ErrorKind::Malformed("no blocks".into()));
        return;
    }
    if f.hook.is_some() && f.params != [Type::Ptr(PtrKind::Ctx)] {
        cx.err(
            Loc::Func,
            ErrorKind::Malformed("a program takes exactly one parameter, `ctx`".into()),
        );
    }
    if f.global && (f.hook.is_some() || f.params.iter().any(|t| t.int().is_none())) {
        cx.err(
            Loc::Func,
            ErrorKind::Malformed(
                "a global function is a subprogram with integer parameters only".into(),
            ),
        );
    }
    if f.global && cx.ctx.is_callback {
        cx.err(
            Loc::Func,
            ErrorKind::Malformed("a bpf_loop callback must be static, not global".into()),
        );
    }
    if f.params.len() > 5 {
        cx.err(
            Loc::Func,
            ErrorKind::Malformed("more than 5 parameters".into()),
        );
    }
    let entry_params: Vec<Type> = f
        .block(Block(0))
        .params
        .iter()
        .map(|&v| f.values.get(v.index()).map_or(Type::U64, |d| d.ty))
        .collect();
    if entry_params != f.params {
        cx.err(
            Loc::Block(Block(0)),
            ErrorKind::Malformed("entry block parameters differ from the signature".into()),
        );
    }
    let mut seen_inst = vec![false; f.insts.len()];
    let val_ok = |v: Value| {
        f.values
            .get(v.index())
            .is_some_and(|d| d.def != ValueDef::Unused)
    };
    for b in f.block_ids() {
        let data = f.block(b);
        for (k, &p) in data.params.iter().enumerate() {
            if f.values.get(p.index()).map(|d| d.def) != Some(ValueDef::Param(b, k as u32)) {
                cx.err(
                    Loc::Block(b),
                    ErrorKind::Malformed(format!("parameter {p} is not defined here")),
                );
            }
        }
        for &i in data.insts.iter() {
            let Some(d) = f.insts.get(i.index()) else {
                cx.err(
                    Loc::Block(b),
                    ErrorKind::Malformed(format!("{i} out of range")),
                );
                continue;
            };
            if std::mem::replace(&mut seen_inst[i.index()], true) {
                cx.err(
                    Loc::Block(b),
                    ErrorKind::Malformed(format!("{i} appears twice")),
                );
            }
            if let Some(r) = d.result {
                if f.values.get(r.index()).map(|d| d.def) != Some(ValueDef::Inst(i)) {
                    cx.err(
                        Loc::Block(b),
                        ErrorKind::Malformed(format!("result {r} of {i} is not defined by it")),
                    );
                    continue;
                }
            }
            let bad: Vec<Value> = d.op.args().into_iter().filter(|&v| !val_ok(v)).collect();
            let bad_ref = match &d.op {
                Op::SlotAddr(s) => f.slots.get(s.index()).is_none().then(|| s.to_string()),
                Op::MapRef(mp) => cx.m.map(*mp).is_none().then(|| mp.to_string()),
                Op::FuncRef(g) | Op::CallFn(g, _) => cx.m.func(*g).is_none().then(|| g.to_string()),
                _ => None,
            };
            if !bad.is_empty() || bad_ref.is_some() {
                let what = bad
                    .iter()
                    .map(|v| v.to_string())
                    .chain(bad_ref)
                    .collect::<Vec<_>>();
                cx.err(
                    Loc::Block(b),
                    ErrorKind::Malformed(format!("{i} refers to undefined {}", what.join(", "))),
                );
            }
        }
        let term = &data.term;
        if term.args().into_iter().any(|v| !val_ok(v)) {
            cx.err(
                Loc::Block(b),
                ErrorKind::Malformed("terminator uses an undefined value".into()),
            );
            continue;
        }
        for t in term.targets() {
            match f.blocks.get(t.block.index()) {
                None => cx.err(
                    Loc::Block(b),
                    ErrorKind::Malformed(format!("jump to missing {}", t.block)),
                ),
                Some(tb) if tb.params.len() != t.args.len() => cx.err(
                    Loc::Block(b),
                    ErrorKind::Malformed(format!(
                        "{} takes {} arguments, given {}",
                        t.block,
                        tb.params.len(),
                        t.args.len()
                    )),
                ),
                _ => {}
            }
            if t.block == Block(0) {
                cx.err(
                    Loc::Block(b),
                    ErrorKind::Malformed("jump to the entry block".into()),
                );
            }
        }
    }
    for s in &f.slots {
        if s.size == 0 || !s.align.is_power_of_two() || s.align > 8 {
            cx.err(
                Loc::Func,
                ErrorKind::Malformed("a slot needs a size and an alignment of 1, 2, 4 or 8".into()),
            );
        }
    }
}

fn fits(t: Type, imm: i64) -> bool {
    t.int().is_some_and(|i| i.holds(imm))
}

/// Operand and result types of every instruction and terminator.
pub(super) fn check_types(cx: &mut Cx<'_>) {
    let f = cx.f;
    for b in f.block_ids() {
        for (idx, &i) in f.block(b).insts.iter().enumerate() {
            let d = f.inst(i);
            let rt = d.result.map(|v| f.ty(v));
            if let Err(msg) = inst_type(cx, &d.op, rt) {
                let loc = cx.inst_loc(b, idx);
                cx.err(loc, ErrorKind::Type(msg));
            }
        }
        if let Err(msg) = term_type(cx, b) {
            let loc = cx.term_loc(b);
            cx.err(loc, ErrorKind::Type(msg));
        }
    }
}

fn inst_type(cx: &Cx<'_>, op: &Op, rt: Option<Type>) -> Result<(), String> {
    let f = cx.f;
    let need_result = || rt.ok_or_else(|| "needs a result".to_string());
    let alu = |v: Value| match f.ty(v).int() {
        Some(i) if i.is_alu() => Ok(i),
        _ => Err(format!(
            "{v} is {}, not a 32- or 64-bit integer",
            cx.ty_name(v)
        )),
    };
    match op {
        Op::Iconst(c) => {
            let t = need_result()?;
            if !fits(t, *c) {
                return Err(format!("{c} is not a value of the result type"));
            }
        }
        // The distance between two packet pointers (how far a parser has read).
        Op::Binary(BinOp::Sub, a, Operand::Value(b))
            if f.ty(*a) == Type::Ptr(PtrKind::Packet) && f.ty(*b) == Type::Ptr(PtrKind::Packet) =>
        {
            if need_result()? != Type::U64 {
                return Err("the difference of two packet pointers is u64".into());
            }
        }
        Op::Binary(op, a, b) => {
            let ia = alu(*a)?;
            match b {
                Operand::Value(v) if f.ty(*v) != Type::Int(ia) => {
                    return Err(format!(
                        "operands differ: {} and {}",
                        cx.ty_name(*a),
                        cx.ty_name(*v)
                    ))
                }
                Operand::Imm(c) if !ia.holds(*c) => return Err(format!("{c} does not fit {ia}")),
                Operand::Imm(c) if op.is_shift() && !(0..i64::from(ia.bits)).contains(c) => {
                    return Err(format!("shift by {c} on {} bits", ia.bits))
                }
                Operand::Imm(0) if matches!(op, BinOp::Div | BinOp::Mod) => {
                    return Err("division by the constant 0".into())
                }
                _ => {}
            }
            if need_result()? != Type::Int(ia) {
                return Err("result type differs from the operands'".into());
            }
        }
        Op::Bswap(a) => {
            let t = f.ty(*a);
            if !matches!(t.int(), Some(i) if i.bits >= 16) {
                return Err(format!(
                    "{a} is {}: bswap takes u16, u32 or u64",
                    cx.ty_name(*a)
                ));
            }
            if need_result()? != t {
                return Err("result type differs from the operand's".into());
            }
        }
        Op::Neg(a) => {
            let ia = alu(*a)?;
            if need_result()? != Type::Int(ia) {
                return Err("result type differs from the operand's".into());
            }
        }
        Op::Ext(e, a) => {
            let ia = f
                .ty(*a)
                .int()
                .ok_or_else(|| format!("{a} is not an integer"))?;
            let ir = need_result()?.int().ok_or("result is not an integer")?;
            let ok = match e {
                ExtOp::Zext | ExtOp::Sext => ir.bits >= ia.bits && ir.is_alu(),
                ExtOp::Trunc => ir.bits < ia.bits,
            };
            if !ok {
                return Err(format!("cannot {} {ia} to {ir}", e.name()));
            }
        }
        Op::Load { ptr, off } => {
            let rt = need_result()?;
            let kind = f
                .ty(*ptr)
                .ptr()
                .ok_or_else(|| format!("{ptr} is not a pointer"))?;
            match kind {
                PtrKind::Ctx => {
                    let bytes = match rt {
                        Type::Int(i) => i.bytes(),
                        Type::Ptr(_) => 4,
                    };
                    let kinds = cx.hook_kinds();
                    if kinds.is_empty() {
                        return Err("context load in a function no program calls".into());
                    }
                    for k in kinds {
                        let want = match ctx_load(k, i64::from(*off), bytes) {
                            None => {
                                return Err(format!(
                                    "{k:?} context has no {bytes}-byte field at {off}"
                                ))
                            }
                            Some(CtxField::Int) => {
                                matches!(rt, Type::Int(i) if !i.signed || i.bits == 64)
                            }
                            Some(CtxField::Ptr(p)) => rt == Type::Ptr(p),
                        };
                        if !want {
                            return Err(format!(
                                "{k:?} context field at {off} is not a {}",
                                crate::mir::print::ty(cx.m, rt)
                            ));
                        }
                    }
                }
                PtrKind::Stack
                | PtrKind::StackArg(_)
                | PtrKind::Packet
                | PtrKind::MapValue(_)
                | PtrKind::MapValueOrNull(_)
                | PtrKind::Mem(_)
                | PtrKind::MemOrNull(_) => {
                    if rt.int().is_none() {
                        return Err("only context loads yield pointers".into());
                    }
                }
                _ => return Err(format!("cannot load through {}", cx.ty_name(*ptr))),
            }
        }
        Op::Store { ty, ptr, val, .. } => {
            if !ty.is_alu() && ty.bits != 8 && ty.bits != 16 {
                return Err("bad store width".into());
            }
            match f.ty(*ptr).ptr() {
                Some(
                    PtrKind::Stack
                    | PtrKind::StackArg(_)
                    | PtrKind::Packet
                    | PtrKind::MapValue(_)
                    | PtrKind::MapValueOrNull(_)
                    | PtrKind::Mem(_)
                    | PtrKind::MemOrNull(_),
                ) => {}
                _ => return Err(format!("cannot store through {}", cx.ty_name(*ptr))),
            }
            match val {
                Operand::Value(v) if f.ty(*v).int().is_none() => {
                    return Err(format!("stores only integers; {v} is {}", cx.ty_name(*v)))
                }
                Operand::Imm(c) if !ty.holds(*c) => return Err(format!("{c} does not fit {ty}")),
                _ => {}
            }
            if rt.is_some() {
                return Err("a store has no result".into());
            }
        }
        Op::AtomicAdd { ty, ptr, val, .. } => {
            if !ty.is_alu() {
                return Err("atomic add is 32 or 64 bits wide".into());
            }
            match f.ty(*ptr).ptr() {
                Some(PtrKind::Stack | PtrKind::MapValue(_) | PtrKind::MapValueOrNull(_)) => {}
                _ => return Err(format!("no atomic add through {}", cx.ty_name(*ptr))),
            }
            if f.ty(*val).int().is_none() {
                return Err(format!("{val} is not an integer"));
            }
            if rt.is_some() {
                return Err("an atomic add has no result".into());
            }
        }
        Op::SlotAddr(_) => {
            if need_result()? != Type::Ptr(PtrKind::Stack) {
                return Err("`addr` yields `stack`".into());
            }
        }
        Op::PtrAdd(p, o) => {
            let kind = f
                .ty(*p)
                .ptr()
                .ok_or_else(|| format!("{p} is not a pointer"))?;
            // The context's address plus an offset, as a number: what probe_read_kernel
            // takes to copy a string out of a tracepoint record. The kernel keeps it
            // a moved ctx pointer, which it never lets be loaded through and lets
            // privileged programs pass to a helper; a `u64` result keeps MIR from
            // loading through it too.
            let ctx_addr = kind == PtrKind::Ctx && rt == Some(Type::U64);
            match (kind, o) {
                (PtrKind::Ctx, _) if ctx_addr => {}
                (PtrKind::Stack, Operand::Value(_)) => {
                    return Err("stack pointers move by constants only".into())
                }
                (
                    PtrKind::Stack
                    | PtrKind::Packet
                    | PtrKind::MapValue(_)
                    | PtrKind::MapValueOrNull(_)
                    | PtrKind::Mem(_)
                    | PtrKind::MemOrNull(_),
                    _,
                ) => {}
                _ => return Err(format!("no arithmetic on {}", cx.ty_name(*p))),
            }
            if let Operand::Value(v) = o {
                if f.ty(*v).int().is_none() {
                    return Err(format!("offset {v} is not an integer"));
                }
            }
            if !ctx_addr && need_result()? != Type::Ptr(kind.non_null()) {
                return Err(format!(
                    "`ptradd` of {} yields {}",
                    cx.ty_name(*p),
                    crate::mir::print::ty(cx.m, Type::Ptr(kind.non_null()))
                ));
            }
        }
        Op::MapRef(mp) => {
            if need_result()? != Type::Ptr(PtrKind::Map(*mp)) {
                return Err("`mapref` yields `map(NAME)`".into());
            }
        }
        Op::FuncRef(g) => {
            if need_result()? != Type::Ptr(PtrKind::Func(*g)) {
                return Err("`funcref` yields `fn(NAME)`".into());
            }
        }
        Op::Call(id, args) => {
            let h = helpers::by_id(*id).ok_or_else(|| format!("unknown helper {id}"))?;
            if args.len() != h.args.len() {
                return Err(format!(
                    "{} takes {} arguments, given {}",
                    h.name,
                    h.args.len(),
                    args.len()
                ));
            }
            let map_arg = args.first().and_then(|&a| match f.ty(a) {
                Type::Ptr(PtrKind::Map(m)) => Some(m),
                _ => None,
            });
            let want = match h.ret {
                Ret::Void => {
                    if rt.is_some() {
                        return Err(format!("{} returns nothing", h.name));
                    }
                    None
                }
                Ret::Int(i) => Some(Type::Int(i)),
                Ret::MapValueOrNull => map_arg.map(|m| Type::Ptr(PtrKind::MapValueOrNull(m))),
                Ret::MemOrNull => args
                    .get(1)
                    .and_then(|&a| f.const_value(a))
                    .and_then(|c| u32::try_from(c).ok())
                    .map(|n| Type::Ptr(PtrKind::MemOrNull(n))),
            };
            if let (Some(r), Some(w)) = (rt, want) {
                if r != w {
                    return Err(format!(
                        "{} returns {}",
                        h.name,
                        crate::mir::print::ty(cx.m, w)
                    ));
                }
            }
            for (k, (&a, kind)) in args.iter().zip(h.args).enumerate() {
                arg_type(cx, a, *kind)
                    .map_err(|e| format!("argument {} of {}: {e}", k + 1, h.name))?;
            }
        }
        Op::CallFn(g, args) => {
            let callee = cx.m.func(*g).ok_or("unknown function")?;
            if args.len() != callee.params.len() {
                return Err(format!(
                    "{} takes {} arguments, given {}",
                    callee.name,
                    callee.params.len(),
                    args.len()
                ));
            }
            for (&a, &p) in args.iter().zip(&callee.params) {
                let at = f.ty(a);
                let ok = at == p
                    || matches!(
                        (at, p),
                        (Type::Ptr(PtrKind::Stack), Type::Ptr(PtrKind::StackArg(_)))
                    )
                    || matches!((at, p), (Type::Ptr(k), Type::Ptr(q)) if k.is_nullable() && k.non_null() == q);
                if !ok {
                    return Err(format!(
                        "{a} is {}, {} takes {}",
                        cx.ty_name(a),
                        callee.name,
                        crate::mir::print::ty(cx.m, p)
                    ));
                }
            }
            if need_result()? != Type::Int(callee.ret) {
                return Err(format!("{} returns {}", callee.name, callee.ret));
            }
        }
    }
    Ok(())
}

fn arg_type(cx: &Cx<'_>, a: Value, kind: Arg) -> Result<(), String> {
    let t = cx.f.ty(a);
    let is_ptr = |ok: &dyn Fn(PtrKind) -> bool| matches!(t, Type::Ptr(k) if ok(k));
    let ok = match kind {
        // The kernel lets only get_stackid use a stack trace map.
        Arg::Map => is_ptr(&|k| {
            matches!(k, PtrKind::Map(m) if cx.m.map(m).is_some_and(|d| {
                !matches!(d.kind, MapKind::RingBuf | MapKind::StackTrace)
            }))
        }),
        Arg::StackMap => is_ptr(
            &|k| matches!(k, PtrKind::Map(m) if cx.m.map(m).is_some_and(|d| d.kind == MapKind::StackTrace)),
        ),
        Arg::RingMap => is_ptr(
            &|k| matches!(k, PtrKind::Map(m) if cx.m.map(m).is_some_and(|d| d.kind == MapKind::RingBuf)),
        ),
        Arg::Scalar | Arg::ConstSize | Arg::Size => t.int().is_some(),
        Arg::Key | Arg::MapValue | Arg::MemWrite(_) | Arg::MemRead(_) => is_ptr(&|k| {
            matches!(
                k,
                PtrKind::Stack
                    | PtrKind::StackArg(_)
                    | PtrKind::MapValue(_)
                    | PtrKind::MapValueOrNull(_)
                    | PtrKind::Mem(_)
                    | PtrKind::MemOrNull(_)
            )
        }),
        Arg::Ctx => t == Type::Ptr(PtrKind::Ctx),
        Arg::RingRecord => is_ptr(&|k| matches!(k, PtrKind::Mem(_) | PtrKind::MemOrNull(_))),
        Arg::Callback => is_ptr(&|k| matches!(k, PtrKind::Func(_))),
        Arg::CallbackCtx => t == Type::Ptr(PtrKind::Stack) || cx.f.const_value(a) == Some(0),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{a} ({}) is not {kind:?}", cx.ty_name(a)))
    }
}

fn term_type(cx: &Cx<'_>, b: Block) -> Result<(), String> {
    let f = cx.f;
    let term = &f.block(b).term;
    for t in term.targets() {
        let params = &f.block(t.block).params;
        for (&a, &p) in t.args.iter().zip(params) {
            if f.ty(a) != f.ty(p)
                && !matches!((f.ty(a), f.ty(p)), (Type::Ptr(k), Type::Ptr(q)) if k.is_nullable() && k.non_null() == q)
            {
                return Err(format!(
                    "{a} is {}, {} parameter {p} is {}",
                    cx.ty_name(a),
                    t.block,
                    cx.ty_name(p)
                ));
            }
        }
    }
    match term {
        Term::Jump(_) => Ok(()),
        Term::Return(v) => match f.ty(*v) {
            Type::Int(_) => Ok(()),
            _ => Err(format!("returns {}, not an integer", cx.ty_name(*v))),
        },
        Term::Br {
            cond, a, b: rhs, ..
        } => {
            let ta = f.ty(*a);
            match (ta, rhs) {
                (Type::Int(i), _) if !i.is_alu() => Err(format!(
                    "{a} is {i}: compare 32- or 64-bit integers (zext first)"
                )),
                (Type::Int(i), Operand::Imm(c)) if !i.holds(*c) => {
                    Err(format!("{c} does not fit {i}"))
                }
                (Type::Int(_), Operand::Imm(_)) => Ok(()),
                (Type::Int(_), Operand::Value(v)) if f.ty(*v) == ta => Ok(()),
                (Type::Ptr(k), Operand::Imm(0))
                    if k.is_nullable() && matches!(cond, Cond::Eq | Cond::Ne) =>
                {
                    Ok(())
                }
                (Type::Ptr(PtrKind::Packet), Operand::Value(v))
                | (Type::Ptr(PtrKind::PacketEnd), Operand::Value(v))
                    if matches!(
                        (ta, f.ty(*v)),
                        (Type::Ptr(PtrKind::Packet), Type::Ptr(PtrKind::PacketEnd))
                            | (Type::Ptr(PtrKind::PacketEnd), Type::Ptr(PtrKind::Packet))
                            | (Type::Ptr(PtrKind::Packet), Type::Ptr(PtrKind::Packet))
                    ) && matches!(cond, Cond::Ugt | Cond::Uge | Cond::Ult | Cond::Ule) =>
                {
                    Ok(())
                }
                _ => Err(format!(
                    "cannot compare {} with {}",
                    cx.ty_name(*a),
                    match rhs {
                        Operand::Value(v) => cx.ty_name(*v),
                        Operand::Imm(c) => c.to_string(),
                    }
                )),
            }
        }
    }
}

/// Every use is dominated by its definition; every block is reachable.
pub(super) fn check_dominance(cx: &mut Cx<'_>, cfg: &Cfg) {
    let f = cx.f;
    let pos = super::positions(f);
    let def_at = |v: Value| -> Option<(Block, usize)> {
        match f.value_def(v) {
            ValueDef::Param(b, _) => Some((b, 0)),
            ValueDef::Inst(i) => pos.get(i.index()).map(|&(b, k)| (b, k + 1)),
            ValueDef::Unused => None,
        }
    };
    let dominated = |v: Value, b: Block, at: usize| match def_at(v) {
        Some((db, dk)) if db == b => dk <= at,
        Some((db, _)) => cfg.dominates(db, b),
        None => false,
    };
    for b in f.block_ids() {
        if !cfg.reachable(b) {
            cx.err(Loc::Block(b), ErrorKind::Unreachable);
            continue;
        }
        for (idx, &i) in f.block(b).insts.iter().enumerate() {
            for v in f.inst(i).op.args() {
                if !dominated(v, b, idx) {
                    let loc = cx.inst_loc(b, idx);
                    cx.err(loc, ErrorKind::NotDominated(v.to_string()));
                }
            }
        }
        let n = f.block(b).insts.len();
        for v in f.block(b).term.args() {
            if !dominated(v, b, n) {
                let loc = cx.term_loc(b);
                cx.err(loc, ErrorKind::NotDominated(v.to_string()));
            }
        }
    }
}
