//! Emission: allocated VCode to eBPF instructions through the labelled assembler.
//! Block-parameter moves are sequentialised here: moves whose destination no other move
//! still reads go first; a cycle is broken through the frame's scratch slot; a move
//! between two spill slots goes through the move's free register.

use crate::bpf::asm::{Asm, AsmError, Label};
use crate::bpf::insn::{self as bi, Insn, Reg as R, Size};
use crate::mir::{FuncId, Module};

use super::frame::Frame;
use super::regalloc::{Allocation, Loc};
use super::vcode::{Base, FrameRef, Reg, Src, VBlock, VCode, VInst};

/// A function's instructions and what the object writer must relocate.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Emitted {
    pub insns: Vec<Insn>,
    /// `(slot of the ld_imm64, map name)`.
    pub map_relocs: Vec<(usize, String)>,
    /// `(slot of the call, callee)`: BPF-to-BPF calls.
    pub calls: Vec<(usize, FuncId)>,
    /// `(slot of the ld_imm64, function)`: a callback's address.
    pub func_addrs: Vec<(usize, FuncId)>,
    /// The first slot of each block, in VCode block order (MIR blocks first);
    /// `usize::MAX` for a block emitted as nothing (its jumps go straight on).
    pub block_starts: Vec<usize>,
    /// The MIR block each VCode block comes from (see `VBlockData::mir`).
    pub block_mir: Vec<u32>,
}

/// Why emission failed: a function too long for 16-bit jumps (an implementation limit the
/// user can act on), or a bug.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmitError {
    JumpOutOfRange { from: usize, to: usize },
    Internal(String),
}

impl From<String> for EmitError {
    fn from(s: String) -> Self {
        EmitError::Internal(s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Reg(u8),
    Mem(i16),
}

struct Em<'a> {
    m: &'a Module,
    alloc: &'a Allocation,
    frame: &'a Frame,
    asm: Asm,
    labels: Vec<Label>,
    calls: Vec<(usize, FuncId)>,
    func_addrs: Vec<(usize, FuncId)>,
    /// Where a jump to each block really goes (itself, or past idle edge blocks).
    resolved: Vec<VBlock>,
}

pub fn emit(
    m: &Module,
    vc: &VCode,
    alloc: &Allocation,
    frame: &Frame,
) -> Result<Emitted, EmitError> {
    let mut asm = Asm::new();
    let labels = (0..vc.blocks.len()).map(|_| asm.new_label()).collect();
    let mut em = Em {
        m,
        alloc,
        frame,
        asm,
        labels,
        calls: Vec::new(),
        func_addrs: Vec::new(),
        resolved: (0..vc.blocks.len() as u32).map(VBlock).collect(),
    };
    // A block that, once allocated, only moves values onto themselves and jumps on (an
    // edge block whose parameters landed where their arguments were) is skipped: jumps
    // to it go where it goes.
    let mut forward: Vec<Option<VBlock>> = vec![None; vc.blocks.len()];
    for (b, data) in vc.blocks.iter().enumerate() {
        let Some((VInst::Jump { target }, rest)) = data.insts.split_last() else {
            continue;
        };
        let idle = rest.iter().all(|i| match i {
            VInst::ParMove { moves, .. } => moves
                .iter()
                .all(|&(d, s)| matches!((em.place(d), em.place(s)), (Ok(x), Ok(y)) if x == y)),
            VInst::Mov { dst, src } => {
                matches!((em.place(*dst), em.place(*src)), (Ok(x), Ok(y)) if x == y)
            }
            _ => false,
        });
        if idle && b > 0 && target.0 as usize != b {
            forward[b] = Some(*target);
        }
    }
    for b in 0..vc.blocks.len() {
        // Follow chains (bounded: a cycle of idle blocks stops).
        let mut t = VBlock(b as u32);
        for _ in 0..vc.blocks.len() {
            match forward.get(t.0 as usize).copied().flatten() {
                Some(n) => t = n,
                None => break,
            }
        }
        em.resolved[b] = t;
    }
    let kept: Vec<usize> = (0..vc.blocks.len())
        .filter(|&b| forward[b].is_none())
        .collect();
    let mut block_starts = vec![usize::MAX; vc.blocks.len()];
    for (k, &b) in kept.iter().enumerate() {
        let data = &vc.blocks[b];
        let label = em.label(VBlock(b as u32))?;
        em.asm.bind(label);
        block_starts[b] = em.asm.len();
        // The block emitted next (skipped blocks emit nothing).
        let next = kept
            .get(k + 1)
            .map_or(VBlock(u32::MAX), |&n| VBlock(n as u32));
        for inst in &data.insts {
            em.inst(inst, next)?;
        }
    }
    let asm = std::mem::take(&mut em.asm);
    let done = asm.finish().map_err(|e| match e {
        AsmError::JumpOutOfRange { from, to } => EmitError::JumpOutOfRange { from, to },
        e => EmitError::Internal(e.to_string()),
    })?;
    Ok(Emitted {
        insns: done.insns,
        map_relocs: done.map_relocs,
        calls: em.calls,
        func_addrs: em.func_addrs,
        block_starts,
        block_mir: vc.blocks.iter().map(|d| d.mir).collect(),
    })
}

fn negate(op: u8) -> u8 {
    match op {
        bi::BPF_JEQ => bi::BPF_JNE,
        bi::BPF_JNE => bi::BPF_JEQ,
        bi::BPF_JGT => bi::BPF_JLE,
        bi::BPF_JLE => bi::BPF_JGT,
        bi::BPF_JGE => bi::BPF_JLT,
        bi::BPF_JLT => bi::BPF_JGE,
        bi::BPF_JSGT => bi::BPF_JSLE,
        bi::BPF_JSLE => bi::BPF_JSGT,
        bi::BPF_JSGE => bi::BPF_JSLT,
        _ => bi::BPF_JSGE,
    }
}

impl Em<'_> {
    fn label(&self, b: VBlock) -> Result<Label, String> {
        let b = self.resolved.get(b.0 as usize).copied().unwrap_or(b);
        self.labels
            .get(b.0 as usize)
            .copied()
            .ok_or_else(|| format!("no block {b}"))
    }

