//! pol compiler: `.pol` source to eBPF ELF objects with BTF and a layout description.
//!
//! This crate does no IO beyond what its caller hands it: sources come in as strings,
//! objects go out as bytes. The stages, in pipeline order, are `syntax` (tokens, parser,
//! AST), `hir` (names, types, the packet field catalog), `ir` (CFG over virtual registers),
//! `check` (verifier-friendliness rules), `bpf` (instructions, registers, encoding,
//! disassembly), `obj` (ELF, BTF, layout.json); `driver` runs them in order.

pub mod bpf;
pub mod diag;
pub mod obj;
pub mod syntax;
