//! An assembler with labels: emit instructions, jump to labels bound later, resolve offsets.
//!
//! Jump offsets are 16-bit. A jump that does not fit is an error (`JumpOutOfRange`), never
//! a silent wrap: clang 14 wraps them and the kernel then refuses the object with
//! "jump out of range from insn A to B".

use thiserror::Error;

use super::insn::{self, Insn, Reg};

/// A jump target, bound to a position with [`Asm::bind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Label(u32);

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AsmError {
    #[error("jump out of range from insn {from} to {to}: eBPF jump offsets are 16-bit")]
    JumpOutOfRange { from: usize, to: usize },
    #[error("label {label} is used but never bound")]
    UnboundLabel { label: u32 },
    #[error("label {label} is bound twice")]
    LabelBoundTwice { label: u32 },
}

/// The assembled program.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Assembled {
    pub insns: Vec<Insn>,
    /// `(slot index of the ld_imm64, map name)`: the loader patches in the map fd.
    pub map_relocs: Vec<(usize, String)>,
    /// `(first slot, source id)`: the instructions from this slot on come from that source.
    pub marks: Vec<(usize, u32)>,
}

#[derive(Debug, Default)]
pub struct Asm {
    insns: Vec<Insn>,
    /// Position each label is bound to.
    labels: Vec<Option<usize>>,
    /// `(slot of a jump, its target label)`, patched in `finish`.
    fixups: Vec<(usize, Label)>,
    map_relocs: Vec<(usize, String)>,
    marks: Vec<(usize, u32)>,
    errors: Vec<AsmError>,
}

impl Asm {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of slots emitted so far (the index of the next one).
    pub fn len(&self) -> usize {
        self.insns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.insns.is_empty()
    }

