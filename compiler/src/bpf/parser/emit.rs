//! The parser's emitter: `Asm` plus the parser's context and one pending jump, so a block
//! can end with "go to X" and the jump disappears (or a two-way branch becomes one
//! conditional jump) when X turns out to come next.

use super::{ByteMask, Needs, ParserHook};
use crate::bpf::asm::{Asm, Label};
use crate::bpf::insn::*;
use crate::bpf::record::SCRATCH_BASE;

enum Pending {
    Goto(Label),
    /// `if reg OP imm goto t else goto f`, OP being JEQ or JNE.
    Branch {
        op: u8,
        reg: Reg,
        imm: i32,
        t: Label,
        f: Label,
    },
}

pub(super) struct Em<'a> {
    a: &'a mut Asm,
    pub needs: Needs,
    pub hook: ParserHook,
    /// Where an inconsistent packet goes.
    pub malformed: Label,
    /// Where a read past `data_end` goes: `malformed` on XDP; on TC the linear head may
    /// end before the packet does, so first a pull of the headers and one more parse.
    pub truncated: Label,
    /// Whether any test jumps to `truncated` (else its code would be unreachable, which
    /// the verifier refuses).
    pub truncated_used: bool,
    pending: Option<Pending>,
    /// Code placed after the L4 blocks (fragments, slow paths).
    pub deferred: Vec<super::Deferred>,
}

/// Scratch slot for `forget_value`: 2-aligned but not 8-aligned, so the verifier keeps no
/// value for it (a sub-register spill is tracked only at an 8-aligned slot).
const FORGET_SLOT: i16 = SCRATCH_BASE + 2;

impl<'a> Em<'a> {
    pub fn new(a: &'a mut Asm, hook: ParserHook, needs: Needs, malformed: Label) -> Self {
        Em {
            a,
            needs,
            hook,
            malformed,
            truncated: malformed,
            truncated_used: false,
            pending: None,
            deferred: Vec::new(),
        }
    }

    /// Jumps to the slow path `what` when `op` holds, which resumes right after.
    pub fn slow_path(&mut self, op: u8, dst: Reg, src: Reg, what: super::Slow) {
        let at = self.new_label();
        let back = self.new_label();
        self.jmp_reg(op, dst, src, at);
        self.bind(back);
        self.deferred.push(super::Deferred::Slow { at, back, what });
    }

    /// `slow_path` on a test against an immediate.
    pub fn slow_path_imm(&mut self, op: u8, dst: Reg, imm: i32, what: super::Slow) {
        let at = self.new_label();
        let back = self.new_label();
        self.jmp_imm(op, dst, imm, at);
        self.bind(back);
        self.deferred.push(super::Deferred::Slow { at, back, what });
    }

    pub fn new_label(&mut self) -> Label {
        self.a.new_label()
    }

    fn flush(&mut self) {
        match self.pending.take() {
            None => {}
            Some(Pending::Goto(l)) => self.a.ja_to(l),
            Some(Pending::Branch { op, reg, imm, t, f }) => {
                self.a.jmp_imm_to(op, reg, imm, t);
                self.a.ja_to(f);
            }
        }
    }

    pub fn emit(&mut self, insn: Insn) {
        self.flush();
        self.a.emit(insn);
    }

    pub fn jmp_imm(&mut self, op: u8, reg: Reg, imm: i32, target: Label) {
        self.flush();
        self.a.jmp_imm_to(op, reg, imm, target);
    }

    pub fn jmp_reg(&mut self, op: u8, dst: Reg, src: Reg, target: Label) {
        self.flush();
        self.a.jmp_reg_to(op, dst, src, target);
    }

    /// Ends the current block with a jump to `l`, dropped if `l` is bound next.
    pub fn goto(&mut self, l: Label) {
        self.flush();
        self.pending = Some(Pending::Goto(l));
    }

    /// Goes to `l` if the code so far can fall through to here (no pending jump: the
    /// parser emits no `exit` and no jump but through `flush`).
    pub fn end_block(&mut self, l: Label) {
        if self.pending.is_none() {
            self.goto(l);
        }
    }

    /// Ends the current block with a two-way branch (`op` is JEQ or JNE).
    pub fn branch(&mut self, op: u8, reg: Reg, imm: i32, t: Label, f: Label) {
        self.flush();
        self.pending = Some(Pending::Branch { op, reg, imm, t, f });
    }

