//! A builder for generated code: variables instead of SSA values across blocks.
//!
//! Lowering code that thinks in registers (a packet parser: "the L3 header", "the end of
//! the IP packet") defines and reads [`Var`]s per block; [`Builder::finish`] turns them
//! into block parameters (Braun et al.'s construction, with every block sealed at the end:
//! a read with no definition in its block becomes a parameter, filled from each
//! predecessor), removes the parameters that only ever receive one value, and drops
//! blocks nothing jumps to, so the result verifies like hand-written MIR.

use std::collections::HashMap;

use super::entities::{Block, Inst, Value};
use super::func::{
    BlockCall, BlockData, Function, InstData, Op, Operand, Term, ValueData, ValueDef,
};
use super::types::{Cond, Type};

/// A variable: a typed name for "the value of X here", read and written per block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Var(u32);

/// Why [`Builder::finish`] failed: a bug in the lowering that used it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("variable {0} is read in the entry block before it is defined")]
    Undefined(u32),
    #[error("block {0} has no terminator")]
    Unterminated(Block),
}

/// A [`Function`] under construction, with variables.
pub struct Builder {
    pub f: Function,
    var_ty: Vec<Type>,
    /// The current definition of each variable at the end of what is built of a block.
    defs: HashMap<(Block, Var), Value>,
    /// Parameters standing for a variable, in creation order.
    var_params: Vec<(Block, Var, Value)>,
    /// Blocks whose terminator was set.
    done: Vec<bool>,
}

impl Builder {
    pub fn new(f: Function) -> Self {
        let n = f.blocks.len();
        Builder {
            f,
            var_ty: Vec::new(),
            defs: HashMap::new(),
            var_params: Vec::new(),
            done: vec![false; n],
        }
    }

    pub fn var(&mut self, ty: Type) -> Var {
        self.var_ty.push(ty);
        Var(self.var_ty.len() as u32 - 1)
    }

    pub fn add_block(&mut self) -> Block {
        self.done.push(false);
        self.f.add_block()
    }

    pub fn def(&mut self, b: Block, var: Var, v: Value) {
        self.defs.insert((b, var), v);
    }

    /// The value of `var` at this point of `b`: its last definition in `b`, or a parameter
    /// of `b` that its predecessors fill.
    pub fn get(&mut self, b: Block, var: Var) -> Value {
        if let Some(&v) = self.defs.get(&(b, var)) {
            return v;
        }
        let p = self.f.add_block_param(b, self.var_ty[var.0 as usize]);
        self.var_params.push((b, var, p));
        self.defs.insert((b, var), p);
        p
    }

    pub fn set_term(&mut self, b: Block, t: Term) {
        self.done[b.index()] = true;
        self.f.set_term(b, t);
    }

    /// Ends `b` with `br cond a, rhs, then, els` (edges without arguments).
    pub fn br(
        &mut self,
        b: Block,
        cond: Cond,
        a: Value,
        rhs: impl Into<Operand>,
        then: Block,
        els: Block,
    ) {
        self.done[b.index()] = true;
        self.f.br(b, cond, a, rhs, then, els);
    }

    /// Ends `b` with a jump to `to` passing `args`.
    pub fn jump(&mut self, b: Block, to: Block, args: Vec<Value>) {
        self.done[b.index()] = true;
        self.f.jump(b, to, args);
    }

    pub fn is_terminated(&self, b: Block) -> bool {
        self.done[b.index()]
    }

