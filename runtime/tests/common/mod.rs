//! Helpers shared by the kernel tests: skipping without bpf(), hand-encoded instructions.
#![allow(dead_code)]

/// Whether the kernel tests can run here. Without root or bpf() they print the reason and
/// are skipped, except under `CI=true`, where a skip is a failure.
pub fn kernel_or_skip() -> bool {
    match pol_runtime::sys::bpf_available() {
        Ok(()) => true,
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("kernel tests cannot run in CI: {why}")
        }
        Err(why) => {
            eprintln!("skipping kernel test: {why}");
            false
        }
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
