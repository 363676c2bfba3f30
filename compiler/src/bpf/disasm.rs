//! A readable listing of eBPF instructions in the kernel verifier / bpftool style, with
//! jump targets as labels, map names on relocated loads, and source comments at marks.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::insn::*;

/// Helper names for `call`, as in `enum bpf_func_id` (only those pol may emit or a reader
/// is likely to meet; others print as `call #N`).
fn helper_name(id: i32) -> Option<&'static str> {
    Some(match id {
        1 => "map_lookup_elem",
        2 => "map_update_elem",
        3 => "map_delete_elem",
        5 => "ktime_get_ns",
        6 => "trace_printk",
        7 => "get_prandom_u32",
        8 => "get_smp_processor_id",
        12 => "tail_call",
        14 => "get_current_pid_tgid",
        15 => "get_current_uid_gid",
        16 => "get_current_comm",
        23 => "redirect",
        25 => "perf_event_output",
        26 => "skb_load_bytes",
        27 => "get_stackid",
        35 => "get_current_task",
        39 => "skb_pull_data",
        51 => "redirect_map",
        80 => "get_current_cgroup_id",
        109 => "send_signal",
        112 => "probe_read_user",
        113 => "probe_read_kernel",
        114 => "probe_read_user_str",
        115 => "probe_read_kernel_str",
        125 => "ktime_get_boot_ns",
        130 => "ringbuf_output",
        131 => "ringbuf_reserve",
        132 => "ringbuf_submit",
        133 => "ringbuf_discard",
        158 => "get_current_task_btf",
        181 => "loop",
        189 => "xdp_load_bytes",
        _ => return None,
    })
}

fn alu_op(op: u8) -> &'static str {
    match op {
        BPF_ADD => "+=",
        BPF_SUB => "-=",
        BPF_MUL => "*=",
        BPF_DIV => "/=",
        BPF_OR => "|=",
        BPF_AND => "&=",
        BPF_LSH => "<<=",
        BPF_RSH => ">>=",
        BPF_MOD => "%=",
        BPF_XOR => "^=",
        BPF_MOV => "=",
        BPF_ARSH => "s>>=",
        _ => "",
    }
}

fn jmp_op(op: u8) -> &'static str {
    match op {
        BPF_JEQ => "==",
        BPF_JGT => ">",
        BPF_JGE => ">=",
        BPF_JSET => "&",
        BPF_JNE => "!=",
        BPF_JSGT => "s>",
        BPF_JSGE => "s>=",
        BPF_JLT => "<",
        BPF_JLE => "<=",
        BPF_JSLT => "s<",
        BPF_JSLE => "s<=",
        _ => "?",
    }
}

fn size_name(code: u8) -> &'static str {
    match Size::from_code(code) {
        Size::B => "u8",
        Size::H => "u16",
        Size::W => "u32",
        Size::DW => "u64",
    }
}

/// Immediates in compares print in hex (as the kernel does); small ones stay decimal.
fn hex(imm: i32) -> String {
    if (-9..=9).contains(&imm) {
        imm.to_string()
    } else if imm < 0 {
        format!("-{:#x}", -(imm as i64))
    } else {
        format!("{imm:#x}")
    }
}

fn mem(code: u8, reg: u8, off: i16) -> String {
    format!("*({} *)(r{reg} {off:+})", size_name(code))
}

/// Jump target of the jump at `pc`, if it is a jump with an offset.
fn jump_target(pc: usize, i: &Insn) -> Option<usize> {
    let class = i.code & 0x07;
    let op = i.code & 0xf0;
    let is_jmp = class == BPF_JMP || class == BPF_JMP32;
    if !is_jmp || op == BPF_CALL || op == BPF_EXIT {
        return None;
    }
    usize::try_from(pc as i64 + 1 + i.off as i64).ok()
}

/// One instruction (the first slot of an `ld_imm64` takes the second in `next`).
fn render(i: &Insn, next: Option<&Insn>, map: Option<&str>, target: String) -> String {
    let (class, op) = (i.code & 0x07, i.code & 0xf0);
    let (d, s) = (i.dst, i.src);
    match class {
        BPF_ALU | BPF_ALU64 => {
            let r = if class == BPF_ALU64 { 'r' } else { 'w' };
            let src = if i.code & BPF_X != 0 {
                format!("{r}{s}")
            } else {
                i.imm.to_string()
            };
            match op {
                BPF_NEG => format!("{r}{d} = -{r}{d}"),
                BPF_END => {
                    let kind = if i.code & BPF_TO_BE != 0 { "be" } else { "le" };
                    format!("r{d} = {kind}{} r{d}", i.imm)
                }
                _ if alu_op(op).is_empty() => format!("<unknown code {:#04x}>", i.code),
                // Signed division and modulo (cpu v4): offset 1.
                BPF_DIV | BPF_MOD if i.off == 1 => format!("{r}{d} s{} {src}", alu_op(op)),
                _ => format!("{r}{d} {} {src}", alu_op(op)),
            }
        }
        BPF_LDX => format!("r{d} = {}", mem(i.code, s, i.off)),
        BPF_STX if i.code & 0xe0 == BPF_ATOMIC => match i.imm {
            0x00 => format!("lock {} += r{s}", mem(i.code, d, i.off)),
            0x40 => format!("lock {} |= r{s}", mem(i.code, d, i.off)),
            0x50 => format!("lock {} &= r{s}", mem(i.code, d, i.off)),
            0xa0 => format!("lock {} ^= r{s}", mem(i.code, d, i.off)),
            imm => format!("atomic {} op {imm:#x} r{s}", mem(i.code, d, i.off)),
        },
        BPF_STX => format!("{} = r{s}", mem(i.code, d, i.off)),
        BPF_ST => format!("{} = {}", mem(i.code, d, i.off), i.imm),
        BPF_LD if i.code == BPF_LD | BPF_IMM | BPF_DW => {
            let hi = next.map_or(0, |n| n.imm as u32 as u64);
            let value = (hi << 32) | i.imm as u32 as u64;
            match (s, map) {
                (_, Some(name)) => format!("r{d} = map[{name}] ll"),
                (BPF_PSEUDO_MAP_FD, None) => format!("r{d} = map[fd:{}] ll", i.imm),
                _ => format!("r{d} = {value:#x} ll"),
            }
        }
        BPF_JMP | BPF_JMP32 => match op {
            BPF_EXIT => "exit".to_string(),
            BPF_CALL if s == BPF_PSEUDO_CALL => format!("call pc{:+}", i.imm),
            BPF_CALL => match helper_name(i.imm) {
                Some(name) => format!("call {name}#{}", i.imm),
                None => format!("call #{}", i.imm),
            },
            BPF_JA => format!("goto {:+}{target}", i.off),
            _ => {
                let r = if class == BPF_JMP { 'r' } else { 'w' };
                let rhs = if i.code & BPF_X != 0 {
                    format!("{r}{s}")
                } else {
                    hex(i.imm)
                };
                format!("if {r}{d} {} {rhs} goto {:+}{target}", jmp_op(op), i.off)
            }
        },
        _ => format!("<unknown code {:#04x}>", i.code),
    }
}