    /// Resolves the variables into block parameters and returns the function, with the
    /// new id of every block (`None` for the unreachable ones, which are dropped).
    pub fn finish(mut self) -> Result<(Function, Vec<Option<Block>>), BuildError> {
        let nblocks = self.f.blocks.len();
        let reachable = reachable(&self.f);
        for b in self.f.block_ids() {
            if reachable[b.index()] && !self.done[b.index()] {
                return Err(BuildError::Unterminated(b));
            }
        }
        let mut preds: Vec<Vec<Block>> = vec![Vec::new(); nblocks];
        for b in self.f.block_ids().filter(|b| reachable[b.index()]) {
            for s in self.f.succs(b) {
                preds[s.index()].push(b);
            }
        }
        // Each variable parameter's incoming value per predecessor edge (`get` may add
        // parameters to predecessors as it goes: a worklist).
        let mut incoming: HashMap<Value, Vec<(Block, Value)>> = HashMap::new();
        let mut k = 0;
        while k < self.var_params.len() {
            let (b, var, p) = self.var_params[k];
            k += 1;
            if !reachable[b.index()] {
                continue;
            }
            if b == Block(0) {
                return Err(BuildError::Undefined(var.0));
            }
            let mut ins = Vec::new();
            for &pb in &preds[b.index()].clone() {
                // One value per edge: a `br` to the same block twice passes it twice.
                let v = self.get(pb, var);
                ins.push((pb, v));
            }
            incoming.insert(p, ins);
        }
        // Parameters that receive one value (besides themselves) are that value.
        let mut repl: HashMap<Value, Value> = HashMap::new();
        let resolve = |repl: &HashMap<Value, Value>, mut v: Value| {
            while let Some(&r) = repl.get(&v) {
                v = r;
            }
            v
        };
        loop {
            let mut changed = false;
            for &(_, _, p) in &self.var_params {
                if repl.contains_key(&p) {
                    continue;
                }
                let Some(ins) = incoming.get(&p) else {
                    continue;
                };
                let mut only = None;
                let mut many = false;
                for &(_, v) in ins {
                    let v = resolve(&repl, v);
                    if v == p || only == Some(v) {
                        continue;
                    }
                    if only.is_some() {
                        many = true;
                        break;
                    }
                    only = Some(v);
                }
                if let (Some(v), false) = (only, many) {
                    repl.insert(p, v);
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        // Arguments for the kept parameters, appended after the explicit ones.
        let kept: Vec<(Block, Value)> = self
            .var_params
            .iter()
            .filter(|(b, _, p)| reachable[b.index()] && !repl.contains_key(p))
            .map(|&(b, _, p)| (b, p))
            .collect();
        for &(b, p) in &kept {
            let ins = incoming.get(&p).cloned().unwrap_or_default();
            // The n-th edge from a predecessor into `b` takes its n-th incoming entry.
            let mut used = vec![false; ins.len()];
            let mut bodies: Vec<Block> = preds[b.index()].clone();
            bodies.dedup();
            for pb in bodies {
                let term = &mut self.f.blocks[pb.index()].term;
                let targets: Vec<&mut BlockCall> = match term {
                    Term::Jump(t) => vec![t],
                    Term::Br { then, els, .. } => vec![then, els],
                    Term::Return(_) => vec![],
                };
                for t in targets {
                    if t.block != b {
                        continue;
                    }
                    let pos = ins
                        .iter()
                        .enumerate()
                        .position(|(i, (q, _))| *q == pb && !used[i]);
                    if let Some(i) = pos {
                        used[i] = true;
                        t.args.push(resolve(&repl, ins[i].1));
                    }
                }
            }
        }
        // Rewrite every use through the replacements, drop the replaced parameters.
        let removed: std::collections::HashSet<Value> = repl.keys().copied().collect();
        for bd in &mut self.f.blocks {
            bd.params.retain(|p| !removed.contains(p));
        }
        for d in &mut self.f.insts {
            map_op(&mut d.op, |v| resolve(&repl, v));
        }
        for bd in &mut self.f.blocks {
            map_term(&mut bd.term, |v| resolve(&repl, v));
        }
        Ok(compact(&self.f, &reachable))
    }
}

fn reachable(f: &Function) -> Vec<bool> {
    let mut seen = vec![false; f.blocks.len()];
    let mut work = vec![Block(0)];
    while let Some(b) = work.pop() {
        if std::mem::replace(&mut seen[b.index()], true) {
            continue;
        }
        work.extend(f.succs(b));
    }
    seen
}

/// Rewrites every value an operation reads.
pub fn map_op(op: &mut Op, mut m: impl FnMut(Value) -> Value) {
    fn o(x: &mut Operand, m: &mut impl FnMut(Value) -> Value) {
        if let Operand::Value(v) = x {
            *v = m(*v);
        }
    }
    match op {
        Op::Iconst(_) | Op::SlotAddr(_) | Op::MapRef(_) | Op::FuncRef(_) => {}
        Op::Binary(_, a, b) | Op::PtrAdd(a, b) => {
            *a = m(*a);
            o(b, &mut m);
        }
        Op::Neg(a) | Op::Bswap(a) | Op::Ext(_, a) => *a = m(*a),
        Op::Load { ptr, .. } => *ptr = m(*ptr),
        Op::Store { ptr, val, .. } => {
            *ptr = m(*ptr);
            o(val, &mut m);
        }
        Op::AtomicAdd { ptr, val, .. } => {
            *ptr = m(*ptr);
            *val = m(*val);
        }
        Op::Call(_, args) | Op::CallFn(_, args) => {
            for a in args {
                *a = m(*a);
            }
        }
    }
}

/// Rewrites every value a terminator reads or passes.
pub fn map_term(t: &mut Term, mut m: impl FnMut(Value) -> Value) {
    match t {
        Term::Jump(bc) => bc.args.iter_mut().for_each(|a| *a = m(*a)),
        Term::Br {
            a, b, then, els, ..
        } => {
            *a = m(*a);
            if let Operand::Value(v) = b {
                *v = m(*v);
            }
            then.args.iter_mut().for_each(|a| *a = m(*a));
            els.args.iter_mut().for_each(|a| *a = m(*a));
        }
        Term::Return(v) => *v = m(*v),
    }
}

/// A copy of `f` with only the `keep` blocks (in order) and the values they define,
/// numbered densely, and the new id of every block.
pub fn compact(f: &Function, keep: &[bool]) -> (Function, Vec<Option<Block>>) {
    let order: Vec<Block> = f.block_ids().filter(|b| keep[b.index()]).collect();
    rebuild(f, &order)
}

/// A copy of `f` with the blocks of `order`, in that order (the entry first), and the
/// values they define, numbered densely; and the new id of every old block.
pub fn rebuild(f: &Function, order: &[Block]) -> (Function, Vec<Option<Block>>) {
    let mut out = Function {
        name: f.name.clone(),
        hook: f.hook.clone(),
        global: f.global,
        params: f.params.clone(),
        ret: f.ret,
        slots: f.slots.clone(),
        blocks: Vec::new(),
        insts: Vec::new(),
        values: Vec::new(),
    };
    let mut bmap = vec![None; f.blocks.len()];
    for &b in order {
        bmap[b.index()] = Some(Block::from_index(out.blocks.len()));
        out.blocks.push(BlockData {
            params: Vec::new(),
            insts: Vec::new(),
            term: Term::Return(Value(u32::MAX)),
        });
    }
    let mut vmap: Vec<Value> = vec![Value(u32::MAX); f.values.len()];
    for &ob in order {
        let (i, bd) = (ob.index(), f.block(ob));
        let Some(nb) = bmap[i] else { continue };
        for (n, &p) in bd.params.iter().enumerate() {
            let v = Value::from_index(out.values.len());
            out.values.push(ValueData {
                ty: f.ty(p),
                def: ValueDef::Param(nb, n as u32),
            });
            out.blocks[nb.index()].params.push(v);
            vmap[p.index()] = v;
        }
        for &inst in &bd.insts {
            let d = f.inst(inst);
            let ni = Inst::from_index(out.insts.len());
            let result = d.result.map(|r| {
                let v = Value::from_index(out.values.len());
                out.values.push(ValueData {
                    ty: f.ty(r),
                    def: ValueDef::Inst(ni),
                });
                vmap[r.index()] = v;
                v
            });
            out.insts.push(InstData {
                result,
                op: d.op.clone(),
            });
            out.blocks[nb.index()].insts.push(ni);
        }
    }
    for d in &mut out.insts {
        map_op(&mut d.op, |v| vmap.get(v.index()).copied().unwrap_or(v));
    }
    for &ob in order {
        let (i, bd) = (ob.index(), f.block(ob));
        let Some(nb) = bmap[i] else { continue };
        let mut t = bd.term.clone();
        map_term(&mut t, |v| vmap.get(v.index()).copied().unwrap_or(v));
        match &mut t {
            Term::Jump(bc) => bc.block = bmap[bc.block.index()].unwrap_or(bc.block),
            Term::Br { then, els, .. } => {
                then.block = bmap[then.block.index()].unwrap_or(then.block);
                els.block = bmap[els.block.index()].unwrap_or(els.block);
            }
            Term::Return(_) => {}
        }
        out.blocks[nb.index()].term = t;
    }
    (out, bmap)
}
