//! pol compiler: `.pol` source to eBPF ELF objects with BTF and a layout description.
//!
//! This crate does no IO: sources come in as strings, objects go out as bytes (the probe
//! `catalog`'s host and directory catalogs read files, and callers choose to pass them). The stages,
//! in pipeline order, are `syntax` (tokens, parser, AST), `hir` (names, types, the packet
//! field catalog), `ir` (CFG over virtual registers), `bpf` (packet parser, instruction
//! selection, registers, encoding, disassembly), `check` (verifier limits), `obj` (ELF,
//! BTF, layout.json); `driver` runs them in order.

pub mod analysis;
pub mod bpf;
pub mod catalog;
pub mod check;
pub mod classify;
pub mod codegen;
pub mod diag;
pub mod driver;
pub mod fmt;
pub mod hir;
pub mod ir;
pub mod l7;
pub mod maps;
pub mod mir;
pub mod obj;
pub mod packet;
pub mod probe;
pub mod rule;
pub mod syntax;
