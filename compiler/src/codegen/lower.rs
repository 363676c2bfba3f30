//! Instruction selection: MIR to VCode. Every MIR value gets a virtual register, except
//! constants, map and function references and stack addresses, which are rematerialised
//! at each use (they cost one instruction and never need a register across a call).
//! Loads and stores through a stack address use `r10` directly. Block arguments become a
//! parallel move; a conditional edge with arguments gets its own block for them.

use crate::bpf::insn::{self as bi, Size};
use crate::mir::{
    BinOp, Block, Cond, ExtOp, FuncId, Function, IntTy, MapId, Module, Op, Operand, Slot, Term,
    Type, Value,
};

use super::vcode::{Base, FrameRef, Reg, Src, VBlock, VBlockData, VCode, VInst};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Remat {
    Const(i64, bool),
    Map(MapId),
    Func(FuncId),
    Frame(Slot, i32),
}

/// An edge block's target and arguments (a rematerialised one by what it is).
type EdgeKey = (u32, Vec<(u32, Option<Remat>)>);

struct Lower<'a> {
    f: &'a Function,
    vc: VCode,
    vreg: Vec<Option<Reg>>,
    remat: Vec<Option<Remat>>,
    cur: usize,
    /// `and x, MASK` values whose one use is a compare with 0 that becomes `jset`.
    fused: Vec<bool>,
    /// Edge blocks made so far, by target and arguments (a rematerialised argument by
    /// what it is): two edges passing the same values share one block of moves.
    edges: std::collections::HashMap<EdgeKey, VBlock>,
}

/// Lowers one verified function.
pub fn lower(_m: &Module, f: &Function) -> Result<VCode, String> {
    let n = f.values.len();
    let mut lw = Lower {
        f,
        vc: VCode {
            name: f.name.clone(),
            nparams: f.params.len() as u8,
            ..VCode::default()
        },
        vreg: vec![None; n],
        remat: vec![None; n],
        cur: 0,
        fused: vec![false; n],
        edges: std::collections::HashMap::new(),
    };
    lw.fused = fusable_tests(f);
    lw.vc.blocks = (0..f.blocks.len() as u32)
        .map(|mir| VBlockData {
            insts: Vec::new(),
            mir,
        })
        .collect();
    // Rematerialisable values, in definition order (a stack address may build on another).
    for b in f.block_ids() {
        for &i in &f.block(b).insts {
            let d = f.inst(i);
            let Some(r) = d.result else { continue };
            let w32 = f.ty(r).is_32();
            let rm = match &d.op {
                Op::Iconst(c) => Some(Remat::Const(*c, w32)),
                Op::MapRef(m) => Some(Remat::Map(*m)),
                Op::FuncRef(g) => Some(Remat::Func(*g)),
                Op::SlotAddr(s) => Some(Remat::Frame(*s, 0)),
                Op::PtrAdd(p, Operand::Imm(k)) => {
                    match lw.remat.get(p.index()).copied().flatten() {
                        Some(Remat::Frame(s, off)) => {
                            i32::try_from(*k).ok().map(|k| Remat::Frame(s, off + k))
                        }
                        _ => None,
                    }
                }
                _ => None,
            };
            lw.remat[r.index()] = rm;
        }
    }
    // A zero extension (values are kept zero-extended) is the same register as its
    // operand: no move.
    let mut alias: Vec<Option<Value>> = vec![None; n];
    for b in f.block_ids() {
        for &i in &f.block(b).insts {
            let d = f.inst(i);
            if let (Some(r), Op::Ext(ExtOp::Zext, a)) = (d.result, &d.op) {
                if lw.remat[a.index()].is_none() {
                    alias[r.index()] = Some(*a);
                }
            }
        }
    }
    for (v, a) in alias.iter().enumerate() {
        if lw.remat[v].is_none() && a.is_none() {
            lw.vreg[v] = Some(lw.vc.new_vreg(false));
        }
    }
    for v in 0..n {
        // SSA: a chain of extensions ends at a value that is no extension.
        let mut root = v;
        for _ in 0..n {
            match alias[root] {
                Some(a) => root = a.index(),
                None => break,
            }
        }
        if root != v {
            lw.vreg[v] = lw.vreg[root];
        }
    }
    for b in f.block_ids() {
        lw.cur = b.index();
        if b == Block(0) {
            for (k, &p) in f.block(b).params.iter().enumerate() {
                let dst = lw.reg_of(p)?;
                lw.emit(VInst::Mov {
                    dst,
                    src: Reg::P(k as u8 + 1),
                });
            }
        }
        for &i in &f.block(b).insts {
            let d = f.inst(i);
            lw.inst(&d.op, d.result)?;
        }
        lw.term(&f.block(b).term)?;
    }
    Ok(lw.vc)
}

