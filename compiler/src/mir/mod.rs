//! MIR: the general typed mid-level IR every pol program lowers to (issue 8).
//!
//! A [`Module`] holds maps and functions. A function is plain data in arenas indexed by
//! `u32` ids ([`Value`], [`Block`], [`Inst`], [`Slot`]): SSA values with types (integers
//! with width and signedness, pointers with a kind), blocks with parameters, and a
//! terminator per block. Programs are functions with a [`Hook`]; the others are
//! subprograms reached by `callfn` or as `bpf_loop` callbacks.
//!
//! The text form ([`print`], [`parse`]) round-trips; [`verify`] checks the kernel
//! verifier's rules on it between passes; `crate::codegen` turns it into instructions.
//! Nothing here knows about ELF or the kernel's instruction encoding.

pub mod build;
pub mod decide;
pub mod entities;
pub mod func;
pub mod fuzz;
pub mod gen;
pub mod helpers;
pub mod interp;
pub mod opt;
pub mod parse;
pub mod print;
pub mod types;
pub mod verify;

pub use entities::{Block, FuncId, Inst, MapId, Slot, Value};
pub use func::{
    BlockCall, BlockData, Function, InstData, MapDef, Module, Op, Operand, SlotData, Term,
    ValueData, ValueDef,
};
pub use parse::{parse_module, ParseError};
pub use types::{BinOp, Cond, ExtOp, Hook, HookKind, IntTy, MapKind, PtrKind, Type};
pub use verify::{verify_module, VerifyError};
