//! Tokens (logos), the lalrpop parser, and the AST with spans.

pub mod ast;
