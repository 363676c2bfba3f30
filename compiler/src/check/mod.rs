//! Verifier-friendliness rules checked on the selected instructions.
//!
//! The kernel verifier is the final judge; these checks make sure a program `pol check`
//! accepts is one it will accept, and say so at compile time with a span when not.
//! Bounds checks before packet reads, null checks after lookups and the absence of loops
//! are guaranteed by construction (parser emitter, `bpf::select`, `ir::cfg::verify`);
//! what depends on the size of the input is checked here.

use crate::bpf::insn::{Insn, BPF_CALL, BPF_EXIT, BPF_JA, BPF_JMP, BPF_JMP32};
use crate::bpf::record::SCRATCH_BASE;

/// The kernel's limit on instructions per program (BPF_COMPLEXITY_LIMIT_INSNS).
pub const MAX_INSNS: usize = 1_000_000;
/// The verifier keeps at most 8192 pending branch states ("The sequence of 8193 jumps is
/// too complex"); stay well clear of it.
pub const MAX_CONDITIONAL_JUMPS: usize = 8000;
/// Stack a program may use.
pub const MAX_STACK: usize = 512;

/// What the checks measured, for the resource report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resources {
    pub insns: usize,
    pub conditional_jumps: usize,
    pub stack_bytes: usize,
}

/// A limit the program exceeds, in words for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitExceeded {
    pub message: String,
    pub help: String,
}

pub fn measure(insns: &[Insn]) -> Resources {
    let conditional_jumps = insns
        .iter()
        .filter(|i| {
            let class = i.code & 0x07;
            let op = i.code & 0xf0;
            (class == BPF_JMP || class == BPF_JMP32) && !matches!(op, BPF_JA | BPF_CALL | BPF_EXIT)
        })
        .count();
    Resources {
        insns: insns.len(),
        conditional_jumps,
        stack_bytes: (-(SCRATCH_BASE as i32)) as usize,
    }
}

pub fn check(res: &Resources) -> Result<(), LimitExceeded> {
    if res.insns > MAX_INSNS {
        return Err(LimitExceeded {
            message: format!("the program has {} instructions; the kernel accepts at most {MAX_INSNS}", res.insns),
            help: "move addresses and ports into named sets: large sets become maps and cost one lookup".into(),
        });
    }
    if res.conditional_jumps > MAX_CONDITIONAL_JUMPS {
        return Err(LimitExceeded {
            message: format!(
                "the program has {} conditional jumps; the kernel verifier gives up near 8192 (\"The sequence of 8193 jumps is too complex\")",
                res.conditional_jumps
            ),
            help: "move addresses and ports into named sets: large sets become maps and cost one lookup".into(),
        });
    }
    if res.stack_bytes > MAX_STACK {
        return Err(LimitExceeded {
            message: format!(
                "the program needs {} bytes of stack; eBPF allows {MAX_STACK}",
                res.stack_bytes
            ),
            help: "this is a compiler limit; please report it".into(),
        });
    }
    Ok(())
}
