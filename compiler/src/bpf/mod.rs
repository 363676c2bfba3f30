//! eBPF instructions: encoding, assembly with labels, disassembly, the packet parser.

pub mod asm;
pub mod disasm;
pub mod insn;
pub mod parser;
pub mod record;
pub mod regalloc;
pub mod select;

pub use asm::{Asm, AsmError, Assembled, Label};
pub use insn::Insn;
