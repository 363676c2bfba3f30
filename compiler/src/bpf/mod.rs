//! eBPF instructions: encoding, assembly with labels, disassembly.

pub mod asm;
pub mod disasm;
pub mod insn;

pub use asm::{Asm, AsmError, Assembled, Label};
pub use insn::Insn;
