//! Instruction selection: IR blocks in layout order become eBPF instructions.
//!
//! Fixed registers: r9 holds the record's layer flags for the whole rule section (the
//! packet parser leaves them there; callee-saved, so helper calls keep it), r10 the frame.
//! Virtual registers get physical ones from `regalloc`. Helper calls take r1–r5.

use super::asm::{Asm, AsmError, Assembled, Label};
use super::insn::{self as i, Reg, Size, R0, R1, R10, R2, R3, R4, R6, R9};
use super::parser::{self, Needs, ParserHook};
use super::record::{RECORD_BASE, SCRATCH_BASE, SCRATCH_BEST_ACTION, SCRATCH_BEST_RULE};
use super::regalloc;
use crate::ir::{cfg, BrOp, Function, Inst, Term};

/// Source ids for instructions that come from no rule (see `Asm::mark`).
pub const SRC_PARSER: u32 = u32::MAX - 2;
/// The shared tail of every action: count the decision, return the verdict.
pub const SRC_DECIDE: u32 = u32::MAX - 4;
pub const SRC_DEFAULT: u32 = u32::MAX - 1;
pub const SRC_MALFORMED: u32 = u32::MAX;

const HELPER_MAP_LOOKUP_ELEM: i32 = 1;
const HELPER_MAP_UPDATE_ELEM: i32 = 2;
const BPF_NOEXIST: i32 = 1;
/// An unaligned scratch slot, free between the parser and the rules.
const FORGET_FLAGS: i16 = SCRATCH_BASE + 2;