/// `v = and x, MASK` used once, by `br eq|ne v, 0` of its own block, becomes a `jset`
/// of `x` and needs no instruction of its own. (`jset` has no negation: when the set
/// side comes next, emission adds a jump to the clear side, still no more than the
/// `and` and compare.)
fn fusable_tests(f: &Function) -> Vec<bool> {
    let mut uses = vec![0u32; f.values.len()];
    for d in &f.insts {
        for a in d.op.args() {
            if let Some(u) = uses.get_mut(a.index()) {
                *u += 1;
            }
        }
    }
    for b in f.block_ids() {
        for a in f.block(b).term.args() {
            if let Some(u) = uses.get_mut(a.index()) {
                *u += 1;
            }
        }
    }
    let mut out = vec![false; f.values.len()];
    for b in f.block_ids() {
        if let Some((v, _, _)) = jset_of(f, b) {
            if uses.get(v.index()) == Some(&1) {
                out[v.index()] = true;
            }
        }
    }
    out
}

/// For a block ending in `br eq|ne v, 0` with `v = and x, MASK` defined in it:
/// `(v, x, MASK)`.
fn jset_of(f: &Function, b: Block) -> Option<(Value, Value, i64)> {
    let Term::Br {
        cond,
        a,
        b: Operand::Imm(0),
        then,
        els,
    } = &f.block(b).term
    else {
        return None;
    };
    let _ = (then, els);
    if !matches!(cond, Cond::Ne | Cond::Eq)
        || !f
            .block(b)
            .insts
            .iter()
            .any(|&i| f.inst(i).result == Some(*a))
    {
        return None;
    }
    match f.def_op(*a)? {
        Op::Binary(BinOp::And, x, Operand::Imm(m)) if f.ty(*x).int().is_some() => {
            Some((*a, *x, *m))
        }
        _ => None,
    }
}

fn size_of(bytes: u32) -> Size {
    match bytes {
        1 => Size::B,
        2 => Size::H,
        4 => Size::W,
        _ => Size::DW,
    }
}

fn jmp_op(c: Cond) -> u8 {
    match c {
        Cond::Eq => bi::BPF_JEQ,
        Cond::Ne => bi::BPF_JNE,
        Cond::Ugt => bi::BPF_JGT,
        Cond::Uge => bi::BPF_JGE,
        Cond::Ult => bi::BPF_JLT,
        Cond::Ule => bi::BPF_JLE,
        Cond::Sgt => bi::BPF_JSGT,
        Cond::Sge => bi::BPF_JSGE,
        Cond::Slt => bi::BPF_JSLT,
        Cond::Sle => bi::BPF_JSLE,
    }
}

fn alu_op(op: BinOp) -> u8 {
    match op {
        BinOp::Add => bi::BPF_ADD,
        BinOp::Sub => bi::BPF_SUB,
        BinOp::Mul => bi::BPF_MUL,
        BinOp::Div => bi::BPF_DIV,
        BinOp::Mod => bi::BPF_MOD,
        BinOp::And => bi::BPF_AND,
        BinOp::Or => bi::BPF_OR,
        BinOp::Xor => bi::BPF_XOR,
        BinOp::Shl => bi::BPF_LSH,
        BinOp::Lshr => bi::BPF_RSH,
        BinOp::Ashr => bi::BPF_ARSH,
    }
}

