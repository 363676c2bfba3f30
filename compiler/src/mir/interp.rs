//! A reference interpreter of MIR's integer semantics: ALU ops, extensions, compares,
//! block parameters, loops and BPF-to-BPF calls, with eBPF's rules (32-bit operations
//! zero-extend, `x / 0 = 0`, `x % 0 = x`, shifts masked). A differential test runs
//! random programs here and in the kernel (BPF_PROG_TEST_RUN) and compares results.
//! Memory, helpers and pointers are out of scope: such functions are refused.

use super::func::{Function, Module, Op, Operand, Term};
use super::types::{BinOp, Cond, ExtOp, IntTy, Type};
use super::{Block, FuncId, Value};

/// Why a function could not be interpreted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterpError {
    #[error("{0}: not interpretable (memory, helpers and pointers are out of scope)")]
    Unsupported(String),
    #[error("step budget exhausted")]
    Budget,
    #[error("malformed: {0}")]
    Malformed(String),
}

/// Runs `f` of `m` on integer arguments; returns its result as a 64-bit register.
pub fn run(m: &Module, f: FuncId, args: &[u64]) -> Result<u64, InterpError> {
    let mut budget = 1_000_000u64;
    call(m, f, args, &mut budget, 0)
}

fn mask(t: Type, v: u64) -> u64 {
    match t {
        Type::Int(IntTy { bits: 64, .. }) | Type::Ptr(_) => v,
        Type::Int(i) => v & ((1u64 << i.bits) - 1),
    }
}

fn call(
    m: &Module,
    id: FuncId,
    args: &[u64],
    budget: &mut u64,
    depth: u32,
) -> Result<u64, InterpError> {
    let f = m
        .func(id)
        .ok_or_else(|| InterpError::Malformed(format!("no {id}")))?;
    if depth > 8 {
        return Err(InterpError::Malformed("call depth".into()));
    }
    let mut vals: Vec<u64> = vec![0; f.values.len()];
    let mut block = Block(0);
    let mut incoming: Vec<u64> = args.to_vec();
    loop {
        let data = f
            .blocks
            .get(block.index())
            .ok_or_else(|| InterpError::Malformed(format!("no {block}")))?;
        for (&p, &a) in data.params.iter().zip(&incoming) {
            set(&mut vals, p, a);
        }
        for &i in &data.insts {
            *budget = budget.checked_sub(1).ok_or(InterpError::Budget)?;
            let d = f.inst(i);
            let r = eval(m, f, &d.op, d.result, &vals, budget, depth)?;
            if let (Some(v), Some(x)) = (d.result, r) {
                set(&mut vals, v, mask(f.ty(v), x));
            }
        }
        *budget = budget.checked_sub(1).ok_or(InterpError::Budget)?;
        let get = |v: Value| vals.get(v.index()).copied().unwrap_or(0);
        match &data.term {
            Term::Return(v) => return Ok(get(*v)),
            Term::Jump(t) => {
                incoming = t.args.iter().map(|&v| get(v)).collect();
                block = t.block;
            }
            Term::Br {
                cond,
                a,
                b,
                then,
                els,
            } => {
                let t = f.ty(*a);
                let x = get(*a);
                let y = match b {
                    Operand::Value(v) => get(*v),
                    Operand::Imm(c) => mask(t, *c as u64),
                };
                let target = if compare(*cond, t.is_32(), x, y) {
                    then
                } else {
                    els
                };
                incoming = target.args.iter().map(|&v| get(v)).collect();
                block = target.block;
            }
        }
    }
}

fn set(vals: &mut [u64], v: Value, x: u64) {
    if let Some(slot) = vals.get_mut(v.index()) {
        *slot = x;
    }
}

pub(crate) fn compare(c: Cond, w32: bool, x: u64, y: u64) -> bool {
    let (ux, uy, sx, sy) = if w32 {
        (
            x & 0xffff_ffff,
            y & 0xffff_ffff,
            i64::from(x as u32 as i32),
            i64::from(y as u32 as i32),
        )
    } else {
        (x, y, x as i64, y as i64)
    };
    match c {
        Cond::Eq => ux == uy,
        Cond::Ne => ux != uy,
        Cond::Ugt => ux > uy,
        Cond::Uge => ux >= uy,
        Cond::Ult => ux < uy,
        Cond::Ule => ux <= uy,
        Cond::Sgt => sx > sy,
        Cond::Sge => sx >= sy,
        Cond::Slt => sx < sy,
        Cond::Sle => sx <= sy,
    }
}

