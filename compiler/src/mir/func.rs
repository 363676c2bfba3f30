//! Functions and modules: arenas of blocks, instructions, values and slots, and a small
//! builder API for lowering code to use.

use super::entities::{Block, FuncId, Inst, MapId, Slot, Value};
use super::types::{BinOp, Cond, ExtOp, Hook, IntTy, MapKind, Type};

/// A compilation unit: maps and functions. Functions with a hook are programs; the rest
/// are subprograms that programs call.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Module {
    pub maps: Vec<MapDef>,
    pub funcs: Vec<Function>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapDef {
    pub name: String,
    pub kind: MapKind,
    /// Zero for ring buffers.
    pub key_size: u32,
    /// Zero for ring buffers.
    pub value_size: u32,
    /// For ring buffers: the size in bytes.
    pub max_entries: u32,
    pub flags: u32,
}

impl Module {
    pub fn map(&self, id: MapId) -> Option<&MapDef> {
        self.maps.get(id.index())
    }

    pub fn func(&self, id: FuncId) -> Option<&Function> {
        self.funcs.get(id.index())
    }

    pub fn map_by_name(&self, name: &str) -> Option<MapId> {
        self.maps
            .iter()
            .position(|m| m.name == name)
            .map(MapId::from_index)
    }

    pub fn func_by_name(&self, name: &str) -> Option<FuncId> {
        self.funcs
            .iter()
            .position(|f| f.name == name)
            .map(FuncId::from_index)
    }

    pub fn add_map(&mut self, map: MapDef) -> MapId {
        self.maps.push(map);
        MapId::from_index(self.maps.len() - 1)
    }

    pub fn add_func(&mut self, f: Function) -> FuncId {
        self.funcs.push(f);
        FuncId::from_index(self.funcs.len() - 1)
    }
}

/// One function: a signature, a frame of stack slots and a CFG of blocks in SSA form with
/// block parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Function {
    pub name: String,
    /// `Some` for a program entry, `None` for a subprogram.
    pub hook: Option<Hook>,
    /// A global subprogram: the kernel verifies it once, on its own, for any integer
    /// arguments, instead of at every call (integer parameters and result only).
    pub global: bool,
    pub params: Vec<Type>,
    /// Always an integer: the kernel refuses pointers returned from programs and subprograms.
    pub ret: IntTy,
    pub slots: Vec<SlotData>,
    pub blocks: Vec<BlockData>,
    pub insts: Vec<InstData>,
    pub values: Vec<ValueData>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotData {
    pub size: u32,
    pub align: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BlockData {
    pub params: Vec<Value>,
    pub insts: Vec<Inst>,
    pub term: Term,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueData {
    pub ty: Type,
    pub def: ValueDef,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueDef {
    /// The `n`th parameter of a block.
    Param(Block, u32),
    Inst(Inst),
    /// An id the text form skipped (`v0`, `v2` without `v1`); never referenced.
    Unused,
}

#[derive(Debug, Clone, PartialEq)]
pub struct InstData {
    pub result: Option<Value>,
    pub op: Op,
}

/// A value or an immediate, as the second operand of ALU ops, compares and stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operand {
    Value(Value),
    Imm(i64),
}

impl From<Value> for Operand {
    fn from(v: Value) -> Self {
        Operand::Value(v)
    }
}

impl From<i64> for Operand {
    fn from(c: i64) -> Self {
        Operand::Imm(c)
    }
}

/// The operation of an instruction. Result types are stored on the result value.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// A constant of the result type.
    Iconst(i64),
    Binary(BinOp, Value, Operand),
    Neg(Value),
    /// Network (big-endian) to host order, in the operand's width (16, 32 or 64 bits);
    /// the result has the operand's type.
    Bswap(Value),
    /// Widen or narrow to the result type.
    Ext(ExtOp, Value),
    /// Load the result type's width from `ptr + off`.
    Load {
        ptr: Value,
        off: i16,
    },
    /// Store the low `ty.bits` of `val` at `ptr + off`.
    Store {
        ty: IntTy,
        ptr: Value,
        off: i16,
        val: Operand,
    },
    /// `*(ty *)(ptr + off) += val`, atomically (`lock xadd`): counters in shared maps.
    AtomicAdd {
        ty: IntTy,
        ptr: Value,
        off: i16,
        val: Value,
    },
    /// The address of a stack slot.
    SlotAddr(Slot),
    /// A pointer plus a byte offset; the result is never null.
    PtrAdd(Value, Operand),
    /// A map, as helpers take it.
    MapRef(MapId),
    /// A function, as `bpf_loop` takes its callback.
    FuncRef(FuncId),
    /// A helper call (`BPF_FUNC_*` id, see [`super::helpers`]).
    Call(u32, Vec<Value>),
    /// A BPF-to-BPF call of another function of the module.
    CallFn(FuncId, Vec<Value>),
}

impl Op {
    /// Values this instruction reads.
    pub fn args(&self) -> Vec<Value> {
        let op = |o: &Operand| match o {
            Operand::Value(v) => Some(*v),
            Operand::Imm(_) => None,
        };
        match self {
            Op::Iconst(_) | Op::SlotAddr(_) | Op::MapRef(_) | Op::FuncRef(_) => vec![],
            Op::Binary(_, a, b) | Op::PtrAdd(a, b) => std::iter::once(*a).chain(op(b)).collect(),
            Op::Neg(a) | Op::Bswap(a) | Op::Ext(_, a) => vec![*a],
            Op::Load { ptr, .. } => vec![*ptr],
            Op::Store { ptr, val, .. } => std::iter::once(*ptr).chain(op(val)).collect(),
            Op::AtomicAdd { ptr, val, .. } => vec![*ptr, *val],
            Op::Call(_, args) | Op::CallFn(_, args) => args.clone(),
        }
    }
}

/// A jump target with the values passed to its block parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockCall {
    pub block: Block,
    pub args: Vec<Value>,
}

