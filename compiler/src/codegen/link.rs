//! A program and the subprograms it reaches as one instruction stream, the form the
//! kernel loads: callees appended after the program in order of first reference, every
//! BPF-to-BPF call and callback address made relative (`imm` = target - slot - 1, with
//! `BPF_PSEUDO_FUNC` on the `ld_imm64` of a callback). The ELF object keeps subprograms in
//! `.text` with relocations instead; this is for loaders that take instructions as they
//! are (`pol run`'s direct path).

use super::Compiled;
use crate::bpf::insn::Insn;

/// `ld_imm64` source register: the immediate is a function's relative address.
pub const BPF_PSEUDO_FUNC: u8 = 4;

/// Instructions and `(slot, map name)` relocations.
pub type Linked = (Vec<Insn>, Vec<(usize, String)>);

/// The linked instructions of function `prog` of `c`, with its map relocations.
pub fn link(c: &Compiled, prog: usize) -> Result<Linked, String> {
    let func = |i: usize| c.funcs.get(i).ok_or(format!("no function {i}"));
    let mut base: Vec<Option<usize>> = vec![None; c.funcs.len()];
    let mut order = vec![prog];
    *base.get_mut(prog).ok_or("no such program")? = Some(0);
    let mut len = func(prog)?.code.insns.len();
    let mut k = 0;
    while let Some(&fi) = order.get(k) {
        let code = &func(fi)?.code;
        for &(_, g) in code.calls.iter().chain(&code.func_addrs) {
            let slot = base
                .get_mut(g.index())
                .ok_or("call of an unknown function")?;
            if slot.is_none() {
                *slot = Some(len);
                len += func(g.index())?.code.insns.len();
                order.push(g.index());
            }
        }
        k += 1;
    }
    let mut insns = Vec::with_capacity(len);
    let mut relocs = Vec::new();
    for &fi in &order {
        let code = &func(fi)?.code;
        let at = base[fi].ok_or("unplaced function")?;
        let mut own = code.insns.clone();
        let rel = |slot: usize, g: usize| -> Result<i32, String> {
            let target = base.get(g).copied().flatten().ok_or("unplaced callee")?;
            i32::try_from(target as i64 - (at + slot) as i64 - 1).map_err(|e| e.to_string())
        };
        for &(slot, g) in &code.calls {
            own.get_mut(slot).ok_or("call slot out of range")?.imm = rel(slot, g.index())?;
        }
        for &(slot, g) in &code.func_addrs {
            let i = own.get_mut(slot).ok_or("ld_imm64 slot out of range")?;
            i.imm = rel(slot, g.index())?;
            i.src = BPF_PSEUDO_FUNC;
        }
        relocs.extend(code.map_relocs.iter().map(|(s, m)| (s + at, m.clone())));
        insns.extend(own);
    }
    Ok((insns, relocs))
}