/// Selects instructions for one program: packet parser, then the rule blocks.
pub fn select(func: &Function, hook: ParserHook, needs: Needs) -> Result<Assembled, AsmError> {
    let mut asm = Asm::new();
    let labels: Vec<Label> = func.blocks.iter().map(|_| asm.new_label()).collect();
    asm.mark(SRC_PARSER);
    parser::emit_packet_parser(&mut asm, hook, needs, labels[func.malformed.0 as usize]);
    // The parser leaves the layer flags in r9 (and in the record), a constant on each of its
    // paths. Left so, the verifier walks the whole rule section once per kind of packet
    // the parser can tell apart (IPv4/TCP, IPv6/UDP, tagged, ...) and a few thousand rules
    // exhaust its budget ("processed 1000001 insns (limit 1000000)"). Passing the flags
    // through an unaligned 2-byte stack slot, which the verifier does not track, makes
    // them one unknown value, so all parser paths meet in one state at the first rule.
    asm.emit(i::stx(Size::H, R10, R9, FORGET_FLAGS));
    asm.emit(i::ldx(Size::H, R9, R10, FORGET_FLAGS));

    let order = cfg::layout(func);
    // One shared copy of "count the decision, return": every action stores its statistics
    // slot and return code and jumps here (3 instructions instead of 12 per action).
    let mut tail: Option<(Label, String)> = None;
    let mut last_src = None;
    for (pos, &b) in order.iter().enumerate() {
        let block = &func.blocks[b.0 as usize];
        let next = order.get(pos + 1).copied();
        let src = match block.rule {
            Some(r) => r,
            None if b == func.malformed => SRC_MALFORMED,
            None => SRC_DEFAULT,
        };
        if last_src != Some(src) {
            asm.mark(src);
            last_src = Some(src);
        }
        asm.bind(labels[b.0 as usize]);
        let regs = regalloc::allocate(block);
        let reg = |v| regs.get(&v).copied().unwrap_or(R0);
        // `Stat` right before `Return`: hand both to the shared tail.
        let shared = match (block.insts.last(), &block.term) {
            (Some(Inst::Stat { map, .. } | Inst::StatBest { map }), Term::Return(_)) => {
                Some(map.clone())
            }
            _ => None,
        };
        let body = if shared.is_some() {
            &block.insts[..block.insts.len() - 1]
        } else {
            &block.insts[..]
        };
        for inst in body {
            match inst {
                Inst::LoadRecord { dst, off, size } => {
                    let at = RECORD_BASE + off;
                    asm.emit(i::ldx(size_of(*size), reg(*dst), R10, at));
                    // The verifier tracks a register the parser stored at an 8-aligned
                    // slot and links it to what is loaded back: a rule's `==` then pins
                    // the slot to a constant for every later rule, each rule's match is
                    // a new state, and a few hundred `ip.dst ==` rules exhaust the
                    // verifier ("BPF program is too large. Processed 1000001 insn").
                    // An ALU op gives the loaded value an identity of its own.
                    if at % 8 == 0 {
                        asm.emit(i::alu32_imm(i::BPF_XOR, reg(*dst), 0));
                    }
                }
                Inst::AndImm { dst, src, imm } => {
                    if reg(*dst) != reg(*src) {
                        asm.emit(i::mov32_reg(reg(*dst), reg(*src)));
                    }
                    asm.emit(i::alu32_imm(i::BPF_AND, reg(*dst), *imm as i32));
                }
                Inst::Lookup { dst, map, key_off } => {
                    asm.ld_map(R1, map);
                    key_ptr(&mut asm, R2, RECORD_BASE + key_off);
                    asm.emit(i::call(HELPER_MAP_LOOKUP_ELEM));
                    if reg(*dst) != R0 {
                        asm.emit(i::mov64_reg(reg(*dst), R0));
                    }
                }
                Inst::Count { map, key_off } => count(&mut asm, map, *key_off),
                Inst::Stat { map, index } => stat(&mut asm, map, Some(*index), SCRATCH_BASE),
                Inst::StatBest { map } => stat(&mut asm, map, None, SCRATCH_BEST_RULE),
                Inst::InitBest { rule, action } => {
                    asm.emit(i::st_imm(Size::W, R10, SCRATCH_BEST_RULE, *rule as i32));
                    asm.emit(i::st_imm(Size::W, R10, SCRATCH_BEST_ACTION, *action as i32));
                }
                Inst::GroupLookup { map, key_off } => {
                    group_lookup(&mut asm, map, RECORD_BASE + key_off)
                }
                Inst::LoadBest { dst, action } => {
                    let off = if *action {
                        SCRATCH_BEST_ACTION
                    } else {
                        SCRATCH_BEST_RULE
                    };
                    asm.emit(i::ldx(Size::W, reg(*dst), R10, off));
                }
            }
        }
        let is_next = |t: crate::ir::BlockId| Some(t) == next;
        match &block.term {
            Term::Return(code) => match (&shared, block.insts.last()) {
                (Some(map), Some(last)) => {
                    match last {
                        Inst::Stat { index, .. } => {
                            asm.emit(i::st_imm(Size::W, R10, SCRATCH_BASE, *index as i32))
                        }
                        _ => {
                            asm.emit(i::ldx(Size::W, R1, R10, SCRATCH_BEST_RULE));
                            asm.emit(i::stx(Size::W, R10, R1, SCRATCH_BASE));
                        }
                    }
                    asm.emit(i::mov64_imm(R6, *code as i32));
                    if next.is_none() {
                        // The tail is emitted right after the last block.
                        if tail.is_none() {
                            let l = asm.new_label();
                            tail = Some((l, map.clone()));
                        }
                        continue;
                    }
                    let label = match &tail {
                        Some((l, _)) => *l,
                        None => {
                            let l = asm.new_label();
                            tail = Some((l, map.clone()));
                            l
                        }
                    };
                    asm.ja_to(label);
                }
                _ => {
                    asm.emit(i::mov64_imm(R0, *code as i32));
                    asm.emit(i::exit());
                }
            },
            Term::Jump(t) => {
                if !is_next(*t) {
                    asm.ja_to(labels[t.0 as usize]);
                }
            }
            Term::Branch {
                op,
                wide,
                lhs,
                imm,
                t,
                f,
            } => {
                branch(
                    &mut asm,
                    *op,
                    *wide,
                    reg(*lhs),
                    *imm,
                    (labels[t.0 as usize], is_next(*t)),
                    (labels[f.0 as usize], is_next(*f)),
                );
            }
            Term::Flags { mask, t, f } => {
                branch(
                    &mut asm,
                    BrOp::Set,
                    true,
                    R9,
                    *mask,
                    (labels[t.0 as usize], is_next(*t)),
                    (labels[f.0 as usize], is_next(*f)),
                );
            }
        }
    }
    if let Some((label, map)) = tail {
        asm.mark(SRC_DECIDE);
        asm.bind(label);
        stat(&mut asm, &map, None, SCRATCH_BASE);
        asm.emit(i::mov64_reg(R0, R6));
        asm.emit(i::exit());
    }
    asm.finish()
}

fn size_of(bytes: u8) -> Size {
    match bytes {
        1 => Size::B,
        2 => Size::H,
        4 => Size::W,
        _ => Size::DW,
    }
}

fn key_ptr(asm: &mut Asm, dst: Reg, frame_off: i16) {
    asm.emit(i::mov64_reg(dst, R10));
    asm.emit(i::alu64_imm(i::BPF_ADD, dst, frame_off as i32));
}

fn jmp_op(op: BrOp) -> u8 {
    match op {
        BrOp::Eq => i::BPF_JEQ,
        BrOp::Ne => i::BPF_JNE,
        BrOp::Lt => i::BPF_JLT,
        BrOp::Le => i::BPF_JLE,
        BrOp::Gt => i::BPF_JGT,
        BrOp::Ge => i::BPF_JGE,
        BrOp::Set => i::BPF_JSET,
    }
}

