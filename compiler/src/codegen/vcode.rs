//! VCode: eBPF-shaped instructions over virtual registers, between instruction selection
//! and register allocation. Fixed registers (call arguments r1–r5, results in r0, the
//! frame pointer r10) appear as physical operands; everything else is a virtual register.

use std::fmt;

use crate::bpf::insn::Size;
use crate::mir::{FuncId, MapId, Slot};

/// A register operand: virtual (allocated later) or physical (fixed by the ABI).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reg {
    V(u32),
    P(u8),
}

impl fmt::Display for Reg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reg::V(n) => write!(f, "%{n}"),
            Reg::P(n) => write!(f, "r{n}"),
        }
    }
}

/// A second operand: register or 32-bit immediate (sign-extended by 64-bit operations).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Src {
    Reg(Reg),
    Imm(i32),
}

/// The base of a memory access: a register, or a stack slot of the frame (`r10 - offset`
/// once the frame is laid out) plus a constant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base {
    Reg(Reg),
    Frame(FrameRef),
}

/// A place in the frame: a MIR slot plus offset, a spill slot, or the move scratch slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameRef {
    Slot(Slot, i32),
    Spill(u32),
    Scratch,
}

/// An index into [`VCode::blocks`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VBlock(pub u32);

impl fmt::Display for VBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "L{}", self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VInst {
    Mov {
        dst: Reg,
        src: Reg,
    },
    /// `dst = imm`: 64-bit (sign-extending) or 32-bit (zero-extending) move.
    MovImm {
        dst: Reg,
        imm: i32,
        w32: bool,
    },
    LdImm64 {
        dst: Reg,
        imm: u64,
    },
    LdMap {
        dst: Reg,
        map: MapId,
    },
    LdFunc {
        dst: Reg,
        func: FuncId,
    },
    /// `dst = lhs op rhs`; `op` is a `BPF_ADD`..`BPF_ARSH` code; `sdiv` selects signed
    /// division and modulo (offset 1).
    Alu {
        op: u8,
        w32: bool,
        sdiv: bool,
        dst: Reg,
        lhs: Reg,
        rhs: Src,
    },
    Neg {
        w32: bool,
        dst: Reg,
        src: Reg,
    },
    /// `dst = src` in network byte order swapped to host order (`be16/32/64`).
    Bswap {
        dst: Reg,
        src: Reg,
        bits: u8,
    },
    /// `dst = src` sign-extended from `from` bits to 64 (then truncated to 32 if `w32`).
    Sext {
        dst: Reg,
        src: Reg,
        from: u8,
        w32: bool,
    },
    /// `dst = (u32) src`.
    Mov32 {
        dst: Reg,
        src: Reg,
    },
    /// `dst = r10 + frame offset`.
    FrameAddr {
        dst: Reg,
        at: FrameRef,
    },
    Load {
        size: Size,
        dst: Reg,
        base: Base,
        off: i16,
    },
    Store {
        size: Size,
        base: Base,
        off: i16,
        src: Src,
    },
    /// `lock *(size *)(base + off) += src`.
    AtomicAdd {
        size: Size,
        base: Base,
        off: i16,
        src: Reg,
    },
    /// Helper call: reads r1..=r`nargs`, writes r0, clobbers r1–r5.
    Call {
        helper: i32,
        nargs: u8,
    },
    /// BPF-to-BPF call, same convention.
    CallFn {
        func: FuncId,
        nargs: u8,
    },
    /// Store a spilled value (`of` is the virtual register it belongs to).
    Spill {
        slot: u32,
        src: Reg,
        of: u32,
    },
    /// Reload a spilled value.
    Reload {
        dst: Reg,
        slot: u32,
        of: u32,
    },
    /// Block parameters: all `dst = src` at once. `tmp` is a register free at this point,
    /// for memory-to-memory moves.
    ParMove {
        moves: Vec<(Reg, Reg)>,
        tmp: Reg,
    },
    Jump {
        target: VBlock,
    },
    /// `if a op b goto then else els`; `op` is a `BPF_JEQ`..`BPF_JSLE` code.
    Branch {
        op: u8,
        w32: bool,
        a: Reg,
        b: Src,
        then: VBlock,
        els: VBlock,
    },
    /// Return r0.
    Exit,
}

