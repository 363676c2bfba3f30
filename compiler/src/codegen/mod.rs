//! Code generation from MIR to eBPF instructions (issue 8): instruction selection,
//! liveness, register allocation, frame layout, a checker of the allocation, emission.

use crate::mir::Module;

/// Filetest output of `test regalloc` (not yet implemented).
pub fn filetest_regalloc(_m: &Module) -> String {
    "regalloc: not implemented\n".into()
}

/// Filetest output of `test codegen` (not yet implemented).
pub fn filetest_codegen(_m: &Module) -> String {
    "codegen: not implemented\n".into()
}