impl BlockCall {
    pub fn new(block: Block, args: Vec<Value>) -> Self {
        BlockCall { block, args }
    }
}

/// How a block ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    Jump(BlockCall),
    /// `if a cond b then .. else ..`, on 32 or 64 bits as `a`'s type says.
    Br {
        cond: Cond,
        a: Value,
        b: Operand,
        then: BlockCall,
        els: BlockCall,
    },
    Return(Value),
}

impl Term {
    pub fn targets(&self) -> Vec<&BlockCall> {
        match self {
            Term::Jump(t) => vec![t],
            Term::Br { then, els, .. } => vec![then, els],
            Term::Return(_) => vec![],
        }
    }

    pub fn args(&self) -> Vec<Value> {
        let mut out = Vec::new();
        match self {
            Term::Jump(_) => {}
            Term::Br { a, b, .. } => {
                out.push(*a);
                if let Operand::Value(v) = b {
                    out.push(*v);
                }
            }
            Term::Return(v) => out.push(*v),
        }
        for t in self.targets() {
            out.extend(&t.args);
        }
        out
    }
}

impl Function {
    /// An empty function with an entry block whose parameters are the signature's.
    pub fn new(name: &str, hook: Option<Hook>, params: Vec<Type>, ret: IntTy) -> Self {
        let mut f = Function {
            name: name.to_owned(),
            hook,
            global: false,
            params: params.clone(),
            ret,
            slots: Vec::new(),
            blocks: Vec::new(),
            insts: Vec::new(),
            values: Vec::new(),
        };
        let entry = f.add_block();
        for ty in params {
            f.add_block_param(entry, ty);
        }
        f
    }

    pub fn entry(&self) -> Block {
        Block(0)
    }

    pub fn block(&self, b: Block) -> &BlockData {
        &self.blocks[b.index()]
    }

    pub fn inst(&self, i: Inst) -> &InstData {
        &self.insts[i.index()]
    }