    fn reg(&self, r: Reg) -> Result<R, String> {
        match r {
            Reg::P(p) => Ok(R(p)),
            Reg::V(v) => match self.alloc.get(v as usize).copied().flatten() {
                Some(Loc::Reg(p)) => Ok(R(p)),
                other => Err(format!("%{v} is not in a register ({other:?})")),
            },
        }
    }

    fn place(&self, r: Reg) -> Result<Place, String> {
        match r {
            Reg::V(v) => match self.alloc.get(v as usize).copied().flatten() {
                Some(Loc::Spill(s)) => Ok(Place::Mem(self.off(FrameRef::Spill(s), 0)?)),
                _ => Ok(Place::Reg(self.reg(r)?.0)),
            },
            Reg::P(p) => Ok(Place::Reg(p)),
        }
    }

    fn off(&self, at: FrameRef, extra: i16) -> Result<i16, String> {
        let o = self
            .frame
            .offset(at)
            .ok_or_else(|| format!("no frame place {at:?}"))?
            + i64::from(extra);
        i16::try_from(o).map_err(|_| format!("frame offset {o} out of range"))
    }

    fn e(&mut self, i: Insn) {
        self.asm.emit(i);
    }

    fn mov(&mut self, dst: R, src: R) {
        if dst != src {
            self.e(bi::mov64_reg(dst, src));
        }
    }

