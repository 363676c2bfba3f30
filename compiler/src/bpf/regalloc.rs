//! Register allocation for one block: linear scan over the block's virtual registers.
//!
//! Virtual registers never cross blocks (checked by `ir::cfg::verify`), so a block is the
//! whole live range. A value that is live across a helper call goes to a callee-saved
//! register (r6–r8; r9 holds the layer flags); a lookup result not live across another call
//! stays in r0; everything else takes a free register of r1–r5.

use super::insn::{Reg, R0, R1, R2, R3, R4, R5, R6, R7, R8};
use crate::ir::{Block, Inst, Term, VReg};
use std::collections::HashMap;

/// The physical register of every virtual register defined in `block`.
///
/// Panics never: if the block needs more registers than there are (the lowering does not
/// produce such blocks), the extra values share r5, and `check_block` reports it.
pub fn allocate(block: &Block) -> HashMap<VReg, Reg> {
    let n = block.insts.len();
    // Last use of each value: an instruction index, or `n` for the terminator.
    let mut last_use: HashMap<VReg, usize> = HashMap::new();
    for (idx, inst) in block.insts.iter().enumerate() {
        for u in inst.uses() {
            last_use.insert(u, idx);
        }
    }
    if let Term::Branch { lhs, .. } = &block.term {
        last_use.insert(*lhs, n);
    }
    let calls: Vec<usize> = (0..n).filter(|&k| block.insts[k].is_call()).collect();

    let mut out = HashMap::new();
    // Register -> index up to which it is busy.
    let mut busy: HashMap<Reg, usize> = HashMap::new();
    for (idx, inst) in block.insts.iter().enumerate() {
        let Some(d) = inst.def() else { continue };
        let end = last_use.get(&d).copied().unwrap_or(idx);
        let crosses_call = calls.iter().any(|&c| c > idx && c < end);
        let candidates: &[Reg] = if crosses_call {
            &[R6, R7, R8]
        } else if matches!(inst, Inst::Lookup { .. }) {
            &[R0, R6, R7, R8]
        } else {
            &[R1, R2, R3, R4, R5]
        };
        let free = candidates
            .iter()
            .copied()
            // A register is free when the value in it is dead (its last use is at or before
            // this instruction: a use and a def may share it, as in `r1 &= mask`).
            .find(|r| busy.get(r).is_none_or(|&b| b <= idx));
        let r = free.unwrap_or(R5);
        busy.insert(r, end);
        out.insert(d, r);
    }
    out
}