/// Renders `insns` one per line: `  17: r2 = *(u16 *)(r7 +12)`. Jump targets get labels
/// (`L3:` lines, `goto +5 <L3>`); relocated `ld_imm64` show the map name; where a mark
/// starts, a `; <source_text(id)>` comment line comes first.
pub fn disassemble(
    insns: &[Insn],
    relocs: &[(usize, String)],
    marks: &[(usize, u32)],
    source_text: &dyn Fn(u32) -> String,
) -> String {
    let relocs: BTreeMap<usize, &str> = relocs.iter().map(|(i, n)| (*i, n.as_str())).collect();
    let marks: BTreeMap<usize, u32> = marks.iter().copied().collect();
    let mut labels: BTreeMap<usize, usize> = BTreeMap::new();
    let mut pc = 0;
    while let Some(i) = insns.get(pc) {
        match jump_target(pc, i) {
            Some(t) if t <= insns.len() => _ = labels.insert(t, 0),
            _ => {}
        }
        pc += if i.code == BPF_LD | BPF_IMM | BPF_DW {
            2
        } else {
            1
        };
    }
    for (n, v) in labels.values_mut().enumerate() {
        *v = n;
    }
    let width = insns.len().max(10).to_string().len();
    let mut out = String::new();
    let mut pc = 0;
    while let Some(i) = insns.get(pc) {
        if let Some(&src) = marks.get(&pc) {
            let _ = writeln!(out, "; {}", source_text(src));
        }
        if let Some(l) = labels.get(&pc) {
            let _ = writeln!(out, "L{l}:");
        }
        let target = match jump_target(pc, i) {
            Some(t) => match labels.get(&t) {
                Some(l) => format!(" <L{l}>"),
                None => format!(" <-> {t}: outside the program>"),
            },
            None => String::new(),
        };
        let wide = i.code == BPF_LD | BPF_IMM | BPF_DW;
        let text = render(i, insns.get(pc + 1), relocs.get(&pc).copied(), target);
        let _ = writeln!(out, "{pc:>width$}: {text}");
        pc += if wide { 2 } else { 1 };
    }
    if let Some(l) = labels.get(&insns.len()) {
        let _ = writeln!(out, "L{l}:");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf::asm::Asm;

    #[test]
    fn listing_in_kernel_style() {
        let mut a = Asm::new();
        let drop = a.new_label();
        let done = a.new_label();
        a.mark(0);
        a.emit(ldx(Size::H, R2, R7, 12));
        a.emit(be16(R2));
        a.jmp32_imm_to(BPF_JNE, R2, 0x800, done);
        a.emit(st_imm(Size::DW, R10, -64, 0));
        a.emit(alu64_imm(BPF_AND, R3, 0xfff));
        a.emit(mov32_imm(R4, -1));
        a.emit(alu64_reg(BPF_ADD, R4, R2));
        a.jmp_reg_to(BPF_JGT, R4, R3, drop);
        a.mark(1);
        a.ld_map(R1, "blocked_v4");
        a.emit(mov64_reg(R2, R10));
        a.emit(alu64_imm(BPF_ADD, R2, -44));
        a.emit(call(1));
        a.jmp_imm_to(BPF_JEQ, R0, 0, done);
        a.emit(mov64_imm(R1, 1));
        a.emit(atomic_add64(R0, R1, 0));
        a.emit(stx(Size::W, R10, R1, -4));
        a.emit_all(ld_imm64(R5, 0x1_0000_0002));
        a.bind(drop);
        a.emit(mov64_imm(R0, 1));
        a.emit(exit());
        a.bind(done);
        a.emit(mov64_imm(R0, 2));
        a.emit(ja(-3));
        let p = a.finish().expect("assembles");
        let names = ["ip.src in blocked_v4", "count drops"];
        let text = disassemble(&p.insns, &p.map_relocs, &p.marks, &|id| {
            names
                .get(id as usize)
                .map_or(String::new(), |s| s.to_string())
        });
        insta::assert_snapshot!(text);
    }

    #[test]
    fn unknown_and_out_of_program_targets() {
        let insns = [
            jmp_imm(BPF_JSET, R1, 0x3fff, 5),
            call(9999),
            Insn::from_bytes([0xff; 8]),
        ];
        let text = disassemble(&insns, &[], &[], &|_| String::new());
        insta::assert_snapshot!(text);
    }
}