    fn inst(&mut self, inst: &VInst, next: VBlock) -> Result<(), String> {
        match inst {
            VInst::Mov { dst, src } => {
                let (d, s) = (self.reg(*dst)?, self.reg(*src)?);
                self.mov(d, s);
            }
            VInst::MovImm { dst, imm, w32 } => {
                let d = self.reg(*dst)?;
                self.e(if *w32 {
                    bi::mov32_imm(d, *imm)
                } else {
                    bi::mov64_imm(d, *imm)
                });
            }
            VInst::LdImm64 { dst, imm } => {
                let d = self.reg(*dst)?;
                self.asm.emit_all(bi::ld_imm64(d, *imm));
            }
            VInst::LdMap { dst, map } => {
                let d = self.reg(*dst)?;
                let name = self
                    .m
                    .map(*map)
                    .map(|m| m.name.clone())
                    .ok_or("unknown map")?;
                self.asm.ld_map(d, &name);
            }
            VInst::LdFunc { dst, func } => {
                let d = self.reg(*dst)?;
                self.func_addrs.push((self.asm.len(), *func));
                self.asm.emit_all(bi::ld_imm64(d, 0));
            }
            VInst::Alu {
                op,
                w32,
                sdiv,
                dst,
                lhs,
                rhs,
            } => {
                let (d, l) = (self.reg(*dst)?, self.reg(*lhs)?);
                self.mov(d, l);
                let mut i = match (rhs, w32) {
                    (Src::Imm(k), true) => bi::alu32_imm(*op, d, *k),
                    (Src::Imm(k), false) => bi::alu64_imm(*op, d, *k),
                    (Src::Reg(r), true) => bi::alu32_reg(*op, d, self.reg(*r)?),
                    (Src::Reg(r), false) => bi::alu64_reg(*op, d, self.reg(*r)?),
                };
                if *sdiv {
                    // Signed division and modulo: offset 1 (cpu v4, kernel 6.6+).
                    i.off = 1;
                }
                self.e(i);
            }
            VInst::Neg { w32, dst, src } => {
                let (d, s) = (self.reg(*dst)?, self.reg(*src)?);
                self.mov(d, s);
                self.e(if *w32 {
                    bi::alu32_imm(bi::BPF_NEG, d, 0)
                } else {
                    bi::alu64_imm(bi::BPF_NEG, d, 0)
                });
            }
            VInst::Sext {
                dst,
                src,
                from,
                w32,
            } => {
                let (d, s) = (self.reg(*dst)?, self.reg(*src)?);
                self.mov(d, s);
                let sh = 64 - i32::from(*from);
                self.e(bi::alu64_imm(bi::BPF_LSH, d, sh));
                self.e(bi::alu64_imm(bi::BPF_ARSH, d, sh));
                if *w32 {
                    self.e(bi::mov32_reg(d, d));
                }
            }
            VInst::Bswap { dst, src, bits } => {
                let (d, s) = (self.reg(*dst)?, self.reg(*src)?);
                self.mov(d, s);
                self.e(bi::bswap_be(d, i32::from(*bits)));
            }
            VInst::Mov32 { dst, src } => {
                let (d, s) = (self.reg(*dst)?, self.reg(*src)?);
                self.e(bi::mov32_reg(d, s));
            }
            VInst::FrameAddr { dst, at } => {
                let d = self.reg(*dst)?;
                let o = self.off(*at, 0)?;
                self.e(bi::mov64_reg(d, bi::R10));
                self.e(bi::alu64_imm(bi::BPF_ADD, d, i32::from(o)));
            }
            VInst::Load {
                size,
                dst,
                base,
                off,
            } => {
                let d = self.reg(*dst)?;
                let (b, o) = self.base(base, *off)?;
                self.e(bi::ldx(*size, d, b, o));
            }
            VInst::Store {
                size,
                base,
                off,
                src,
            } => {
                let (b, o) = self.base(base, *off)?;
                match src {
                    Src::Reg(r) => {
                        let s = self.reg(*r)?;
                        self.e(bi::stx(*size, b, s, o));
                    }
                    Src::Imm(k) => self.e(bi::st_imm(*size, b, o, *k)),
                }
            }
            VInst::AtomicAdd {
                size,
                base,
                off,
                src,
            } => {
                let (b, o) = self.base(base, *off)?;
                let s = self.reg(*src)?;
                self.e(Insn {
                    code: bi::BPF_STX | bi::BPF_ATOMIC | size.code(),
                    dst: b.0,
                    src: s.0,
                    off: o,
                    imm: i32::from(bi::BPF_ADD),
                });
            }
            VInst::Call { helper, .. } => self.e(bi::call(*helper)),
            VInst::CallFn { func, .. } => {
                self.calls.push((self.asm.len(), *func));
                let mut i = bi::call(-1);
                i.src = bi::BPF_PSEUDO_CALL;
                self.e(i);
            }
            VInst::Spill { slot, src, .. } => {
                let s = self.reg(*src)?;
                let o = self.off(FrameRef::Spill(*slot), 0)?;
                self.e(bi::stx(Size::DW, bi::R10, s, o));
            }
            VInst::Reload { dst, slot, .. } => {
                let d = self.reg(*dst)?;
                let o = self.off(FrameRef::Spill(*slot), 0)?;
                self.e(bi::ldx(Size::DW, d, bi::R10, o));
            }
            VInst::ParMove { moves, tmp } => self.par_move(moves, *tmp)?,
            VInst::Jump { target } => {
                let target = &self
                    .resolved
                    .get(target.0 as usize)
                    .copied()
                    .unwrap_or(*target);
                if *target != next {
                    let l = self.label(*target)?;
                    self.asm.ja_to(l);
                }
            }
            VInst::Branch {
                op,
                w32,
                a,
                b,
                then,
                els,
            } => {
                let ra = self.reg(*a)?;
                let res = |b: &VBlock| self.resolved.get(b.0 as usize).copied().unwrap_or(*b);
                let (then, els) = (&res(then), &res(els));
                let (op, target, fall) = if *els == next {
                    (*op, *then, None)
                } else if *then == next && *op != bi::BPF_JSET {
                    (negate(*op), *els, None)
                } else {
                    (*op, *then, Some(*els))
                };
                let l = self.label(target)?;
                match (b, w32) {
                    (Src::Imm(k), false) => self.asm.jmp_imm_to(op, ra, *k, l),
                    (Src::Imm(k), true) => self.asm.jmp32_imm_to(op, ra, *k, l),
                    (Src::Reg(r), false) => {
                        let rb = self.reg(*r)?;
                        self.asm.jmp_reg_to(op, ra, rb, l);
                    }
                    (Src::Reg(r), true) => {
                        let rb = self.reg(*r)?;
                        self.asm.jmp32_reg_to(op, ra, rb, l);
                    }
                }
                if let Some(f) = fall {
                    let l = self.label(f)?;
                    self.asm.ja_to(l);
                }
            }
            VInst::Exit => self.e(bi::exit()),
        }
        Ok(())
    }