fn inverse(op: BrOp) -> Option<BrOp> {
    Some(match op {
        BrOp::Eq => BrOp::Ne,
        BrOp::Ne => BrOp::Eq,
        BrOp::Lt => BrOp::Ge,
        BrOp::Ge => BrOp::Lt,
        BrOp::Le => BrOp::Gt,
        BrOp::Gt => BrOp::Le,
        BrOp::Set => return None,
    })
}

/// A two-way branch, falling through to whichever target comes next in the layout.
fn branch(
    asm: &mut Asm,
    op: BrOp,
    wide: bool,
    lhs: Reg,
    imm: u32,
    t: (Label, bool),
    f: (Label, bool),
) {
    let jcc = |asm: &mut Asm, op: BrOp, target: Label| {
        if wide {
            asm.jmp_imm_to(jmp_op(op), lhs, imm as i32, target);
        } else {
            asm.jmp32_imm_to(jmp_op(op), lhs, imm as i32, target);
        }
    };
    match (t.1, f.1, inverse(op)) {
        (_, true, _) => jcc(asm, op, t.0),
        (true, false, Some(inv)) => jcc(asm, inv, f.0),
        _ => {
            jcc(asm, op, t.0);
            asm.ja_to(f.0);
        }
    }
}

/// `map[key] += 1`. Keyless counters are 1-entry arrays (index 0); keyed ones are hash maps
/// where a missing key is inserted with 1 (BPF_NOEXIST: if another CPU raced us and won,
/// that packet's count is lost, which a counter may tolerate).
fn count(asm: &mut Asm, map: &str, key_off: Option<i16>) {
    let done = asm.new_label();
    let key = match key_off {
        Some(k) => RECORD_BASE + k,
        None => {
            asm.emit(i::st_imm(Size::W, R10, SCRATCH_BASE, 0));
            SCRATCH_BASE
        }
    };
    asm.ld_map(R1, map);
    key_ptr(asm, R2, key);
    asm.emit(i::call(HELPER_MAP_LOOKUP_ELEM));
    // The verifier requires a null check even for an array's index 0:
    // "R0 invalid mem access 'map_value_or_null'".
    let missing = asm.new_label();
    asm.jmp_imm_to(
        i::BPF_JEQ,
        R0,
        0,
        if key_off.is_some() { missing } else { done },
    );
    asm.emit(i::mov64_imm(R1, 1));
    asm.emit(i::atomic_add64(R0, R1, 0));
    if key_off.is_some() {
        asm.ja_to(done);
        asm.bind(missing);
        asm.emit(i::st_imm(Size::DW, R10, SCRATCH_BASE + 8, 1));
        asm.ld_map(R1, map);
        key_ptr(asm, R2, key);
        key_ptr(asm, R3, SCRATCH_BASE + 8);
        asm.emit(i::mov64_imm(R4, BPF_NOEXIST));
        asm.emit(i::call(HELPER_MAP_UPDATE_ELEM));
    } else {
        asm.bind(missing);
    }
    asm.bind(done);
}

/// `map[index] += 1` on a per-CPU array: no other CPU writes this slot, so no atomic.
/// With `index` `None`, the index is already on the stack at `key`.
fn stat(asm: &mut Asm, map: &str, index: Option<u32>, key: i16) {
    let done = asm.new_label();
    if let Some(index) = index {
        asm.emit(i::st_imm(Size::W, R10, key, index as i32));
    }
    asm.ld_map(R1, map);
    key_ptr(asm, R2, key);
    asm.emit(i::call(HELPER_MAP_LOOKUP_ELEM));
    asm.jmp_imm_to(i::BPF_JEQ, R0, 0, done);
    asm.emit(i::ldx(Size::DW, R1, R0, 0));
    asm.emit(i::alu64_imm(i::BPF_ADD, R1, 1));
    asm.emit(i::stx(Size::DW, R0, R1, 0));
    asm.bind(done);
}

/// A rule-map lookup: the value is `{u32 rule, u32 action}`; a hit with a smaller rule
/// index than the best so far replaces it.
fn group_lookup(asm: &mut Asm, map: &str, key: i16) {
    let done = asm.new_label();
    asm.ld_map(R1, map);
    key_ptr(asm, R2, key);
    asm.emit(i::call(HELPER_MAP_LOOKUP_ELEM));
    asm.jmp_imm_to(i::BPF_JEQ, R0, 0, done);
    asm.emit(i::ldx(Size::W, R1, R0, 0));
    asm.emit(i::ldx(Size::W, R2, R10, SCRATCH_BEST_RULE));
    asm.jmp_reg_to(i::BPF_JGE, R1, R2, done);
    asm.emit(i::stx(Size::W, R10, R1, SCRATCH_BEST_RULE));
    asm.emit(i::ldx(Size::W, R1, R0, 4));
    asm.emit(i::stx(Size::W, R10, R1, SCRATCH_BEST_ACTION));
    asm.bind(done);
}
