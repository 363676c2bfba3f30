//! The text form of the MIR (parsed back by [`super::parse`]). One line per instruction;
//! every result shows its type, so a reader never has to infer one.
//!
//! ```text
//! map counts: percpu_hash, key 16, value 8, max 1024
//!
//! func count(ctx) -> i64 tracepoint syscalls/sys_enter_openat {
//!     ss0 = slot 16, align 8
//! block0(v0: ctx):
//!     v1: stack = addr ss0
//!     v2: i64 = call get_current_comm(v1, v3)
//!     br eq v2, 0, block1, block2(v2)
//! ...
//! }
//! ```

use std::fmt::Write as _;

use super::func::{BlockCall, Function, InstData, MapDef, Module, Op, Operand, Term};
use super::helpers;
use super::types::{Hook, IntTy, PtrKind, Type};
use super::Value;

/// Prints a whole module: maps, then functions, separated by blank lines.
pub fn module(m: &Module) -> String {
    let mut out = String::new();
    for map in &m.maps {
        out.push_str(&map_def(map));
        out.push('\n');
    }
    for f in &m.funcs {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&function(m, f));
    }
    out
}

pub fn map_def(map: &MapDef) -> String {
    let mut s = format!("map {}: {}", map.name, map.kind.name());
    if map.key_size != 0 || map.value_size != 0 {
        let _ = write!(s, ", key {}, value {}", map.key_size, map.value_size);
    }
    let _ = write!(s, ", max {}", map.max_entries);
    if map.flags != 0 {
        let _ = write!(s, ", flags {}", map.flags);
    }
    s
}

pub fn ty(m: &Module, t: Type) -> String {
    let map = |id: super::MapId| {
        m.map(id)
            .map(|d| d.name.clone())
            .unwrap_or_else(|| id.to_string())
    };
    match t {
        Type::Int(i) => i.to_string(),
        Type::Ptr(p) => match p {
            PtrKind::Ctx => "ctx".into(),
            PtrKind::Stack => "stack".into(),
            PtrKind::StackArg(n) => format!("stack({n})"),
            PtrKind::Packet => "pkt".into(),
            PtrKind::PacketEnd => "pkt_end".into(),
            PtrKind::MapValue(id) => format!("val({})", map(id)),
            PtrKind::MapValueOrNull(id) => format!("val?({})", map(id)),
            PtrKind::Map(id) => format!("map({})", map(id)),
            PtrKind::Mem(n) => format!("mem({n})"),
            PtrKind::MemOrNull(n) => format!("mem?({n})"),
            PtrKind::Func(id) => format!(
                "fn({})",
                m.func(id)
                    .map(|f| f.name.clone())
                    .unwrap_or_else(|| id.to_string())
            ),
        },
    }
}

pub fn hook(h: &Hook) -> String {
    match h {
        Hook::Xdp => "xdp".into(),
        Hook::Tc => "tc".into(),
        Hook::Tracepoint { category, name } => format!("tracepoint {category}/{name}"),
        Hook::RawTp(n) => format!("raw_tp {n}"),
        Hook::TpBtf(n) => format!("tp_btf {n}"),
        Hook::Uprobe(t) | Hook::Uretprobe(t) if t.is_empty() => h.section(),
        Hook::Uprobe(t) => format!("uprobe {t}"),
        Hook::Uretprobe(t) => format!("uretprobe {t}"),
        Hook::PerfEvent => "perf_event".into(),
        Hook::CgroupSockAddr(n) => format!("cgroup_sock_addr {n}"),
    }
}

/// An immediate as its type reads it: unsigned 64-bit constants print unsigned.
pub fn imm(t: Option<IntTy>, c: i64) -> String {
    match t {
        Some(IntTy {
            bits: 64,
            signed: false,
        }) if c < 0 => (c as u64).to_string(),
        _ => c.to_string(),
    }
}

