//! Verifier-friendliness rules checked on the emitted instructions.
//!
//! The kernel verifier is the final judge; these checks make sure a program `pol check`
//! accepts is one it will accept, and say so at compile time with a span when not.
//! Bounds checks before packet reads, null checks after lookups and the absence of loops
//! are guaranteed by construction (the MIR verifier, `ir::cfg::verify`);
//! what depends on the size of the input is checked here.

use crate::bpf::insn::{Insn, BPF_CALL, BPF_EXIT, BPF_JA, BPF_JMP, BPF_JMP32};

/// The kernel's limit on instructions per program (BPF_COMPLEXITY_LIMIT_INSNS).
pub const MAX_INSNS: usize = 1_000_000;
/// The verifier keeps at most 8192 pending branch states ("The sequence of 8193 jumps is
/// too complex"); stay well clear of it. pol's layout puts a rule's match path on the
/// fall-through side, so the verifier finishes each rule before it starts the next and
/// the pending states never exceed one rule's (and the parser's) conditional jumps: the
/// limit applies to the longest run of conditional jumps of one source (a rule, the
/// parser), not to the program.
pub const MAX_CONDITIONAL_JUMPS: usize = 8000;
/// Stack a program may use.
pub const MAX_STACK: usize = 512;

/// The most instructions the verifier adds in place of one helper call when it inlines a
/// map lookup (a per-CPU array lookup becomes about 7). Jumps that cross a call must
/// still fit 16 bits afterwards: "insn N cannot be patched due to 16-bit range".
pub const PATCH_GROWTH_PER_CALL: usize = 8;
/// The longest jump eBPF can encode.
pub const MAX_JUMP: usize = i16::MAX as usize;

/// What the checks measured, for the resource report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resources {
    pub insns: usize,
    pub conditional_jumps: usize,
    /// The source (rule index or `ir::SRC_*`) with the most conditional jumps of
    /// its own, and their number.
    pub most_jumps: (u32, usize),
    pub stack_bytes: usize,
    /// The longest jump, in instructions, once the kernel has inlined the map lookups it
    /// crosses: `(from, to, patched length)`.
    pub longest_jump: (usize, usize, usize),
}

/// A limit the program exceeds, in words for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitExceeded {
    pub message: String,
    pub help: String,
}

fn is_conditional(i: &Insn) -> bool {
    let class = i.code & 0x07;
    let op = i.code & 0xf0;
    (class == BPF_JMP || class == BPF_JMP32) && !matches!(op, BPF_JA | BPF_CALL | BPF_EXIT)
}

/// Measures a program; `marks` are `(first slot, source)`; `stack_bytes` is what its
/// frame (and the deepest call chain from it) takes, as `codegen::frame` measured it.
pub fn measure(insns: &[Insn], marks: &[(usize, u32)], stack_bytes: usize) -> Resources {
    let conditional_jumps = insns.iter().filter(|i| is_conditional(i)).count();
    let mut per_source: std::collections::HashMap<u32, usize> = Default::default();
    for (k, &(start, src)) in marks.iter().enumerate() {
        let end = marks
            .get(k + 1)
            .map_or(insns.len(), |m| m.0)
            .min(insns.len());
        let n = insns
            .get(start..end)
            .map_or(0, |r| r.iter().filter(|i| is_conditional(i)).count());
        *per_source.entry(src).or_default() += n;
    }
    let most_jumps = per_source
        .into_iter()
        .max_by_key(|&(src, n)| (n, std::cmp::Reverse(src)))
        .unwrap_or((0, 0));
    Resources {
        insns: insns.len(),
        conditional_jumps,
        most_jumps,
        stack_bytes,
        longest_jump: longest_jump(insns),
    }
}

/// The jump whose length grows most when the verifier inlines the calls it crosses.
fn longest_jump(insns: &[Insn]) -> (usize, usize, usize) {
    let is_call = |i: &Insn| i.code == (BPF_JMP | BPF_CALL);
    let mut calls = Vec::with_capacity(insns.len() + 1);
    calls.push(0usize);
    for i in insns {
        let last = calls.last().copied().unwrap_or(0);
        calls.push(last + usize::from(is_call(i)));
    }
    let mut worst = (0, 0, 0);
    for (at, i) in insns.iter().enumerate() {
        let class = i.code & 0x07;
        let op = i.code & 0xf0;
        if !(class == BPF_JMP || class == BPF_JMP32) || matches!(op, BPF_CALL | BPF_EXIT) {
            continue;
        }
        let to = at as i64 + 1 + i64::from(i.off);
        let Ok(to) = usize::try_from(to) else {
            continue;
        };
        let (lo, hi) = (at.min(to), at.max(to).min(insns.len()));
        let grown = hi - lo + PATCH_GROWTH_PER_CALL * (calls[hi] - calls[lo]);
        if grown > worst.2 {
            worst = (at, to, grown);
        }
    }
    worst
}

pub fn check(res: &Resources) -> Result<(), LimitExceeded> {
    if res.insns > MAX_INSNS {
        return Err(LimitExceeded {
            message: format!("the program has {} instructions; the kernel accepts at most {MAX_INSNS}", res.insns),
            help: "move addresses and ports into named sets: large sets become maps and cost one lookup".into(),
        });
    }
    if res.most_jumps.1 > MAX_CONDITIONAL_JUMPS {
        return Err(LimitExceeded {
            message: format!(
                "this rule compiles to {} conditional jumps in a row; the kernel verifier gives up near 8192 (\"The sequence of 8193 jumps is too complex\")",
                res.most_jumps.1
            ),
            help: "move its values into a named set: a set of more than 8 elements is a map, one lookup".into(),
        });
    }
    let (from, to, len) = res.longest_jump;
    if len > MAX_JUMP {
        return Err(LimitExceeded {
            message: format!(
                "the jump from instruction {from} to {to} would be {len} instructions long once the kernel inlines the map lookups it crosses; eBPF jumps reach {MAX_JUMP}"
            ),
            help: "the filter has too many rules that stay code: put their addresses and ports in sets, or split it into several filters (`pol build --explain` shows which rules stay code)".into(),
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