    fn base(&self, base: &Base, off: i16) -> Result<(R, i16), String> {
        match base {
            Base::Reg(r) => Ok((self.reg(*r)?, off)),
            Base::Frame(at) => Ok((bi::R10, self.off(*at, off)?)),
        }
    }

    fn par_move(&mut self, moves: &[(Reg, Reg)], tmp: Reg) -> Result<(), String> {
        let mut pending: Vec<(Place, Place)> = Vec::with_capacity(moves.len());
        for &(d, s) in moves {
            let (d, s) = (self.place(d)?, self.place(s)?);
            if d != s {
                pending.push((d, s));
            }
        }
        let tmp = self.reg(tmp)?;
        let scratch = Place::Mem(self.off(FrameRef::Scratch, 0).unwrap_or(0));
        while !pending.is_empty() {
            let ready = pending
                .iter()
                .position(|(d, _)| !pending.iter().any(|(_, s)| s == d));
            match ready {
                Some(i) => {
                    let (d, s) = pending.remove(i);
                    self.move_place(d, s, tmp)?;
                }
                None => {
                    if scratch == Place::Mem(0) {
                        return Err(
                            "a cycle of block-parameter moves without a scratch slot".into()
                        );
                    }
                    let d = pending.first().map(|p| p.0).ok_or("empty cycle")?;
                    self.move_place(scratch, d, tmp)?;
                    for (_, s) in pending.iter_mut() {
                        if *s == d {
                            *s = scratch;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn move_place(&mut self, d: Place, s: Place, tmp: R) -> Result<(), String> {
        match (d, s) {
            (Place::Reg(d), Place::Reg(s)) => self.mov(R(d), R(s)),
            (Place::Reg(d), Place::Mem(o)) => self.e(bi::ldx(Size::DW, R(d), bi::R10, o)),
            (Place::Mem(o), Place::Reg(s)) => self.e(bi::stx(Size::DW, bi::R10, R(s), o)),
            (Place::Mem(od), Place::Mem(os)) => {
                self.e(bi::ldx(Size::DW, tmp, bi::R10, os));
                self.e(bi::stx(Size::DW, bi::R10, tmp, od));
            }
        }
        Ok(())
    }
}
