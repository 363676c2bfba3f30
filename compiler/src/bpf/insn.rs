//! One eBPF instruction slot (8 bytes) and its encoding. `ld_imm64` takes two slots.

use serde::Serialize;

/// An instruction slot exactly as the kernel reads it (`struct bpf_insn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Insn {
    pub code: u8,
    /// Destination register, 0..=10.
    pub dst: u8,
    /// Source register, 0..=10 (or a pseudo value for `ld_imm64` / `call`).
    pub src: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    /// Little-endian encoding, as in the ELF program section.
    pub fn to_bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = (self.dst & 0x0f) | ((self.src & 0x0f) << 4);
        b[2..4].copy_from_slice(&self.off.to_le_bytes());
        b[4..8].copy_from_slice(&self.imm.to_le_bytes());
        b
    }

    pub fn from_bytes(b: [u8; 8]) -> Self {
        Insn {
            code: b[0],
            dst: b[1] & 0x0f,
            src: b[1] >> 4,
            off: i16::from_le_bytes([b[2], b[3]]),
            imm: i32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        }
    }
}

/// Encodes a whole program.
pub fn encode(insns: &[Insn]) -> Vec<u8> {
    insns.iter().flat_map(|i| i.to_bytes()).collect()
}

// ---- Opcode fields (`code` = op | source | class, or mode | size | class) ----

// Instruction classes (low 3 bits).
pub const BPF_LD: u8 = 0x00;
pub const BPF_LDX: u8 = 0x01;
pub const BPF_ST: u8 = 0x02;
pub const BPF_STX: u8 = 0x03;
pub const BPF_ALU: u8 = 0x04;
pub const BPF_JMP: u8 = 0x05;
pub const BPF_JMP32: u8 = 0x06;
pub const BPF_ALU64: u8 = 0x07;

// Memory access sizes.
pub const BPF_W: u8 = 0x00;
pub const BPF_H: u8 = 0x08;
pub const BPF_B: u8 = 0x10;
pub const BPF_DW: u8 = 0x18;

// Memory access modes.
pub const BPF_IMM: u8 = 0x00;
pub const BPF_MEM: u8 = 0x60;
pub const BPF_ATOMIC: u8 = 0xc0;

// Operand source: immediate or register.
pub const BPF_K: u8 = 0x00;
pub const BPF_X: u8 = 0x08;

// ALU operations.
pub const BPF_ADD: u8 = 0x00;
pub const BPF_SUB: u8 = 0x10;
pub const BPF_MUL: u8 = 0x20;
pub const BPF_DIV: u8 = 0x30;
pub const BPF_OR: u8 = 0x40;
pub const BPF_AND: u8 = 0x50;
pub const BPF_LSH: u8 = 0x60;
pub const BPF_RSH: u8 = 0x70;
pub const BPF_NEG: u8 = 0x80;
pub const BPF_MOD: u8 = 0x90;
pub const BPF_XOR: u8 = 0xa0;
pub const BPF_MOV: u8 = 0xb0;
pub const BPF_ARSH: u8 = 0xc0;
pub const BPF_END: u8 = 0xd0;
/// `BPF_END` source bit: convert to big endian (a no-op on big-endian hosts).
pub const BPF_TO_BE: u8 = 0x08;
pub const BPF_TO_LE: u8 = 0x00;

// Jump operations.
pub const BPF_JA: u8 = 0x00;
pub const BPF_JEQ: u8 = 0x10;
pub const BPF_JGT: u8 = 0x20;
pub const BPF_JGE: u8 = 0x30;
pub const BPF_JSET: u8 = 0x40;
pub const BPF_JNE: u8 = 0x50;
pub const BPF_JSGT: u8 = 0x60;
pub const BPF_JSGE: u8 = 0x70;
pub const BPF_CALL: u8 = 0x80;
pub const BPF_EXIT: u8 = 0x90;
pub const BPF_JLT: u8 = 0xa0;
pub const BPF_JLE: u8 = 0xb0;
pub const BPF_JSLT: u8 = 0xc0;
pub const BPF_JSLE: u8 = 0xd0;

/// `src` of an `ld_imm64` whose immediate is a map file descriptor.
pub const BPF_PSEUDO_MAP_FD: u8 = 1;
/// `src` of a `call` to a BPF-to-BPF function (imm = relative offset).
pub const BPF_PSEUDO_CALL: u8 = 1;

/// A register. `R10` is the read-only frame pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reg(pub u8);