pub fn function(m: &Module, f: &Function) -> String {
    let params: Vec<String> = f.params.iter().map(|&t| ty(m, t)).collect();
    let mut out = format!("func {}({}) -> {}", f.name, params.join(", "), f.ret);
    if let Some(h) = &f.hook {
        let _ = write!(out, " {}", hook(h));
    }
    if f.global {
        out.push_str(" global");
    }
    out.push_str(" {\n");
    for (i, s) in f.slots.iter().enumerate() {
        let _ = writeln!(out, "    ss{i} = slot {}, align {}", s.size, s.align);
    }
    for b in f.block_ids() {
        let data = f.block(b);
        let _ = write!(out, "{b}");
        if !data.params.is_empty() {
            let ps: Vec<String> = data
                .params
                .iter()
                .map(|&v| format!("{v}: {}", ty(m, f.ty(v))))
                .collect();
            let _ = write!(out, "({})", ps.join(", "));
        }
        out.push_str(":\n");
        for &i in &data.insts {
            let _ = writeln!(out, "    {}", inst(m, f, f.inst(i)));
        }
        let _ = writeln!(out, "    {}", term(m, f, &data.term));
    }
    out.push_str("}\n");
    out
}

fn operand(t: Option<IntTy>, o: &Operand) -> String {
    match o {
        Operand::Value(v) => v.to_string(),
        Operand::Imm(c) => imm(t, *c),
    }
}

fn addr(ptr: Value, off: i16) -> String {
    if off < 0 {
        format!("[{ptr}-{}]", -i32::from(off))
    } else {
        format!("[{ptr}+{off}]")
    }
}

fn args(vs: &[Value]) -> String {
    vs.iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// One instruction, e.g. `v3: u64 = add v1, 8`.
pub fn inst(m: &Module, f: &Function, d: &InstData) -> String {
    let result_ty = d
        .result
        .and_then(|v| f.values.get(v.index()))
        .map(|vd| vd.ty);
    let int = result_ty.and_then(Type::int);
    let body = match &d.op {
        Op::Iconst(c) => format!("iconst {}", imm(int, *c)),
        Op::Binary(op, a, b) => format!("{} {a}, {}", op.name(), operand(int, b)),
        Op::Neg(a) => format!("neg {a}"),
        Op::Bswap(a) => format!("bswap {a}"),
        Op::Ext(op, a) => format!("{} {a}", op.name()),
        Op::Load { ptr, off } => format!("load {}", addr(*ptr, *off)),
        Op::Store { ty, ptr, off, val } => {
            format!(
                "store.{ty} {}, {}",
                addr(*ptr, *off),
                operand(Some(*ty), val)
            )
        }
        Op::AtomicAdd { ty, ptr, off, val } => {
            format!("atomic_add.{ty} {}, {val}", addr(*ptr, *off))
        }
        Op::SlotAddr(s) => format!("addr {s}"),
        Op::PtrAdd(p, o) => format!("ptradd {p}, {}", operand(None, o)),
        Op::MapRef(id) => format!(
            "mapref {}",
            m.map(*id)
                .map(|d| d.name.clone())
                .unwrap_or_else(|| id.to_string())
        ),
        Op::FuncRef(id) => format!(
            "funcref {}",
            m.func(*id)
                .map(|d| d.name.clone())
                .unwrap_or_else(|| id.to_string())
        ),
        Op::Call(id, vs) => match helpers::by_id(*id) {
            Some(h) => format!("call {}({})", h.name, args(vs)),
            None => format!("call helper{id}({})", args(vs)),
        },
        Op::CallFn(id, vs) => format!(
            "callfn {}({})",
            m.func(*id)
                .map(|d| d.name.clone())
                .unwrap_or_else(|| id.to_string()),
            args(vs)
        ),
    };
    match (d.result, result_ty) {
        (Some(v), Some(t)) => format!("{v}: {} = {body}", ty(m, t)),
        _ => body,
    }
}

fn block_call(t: &BlockCall) -> String {
    if t.args.is_empty() {
        t.block.to_string()
    } else {
        format!("{}({})", t.block, args(&t.args))
    }
}

pub fn term(_m: &Module, f: &Function, t: &Term) -> String {
    match t {
        Term::Jump(t) => format!("jump {}", block_call(t)),
        Term::Br {
            cond,
            a,
            b,
            then,
            els,
        } => {
            let int = f.values.get(a.index()).and_then(|d| d.ty.int());
            format!(
                "br {} {a}, {}, {}, {}",
                cond.name(),
                operand(int, b),
                block_call(then),
                block_call(els)
            )
        }
        Term::Return(v) => format!("return {v}"),
    }
}
