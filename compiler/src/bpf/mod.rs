//! eBPF instructions: encoding, assembly with labels, disassembly, the packet parser.

pub mod asm;
pub mod insn;
pub mod record;

pub use asm::{Asm, AsmError, Assembled, Label};
pub use insn::Insn;