pub const R0: Reg = Reg(0);
pub const R1: Reg = Reg(1);
pub const R2: Reg = Reg(2);
pub const R3: Reg = Reg(3);
pub const R4: Reg = Reg(4);
pub const R5: Reg = Reg(5);
pub const R6: Reg = Reg(6);
pub const R7: Reg = Reg(7);
pub const R8: Reg = Reg(8);
pub const R9: Reg = Reg(9);
pub const R10: Reg = Reg(10);

/// Memory access width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Size {
    B,
    H,
    W,
    DW,
}

impl Size {
    pub fn code(self) -> u8 {
        match self {
            Size::B => BPF_B,
            Size::H => BPF_H,
            Size::W => BPF_W,
            Size::DW => BPF_DW,
        }
    }

    pub fn bytes(self) -> u32 {
        match self {
            Size::B => 1,
            Size::H => 2,
            Size::W => 4,
            Size::DW => 8,
        }
    }

    /// The size encoded in a load/store opcode.
    pub fn from_code(code: u8) -> Size {
        match code & 0x18 {
            BPF_B => Size::B,
            BPF_H => Size::H,
            BPF_W => Size::W,
            _ => Size::DW,
        }
    }
}

fn insn(code: u8, dst: Reg, src: Reg, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        dst: dst.0,
        src: src.0,
        off,
        imm,
    }
}

pub fn mov64_imm(dst: Reg, imm: i32) -> Insn {
    alu64_imm(BPF_MOV, dst, imm)
}

pub fn mov64_reg(dst: Reg, src: Reg) -> Insn {
    alu64_reg(BPF_MOV, dst, src)
}

/// `wDST = imm`: writes the low 32 bits and zeroes the upper 32.
pub fn mov32_imm(dst: Reg, imm: i32) -> Insn {
    alu32_imm(BPF_MOV, dst, imm)
}

pub fn mov32_reg(dst: Reg, src: Reg) -> Insn {
    alu32_reg(BPF_MOV, dst, src)
}

/// `dst op= imm` on 64 bits; `op` is one of `BPF_ADD` .. `BPF_ARSH`.
pub fn alu64_imm(op: u8, dst: Reg, imm: i32) -> Insn {
    insn(BPF_ALU64 | op | BPF_K, dst, R0, 0, imm)
}

pub fn alu64_reg(op: u8, dst: Reg, src: Reg) -> Insn {
    insn(BPF_ALU64 | op | BPF_X, dst, src, 0, 0)
}

pub fn alu32_imm(op: u8, dst: Reg, imm: i32) -> Insn {
    insn(BPF_ALU | op | BPF_K, dst, R0, 0, imm)
}

pub fn alu32_reg(op: u8, dst: Reg, src: Reg) -> Insn {
    insn(BPF_ALU | op | BPF_X, dst, src, 0, 0)
}

/// `dst = *(size *)(src + off)`
pub fn ldx(size: Size, dst: Reg, src: Reg, off: i16) -> Insn {
    insn(BPF_LDX | BPF_MEM | size.code(), dst, src, off, 0)
}

/// `*(size *)(dst + off) = src`
pub fn stx(size: Size, dst: Reg, src: Reg, off: i16) -> Insn {
    insn(BPF_STX | BPF_MEM | size.code(), dst, src, off, 0)
}

/// `*(size *)(dst + off) = imm` (sign-extended to 64 bits for `DW`).
pub fn st_imm(size: Size, dst: Reg, off: i16, imm: i32) -> Insn {
    insn(BPF_ST | BPF_MEM | size.code(), dst, R0, off, imm)
}

/// `if dst op imm goto pc + 1 + off` (64-bit compare); `op` is `BPF_JEQ` .. `BPF_JSLE`.
pub fn jmp_imm(op: u8, dst: Reg, imm: i32, off: i16) -> Insn {
    insn(BPF_JMP | op | BPF_K, dst, R0, off, imm)
}

pub fn jmp_reg(op: u8, dst: Reg, src: Reg, off: i16) -> Insn {
    insn(BPF_JMP | op | BPF_X, dst, src, off, 0)
}

/// As `jmp_imm`, comparing the low 32 bits only.
pub fn jmp32_imm(op: u8, dst: Reg, imm: i32, off: i16) -> Insn {
    insn(BPF_JMP32 | op | BPF_K, dst, R0, off, imm)
}

pub fn jmp32_reg(op: u8, dst: Reg, src: Reg, off: i16) -> Insn {
    insn(BPF_JMP32 | op | BPF_X, dst, src, off, 0)
}