    pub fn bind(&mut self, l: Label) {
        match self.pending.take() {
            Some(Pending::Goto(x)) if x == l => {}
            Some(Pending::Branch { op, reg, imm, t, f }) if t == l || f == l => {
                let inverse = if op == BPF_JEQ { BPF_JNE } else { BPF_JEQ };
                if t == l {
                    self.a.jmp_imm_to(inverse, reg, imm, f);
                } else {
                    self.a.jmp_imm_to(op, reg, imm, t);
                }
            }
            other => {
                self.pending = other;
                self.flush();
            }
        }
        self.a.bind(l);
    }

    /// Where the pending two-way branch goes when taken (so its block can be laid out next).
    pub fn pending_target(&self) -> Option<Label> {
        match self.pending {
            Some(Pending::Branch { t, .. }) => Some(t),
            _ => None,
        }
    }

    pub fn finish(&mut self) {
        self.flush();
    }

    /// `r0 = base + n; if r0 > data_end goto truncated`: makes `base .. base + n`
    /// readable. (`truncated` finds r0 there: how far the parser wanted to read.)
    pub fn check(&mut self, base: Reg, n: i32) {
        self.emit(mov64_reg(R0, base));
        self.emit(alu64_imm(BPF_ADD, R0, n));
        let truncated = self.truncated;
        self.truncated_used = true;
        self.jmp_reg(BPF_JGT, R0, R3, truncated);
    }

    /// The IP packet (up to `IP_END`) lies inside the frame. The fast test is against
    /// data_end; past it, the packet may still go on outside the linear part (a TC socket
    /// buffer's paged data, a multi-buffer XDP frame's fragments), which the slow path
    /// measures.
    pub fn ip_end_in_frame(&mut self) {
        self.slow_path(BPF_JGT, super::IP_END, R3, super::Slow::LongIp);
    }

    /// `check`, and also `if r0 > r7 goto malformed`: `base .. base + n` lies inside the IP
    /// packet, whose end (`IP_END`) the IPv4/IPv6 code computed from its length field. The
    /// data_end test stays: at run time it follows from this one (the IP end was checked
    /// against data_end), but only a test against data_end gives the verifier a range.
    pub fn check_ip(&mut self, base: Reg, n: i32) {
        self.check(base, n);
        let malformed = self.malformed;
        self.jmp_reg(BPF_JGT, R0, super::IP_END, malformed);
    }

    /// Copies IPv4 addresses from r4 + `from` to record slot `addr` (network order), and
    /// writes 32 into the prefix length before each, as far as `mask` asks for them.
    pub fn store_ip4_addrs(&mut self, mask: ByteMask, addrs: &[(i16, i16)]) {
        for &(addr, from) in addrs {
            if super::has(mask, addr, 4) {
                self.emit(ldx(Size::W, R0, R4, from));
                self.emit(stx(Size::W, R10, R0, super::rec(addr)));
            }
            if super::has(mask, addr - 4, 4) {
                self.emit(st_imm(Size::W, R10, super::rec(addr - 4), 32));
            }
        }
    }

    /// `dst = be16 *(u16 *)(base + off)`: a network-order field in host order.
    pub fn load_be16(&mut self, dst: Reg, base: Reg, off: i16) {
        self.emit(ldx(Size::H, dst, base, off));
        self.emit(be16(dst));
    }

    /// Makes the verifier see `reg` as any value in `0..=max`, whatever it knew before: a
    /// 16-bit spill and fill through an untracked stack slot, then an explicit bound (never
    /// taken for the values the parser computes). Without it every path through the IPv6
    /// extension-header walk (options, AH or fragment header, 6 times) carries its own exact
    /// range into the packet pointer, no two states prune each other, and the verifier
    /// processes 76582 insns (180 ms) instead of a few thousand.
    pub fn forget_value(&mut self, reg: Reg, max: i32) {
        self.emit(stx(Size::H, R10, reg, FORGET_SLOT));
        self.emit(ldx(Size::H, reg, R10, FORGET_SLOT));
        let malformed = self.malformed;
        self.jmp_imm(BPF_JGT, reg, max, malformed);
    }
}