pub(crate) fn alu(op: BinOp, t: IntTy, x: u64, y: u64) -> u64 {
    if t.bits <= 32 {
        let (a, b) = (x as u32, y as u32);
        let (sa, sb) = (a as i32, b as i32);
        let r = match op {
            BinOp::Add => a.wrapping_add(b),
            BinOp::Sub => a.wrapping_sub(b),
            BinOp::Mul => a.wrapping_mul(b),
            BinOp::Div if t.signed => {
                if sb == 0 {
                    0
                } else {
                    sa.wrapping_div(sb) as u32
                }
            }
            BinOp::Div => a.checked_div(b).unwrap_or(0),
            BinOp::Mod if t.signed => {
                if sb == 0 {
                    a
                } else {
                    sa.wrapping_rem(sb) as u32
                }
            }
            BinOp::Mod => {
                if b == 0 {
                    a
                } else {
                    a % b
                }
            }
            BinOp::And => a & b,
            BinOp::Or => a | b,
            BinOp::Xor => a ^ b,
            BinOp::Shl => a.wrapping_shl(b & 31),
            BinOp::Lshr => a.wrapping_shr(b & 31),
            BinOp::Ashr => (sa.wrapping_shr(b & 31)) as u32,
        };
        u64::from(r)
    } else {
        let (sa, sb) = (x as i64, y as i64);
        match op {
            BinOp::Add => x.wrapping_add(y),
            BinOp::Sub => x.wrapping_sub(y),
            BinOp::Mul => x.wrapping_mul(y),
            BinOp::Div if t.signed => {
                if sb == 0 {
                    0
                } else {
                    sa.wrapping_div(sb) as u64
                }
            }
            BinOp::Div => x.checked_div(y).unwrap_or(0),
            BinOp::Mod if t.signed => {
                if sb == 0 {
                    x
                } else {
                    sa.wrapping_rem(sb) as u64
                }
            }
            BinOp::Mod => {
                if y == 0 {
                    x
                } else {
                    x % y
                }
            }
            BinOp::And => x & y,
            BinOp::Or => x | y,
            BinOp::Xor => x ^ y,
            BinOp::Shl => x.wrapping_shl((y & 63) as u32),
            BinOp::Lshr => x.wrapping_shr((y & 63) as u32),
            BinOp::Ashr => sa.wrapping_shr((y & 63) as u32) as u64,
        }
    }
}

fn eval(
    m: &Module,
    f: &Function,
    op: &Op,
    result: Option<Value>,
    vals: &[u64],
    budget: &mut u64,
    depth: u32,
) -> Result<Option<u64>, InterpError> {
    let get = |v: &Value| vals.get(v.index()).copied().unwrap_or(0);
    let rt = result.map(|v| f.ty(v));
    let int = |t: Option<Type>| {
        t.and_then(Type::int)
            .ok_or_else(|| InterpError::Unsupported(format!("{op:?}")))
    };
    Ok(Some(match op {
        Op::Iconst(c) => *c as u64,
        Op::Binary(o, a, b) => {
            let t = int(Some(f.ty(*a)))?;
            let y = match b {
                Operand::Value(v) => get(v),
                Operand::Imm(c) => *c as u64,
            };
            alu(*o, t, get(a), y)
        }
        Op::Neg(a) => {
            let t = int(Some(f.ty(*a)))?;
            alu(BinOp::Sub, t, 0, get(a))
        }
        Op::Bswap(a) => {
            let t = int(Some(f.ty(*a)))?;
            match t.bits {
                16 => u64::from((get(a) as u16).swap_bytes()),
                32 => u64::from((get(a) as u32).swap_bytes()),
                _ => get(a).swap_bytes(),
            }
        }
        Op::Ext(e, a) => {
            let from = int(Some(f.ty(*a)))?;
            let to = int(rt)?;
            let x = get(a);
            match e {
                ExtOp::Zext | ExtOp::Trunc => x,
                ExtOp::Sext => {
                    let sh = 64 - u32::from(from.bits);
                    let s = ((x << sh) as i64 >> sh) as u64;
                    if to.bits <= 32 {
                        s & 0xffff_ffff
                    } else {
                        s
                    }
                }
            }
        }
        Op::CallFn(g, args) => {
            let a: Vec<u64> = args.iter().map(get).collect();
            call(m, *g, &a, budget, depth + 1)?
        }
        _ => return Err(InterpError::Unsupported(format!("{op:?}"))),
    }))
}