    pub fn ty(&self, v: Value) -> Type {
        self.values[v.index()].ty
    }

    pub fn value_def(&self, v: Value) -> ValueDef {
        self.values[v.index()].def
    }

    /// The instruction defining `v`, if an instruction does.
    pub fn def_op(&self, v: Value) -> Option<&Op> {
        match self.values.get(v.index())?.def {
            ValueDef::Inst(i) => self.insts.get(i.index()).map(|d| &d.op),
            ValueDef::Param(..) | ValueDef::Unused => None,
        }
    }

    /// `Some(c)` when `v` is an `iconst`.
    pub fn const_value(&self, v: Value) -> Option<i64> {
        match self.def_op(v)? {
            Op::Iconst(c) => Some(*c),
            _ => None,
        }
    }

    pub fn block_ids(&self) -> impl Iterator<Item = Block> {
        (0..self.blocks.len()).map(Block::from_index)
    }

    pub fn add_slot(&mut self, size: u32, align: u32) -> Slot {
        self.slots.push(SlotData { size, align });
        Slot::from_index(self.slots.len() - 1)
    }

    /// A new block ending in `return` of an undefined value until its terminator is set.
    pub fn add_block(&mut self) -> Block {
        self.blocks.push(BlockData {
            params: Vec::new(),
            insts: Vec::new(),
            term: Term::Return(Value(u32::MAX)),
        });
        Block::from_index(self.blocks.len() - 1)
    }

    pub fn add_block_param(&mut self, b: Block, ty: Type) -> Value {
        let n = self.blocks[b.index()].params.len() as u32;
        let v = self.new_value(ty, ValueDef::Param(b, n));
        self.blocks[b.index()].params.push(v);
        v
    }

    fn new_value(&mut self, ty: Type, def: ValueDef) -> Value {
        self.values.push(ValueData { ty, def });
        Value::from_index(self.values.len() - 1)
    }

    /// Appends an instruction with a result of type `ty` to `b`.
    pub fn push(&mut self, b: Block, op: Op, ty: Type) -> Value {
        let inst = Inst::from_index(self.insts.len());
        let v = self.new_value(ty, ValueDef::Inst(inst));
        self.insts.push(InstData {
            result: Some(v),
            op,
        });
        self.blocks[b.index()].insts.push(inst);
        v
    }

    /// Appends an instruction without a result (a store, a void helper call).
    pub fn push_void(&mut self, b: Block, op: Op) -> Inst {
        let inst = Inst::from_index(self.insts.len());
        self.insts.push(InstData { result: None, op });
        self.blocks[b.index()].insts.push(inst);
        inst
    }

    pub fn set_term(&mut self, b: Block, term: Term) {
        self.blocks[b.index()].term = term;
    }

    /// Ends `b` with `br cond a, rhs, then, els`, both edges without arguments.
    pub fn br(
        &mut self,
        b: Block,
        cond: Cond,
        a: Value,
        rhs: impl Into<Operand>,
        then: Block,
        els: Block,
    ) {
        self.set_term(
            b,
            Term::Br {
                cond,
                a,
                b: rhs.into(),
                then: BlockCall::new(then, vec![]),
                els: BlockCall::new(els, vec![]),
            },
        );
    }

    /// Ends `b` with a jump to `to` passing `args`.
    pub fn jump(&mut self, b: Block, to: Block, args: Vec<Value>) {
        self.set_term(b, Term::Jump(BlockCall::new(to, args)));
    }

    /// Convenience builders.
    pub fn iconst(&mut self, b: Block, ty: IntTy, c: i64) -> Value {
        self.push(b, Op::Iconst(c), Type::Int(ty))
    }

    /// The successors of `b`, in terminator order (a block may appear twice).
    pub fn succs(&self, b: Block) -> Vec<Block> {
        self.blocks[b.index()]
            .term
            .targets()
            .iter()
            .map(|t| t.block)
            .collect()
    }
}