    pub fn new_label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() as u32 - 1)
    }

    /// Binds `label` to the next instruction emitted.
    pub fn bind(&mut self, label: Label) {
        let pos = self.insns.len();
        match self.labels.get_mut(label.0 as usize) {
            Some(slot @ None) => *slot = Some(pos),
            _ => self
                .errors
                .push(AsmError::LabelBoundTwice { label: label.0 }),
        }
    }

    pub fn emit(&mut self, insn: Insn) {
        self.insns.push(insn);
    }

    /// Emits several slots (e.g. the two of an `ld_imm64`).
    pub fn emit_all(&mut self, insns: impl IntoIterator<Item = Insn>) {
        self.insns.extend(insns);
    }

    fn jump_to(&mut self, insn: Insn, target: Label) {
        self.fixups.push((self.insns.len(), target));
        self.insns.push(insn);
    }

    /// `if reg op imm goto label` (64-bit compare).
    pub fn jmp_imm_to(&mut self, op: u8, reg: Reg, imm: i32, target: Label) {
        self.jump_to(insn::jmp_imm(op, reg, imm, 0), target);
    }

    /// `if wREG op imm goto label` (32-bit compare).
    pub fn jmp32_imm_to(&mut self, op: u8, reg: Reg, imm: i32, target: Label) {
        self.jump_to(insn::jmp32_imm(op, reg, imm, 0), target);
    }

    /// `if dst op src goto label` (64-bit compare).
    pub fn jmp_reg_to(&mut self, op: u8, dst: Reg, src: Reg, target: Label) {
        self.jump_to(insn::jmp_reg(op, dst, src, 0), target);
    }

    /// `if wDST op wSRC goto label` (32-bit compare).
    pub fn jmp32_reg_to(&mut self, op: u8, dst: Reg, src: Reg, target: Label) {
        self.jump_to(insn::jmp32_reg(op, dst, src, 0), target);
    }

    pub fn ja_to(&mut self, target: Label) {
        self.jump_to(insn::ja(0), target);
    }

    /// `dst = map[name]`: an `ld_imm64` pseudo map fd, relocated by the loader.
    pub fn ld_map(&mut self, dst: Reg, map_name: &str) {
        self.map_relocs
            .push((self.insns.len(), map_name.to_string()));
        self.emit_all(insn::ld_map_fd(dst));
    }

    /// Tags the instructions emitted from now on with `source` (e.g. a rule index).
    pub fn mark(&mut self, source: u32) {
        let pos = self.insns.len();
        match self.marks.last_mut() {
            Some(last) if last.0 == pos => last.1 = source,
            _ => self.marks.push((pos, source)),
        }
    }

    /// Resolves every jump. Fails on an unbound or twice-bound label and on a jump whose
    /// offset does not fit in 16 bits.
    pub fn finish(mut self) -> Result<Assembled, AsmError> {
        if let Some(e) = self.errors.into_iter().next() {
            return Err(e);
        }
        for &(from, label) in &self.fixups {
            let to = self
                .labels
                .get(label.0 as usize)
                .copied()
                .flatten()
                .ok_or(AsmError::UnboundLabel { label: label.0 })?;
            let off = to as i64 - from as i64 - 1;
            let off = i16::try_from(off).map_err(|_| AsmError::JumpOutOfRange { from, to })?;
            if let Some(insn) = self.insns.get_mut(from) {
                insn.off = off;
            }
        }
        Ok(Assembled {
            insns: self.insns,
            map_relocs: self.map_relocs,
            marks: self.marks,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf::insn::*;

    #[test]
    fn resolves_forward_and_backward_jumps() {
        let mut a = Asm::new();
        let top = a.new_label();
        let out = a.new_label();
        a.bind(top);
        a.emit(mov64_imm(R0, 0));
        a.jmp_imm_to(BPF_JEQ, R1, 0, out);
        a.ld_map(R1, "blocked");
        a.mark(7);
        a.jmp_reg_to(BPF_JGT, R2, R3, top);
        a.bind(out);
        a.emit(exit());
        let p = a.finish().expect("assembles");
        assert_eq!(p.insns[1].off, 3); // 1 -> 5
        assert_eq!(p.insns[4].off, -5); // 4 -> 0
        assert_eq!(p.map_relocs, vec![(2, "blocked".to_string())]);
        assert_eq!(p.marks, vec![(4, 7)]);
    }

    #[test]
    fn out_of_range_jump_is_an_error_not_a_wrap() {
        let mut a = Asm::new();
        let far = a.new_label();
        a.ja_to(far);
        for _ in 0..32767 {
            a.emit(mov64_imm(R0, 0));
        }
        a.bind(far);
        a.emit(exit());
        // Offset 32767 is the largest that fits.
        assert!(a.finish().is_ok());

        let mut a = Asm::new();
        let far = a.new_label();
        a.ja_to(far);
        for _ in 0..32768 {
            a.emit(mov64_imm(R0, 0));
        }
        a.bind(far);
        a.emit(exit());
        assert_eq!(
            a.finish(),
            Err(AsmError::JumpOutOfRange { from: 0, to: 32769 })
        );

        let mut a = Asm::new();
        let back = a.new_label();
        a.bind(back);
        for _ in 0..32768 {
            a.emit(mov64_imm(R0, 0));
        }
        a.jmp32_imm_to(BPF_JNE, R1, 0, back); // offset -32769
        assert_eq!(
            a.finish(),
            Err(AsmError::JumpOutOfRange { from: 32768, to: 0 })
        );
    }

    #[test]
    fn label_errors() {
        let mut a = Asm::new();
        let l = a.new_label();
        a.ja_to(l);
        assert_eq!(a.finish(), Err(AsmError::UnboundLabel { label: 0 }));

        let mut a = Asm::new();
        let l = a.new_label();
        a.bind(l);
        a.bind(l);
        assert_eq!(a.finish(), Err(AsmError::LabelBoundTwice { label: 0 }));
    }

    #[test]
    fn marks_at_the_same_slot_keep_the_last() {
        let mut a = Asm::new();
        a.mark(1);
        a.mark(2);
        a.emit(exit());
        assert_eq!(a.finish().map(|p| p.marks), Ok(vec![(0, 2)]));
    }
}