/// How an instruction touches a register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Read before any write of this instruction.
    Use,
    /// Read while the instruction writes its result (so it may not share the result's register).
    LateUse,
    Def,
    /// Written with garbage (call-clobbered).
    Clobber,
    /// A scratch register the instruction may use freely: occupied while it runs, holding
    /// no value before or after.
    Scratch,
}

impl VInst {
    /// Every register operand and its role.
    pub fn operands(&self) -> Vec<(Reg, Role)> {
        use Role::*;
        let base = |b: &Base| match b {
            Base::Reg(r) => vec![(*r, Use)],
            Base::Frame(_) => vec![],
        };
        match self {
            VInst::Mov { dst, src } | VInst::Mov32 { dst, src } => vec![(*src, Use), (*dst, Def)],
            VInst::MovImm { dst, .. }
            | VInst::LdImm64 { dst, .. }
            | VInst::LdMap { dst, .. }
            | VInst::LdFunc { dst, .. }
            | VInst::FrameAddr { dst, .. } => vec![(*dst, Def)],
            VInst::Alu { dst, lhs, rhs, .. } => {
                let mut v = vec![(*lhs, Use), (*dst, Def)];
                if let Src::Reg(r) = rhs {
                    v.push((*r, LateUse));
                }
                v
            }
            VInst::Neg { dst, src, .. }
            | VInst::Sext { dst, src, .. }
            | VInst::Bswap { dst, src, .. } => {
                vec![(*src, Use), (*dst, Def)]
            }
            VInst::Load { dst, base: b, .. } => {
                let mut v = base(b);
                v.push((*dst, Def));
                v
            }
            VInst::AtomicAdd { base: b, src, .. } => {
                let mut v = base(b);
                v.push((*src, Use));
                v
            }
            VInst::Store { base: b, src, .. } => {
                let mut v = base(b);
                if let Src::Reg(r) = src {
                    v.push((*r, Use));
                }
                v
            }
            VInst::Call { nargs, .. } | VInst::CallFn { nargs, .. } => {
                let mut v: Vec<(Reg, Role)> = (1..=*nargs).map(|k| (Reg::P(k), Use)).collect();
                v.push((Reg::P(0), Def));
                v.extend((1..=5).map(|k| (Reg::P(k), Clobber)));
                v
            }
            VInst::Spill { src, .. } => vec![(*src, Use)],
            VInst::Reload { dst, .. } => vec![(*dst, Def)],
            VInst::ParMove { moves, tmp } => {
                let mut v: Vec<(Reg, Role)> = moves.iter().map(|&(_, s)| (s, Use)).collect();
                v.extend(moves.iter().map(|&(d, _)| (d, Def)));
                v.push((*tmp, Scratch));
                v
            }
            VInst::Branch { a, b, .. } => {
                let mut v = vec![(*a, Use)];
                if let Src::Reg(r) = b {
                    v.push((*r, Use));
                }
                v
            }
            VInst::Jump { .. } => vec![],
            VInst::Exit => vec![(Reg::P(0), Use)],
        }
    }

    /// Rewrites every register operand.
    pub fn map_regs(&mut self, mut f: impl FnMut(Reg, Role) -> Reg) {
        let src = |s: &mut Src, f: &mut dyn FnMut(Reg, Role) -> Reg, role| {
            if let Src::Reg(r) = s {
                *r = f(*r, role);
            }
        };
        let base = |b: &mut Base, f: &mut dyn FnMut(Reg, Role) -> Reg| {
            if let Base::Reg(r) = b {
                *r = f(*r, Role::Use);
            }
        };
        match self {
            VInst::Mov { dst, src: s }
            | VInst::Mov32 { dst, src: s }
            | VInst::Neg { dst, src: s, .. }
            | VInst::Sext { dst, src: s, .. }
            | VInst::Bswap { dst, src: s, .. } => {
                *s = f(*s, Role::Use);
                *dst = f(*dst, Role::Def);
            }
            VInst::MovImm { dst, .. }
            | VInst::LdImm64 { dst, .. }
            | VInst::LdMap { dst, .. }
            | VInst::LdFunc { dst, .. }
            | VInst::FrameAddr { dst, .. }
            | VInst::Reload { dst, .. } => *dst = f(*dst, Role::Def),
            VInst::Alu { dst, lhs, rhs, .. } => {
                *lhs = f(*lhs, Role::Use);
                src(rhs, &mut f, Role::LateUse);
                *dst = f(*dst, Role::Def);
            }
            VInst::Load { dst, base: b, .. } => {
                base(b, &mut f);
                *dst = f(*dst, Role::Def);
            }
            VInst::Store {
                base: b, src: s, ..
            } => {
                base(b, &mut f);
                src(s, &mut f, Role::Use);
            }
            VInst::Spill { src: s, .. } => *s = f(*s, Role::Use),
            VInst::AtomicAdd {
                base: b, src: s, ..
            } => {
                base(b, &mut f);
                *s = f(*s, Role::Use);
            }
            VInst::ParMove { moves, tmp } => {
                for (_, s) in moves.iter_mut() {
                    *s = f(*s, Role::Use);
                }
                for (d, _) in moves.iter_mut() {
                    *d = f(*d, Role::Def);
                }
                *tmp = f(*tmp, Role::Scratch);
            }
            VInst::Branch { a, b, .. } => {
                *a = f(*a, Role::Use);
                src(b, &mut f, Role::Use);
            }
            VInst::Call { .. } | VInst::CallFn { .. } | VInst::Jump { .. } | VInst::Exit => {}
        }
    }

