//! eBPF instructions: encoding, assembly with labels, disassembly, the packet parser.

pub mod insn;

pub use insn::Insn;