/// `goto pc + 1 + off`
pub fn ja(off: i16) -> Insn {
    insn(BPF_JMP | BPF_JA, R0, R0, off, 0)
}

/// Calls helper number `helper` (`BPF_FUNC_*`); arguments in r1..r5, result in r0.
pub fn call(helper: i32) -> Insn {
    insn(BPF_JMP | BPF_CALL, R0, R0, 0, helper)
}

pub fn exit() -> Insn {
    insn(BPF_JMP | BPF_EXIT, R0, R0, 0, 0)
}

/// `dst = imm64`: two slots, the second holding the upper 32 bits.
pub fn ld_imm64(dst: Reg, imm: u64) -> [Insn; 2] {
    [
        insn(BPF_LD | BPF_IMM | BPF_DW, dst, R0, 0, imm as u32 as i32),
        insn(0, R0, R0, 0, (imm >> 32) as u32 as i32),
    ]
}

/// `dst = map` as a pseudo map-fd load (imm 0); the loader patches in the fd via relocation.
pub fn ld_map_fd(dst: Reg) -> [Insn; 2] {
    [
        insn(BPF_LD | BPF_IMM | BPF_DW, dst, Reg(BPF_PSEUDO_MAP_FD), 0, 0),
        insn(0, R0, R0, 0, 0),
    ]
}

/// `dst = be16 dst`: network (big-endian) to host order, keeping the low 16 bits.
pub fn be16(dst: Reg) -> Insn {
    insn(BPF_ALU | BPF_END | BPF_TO_BE, dst, R0, 0, 16)
}

/// `dst = be{bits} dst` (16, 32 or 64).
pub fn bswap_be(dst: Reg, bits: i32) -> Insn {
    insn(BPF_ALU | BPF_END | BPF_TO_BE, dst, R0, 0, bits)
}

/// `dst = be32 dst`: network to host order, keeping the low 32 bits.
pub fn be32(dst: Reg) -> Insn {
    insn(BPF_ALU | BPF_END | BPF_TO_BE, dst, R0, 0, 32)
}

/// `lock *(u64 *)(dst + off) += src`
pub fn atomic_add64(dst: Reg, src: Reg, off: i16) -> Insn {
    insn(BPF_STX | BPF_ATOMIC | BPF_DW, dst, src, off, BPF_ADD as i32)
}

/// A 16-bit network-order constant as a `u16` load from packet memory holds it. pol
/// targets little-endian BPF (the ELF is `bpfel`), so a field tested against a constant and
/// not stored can skip the `be16` and compare with `net16(k)` instead.
pub const fn net16(k: u16) -> i32 {
    k.swap_bytes() as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_match_the_kernel() {
        // Reference bytes from `llvm-objdump -d` of clang-built objects.
        assert_eq!(mov64_imm(R0, 2).to_bytes(), [0xb7, 0x00, 0, 0, 2, 0, 0, 0]);
        assert_eq!(
            ldx(Size::H, R2, R7, 12).to_bytes(),
            [0x69, 0x72, 12, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            jmp_imm(BPF_JNE, R2, 0x800, 5).to_bytes(),
            [0x55, 0x02, 5, 0, 0, 8, 0, 0]
        );
        assert_eq!(be16(R2).to_bytes(), [0xdc, 0x02, 0, 0, 16, 0, 0, 0]);
        assert_eq!(exit().to_bytes(), [0x95, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(call(1).to_bytes(), [0x85, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(
            atomic_add64(R0, R1, 0).to_bytes(),
            [0xdb, 0x10, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            st_imm(Size::DW, R10, -8, 0).to_bytes()[..4],
            [0x7a, 0x0a, 0xf8, 0xff]
        );
        let [a, b] = ld_map_fd(R1);
        assert_eq!(a.to_bytes(), [0x18, 0x11, 0, 0, 0, 0, 0, 0]);
        assert_eq!(b.to_bytes(), [0; 8]);
        let [lo, hi] = ld_imm64(R3, 0x1122_3344_5566_7788);
        assert_eq!((lo.imm as u32, hi.imm as u32), (0x5566_7788, 0x1122_3344));
        assert_eq!(net16(0x0800), 0x0008);
    }

    #[test]
    fn bytes_round_trip() {
        let i = jmp32_reg(BPF_JGT, R9, R3, -7);
        assert_eq!(Insn::from_bytes(i.to_bytes()), i);
    }
}
