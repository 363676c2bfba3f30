//! The packet record and what the packet parser must fill in it: the contract between
//! the front end (`hir::fields` maps each field to record bytes, `hir::needs` says which
//! a filter reads) and the back end (`ir::to_mir::parser` builds the parser as MIR). It
//! depends on neither.

pub mod needs;
pub mod record;
