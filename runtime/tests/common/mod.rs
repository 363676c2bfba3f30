//! Helpers shared by the kernel tests: requiring bpf(), hand-encoded instructions.
#![allow(dead_code)]

/// Fails the test unless this process can load BPF programs. Kernel tests that cannot run
/// here are compiled with `#[ignore = "reason"]` (build.rs), so one that runs and cannot is
/// a failure with its reason, never a silent pass.
pub fn require_kernel() {
    if let Err(why) = pol_runtime::sys::bpf_available() {
        panic!("kernel test cannot run: {why}");
    }
}

/// One instruction slot: opcode, dst, src, offset, immediate.
pub fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[0] = code;
    b[1] = (dst & 0x0f) | (src << 4);
    b[2..4].copy_from_slice(&off.to_le_bytes());
    b[4..8].copy_from_slice(&imm.to_le_bytes());
    b
}

/// `dst = imm` (BPF_ALU64 | BPF_MOV | BPF_K).
pub fn mov64_imm(dst: u8, imm: i32) -> [u8; 8] {
    insn(0xb7, dst, 0, 0, imm)
}

/// `exit`.
pub fn exit() -> [u8; 8] {
    insn(0x95, 0, 0, 0, 0)
}

pub fn program(insns: &[[u8; 8]]) -> Vec<u8> {
    insns.concat()
}