/// The immediate a 64-bit operation sign-extends, if `c` is one; 32-bit operations see
/// only the low 32 bits, so any constant of a 32-bit type is one.
fn imm(c: i64, w32: bool) -> Option<i32> {
    if w32 {
        Some(c as u32 as i32)
    } else {
        i32::try_from(c).ok()
    }
}

impl Lower<'_> {
    fn emit(&mut self, i: VInst) {
        if let Some(b) = self.vc.blocks.get_mut(self.cur) {
            b.insts.push(i);
        }
    }

    fn reg_of(&self, v: Value) -> Result<Reg, String> {
        self.vreg
            .get(v.index())
            .copied()
            .flatten()
            .ok_or_else(|| format!("{v} has no register"))
    }

    fn materialize(&mut self, dst: Reg, rm: Remat) {
        let i = match rm {
            Remat::Const(c, w32) => match imm(c, w32) {
                Some(k) => VInst::MovImm { dst, imm: k, w32 },
                None => VInst::LdImm64 { dst, imm: c as u64 },
            },
            Remat::Map(map) => VInst::LdMap { dst, map },
            Remat::Func(func) => VInst::LdFunc { dst, func },
            Remat::Frame(s, off) => VInst::FrameAddr {
                dst,
                at: FrameRef::Slot(s, off),
            },
        };
        self.emit(i);
    }

    /// `v` in a register (a fresh temporary for a rematerialised value).
    fn use_reg(&mut self, v: Value) -> Result<Reg, String> {
        match self.remat.get(v.index()).copied().flatten() {
            Some(rm) => {
                let t = self.vc.new_vreg(true);
                self.materialize(t, rm);
                Ok(t)
            }
            None => self.reg_of(v),
        }
    }

    fn move_to_reg(&mut self, dst: Reg, v: Value) -> Result<(), String> {
        match self.remat.get(v.index()).copied().flatten() {
            Some(rm) => self.materialize(dst, rm),
            None => {
                let src = self.reg_of(v)?;
                self.emit(VInst::Mov { dst, src });
            }
        }
        Ok(())
    }

    fn src(&mut self, o: &Operand, w32: bool) -> Result<Src, String> {
        match o {
            Operand::Imm(c) => self.imm_src(*c, w32),
            Operand::Value(v) => match self.remat.get(v.index()).copied().flatten() {
                Some(Remat::Const(c, _)) => self.imm_src(c, w32),
                _ => Ok(Src::Reg(self.use_reg(*v)?)),
            },
        }
    }

    fn imm_src(&mut self, c: i64, w32: bool) -> Result<Src, String> {
        Ok(match imm(c, w32) {
            Some(k) => Src::Imm(k),
            None => {
                let t = self.vc.new_vreg(true);
                self.emit(VInst::LdImm64 {
                    dst: t,
                    imm: c as u64,
                });
                Src::Reg(t)
            }
        })
    }

    fn base(&mut self, ptr: Value) -> Result<Base, String> {
        match self.remat.get(ptr.index()).copied().flatten() {
            Some(Remat::Frame(s, off)) => Ok(Base::Frame(FrameRef::Slot(s, off))),
            _ => Ok(Base::Reg(self.use_reg(ptr)?)),
        }
    }

    fn inst(&mut self, op: &Op, result: Option<Value>) -> Result<(), String> {
        let f = self.f;
        if let Some(r) = result {
            if self.remat.get(r.index()).copied().flatten().is_some()
                || self.fused.get(r.index()) == Some(&true)
            {
                return Ok(());
            }
        }
        let dst = result.map(|r| self.reg_of(r)).transpose()?;
        let rty = result.map(|r| f.ty(r));
        let need = || dst.ok_or_else(|| "instruction needs a result".to_string());
        match op {
            Op::Iconst(_) | Op::MapRef(_) | Op::FuncRef(_) | Op::SlotAddr(_) => {}
            Op::Binary(op, a, b) => {
                let ity = f.ty(*a).int().unwrap_or(IntTy::U64);
                let w32 = ity.bits <= 32;
                let lhs = self.use_reg(*a)?;
                let mut rhs = self.src(b, w32)?;
                if rhs == Src::Imm(0) && matches!(op, BinOp::Div | BinOp::Mod) {
                    // "div by zero": the kernel refuses a constant 0 divisor, while a
                    // register holding 0 is defined (x / 0 = 0, x % 0 = x).
                    let t = self.vc.new_vreg(true);
                    self.emit(VInst::MovImm {
                        dst: t,
                        imm: 0,
                        w32,
                    });
                    rhs = Src::Reg(t);
                }
                let sdiv = ity.signed && matches!(op, BinOp::Div | BinOp::Mod);
                self.emit(VInst::Alu {
                    op: alu_op(*op),
                    w32,
                    sdiv,
                    dst: need()?,
                    lhs,
                    rhs,
                });
            }
            Op::Neg(a) => {
                let w32 = f.ty(*a).is_32();
                let src = self.use_reg(*a)?;
                self.emit(VInst::Neg {
                    w32,
                    dst: need()?,
                    src,
                });
            }
            Op::Bswap(a) => {
                let bits = f.ty(*a).int().map_or(64, |i| i.bits);
                let src = self.use_reg(*a)?;
                self.emit(VInst::Bswap {
                    dst: need()?,
                    src,
                    bits,
                });
            }
            Op::Ext(e, a) => {
                let from = f.ty(*a).int().unwrap_or(IntTy::U64);
                let to = rty.and_then(Type::int).unwrap_or(IntTy::U64);
                let src = self.use_reg(*a)?;
                let dst = need()?;
                // Values of up to 32 bits are kept zero-extended in their registers.
                if *e == ExtOp::Zext && dst == src {
                    return Ok(());
                }
                let i = match e {
                    ExtOp::Zext => VInst::Mov { dst, src },
                    ExtOp::Sext if from.bits == to.bits => VInst::Mov { dst, src },
                    ExtOp::Sext => VInst::Sext {
                        dst,
                        src,
                        from: from.bits,
                        w32: to.bits <= 32,
                    },
                    ExtOp::Trunc if to.bits == 32 => VInst::Mov32 { dst, src },
                    ExtOp::Trunc => VInst::Alu {
                        op: bi::BPF_AND,
                        w32: false,
                        sdiv: false,
                        dst,
                        lhs: src,
                        rhs: Src::Imm(if to.bits == 8 { 0xff } else { 0xffff }),
                    },
                };
                self.emit(i);
            }
            Op::Load { ptr, off } => {
                let bytes = match rty {
                    Some(Type::Int(i)) => i.bytes(),
                    _ => 4,
                };
                let base = self.base(*ptr)?;
                self.emit(VInst::Load {
                    size: size_of(bytes),
                    dst: need()?,
                    base,
                    off: *off,
                });
            }
            Op::Store { ty, ptr, off, val } => {
                let base = self.base(*ptr)?;
                let src = self.src(val, ty.bits <= 32)?;
                self.emit(VInst::Store {
                    size: size_of(ty.bytes()),
                    base,
                    off: *off,
                    src,
                });
            }
            Op::AtomicAdd { ty, ptr, off, val } => {
                let base = self.base(*ptr)?;
                let src = self.use_reg(*val)?;
                self.emit(VInst::AtomicAdd {
                    size: size_of(ty.bytes()),
                    base,
                    off: *off,
                    src,
                });
            }
            Op::PtrAdd(p, o) => {
                let lhs = self.use_reg(*p)?;
                let rhs = self.src(o, false)?;
                self.emit(VInst::Alu {
                    op: bi::BPF_ADD,
                    w32: false,
                    sdiv: false,
                    dst: need()?,
                    lhs,
                    rhs,
                });
            }
            Op::Call(id, args) | Op::CallFn(FuncId(id), args) => {
                for (k, &a) in args.iter().enumerate() {
                    self.move_to_reg(Reg::P(k as u8 + 1), a)?;
                }
                let nargs = args.len() as u8;
                self.emit(match op {
                    Op::Call(..) => VInst::Call {
                        helper: *id as i32,
                        nargs,
                    },
                    _ => VInst::CallFn {
                        func: FuncId(*id),
                        nargs,
                    },
                });
                if let Some(dst) = dst {
                    self.emit(VInst::Mov {
                        dst,
                        src: Reg::P(0),
                    });
                }
            }
        }
        Ok(())
    }

    /// A parallel move into `target`'s parameters, in the current block. Constants and
    /// other rematerialised values go straight into their parameter after the move (they
    /// read no register the move could overwrite).
    fn block_args(&mut self, target: Block, args: &[Value]) -> Result<(), String> {
        if args.is_empty() {
            return Ok(());
        }
        let params = self.f.block(target).params.clone();
        let mut moves = Vec::with_capacity(args.len());
        let mut later = Vec::new();
        for (&a, &p) in args.iter().zip(&params) {
            match self.remat.get(a.index()).copied().flatten() {
                Some(rm) => later.push((self.reg_of(p)?, rm)),
                None => {
                    let src = self.use_reg(a)?;
                    moves.push((self.reg_of(p)?, src));
                }
            }
        }
        if !moves.is_empty() {
            let tmp = self.vc.new_vreg(true);
            self.emit(VInst::ParMove { moves, tmp });
        }
        for (dst, rm) in later {
            self.materialize(dst, rm);
        }
        Ok(())
    }

    /// The block a conditional edge jumps to: the target itself, or a new block moving
    /// the arguments first.
    fn edge(&mut self, target: Block, args: &[Value]) -> Result<VBlock, String> {
        if args.is_empty() {
            return Ok(VBlock(target.0));
        }
        let key: Vec<(u32, Option<Remat>)> = args
            .iter()
            .map(|a| match self.remat.get(a.index()).copied().flatten() {
                Some(rm) => (u32::MAX, Some(rm)),
                None => (a.0, None),
            })
            .collect();
        if let Some(&vb) = self.edges.get(&(target.0, key.clone())) {
            return Ok(vb);
        }
        let saved = self.cur;
        let mir = self.vc.blocks.get(saved).map_or(0, |d| d.mir);
        self.vc.blocks.push(VBlockData {
            insts: Vec::new(),
            mir,
        });
        self.cur = self.vc.blocks.len() - 1;
        let vb = VBlock(self.cur as u32);
        self.block_args(target, args)?;
        self.emit(VInst::Jump {
            target: VBlock(target.0),
        });
        self.cur = saved;
        self.edges.insert((target.0, key), vb);
        Ok(vb)
    }

    fn term(&mut self, t: &Term) -> Result<(), String> {
        match t {
            Term::Jump(bc) => {
                self.block_args(bc.block, &bc.args)?;
                self.emit(VInst::Jump {
                    target: VBlock(bc.block.0),
                });
            }
            Term::Return(v) => {
                self.move_to_reg(Reg::P(0), *v)?;
                self.emit(VInst::Exit);
            }
            Term::Br {
                cond,
                a,
                b,
                then,
                els,
            } => {
                let w32 = self.f.ty(*a).is_32();
                if let Some((v, x, mask)) = jset_of(self.f, Block::from_index(self.cur)) {
                    if self.fused.get(v.index()) == Some(&true) {
                        let rx = self.use_reg(x)?;
                        let m = self.src(&Operand::Imm(mask), w32)?;
                        // `ne` jumps to `then` when a bit is set; `eq` to `els`.
                        let (set, clear) = if *cond == Cond::Ne {
                            (then, els)
                        } else {
                            (els, then)
                        };
                        let sb = self.edge(set.block, &set.args)?;
                        let cb = self.edge(clear.block, &clear.args)?;
                        self.emit(VInst::Branch {
                            op: bi::BPF_JSET,
                            w32,
                            a: rx,
                            b: m,
                            then: sb,
                            els: cb,
                        });
                        return Ok(());
                    }
                }
                let ra = self.use_reg(*a)?;
                let rb = self.src(b, w32)?;
                let tb = self.edge(then.block, &then.args)?;
                let eb = self.edge(els.block, &els.args)?;
                self.emit(VInst::Branch {
                    op: jmp_op(*cond),
                    w32,
                    a: ra,
                    b: rb,
                    then: tb,
                    els: eb,
                });
            }
        }
        Ok(())
    }
}