    pub fn succs(&self) -> Vec<VBlock> {
        match self {
            VInst::Jump { target } => vec![*target],
            VInst::Branch { then, els, .. } => vec![*then, *els],
            _ => vec![],
        }
    }

    pub fn is_call(&self) -> bool {
        matches!(self, VInst::Call { .. } | VInst::CallFn { .. })
    }
}

#[derive(Debug, Clone, Default)]
pub struct VBlockData {
    pub insts: Vec<VInst>,
    /// The MIR block this code comes from (for an edge block, the block the edge leaves),
    /// so listings can say which source each instruction belongs to.
    pub mir: u32,
}

/// One function's VCode: blocks in layout order (block 0 is the entry).
#[derive(Debug, Clone, Default)]
pub struct VCode {
    pub name: String,
    pub blocks: Vec<VBlockData>,
    pub nparams: u8,
    /// Number of virtual registers.
    pub nvregs: u32,
    /// Virtual registers that must not be spilled (reload and move temporaries).
    pub temps: Vec<bool>,
    /// For a temporary created by spilling: the virtual register it stands for.
    pub origin: Vec<Option<u32>>,
    /// Number of spill slots.
    pub spills: u32,
    /// Whether any block-parameter move needs the scratch slot.
    pub uses_scratch: bool,
}

impl VCode {
    pub fn new_vreg(&mut self, temp: bool) -> Reg {
        let r = Reg::V(self.nvregs);
        self.nvregs += 1;
        self.temps.push(temp);
        self.origin.push(None);
        r
    }

    pub fn succs(&self, b: usize) -> Vec<VBlock> {
        self.blocks
            .get(b)
            .and_then(|d| d.insts.last())
            .map(VInst::succs)
            .unwrap_or_default()
    }
}

