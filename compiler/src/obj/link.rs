//! One program of a module and the subprograms it reaches as one instruction stream, the
//! form BPF_PROG_LOAD takes: callees appended after the program in order of first
//! reference (each once), every BPF-to-BPF call and callback address made relative
//! (`imm` = target - slot - 1, `BPF_PSEUDO_FUNC` on a callback's `ld_imm64`), map
//! relocations moved along. The ELF object keeps subprograms in `.text` with relocations
//! instead (`module.rs`); this is for loaders that hand the kernel instructions (the
//! direct loader) and for measuring a program as the verifier sees it.

use super::{FuncSpec, MapReloc, ModuleSpec, ObjError};
use crate::bpf::Insn;

/// `ld_imm64` source register: the immediate is a function's relative address.
pub const BPF_PSEUDO_FUNC: u8 = 4;
/// Call source register: the immediate is the callee's relative address.
pub const BPF_PSEUDO_CALL: u8 = 1;

/// A linked program.
#[derive(Debug, Clone, PartialEq)]
pub struct Linked {
    pub insns: Vec<Insn>,
    pub map_relocs: Vec<MapReloc>,
    /// `(first slot, index in the module's funcs)` of each function placed, the program
    /// first: BPF_PROG_LOAD's func_info, once each is given its BTF FUNC id.
    pub funcs: Vec<(usize, usize)>,
}

/// Links function `program` of `spec` with the subprograms it reaches.
pub fn link(spec: &ModuleSpec, program: usize) -> Result<Linked, ObjError> {
    let bug = |what: String| ObjError::Elf(format!("linking: {what}"));
    let func = |i: usize| -> Result<&FuncSpec, ObjError> {
        spec.funcs
            .get(i)
            .ok_or_else(|| bug(format!("no function {i}")))
    };
    let index_of = |name: &str| -> Result<usize, ObjError> {
        spec.funcs
            .iter()
            .position(|f| f.name == name && f.section.is_none())
            .ok_or_else(|| bug(format!("`{name}` is not a subprogram of the module")))
    };
    // Place every reachable function: (first slot, index), in order of first reference.
    let mut placed: Vec<(usize, usize)> = vec![(0, program)];
    let mut len = func(program)?.insns.len();
    let mut k = 0;
    while let Some(&(_, fi)) = placed.get(k) {
        let f = func(fi)?;
        for (_, callee) in f.calls.iter().chain(&f.func_addrs) {
            let ci = index_of(callee)?;
            if !placed.iter().any(|&(_, p)| p == ci) {
                placed.push((len, ci));
                len += func(ci)?.insns.len();
            }
        }
        k += 1;
    }
    let base_of = |name: &str| -> Result<usize, ObjError> {
        let ci = index_of(name)?;
        placed
            .iter()
            .find(|&&(_, p)| p == ci)
            .map(|&(at, _)| at)
            .ok_or_else(|| bug(format!("`{name}` was not placed")))
    };
    let mut insns = Vec::with_capacity(len);
    let mut map_relocs = Vec::new();
    for &(at, fi) in &placed {
        let f = func(fi)?;
        let mut own = f.insns.clone();
        let rel = |slot: usize, callee: &str| -> Result<i32, ObjError> {
            let target = base_of(callee)? as i64;
            i32::try_from(target - (at + slot) as i64 - 1)
                .map_err(|_| bug(format!("`{}` is too long", f.name)))
        };
        for (slot, callee) in &f.calls {
            let imm = rel(*slot, callee)?;
            let i = own
                .get_mut(*slot)
                .ok_or_else(|| bug(format!("a call of `{}` is out of range", f.name)))?;
            i.src = BPF_PSEUDO_CALL;
            i.imm = imm;
        }
        for (slot, callee) in &f.func_addrs {
            let imm = rel(*slot, callee)?;
            let i = own
                .get_mut(*slot)
                .ok_or_else(|| bug(format!("a callback of `{}` is out of range", f.name)))?;
            i.src = BPF_PSEUDO_FUNC;
            i.imm = imm;
        }
        map_relocs.extend(f.map_relocs.iter().map(|r| MapReloc {
            insn_index: r.insn_index + at,
            map: r.map.clone(),
        }));
        insns.extend(own);
    }
    Ok(Linked {
        insns,
        map_relocs,
        funcs: placed,
    })
}
