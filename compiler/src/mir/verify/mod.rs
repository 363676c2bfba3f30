//! The MIR verifier, run between passes: structure, types, dominance, loop bounds, null
//! checks, packet bounds, stack and map value bounds, initialised stack, helper
//! arguments per program type, ring buffer records released on every path.
//!
//! The rules are the kernel verifier's, stated on SSA values: what passes here is meant to
//! load (issue 8). Each check lives in one place: `structure` (ids, arity, types),
//! `cfg` (dominators, loops), `values` (what each value points at and its largest value),
//! `facts` (null, packet and range facts along the dominator tree), `flow` (initialised
//! stack and held references along the CFG).

pub mod cfg;
mod facts;
mod flow;
mod structure;
mod values;

use std::fmt;

use super::entities::{Block, FuncId};
use super::func::{Function, Module};
use super::print;
use super::types::HookKind;

pub use cfg::Cfg;
pub use values::{Access, Len, ValueInfo};

/// Where in a function an error is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loc {
    Func,
    Block(Block),
    /// The instruction at `index` in `block`, with its text.
    Inst {
        block: Block,
        index: usize,
        text: String,
    },
    Term {
        block: Block,
        text: String,
    },
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Loc::Func => write!(f, "signature"),
            Loc::Block(b) => write!(f, "{b}"),
            Loc::Inst { block, index, text } => write!(f, "{block}[{index}] `{text}`"),
            Loc::Term { block, text } => write!(f, "{block} `{text}`"),
        }
    }
}

/// What is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    #[error("malformed: {0}")]
    Malformed(String),
    #[error("type error: {0}")]
    Type(String),
    #[error("{0} is used where its definition does not dominate")]
    NotDominated(String),
    #[error("block is unreachable from the entry")]
    Unreachable,
    #[error("{0} may be null here: compare it with 0 first")]
    NullUnchecked(String),
    #[error("packet access: {0}")]
    PacketUnchecked(String),
    #[error("out of bounds: {0}")]
    OutOfBounds(String),
    #[error("reads uninitialised stack: {0}")]
    Uninit(String),
    #[error("loop: {0}")]
    Loop(String),
    #[error("helper {helper}: {reason}")]
    Helper { helper: String, reason: String },
    #[error("call graph: {0}")]
    Calls(String),
    #[error("ring buffer record: {0}")]
    Reference(String),
    #[error("return: {0}")]
    Return(String),
    #[error("context access: {0}")]
    Ctx(String),
    #[error("map {0}")]
    Map(String),
}

/// A verifier error: function, place and kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{func}: {loc}: {kind}")]
pub struct VerifyError {
    pub func: String,
    pub loc: Loc,
    pub kind: ErrorKind,
}

/// Largest trip count of a counted loop; longer loops belong in `bpf_loop`.
pub const MAX_TRIPS: u64 = 8192;
/// Largest call depth the kernel accepts (MAX_CALL_FRAMES).
pub const MAX_CALL_DEPTH: usize = 8;

/// Verifies every function of `m`; returns all errors found.
pub fn verify_module(m: &Module) -> Result<(), Vec<VerifyError>> {
    let mut errors = Vec::new();
    structure::check_maps(m, &mut errors);
    let calls = structure::check_calls(m, &mut errors);
    for (i, f) in m.funcs.iter().enumerate() {
        let id = FuncId::from_index(i);
        let ctx = FuncCtx {
            hooks: calls.hooks.get(i).cloned().unwrap_or_default(),
            is_callback: calls.callbacks.contains(&id),
        };
        verify_function_in(m, f, &ctx, &mut errors);
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// What the module says about a function: the program types that reach it and whether
/// `bpf_loop` calls it back.
#[derive(Debug, Clone, Default)]
pub struct FuncCtx {
    pub hooks: Vec<HookKind>,
    pub is_callback: bool,
}

/// Verifies one function of `m` (whose call graph is assumed checked).
pub fn verify_function_in(m: &Module, f: &Function, ctx: &FuncCtx, errors: &mut Vec<VerifyError>) {
    let mut cx = Cx {
        m,
        f,
        ctx,
        errors: Vec::new(),
    };
    structure::check_structure(&mut cx);
    if !cx.errors.is_empty() {
        errors.append(&mut cx.errors);
        return;
    }
    let cfg = Cfg::new(f);
    structure::check_types(&mut cx);
    structure::check_dominance(&mut cx, &cfg);
    if !cx.errors.is_empty() {
        errors.append(&mut cx.errors);
        return;
    }
    let info = values::analyse(&mut cx, &cfg);
    facts::check(&mut cx, &cfg, &info);
    flow::check(&mut cx, &cfg, &info);
    errors.append(&mut cx.errors);
}

/// Verifier state for one function.
pub(crate) struct Cx<'a> {
    pub m: &'a Module,
    pub f: &'a Function,
    pub ctx: &'a FuncCtx,
    pub errors: Vec<VerifyError>,
}

impl Cx<'_> {
    pub fn err(&mut self, loc: Loc, kind: ErrorKind) {
        let e = VerifyError {
            func: self.f.name.clone(),
            loc,
            kind,
        };
        if !self.errors.contains(&e) {
            self.errors.push(e);
        }
    }

    pub fn inst_loc(&self, block: Block, index: usize) -> Loc {
        let text = self
            .f
            .block(block)
            .insts
            .get(index)
            .map(|&i| print::inst(self.m, self.f, self.f.inst(i)))
            .unwrap_or_default();
        Loc::Inst { block, index, text }
    }

    pub fn term_loc(&self, block: Block) -> Loc {
        Loc::Term {
            block,
            text: print::term(self.m, self.f, &self.f.block(block).term),
        }
    }

    /// The program types this function runs in: its own hook, or its callers'.
    pub fn hook_kinds(&self) -> Vec<HookKind> {
        match &self.f.hook {
            Some(h) => vec![h.kind()],
            None => self.ctx.hooks.clone(),
        }
    }

    pub fn ty_name(&self, v: super::Value) -> String {
        print::ty(self.m, self.f.ty(v))
    }
}

/// Where an instruction is: block and index in it.
pub(crate) fn positions(f: &Function) -> Vec<(Block, usize)> {
    let mut pos = vec![(Block(u32::MAX), 0); f.insts.len()];
    for b in f.block_ids() {
        for (i, inst) in f.block(b).insts.iter().enumerate() {
            if let Some(p) = pos.get_mut(inst.index()) {
                *p = (b, i);
            }
        }
    }
    pos
}

/// Renders errors one per line (as filetests print them).
pub fn render(errors: &[VerifyError]) -> String {
    errors.iter().map(|e| format!("{e}\n")).collect()
}