/// A listing of allocated VCode: one instruction per line, virtual registers shown as
/// their location (`r6`, `[spill 0]`).
pub fn listing(vc: &VCode, alloc: &super::regalloc::Allocation) -> String {
    use super::regalloc::Loc;
    let name = |r: Reg| match r {
        Reg::P(p) => format!("r{p}"),
        Reg::V(v) => match alloc.get(v as usize).copied().flatten() {
            Some(Loc::Reg(p)) => format!("r{p}"),
            Some(Loc::Spill(s)) => format!("[spill {s}]"),
            None => format!("%{v}?"),
        },
    };
    let src = |s: &Src| match s {
        Src::Reg(r) => name(*r),
        Src::Imm(k) => k.to_string(),
    };
    let base = |b: &Base, off: i16| match b {
        Base::Reg(r) => format!("[{}{off:+}]", name(*r)),
        Base::Frame(f) => format!("[{}{off:+}]", frame_name(*f)),
    };
    let mut out = String::new();
    for (b, data) in vc.blocks.iter().enumerate() {
        out.push_str(&format!("  L{b}:\n"));
        for i in &data.insts {
            let text = match i {
                VInst::Mov { dst, src: s } => format!("{} = {}", name(*dst), name(*s)),
                VInst::MovImm { dst, imm, w32 } => {
                    format!("{} = {imm}{}", name(*dst), if *w32 { " (32)" } else { "" })
                }
                VInst::LdImm64 { dst, imm } => format!("{} = {imm:#x} ll", name(*dst)),
                VInst::LdMap { dst, map } => format!("{} = map {}", name(*dst), map.0),
                VInst::LdFunc { dst, func } => format!("{} = func {}", name(*dst), func.0),
                VInst::Alu {
                    op,
                    w32,
                    sdiv,
                    dst,
                    lhs,
                    rhs,
                } => format!(
                    "{} = {}{}{} {}, {}",
                    name(*dst),
                    if *sdiv { "s" } else { "" },
                    alu_name(*op),
                    if *w32 { "32" } else { "" },
                    name(*lhs),
                    src(rhs)
                ),
                VInst::Neg { dst, src: s, .. } => format!("{} = -{}", name(*dst), name(*s)),
                VInst::Bswap { dst, src: s, bits } => {
                    format!("{} = be{bits} {}", name(*dst), name(*s))
                }
                VInst::Sext {
                    dst, src: s, from, ..
                } => format!("{} = sext{from} {}", name(*dst), name(*s)),
                VInst::Mov32 { dst, src: s } => format!("{} = (u32) {}", name(*dst), name(*s)),
                VInst::FrameAddr { dst, at } => format!("{} = &{}", name(*dst), frame_name(*at)),
                VInst::Load {
                    size,
                    dst,
                    base: b,
                    off,
                } => format!("{} = load.{} {}", name(*dst), size.bytes(), base(b, *off)),
                VInst::Store {
                    size,
                    base: b,
                    off,
                    src: s,
                } => format!("store.{} {}, {}", size.bytes(), base(b, *off), src(s)),
                VInst::AtomicAdd {
                    size,
                    base: b,
                    off,
                    src: s,
                } => {
                    format!(
                        "atomic_add.{} {}, {}",
                        size.bytes(),
                        base(b, *off),
                        name(*s)
                    )
                }
                VInst::Call { helper, nargs } => match crate::mir::helpers::by_id(*helper as u32) {
                    Some(h) => format!("call {} ({nargs} args)", h.name),
                    None => format!("call #{helper} ({nargs} args)"),
                },
                VInst::CallFn { func, nargs } => format!("callfn {} ({nargs} args)", func.0),
                VInst::Spill { slot, src: s, .. } => format!("[spill {slot}] = {}", name(*s)),
                VInst::Reload { dst, slot, .. } => format!("{} = [spill {slot}]", name(*dst)),
                VInst::ParMove { moves, .. } => {
                    let ms: Vec<String> = moves
                        .iter()
                        .map(|(d, s)| format!("{} <- {}", name(*d), name(*s)))
                        .collect();
                    format!("parallel {{ {} }}", ms.join(", "))
                }
                VInst::Jump { target } => format!("jump {target}"),
                VInst::Branch {
                    op,
                    w32,
                    a,
                    b: rhs,
                    then,
                    els,
                } => {
                    format!(
                        "br{} {} {}, {} ? {then} : {els}",
                        if *w32 { "32" } else { "" },
                        jmp_name(*op),
                        name(*a),
                        src(rhs)
                    )
                }
                VInst::Exit => "exit".into(),
            };
            out.push_str(&format!("    {text}\n"));
        }
    }
    out
}

fn alu_name(op: u8) -> &'static str {
    use crate::bpf::insn::*;
    match op {
        BPF_ADD => "add",
        BPF_SUB => "sub",
        BPF_MUL => "mul",
        BPF_DIV => "div",
        BPF_MOD => "mod",
        BPF_AND => "and",
        BPF_OR => "or",
        BPF_XOR => "xor",
        BPF_LSH => "shl",
        BPF_RSH => "lshr",
        BPF_ARSH => "ashr",
        _ => "?",
    }
}

fn jmp_name(op: u8) -> &'static str {
    use crate::bpf::insn::*;
    match op {
        BPF_JEQ => "eq",
        BPF_JNE => "ne",
        BPF_JGT => "ugt",
        BPF_JGE => "uge",
        BPF_JLT => "ult",
        BPF_JLE => "ule",
        BPF_JSGT => "sgt",
        BPF_JSGE => "sge",
        BPF_JSLT => "slt",
        BPF_JSLE => "sle",
        _ => "?",
    }
}

fn frame_name(f: FrameRef) -> String {
    match f {
        FrameRef::Slot(s, 0) => s.to_string(),
        FrameRef::Slot(s, k) => format!("{s}{k:+}"),
        FrameRef::Spill(n) => format!("spill {n}"),
        FrameRef::Scratch => "scratch".into(),
    }
}
