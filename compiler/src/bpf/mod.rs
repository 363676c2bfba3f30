//! eBPF instructions: encoding, assembly with labels, disassembly; the packet record and
//! what the packet parser must fill in it.

pub mod asm;
pub mod disasm;
pub mod insn;
pub mod parser;
pub mod record;

pub use asm::{Asm, AsmError, Assembled, Label};
pub use insn::Insn;
