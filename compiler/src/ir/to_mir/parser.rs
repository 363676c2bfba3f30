//! The packet parser as MIR, to the contract of `packet::needs` (docs/packet-parsing.md),
//! built with variables ("the L3 header", "the end of the IP packet") that the builder
//! turns into block parameters. Every packet read follows a compare against `pkt_end`
//! that the MIR verifier proves covers it; TC's pull-and-parse-again is a counted loop
//! of two passes whose back edge is the pull.

use super::Tags;
use crate::mir::build::{Builder, Var};
use crate::mir::{
    helpers, BinOp, Block, BlockCall, Cond, ExtOp, IntTy, Op, Operand, PtrKind, Slot, Term, Type,
    Value,
};
use crate::packet::needs::{has, ByteMask, Needs, ParserHook, MAX_EXT_HDRS};
use crate::packet::record::*;

const SKB_LEN: i16 = 0;
const SKB_VLAN_PRESENT: i16 = 20;
const SKB_VLAN_TCI: i16 = 24;
const SKB_VLAN_PROTO: i16 = 28;
const SKB_DATA: i16 = 76;
const SKB_DATA_END: i16 = 80;
const SKB_GSO_SIZE: i16 = 176;
const MAX_GSO_LEN: i64 = 1 << 20;
const PULL_MIN: i64 = 256;

const ETH_P_IP: i64 = 0x0800;
const ETH_P_IPV6: i64 = 0x86dd;
const ETH_P_ARP: i64 = 0x0806;
const ETH_P_8021Q: i64 = 0x8100;
const ETH_P_8021AD: i64 = 0x88a8;
const ETH_P_QINQ1: i64 = 0x9100;
const ETH_P_QINQ2: i64 = 0x9200;
const ETH_P_MPLS_UC: i64 = 0x8847;
const ETH_P_MPLS_MC: i64 = 0x8848;
const ETH_P_PPPOE_SES: i64 = 0x8864;
const ETH_P_TEB: i64 = 0x6558;

const PPP_IP: i64 = 0x0021;
const PPP_IPV6: i64 = 0x0057;
/// MPLS label stack entries looked through; one more is malformed (as a third VLAN tag).
const MAX_MPLS_LABELS: usize = 4;
const UDP_VXLAN: i64 = 4789;
const UDP_GENEVE: i64 = 6081;

const IPPROTO_ICMP: i64 = 1;
const IPPROTO_TCP: i64 = 6;
const IPPROTO_UDP: i64 = 17;
const IPPROTO_ICMPV6: i64 = 58;
const IPPROTO_SCTP: i64 = 132;
const IPPROTO_HOPOPTS: i64 = 0;
const IPPROTO_ROUTING: i64 = 43;
const IPPROTO_FRAGMENT: i64 = 44;
const IPPROTO_AH: i64 = 51;
const IPPROTO_DSTOPTS: i64 = 60;
const IPPROTO_IPIP: i64 = 4;
const IPPROTO_IPV6: i64 = 41;
const IPPROTO_GRE: i64 = 47;

/// A 16-bit constant as a `load.u16` of network-order bytes reads it on a little-endian host.
const fn net16(x: u16) -> i64 {
    x.swap_bytes() as i64
}

/// The variables of the parser: what the hand-written parser kept in registers.
struct Vars {
    data: Var,
    data_end: Var,
    l3: Var,
    etype: Var,
    ip_len: Var,
    ip_end: Var,
    l4: Var,
    proto: Var,
    flags: Var,
    /// How far a failed bounds check wanted to read (TC's pull).
    want: Var,
    ext_len: Var,
    next: Var,
    /// The end of the outer IP packet while a tunnel's inner packet is parsed.
    outer_end: Var,
}

/// Where a recognised tunnel's inner packet is parsed: its IPv4, IPv6 or Ethernet header
/// at `l3` (`done` when no rule reads the inner packet).
#[derive(Clone, Copy)]
struct InnerBlocks {
    ip4: Block,
    ip6: Block,
    eth: Block,
}

#[derive(Clone, Copy)]
struct Tunnels {
    ipip: Block,
    ip6ip: Block,
    gre: Block,
    vxlan: Block,
    geneve: Block,
    inner: InnerBlocks,
}

struct L4Blocks {
    tcp: Block,
    udp: Block,
    sctp: Block,
    icmp: Block,
    icmp6: Block,
}

/// A record field kept in a variable instead of the record (`Field::var` of type u32, or
/// u64 for 8 bytes, zero-extended): the rules read it where they test it, with no store
/// and load through the stack. Only fields the rules read whole and never hand to a
/// helper as a key (`super::register_fields`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Field {
    pub off: i16,
    pub size: u8,
    pub var: Var,
}

/// How the parser hands its results to the rules.
#[derive(Debug, Clone, Copy)]
pub(super) struct Out<'a> {
    /// Fields kept in variables.
    pub fields: &'a [Field],
    /// Pass the layer flags through the forget slot (see `P::forget`); without it they
    /// stay in a register, a constant per parser path.
    pub forget_flags: bool,
}

pub(super) struct P<'a> {
    pub b: &'a mut Builder,
    pub cur: Block,
    needs: Needs,
    hook: ParserHook,
    ctx: Value,
    rec: Slot,
    forget: Slot,
    fields: &'a [Field],
    /// A store overlapped a field without being exactly its bytes: the field cannot be a
    /// variable (`build` fails and the caller lowers again without it).
    conflict: Option<i16>,
    malformed: Block,
    truncated: Block,
    v: Vars,
    tags: &'a mut Tags,
    /// Where record stores go: 0, or `OFF_EXT` while the inner packet is parsed (then
    /// `needs` is the inner packet's, and layer bits are shifted by `shift`).
    base: i16,
    shift: u32,
    /// The tunnel blocks the outer dispatch jumps to (none for the inner packet).
    tun: Option<Tunnels>,
}

/// What the parser leaves for the rules: where it goes on a parsed packet (with the layer
/// flags as the block's parameter) is the `done` block passed in.
pub(super) struct ParserOut {
    /// The flags value the rules test (already passed through the forget slot).
    pub flags: Value,
    /// The block the rules continue in.
    pub rules: Block,
}

#[allow(clippy::too_many_arguments)]
pub(super) fn build(
    b: &mut Builder,
    tags: &mut Tags,
    hook: ParserHook,
    needs: Needs,
    ctx: Value,
    rec: Slot,
    forget: Slot,
    malformed: Block,
    out: Out<'_>,
) -> Result<ParserOut, i16> {
    let u32t = Type::U32;
    let v = Vars {
        data: b.var(Type::Ptr(PtrKind::Packet)),
        data_end: b.var(Type::Ptr(PtrKind::PacketEnd)),
        l3: b.var(Type::Ptr(PtrKind::Packet)),
        etype: b.var(u32t),
        ip_len: b.var(u32t),
        ip_end: b.var(Type::Ptr(PtrKind::Packet)),
        l4: b.var(Type::Ptr(PtrKind::Packet)),
        proto: b.var(u32t),
        flags: b.var(u32t),
        want: b.var(Type::Ptr(PtrKind::Packet)),
        ext_len: b.var(u32t),
        next: b.var(u32t),
        outer_end: b.var(Type::Ptr(PtrKind::Packet)),
    };
    let entry = b.f.entry();
    let start = b.add_block();
    tags.set(start, crate::ir::SRC_PARSER);
    let mut pass = None;
    let truncated = if hook == ParserHook::Tc {
        // Pass 0, then pass 1 after a pull (see `pull`).
        let i = b.f.add_block_param(start, Type::U32);
        pass = Some(i);
        let zero = b.f.iconst(entry, IntTy::U32, 0);
        b.jump(entry, start, vec![zero]);
        b.add_block()
    } else {
        b.jump(entry, start, vec![]);
        malformed
    };
    let done = b.add_block();
    let mut p = P {
        b,
        cur: start,
        needs,
        hook,
        ctx,
        rec,
        forget,
        fields: out.fields,
        conflict: None,
        malformed,
        truncated,
        v,
        tags,
        base: 0,
        shift: 0,
        tun: None,
    };
    for fld in out.fields {
        let ty = if fld.size == 8 {
            IntTy::U64
        } else {
            IntTy::U32
        };
        let zero = p.iconst(ty, 0);
        p.set(fld.var, zero);
    }
    p.parse(done);
    if let Some(i) = pass {
        p.cur = truncated;
        p.pull(i, start);
    }
    // Done: store the flags, then hand them to the rules through an untracked slot (see
    // `forget`): left a constant per parser path, the verifier would walk the whole rule
    // section once per kind of packet, and a few thousand rules exhaust its budget. A
    // small filter keeps them in a register (two instructions fewer on every packet).
    p.cur = done;
    let flags = p.get(p.v.flags);
    p.st(IntTy::U32, OFF_FLAGS, flags.into());
    let flags = if !out.forget_flags {
        flags
    } else if needs.tunnel && needs.inner.ip {
        // Inner layer bits lie above bit 16: forget both halves.
        let lo = p.forget(flags);
        let hi = p.bin(BinOp::Lshr, flags, Operand::Imm(16));
        let hi = p.forget_at(hi, 6);
        let hi = p.bin(BinOp::Shl, hi, Operand::Imm(16));
        p.bin(BinOp::Or, hi, lo)
    } else {
        p.forget(flags)
    };
    if let Some(off) = p.conflict {
        return Err(off);
    }
    Ok(ParserOut {
        flags,
        rules: p.cur,
    })
}

impl P<'_> {
    fn get(&mut self, var: Var) -> Value {
        self.b.get(self.cur, var)
    }

    fn set(&mut self, var: Var, v: Value) {
        self.b.def(self.cur, var, v);
    }

    fn push(&mut self, op: Op, ty: Type) -> Value {
        self.b.f.push(self.cur, op, ty)
    }

    fn iconst(&mut self, ty: IntTy, c: i64) -> Value {
        self.b.f.iconst(self.cur, ty, c)
    }

    fn new_block(&mut self) -> Block {
        let blk = self.b.add_block();
        self.tags.set(blk, crate::ir::SRC_PARSER);
        blk
    }

    fn bin(&mut self, op: BinOp, a: Value, b: impl Into<Operand>) -> Value {
        let ty = self.b.f.ty(a);
        self.push(Op::Binary(op, a, b.into()), ty)
    }

    fn zext(&mut self, v: Value, to: IntTy) -> Value {
        self.push(Op::Ext(ExtOp::Zext, v), Type::Int(to))
    }

    fn load(&mut self, ty: IntTy, ptr: Value, off: i16) -> Value {
        self.push(Op::Load { ptr, off }, Type::Int(ty))
    }

    /// A byte of the packet as u32.
    fn ld8(&mut self, ptr: Value, off: i16) -> Value {
        let v = self.load(IntTy::U8, ptr, off);
        self.zext(v, IntTy::U32)
    }

    /// A network-order u16 of the packet in host order, as u32.
    fn be16(&mut self, ptr: Value, off: i16) -> Value {
        let v = self.load(IntTy::U16, ptr, off);
        let v = self.push(Op::Bswap(v), Type::Int(IntTy::U16));
        self.zext(v, IntTy::U32)
    }

    /// A network-order u16 held in a u32 (`raw16`), in host order.
    fn host16(&mut self, v: Value) -> Value {
        let v = self.push(Op::Ext(ExtOp::Trunc, v), Type::Int(IntTy::U16));
        let v = self.push(Op::Bswap(v), Type::Int(IntTy::U16));
        self.zext(v, IntTy::U32)
    }

    /// A u16 as loaded (network order), as u32.
    fn raw16(&mut self, ptr: Value, off: i16) -> Value {
        let v = self.load(IntTy::U16, ptr, off);
        self.zext(v, IntTy::U32)
    }

    /// Stores into the record (at `base + off`), or defines the field's variable.
    fn st(&mut self, ty: IntTy, off: i16, val: Operand) {
        let off = self.base + off;
        let bytes = i16::from(ty.bits / 8);
        for fld in self.fields {
            let (lo, hi) = (fld.off, fld.off + i16::from(fld.size));
            if off == lo && bytes == i16::from(fld.size) {
                let v = self.fit(val, fld.size);
                self.set(fld.var, v);
                return;
            }
            if off < hi && lo < off + bytes {
                // Zeroing a word around a field is harmless: the field's variable starts
                // at zero too. Any other partial store would be lost.
                if val != Operand::Imm(0) {
                    self.conflict.get_or_insert(fld.off);
                }
            }
        }
        let at = self.push(Op::SlotAddr(self.rec), Type::Ptr(PtrKind::Stack));
        self.b.f.push_void(
            self.cur,
            Op::Store {
                ty,
                ptr: at,
                off,
                val,
            },
        );
    }

    /// `val` as a field of `size` bytes holds it: the low bytes, zero-extended to u32
    /// (u64 for 8 bytes).
    fn fit(&mut self, val: Operand, size: u8) -> Value {
        let to = if size == 8 { IntTy::U64 } else { IntTy::U32 };
        let mask = if size == 8 {
            -1
        } else {
            (1i64 << (8 * u32::from(size))) - 1
        };
        let v = match val {
            Operand::Imm(c) => return self.iconst(to, c & mask),
            Operand::Value(v) => v,
        };
        let Some(from) = self.b.f.ty(v).int() else {
            return v;
        };
        // Already zero-extended from no more than the field's bits.
        if let Some(Op::Ext(ExtOp::Zext, x)) = self.b.f.def_op(v) {
            if self
                .b
                .f
                .ty(*x)
                .int()
                .is_some_and(|t| u32::from(t.bits) <= 8 * u32::from(size))
            {
                return v;
            }
        }
        let v = if from.bits > to.bits {
            self.push(Op::Ext(ExtOp::Trunc, v), Type::Int(to))
        } else if from.bits < to.bits {
            self.zext(v, to)
        } else {
            v
        };
        if u32::from(from.bits) > 8 * u32::from(size) && size < 4 {
            self.bin(BinOp::And, v, Operand::Imm(mask))
        } else {
            v
        }
    }

    fn ptr_add(&mut self, p: Value, o: impl Into<Operand>) -> Value {
        let ty = self.b.f.ty(p);
        self.push(Op::PtrAdd(p, o.into()), ty)
    }

    fn or_flags(&mut self, bits: u32) {
        let bits = bits << self.shift;
        let f = self.get(self.v.flags);
        let f = self.bin(BinOp::Or, f, Operand::Imm(i64::from(bits)));
        self.set(self.v.flags, f);
    }

    fn set_flags(&mut self, bits: u32) {
        let f = self.iconst(IntTy::U32, i64::from(bits));
        self.set(self.v.flags, f);
    }

    fn term(&mut self, t: Term) {
        self.b.set_term(self.cur, t);
    }

    fn goto(&mut self, target: Block) {
        self.b.jump(self.cur, target, vec![]);
    }

    fn br(&mut self, cond: Cond, a: Value, b: impl Into<Operand>, then: Block, els: Block) {
        self.b.br(self.cur, cond, a, b, then, els);
    }

    /// `if a cond b goto target`, continuing in a new block otherwise.
    fn exit_if(&mut self, cond: Cond, a: Value, b: impl Into<Operand>, target: Block) {
        let cont = self.new_block();
        self.br(cond, a, b, target, cont);
        self.cur = cont;
    }

    /// `base .. base + n` readable, else `truncated`; returns `base + n`.
    fn check(&mut self, base: Value, n: i64) -> Value {
        let end = self.ptr_add(base, Operand::Imm(n));
        if self.hook == ParserHook::Tc {
            self.set(self.v.want, end);
        }
        let data_end = self.get(self.v.data_end);
        let t = self.truncated;
        self.exit_if(Cond::Ugt, end, data_end, t);
        end
    }

    /// `check`, and the bytes lie inside the IP packet.
    fn check_ip(&mut self, base: Value, n: i64) {
        let end = self.check(base, n);
        let ip_end = self.get(self.v.ip_end);
        let m = self.malformed;
        self.exit_if(Cond::Ugt, end, ip_end, m);
    }

    /// Makes the kernel verifier forget what it knows of `v` (a 16-bit value): a spill and
    /// fill through a 2-aligned, not 8-aligned, slot it does not track.
    fn forget(&mut self, v: Value) -> Value {
        self.forget_at(v, 2)
    }

    /// `forget` through the slot's 2-byte piece at `off` (2 mod 4).
    fn forget_at(&mut self, v: Value, off: i16) -> Value {
        let at = self.push(Op::SlotAddr(self.forget), Type::Ptr(PtrKind::Stack));
        self.b.f.push_void(
            self.cur,
            Op::Store {
                ty: IntTy::U16,
                ptr: at,
                off,
                val: v.into(),
            },
        );
        let w = self.load(IntTy::U16, at, off);
        self.zext(w, IntTy::U32)
    }

    /// Every byte of the 8-byte word at `off` that `zeroed` asks for lies in a field
    /// variable (which starts at zero): the word needs no zeroing store.
    fn covered(&self, zeroed: ByteMask, off: i16) -> bool {
        (off..off + 8).all(|byte| {
            !has(zeroed, byte, 1)
                || self
                    .fields
                    .iter()
                    .any(|f| f.off <= byte && byte < f.off + i16::from(f.size))
        })
    }

    /// A network-order u32 of the packet in host order.
    fn be32(&mut self, ptr: Value, off: i16) -> Value {
        let v = self.load(IntTy::U32, ptr, off);
        self.push(Op::Bswap(v), Type::U32)
    }

    fn parse(&mut self, done: Block) {
        let n = self.needs;
        let zeroed = n.zeroed();
        for k in 0..RECORD_SIZE / 8 {
            if has(zeroed, 8 * k, 8) && !self.covered(zeroed, 8 * k) {
                self.st(IntTy::U64, 8 * k, Operand::Imm(0));
            }
        }
        // The payload window: rules read it after testing the copied length, but the
        // verifier wants every byte they may read written on every path.
        for k in 0..payload_window(n.payload) / 8 {
            self.st(IntTy::U64, OFF_PAYLOAD + 8 * k, Operand::Imm(0));
        }
        for k in 0..EXT_WINDOW_MAX / 8 {
            if has(n.ext_reads, 8 * k, 8) {
                self.st(IntTy::U64, OFF_EXT + 8 * k, Operand::Imm(0));
            }
        }
        if n.l7 {
            for k in 0..L7_WINDOW / 8 {
                self.st(IntTy::U64, OFF_L7 + 8 * k, Operand::Imm(0));
            }
        }
        self.set_flags(0);
        let (data_off, end_off) = match self.hook {
            ParserHook::Xdp => (0, 4),
            ParserHook::Tc => (SKB_DATA, SKB_DATA_END),
        };
        if has(n.store_link, OFF_FRAME_LEN, 4) {
            let len = match self.hook {
                ParserHook::Tc => self.load(IntTy::U32, self.ctx, SKB_LEN),
                ParserHook::Xdp => self.frame_len(),
            };
            self.st(IntTy::U32, OFF_FRAME_LEN, len.into());
        }
        let data = self.push(
            Op::Load {
                ptr: self.ctx,
                off: data_off,
            },
            Type::Ptr(PtrKind::Packet),
        );
        let data_end = self.push(
            Op::Load {
                ptr: self.ctx,
                off: end_off,
            },
            Type::Ptr(PtrKind::PacketEnd),
        );
        self.set(self.v.data, data);
        self.set(self.v.data_end, data_end);
        // The Ethernet header is always in the linear part: no pull for it.
        let l3 = self.ptr_add(data, Operand::Imm(14));
        let m = self.malformed;
        self.exit_if(Cond::Ugt, l3, data_end, m);
        // The EtherType stays in network order (`etype` is compared with swapped
        // constants, `net16`): no byte swap on the way to IPv4, one in a record store.
        let et = self.raw16(data, 12);
        for (off, from) in [(OFF_ETH_DST, 0), (OFF_ETH_SRC, 6)] {
            if has(n.store_link, off, MAC_SIZE as i16) {
                self.store_mac(data, from, off);
            }
        }
        self.set(self.v.l3, l3);
        self.set(self.v.etype, et);
        self.vlan();
        if has(n.store_link, OFF_ETH_TYPE, 2) {
            let et = self.get(self.v.etype);
            let et = self.host16(et);
            self.st(IntTy::U16, OFF_ETH_TYPE, et.into());
        }
        if n.mpls {
            self.mpls();
        }
        if n.pppoe {
            self.pppoe();
        }
        if n.tunnel {
            let inner = if n.inner.ip {
                InnerBlocks {
                    ip4: self.new_block(),
                    ip6: self.new_block(),
                    eth: self.new_block(),
                }
            } else {
                InnerBlocks {
                    ip4: done,
                    ip6: done,
                    eth: done,
                }
            };
            self.tun = Some(Tunnels {
                ipip: self.new_block(),
                ip6ip: self.new_block(),
                gre: self.new_block(),
                vxlan: self.new_block(),
                geneve: self.new_block(),
                inner,
            });
        }
        let l4 = L4Blocks {
            tcp: self.new_block(),
            udp: self.new_block(),
            sctp: self.new_block(),
            icmp: self.new_block(),
            icmp6: self.new_block(),
        };
        if n.arp {
            let not_arp = self.new_block();
            let et = self.get(self.v.etype);
            let arp = self.new_block();
            self.br(
                Cond::Ne,
                et,
                Operand::Imm(net16(ETH_P_ARP as u16)),
                not_arp,
                arp,
            );
            self.cur = arp;
            self.arp(done);
            self.cur = not_arp;
        }
        let mut fams = Vec::new();
        if n.ip4 {
            fams.push(false);
        }
        if n.ip6 {
            fams.push(true);
        }
        for &v6 in &fams {
            let next = self.new_block();
            let body = self.new_block();
            let et = self.get(self.v.etype);
            let want = if v6 { ETH_P_IPV6 } else { ETH_P_IP };
            self.br(Cond::Ne, et, Operand::Imm(net16(want as u16)), next, body);
            self.cur = body;
            if v6 {
                self.ipv6(&l4, done);
            } else {
                self.ipv4(&l4, done);
            }
            self.cur = next;
        }
        self.goto(done);
        self.l4(&l4, done);
        if let Some(t) = self.tun.take() {
            self.tunnels(t, done);
            if n.inner.ip {
                self.inner(t.inner, done);
            }
        }
    }

    /// MPLS (EtherType 0x8847, 0x8848): the label stack is looked through to its bottom
    /// entry (at most `MAX_MPLS_LABELS`; more is malformed), and the payload is IPv4 or
    /// IPv6 by its first nibble, as routers guess it; anything else is not IP.
    fn mpls(&mut self) {
        let r = self.needs.ext_reads;
        let et = self.get(self.v.etype);
        let skip = self.new_block();
        let body = self.new_block();
        self.exit_if(
            Cond::Eq,
            et,
            Operand::Imm(net16(ETH_P_MPLS_UC as u16)),
            body,
        );
        self.br(
            Cond::Eq,
            et,
            Operand::Imm(net16(ETH_P_MPLS_MC as u16)),
            body,
            skip,
        );
        self.cur = body;
        self.or_flags(F_MPLS);
        let bottom = self.new_block();
        for i in 0..MAX_MPLS_LABELS {
            let at = self.get(self.v.l3);
            let end = self.check(at, 4);
            let e = self.be32(at, 0);
            if i == 0 && has(r, EXT_MPLS_LABEL, 4) {
                let label = self.bin(BinOp::Lshr, e, Operand::Imm(12));
                self.st(IntTy::U32, OFF_EXT + EXT_MPLS_LABEL, label.into());
            }
            self.set(self.v.l3, end);
            let bos = self.bin(BinOp::And, e, Operand::Imm(0x100));
            let last = self.new_block();
            let more = self.new_block();
            self.br(Cond::Ne, bos, Operand::Imm(0), last, more);
            self.cur = last;
            if has(r, EXT_MPLS_DEPTH, 1) {
                self.st(
                    IntTy::U8,
                    OFF_EXT + EXT_MPLS_DEPTH,
                    Operand::Imm(i as i64 + 1),
                );
            }
            self.goto(bottom);
            self.cur = more;
        }
        let m = self.malformed;
        self.goto(m);
        self.cur = bottom;
        let at = self.get(self.v.l3);
        self.check(at, 1);
        let b0 = self.ld8(at, 0);
        let version = self.bin(BinOp::And, b0, Operand::Imm(0xf0));
        self.ip_by(version, &[(0x40, ETH_P_IP), (0x60, ETH_P_IPV6)], skip);
        self.cur = skip;
    }

    /// Sets `etype` to the EtherType paired with `v`'s value in `to`, if any; goes to `out`.
    fn ip_by(&mut self, v: Value, to: &[(i64, i64)], out: Block) {
        for &(when, et) in to {
            let set = self.new_block();
            let next = self.new_block();
            self.br(Cond::Eq, v, Operand::Imm(when), set, next);
            self.cur = set;
            let c = self.iconst(IntTy::U32, net16(et as u16));
            self.set(self.v.etype, c);
            self.goto(out);
            self.cur = next;
        }
        self.goto(out);
    }

    /// A PPPoE session header (EtherType 0x8864, version and type 1, code 0) is looked
    /// through to the IPv4 or IPv6 packet its PPP protocol names; anything else is not IP.
    fn pppoe(&mut self) {
        let r = self.needs.ext_reads;
        let et = self.get(self.v.etype);
        let skip = self.new_block();
        let body = self.new_block();
        self.br(
            Cond::Eq,
            et,
            Operand::Imm(net16(ETH_P_PPPOE_SES as u16)),
            body,
            skip,
        );
        self.cur = body;
        let at = self.get(self.v.l3);
        let end = self.check(at, 8);
        let vt = self.raw16(at, 0);
        self.exit_if(
            Cond::Ne,
            vt,
            Operand::Imm(i64::from(u16::from_le_bytes([0x11, 0]))),
            skip,
        );
        self.or_flags(F_PPPOE);
        if has(r, EXT_PPPOE_SESSION, 2) {
            let sid = self.be16(at, 2);
            self.st(IntTy::U16, OFF_EXT + EXT_PPPOE_SESSION, sid.into());
        }
        let proto = self.be16(at, 6);
        self.set(self.v.l3, end);
        self.ip_by(proto, &[(PPP_IP, ETH_P_IP), (PPP_IPV6, ETH_P_IPV6)], skip);
        self.cur = skip;
    }

    /// Marks a tunnel and remembers the outer IP packet's end (the inner one lies in it).
    fn tunnel_start(&mut self) {
        self.or_flags(F_TUNNEL);
        let end = self.get(self.v.ip_end);
        self.set(self.v.outer_end, end);
    }

    fn store_tunnel_id(&mut self, id: Value) {
        if has(self.needs.ext_reads, EXT_TUNNEL_ID, 4) {
            self.st(IntTy::U32, OFF_EXT + EXT_TUNNEL_ID, id.into());
        }
    }

    /// The tunnels behind the outer IP header (`l4` points past it, or past the UDP header's
    /// start for VXLAN and GENEVE): each sets `F_TUNNEL` and goes to the inner packet's
    /// header, or to `done` when it carries something else.
    fn tunnels(&mut self, t: Tunnels, done: Block) {
        for (blk, to) in [(t.ipip, t.inner.ip4), (t.ip6ip, t.inner.ip6)] {
            self.cur = blk;
            self.tunnel_start();
            let at = self.get(self.v.l4);
            self.set(self.v.l3, at);
            self.goto(to);
        }
        // GRE (RFC 2784/2890): version 0, no routing; optional checksum, key, sequence
        // words after the 4-byte header, in that order.
        self.cur = t.gre;
        self.tunnel_start();
        let at = self.get(self.v.l4);
        self.check_ip(at, 4);
        let fl = self.be16(at, 0);
        let odd = self.bin(BinOp::And, fl, Operand::Imm(!0xb000 & 0xffff));
        self.exit_if(Cond::Ne, odd, Operand::Imm(0), done);
        let c = self.bin(BinOp::Lshr, fl, Operand::Imm(13));
        let c = self.bin(BinOp::And, c, Operand::Imm(4));
        let k = self.bin(BinOp::Lshr, fl, Operand::Imm(11));
        let k = self.bin(BinOp::And, k, Operand::Imm(4));
        let sq = self.bin(BinOp::Lshr, fl, Operand::Imm(10));
        let sq = self.bin(BinOp::And, sq, Operand::Imm(4));
        if has(self.needs.ext_reads, EXT_TUNNEL_ID, 4) {
            let key = self.new_block();
            let after = self.new_block();
            self.br(Cond::Ne, k, Operand::Imm(0), key, after);
            self.cur = key;
            let c64 = self.zext(c, IntTy::U64);
            let kp = self.ptr_add(at, c64);
            self.check_ip(kp, 8);
            let id = self.be32(kp, 4);
            self.store_tunnel_id(id);
            self.goto(after);
            self.cur = after;
        }
        let proto = self.be16(at, 2);
        let hl = self.bin(BinOp::Add, c, k);
        let hl = self.bin(BinOp::Add, hl, sq);
        let hl = self.zext(hl, IntTy::U64);
        let inner = self.ptr_add(at, Operand::Imm(4));
        let inner = self.ptr_add(inner, hl);
        self.set(self.v.l3, inner);
        self.proto_to(proto, t.inner, done);
        // VXLAN (RFC 7348): 8 bytes after UDP, the I flag set, then Ethernet.
        self.cur = t.vxlan;
        self.tunnel_start();
        let at = self.get(self.v.l4);
        self.check_ip(at, 16);
        let f = self.ld8(at, 8);
        let i = self.bin(BinOp::And, f, Operand::Imm(0x08));
        self.exit_if(Cond::Eq, i, Operand::Imm(0), done);
        let w = self.be32(at, 12);
        let vni = self.bin(BinOp::Lshr, w, Operand::Imm(8));
        self.store_tunnel_id(vni);
        let inner = self.ptr_add(at, Operand::Imm(16));
        self.set(self.v.l3, inner);
        self.goto(t.inner.eth);
        // GENEVE (RFC 8926): version 0, options of 4 * (byte 0 & 0x3f) bytes, then the
        // protocol type's header.
        self.cur = t.geneve;
        self.tunnel_start();
        let at = self.get(self.v.l4);
        self.check_ip(at, 16);
        let b0 = self.ld8(at, 8);
        self.exit_if(Cond::Ugt, b0, Operand::Imm(0x3f), done);
        let w = self.be32(at, 12);
        let vni = self.bin(BinOp::Lshr, w, Operand::Imm(8));
        self.store_tunnel_id(vni);
        let proto = self.be16(at, 10);
        let opts = self.bin(BinOp::Shl, b0, Operand::Imm(2));
        let opts = self.zext(opts, IntTy::U64);
        let inner = self.ptr_add(at, Operand::Imm(16));
        let inner = self.ptr_add(inner, opts);
        self.set(self.v.l3, inner);
        self.proto_to(proto, t.inner, done);
        // An inner Ethernet frame: IPv4 or IPv6 directly behind it (no VLAN tag).
        if t.inner.eth != done {
            self.cur = t.inner.eth;
            let at = self.get(self.v.l3);
            self.check_ip(at, 14);
            let et = self.be16(at, 12);
            let l3 = self.ptr_add(at, Operand::Imm(14));
            self.set(self.v.l3, l3);
            self.exit_if(Cond::Eq, et, Operand::Imm(ETH_P_IP), t.inner.ip4);
            self.br(Cond::Eq, et, Operand::Imm(ETH_P_IPV6), t.inner.ip6, done);
        }
    }

    /// Dispatches an EtherType-valued protocol field to the inner header it names.
    fn proto_to(&mut self, proto: Value, inner: InnerBlocks, done: Block) {
        self.exit_if(Cond::Eq, proto, Operand::Imm(ETH_P_IP), inner.ip4);
        self.exit_if(Cond::Eq, proto, Operand::Imm(ETH_P_IPV6), inner.ip6);
        self.br(Cond::Eq, proto, Operand::Imm(ETH_P_TEB), inner.eth, done);
    }

    /// The inner packet: the IPv4/IPv6 and L4 code again, storing into the second window
    /// with shifted layer bits, bounded by the outer IP packet.
    fn inner(&mut self, at: InnerBlocks, done: Block) {
        let outer = self.needs;
        let r = outer.ext_reads;
        let i = outer.inner;
        self.needs = Needs {
            ip4: true,
            ip6: true,
            frag4: i.frag,
            frag6: i.frag,
            tcp4: i.tcp,
            tcp6: i.tcp,
            udp4: i.udp,
            udp6: i.udp,
            sctp4: i.sctp,
            sctp6: i.sctp,
            icmp: i.icmp,
            icmp6: i.icmp6,
            reads: r,
            store4: r
                & !crate::packet::needs::span(OFF_SRC + 4, 12)
                & !crate::packet::needs::span(OFF_DST + 4, 12),
            store6: r,
            store_tcp: r,
            store_udp: r,
            store_sctp: r,
            store_icmp: r,
            ..Needs::default()
        };
        self.base = OFF_EXT;
        self.shift = INNER_SHIFT;
        let l4 = L4Blocks {
            tcp: self.new_block(),
            udp: self.new_block(),
            sctp: self.new_block(),
            icmp: self.new_block(),
            icmp6: self.new_block(),
        };
        self.cur = at.ip4;
        self.ipv4(&l4, done);
        self.cur = at.ip6;
        self.ipv6(&l4, done);
        self.l4(&l4, done);
        self.needs = outer;
        self.base = 0;
        self.shift = 0;
    }

    /// The IP packet's end is computed: the outer one must lie in the frame (past the
    /// linear head it is measured against the whole frame), an inner one in the outer.
    fn ip_end_ok(&mut self, ip_end: Value) {
        if self.base == 0 {
            let data_end = self.get(self.v.data_end);
            self.slow(Cond::Ugt, ip_end, data_end, |p| p.long_ip());
        } else {
            let outer = self.get(self.v.outer_end);
            let m = self.malformed;
            self.exit_if(Cond::Ugt, ip_end, outer, m);
        }
    }

    /// `bpf_xdp_get_buff_len`: every buffer of a multi-buffer frame.
    fn frame_len(&mut self) -> Value {
        let id = helpers::by_name("xdp_get_buff_len").map_or(188, |h| h.id);
        let len = self.push(Op::Call(id, vec![self.ctx]), Type::U64);
        self.push(Op::Ext(ExtOp::Trunc, len), Type::U32)
    }

    /// Goes to `tag` for a VLAN TPID in `etype` (network order), else to `l3`. As loaded,
    /// the TPIDs are 0x0081, 0x0091, 0x0092 and 0xa888. IPv4's 0x0800 loads as 0x0008,
    /// below them all: an untagged IPv4 frame leaves after one compare; IPv6 (0xdd86),
    /// ARP, MPLS and PPPoE after three, as many as in host order with its byte swap.
    fn is_tag(&mut self, tag: Block, l3: Block) {
        let et = self.get(self.v.etype);
        self.exit_if(Cond::Ult, et, Operand::Imm(net16(ETH_P_8021Q as u16)), l3);
        self.exit_if(Cond::Eq, et, Operand::Imm(net16(ETH_P_8021AD as u16)), tag);
        self.exit_if(Cond::Ugt, et, Operand::Imm(net16(ETH_P_QINQ2 as u16)), l3);
        self.exit_if(Cond::Eq, et, Operand::Imm(net16(ETH_P_8021Q as u16)), tag);
        self.exit_if(Cond::Eq, et, Operand::Imm(net16(ETH_P_QINQ1 as u16)), tag);
        self.br(
            Cond::Eq,
            et,
            Operand::Imm(net16(ETH_P_QINQ2 as u16)),
            tag,
            l3,
        );
    }

    fn store_count(&mut self, n: i64) {
        if has(self.needs.store_link, OFF_VLAN_COUNT, 1) {
            self.st(IntTy::U8, OFF_VLAN_COUNT, Operand::Imm(n));
        }
        if n == 1 && self.needs.vlan_flag {
            self.set_flags(F_VLAN);
        }
    }

    fn vlan(&mut self) {
        let s = self.needs.store_link;
        let l3 = self.new_block();
        let tags = [self.new_block(), self.new_block()];
        if self.hook == ParserHook::Tc {
            let no_meta = self.new_block();
            let present = self.load(IntTy::U32, self.ctx, SKB_VLAN_PRESENT);
            self.exit_if(Cond::Eq, present, Operand::Imm(0), no_meta);
            if has(s, OFF_VLAN_OUTER, 2) {
                let tci = self.load(IntTy::U32, self.ctx, SKB_VLAN_TCI);
                let id = self.bin(BinOp::And, tci, Operand::Imm(0xfff));
                self.st(IntTy::U16, OFF_VLAN_OUTER, id.into());
            }
            if has(s, OFF_VLAN_TPID, 2) {
                // Network order in the context, as in the frame.
                let proto = self.load(IntTy::U32, self.ctx, SKB_VLAN_PROTO);
                let p16 = self.push(Op::Ext(ExtOp::Trunc, proto), Type::Int(IntTy::U16));
                let host = self.push(Op::Bswap(p16), Type::Int(IntTy::U16));
                self.st(IntTy::U16, OFF_VLAN_TPID, host.into());
            }
            self.store_count(1);
            self.is_tag(tags[1], l3);
            self.cur = no_meta;
        }
        self.is_tag(tags[0], l3);
        for (slot, &tag) in tags.iter().enumerate() {
            self.cur = tag;
            if slot == 0 && has(s, OFF_VLAN_TPID, 2) {
                let et = self.get(self.v.etype);
                let et = self.host16(et);
                self.st(IntTy::U16, OFF_VLAN_TPID, et.into());
            }
            let base = self.get(self.v.l3);
            let end = self.check(base, 4);
            let id_off = OFF_VLAN_OUTER + 2 * slot as i16;
            if has(s, id_off, 2) {
                let id = self.be16(base, 0);
                let id = self.bin(BinOp::And, id, Operand::Imm(0xfff));
                self.st(IntTy::U16, id_off, id.into());
            }
            let et = self.raw16(base, 2);
            self.set(self.v.etype, et);
            self.set(self.v.l3, end);
            self.store_count(slot as i64 + 1);
            if slot == 0 {
                self.is_tag(tags[1], l3);
            } else {
                // A third tag: we would not see the payload, so fail closed.
                let m = self.malformed;
                self.is_tag(m, l3);
            }
        }
        self.cur = l3;
    }

    fn store_ip4_addrs(&mut self, base: Value, mask: ByteMask, addrs: &[(i16, i16)]) {
        for &(addr, from) in addrs {
            if has(mask, addr, 4) {
                let a = self.load(IntTy::U32, base, from);
                self.st(IntTy::U32, addr, a.into());
            }
            if has(mask, addr - 4, 4) {
                self.st(IntTy::U32, addr - 4, Operand::Imm(32));
            }
        }
    }

    /// Stores the MAC address at packet `base + from` into the 6-byte slot at `off` as a
    /// 48-bit value in host order: each aligned piece of the slot (`mac_pieces`) is a
    /// byte-swapped load of the wire bytes it holds (the low piece is the last bytes).
    fn store_mac(&mut self, base: Value, from: i16, off: i16) {
        for (o, size) in mac_pieces(off) {
            let at = from + MAC_SIZE as i16 - o - size as i16;
            let ty = if size == 4 { IntTy::U32 } else { IntTy::U16 };
            let v = self.load(ty, base, at);
            let v = self.push(Op::Bswap(v), Type::Int(ty));
            self.st(ty, off + o, v.into());
        }
    }

    fn arp(&mut self, done: Block) {
        let s = self.needs.store_arp;
        let l3 = self.get(self.v.l3);
        self.check(l3, 8);
        // Hardware type 1, protocol 0x0800; lengths 6 and 4: as loaded, in network order.
        let w = self.load(IntTy::U32, l3, 0);
        self.exit_if(
            Cond::Ne,
            w,
            Operand::Imm(i64::from(u32::from_le_bytes([0, 1, 8, 0]))),
            done,
        );
        let h = self.raw16(l3, 4);
        self.exit_if(
            Cond::Ne,
            h,
            Operand::Imm(i64::from(u16::from_le_bytes([6, 4]))),
            done,
        );
        self.check(l3, 28);
        if has(s, OFF_ARP_OP, 2) {
            let op = self.be16(l3, 6);
            self.st(IntTy::U16, OFF_ARP_OP, op.into());
        }
        self.store_ip4_addrs(l3, s, &[(OFF_ARP_SPA, 14), (OFF_ARP_TPA, 24)]);
        for (off, from) in [(OFF_ARP_SHA, 8), (OFF_ARP_THA, 18)] {
            if has(s, off, MAC_SIZE as i16) {
                self.store_mac(l3, from, off);
            }
        }
        self.or_flags(F_ARP);
        self.goto(done);
    }

    /// A slow path: `if a cond b` goes to a block built by `body`, which comes back.
    fn slow(&mut self, cond: Cond, a: Value, b: impl Into<Operand>, body: impl FnOnce(&mut Self)) {
        let slow = self.new_block();
        let back = self.new_block();
        self.br(cond, a, b, slow, back);
        self.cur = slow;
        body(self);
        self.goto(back);
        self.cur = back;
    }

    /// The IP packet ends past data_end: compare its end with the whole frame's length.
    fn long_ip(&mut self) {
        let ip_end = self.get(self.v.ip_end);
        let data = self.get(self.v.data);
        let want = self.push(Op::Binary(BinOp::Sub, ip_end, data.into()), Type::U64);
        let len = match self.hook {
            ParserHook::Tc => {
                let l = self.load(IntTy::U32, self.ctx, SKB_LEN);
                self.zext(l, IntTy::U64)
            }
            ParserHook::Xdp => {
                let id = helpers::by_name("xdp_get_buff_len").map_or(188, |h| h.id);
                self.push(Op::Call(id, vec![self.ctx]), Type::U64)
            }
        };
        let m = self.malformed;
        self.exit_if(Cond::Ugt, want, len, m);
    }

    /// TC: the IP length field says less than the header (IPv4) or 0 (IPv6). A GSO packet
    /// over 64 KiB says 0: its IP packet is the rest of the frame.
    fn gso_length(&mut self, v6: bool, hl: Option<Value>) {
        let m = self.malformed;
        let back = self.new_block();
        if !v6 {
            let len = self.get(self.v.ip_len);
            self.exit_if(Cond::Ne, len, Operand::Imm(0), m);
        }
        let gso = self.load(IntTy::U32, self.ctx, SKB_GSO_SIZE);
        self.exit_if(Cond::Eq, gso, Operand::Imm(0), if v6 { back } else { m });
        let l3 = self.get(self.v.l3);
        let data = self.get(self.v.data);
        let off = self.push(Op::Binary(BinOp::Sub, l3, data.into()), Type::U64);
        let skb = self.load(IntTy::U32, self.ctx, SKB_LEN);
        let skb = self.zext(skb, IntTy::U64);
        let mut len = self.bin(BinOp::Sub, skb, off);
        if v6 {
            len = self.bin(BinOp::Sub, len, Operand::Imm(40));
        }
        self.exit_if(Cond::Ugt, len, Operand::Imm(MAX_GSO_LEN), m);
        let len = self.push(Op::Ext(ExtOp::Trunc, len), Type::U32);
        if let Some(hl) = hl {
            self.exit_if(Cond::Ult, len, hl, m);
        }
        self.set(self.v.ip_len, len);
        self.goto(back);
        self.cur = back;
    }

    /// The IP protocols of tunnels, for the outer packet's dispatch.
    fn tunnel_protos(&self, protos: &mut Vec<(bool, i64, Block)>) {
        if let Some(t) = self.tun {
            protos.extend([
                (true, IPPROTO_IPIP, t.ipip),
                (true, IPPROTO_IPV6, t.ip6ip),
                (true, IPPROTO_GRE, t.gre),
            ]);
        }
    }

    fn dispatch(&mut self, protos: &[(bool, i64, Block)], done: Block) {
        let protos: Vec<_> = protos.iter().filter(|t| t.0).collect();
        let proto = self.get(self.v.proto);
        for (i, &&(_, p, target)) in protos.iter().enumerate() {
            if i + 1 == protos.len() {
                // The last header parsed in line (fall-through), the others jump to it.
                self.br(Cond::Ne, proto, Operand::Imm(p), done, target);
                return;
            }
            self.exit_if(Cond::Eq, proto, Operand::Imm(p), target);
        }
        self.goto(done);
    }

    fn ipv4(&mut self, l4: &L4Blocks, done: Block) {
        let n = self.needs;
        let s = n.store4;
        let m = self.malformed;
        let l3 = self.get(self.v.l3);
        self.check(l3, 20);
        // Version 4 and IHL >= 5 in one range test of the first byte: 0x45 ..= 0x4f.
        let b0 = self.ld8(l3, 0);
        self.exit_if(Cond::Ult, b0, Operand::Imm(0x45), m);
        self.exit_if(Cond::Ugt, b0, Operand::Imm(0x4f), m);
        let ihl = self.bin(BinOp::And, b0, Operand::Imm(0xf));
        if has(s, OFF_IP4_IHL, 1) {
            self.st(IntTy::U8, OFF_IP4_IHL, ihl.into());
        }
        let hl = self.bin(BinOp::Shl, ihl, Operand::Imm(2));
        let tot = self.be16(l3, 2);
        self.set(self.v.ip_len, tot);
        if self.hook == ParserHook::Tc && self.base == 0 {
            self.slow(Cond::Ult, tot, hl, |p| p.gso_length(false, Some(hl)));
        } else {
            self.exit_if(Cond::Ult, tot, hl, m);
        }
        let tot = self.get(self.v.ip_len);
        if has(s, OFF_IP_LEN, 4) {
            self.st(IntTy::U32, OFF_IP_LEN, tot.into());
        }
        let tot64 = self.zext(tot, IntTy::U64);
        let ip_end = self.ptr_add(l3, tot64);
        self.set(self.v.ip_end, ip_end);
        self.ip_end_ok(ip_end);
        if has(s, OFF_IP_TTL, 1) {
            let ttl = self.load(IntTy::U8, l3, 8);
            self.st(IntTy::U8, OFF_IP_TTL, ttl.into());
        }
        if has(s, OFF_IP4_DSCP, 2) {
            let tos = self.ld8(l3, 1);
            if has(s, OFF_IP4_ECN, 1) {
                let ecn = self.bin(BinOp::And, tos, Operand::Imm(3));
                self.st(IntTy::U8, OFF_IP4_ECN, ecn.into());
            }
            if has(s, OFF_IP4_DSCP, 1) {
                let dscp = self.bin(BinOp::Lshr, tos, Operand::Imm(2));
                self.st(IntTy::U8, OFF_IP4_DSCP, dscp.into());
            }
        }
        if has(s, OFF_IP4_ID, 2) {
            let id = self.be16(l3, 4);
            self.st(IntTy::U16, OFF_IP4_ID, id.into());
        }
        if has(s, OFF_IP4_FRAG, 2) || has(s, OFF_IP4_FRAG_OFFSET, 2) {
            let fw = self.be16(l3, 6);
            if has(s, OFF_IP4_FRAG, 2) {
                self.st(IntTy::U16, OFF_IP4_FRAG, fw.into());
            }
            if has(s, OFF_IP4_FRAG_OFFSET, 2) {
                let fo = self.bin(BinOp::And, fw, Operand::Imm(0x1fff));
                self.st(IntTy::U16, OFF_IP4_FRAG_OFFSET, fo.into());
            }
        }
        let l4_needed = n.l4_4();
        let store_proto = has(s, OFF_IP_PROTO, 1);
        if l4_needed || store_proto {
            let proto = self.ld8(l3, 9);
            self.set(self.v.proto, proto);
            if store_proto {
                self.st(IntTy::U8, OFF_IP_PROTO, proto.into());
            }
        }
        self.store_ip4_addrs(l3, s, &[(OFF_SRC, 12), (OFF_DST, 16)]);
        if has(s, OFF_IP_VERSION, 1) {
            self.st(IntTy::U8, OFF_IP_VERSION, Operand::Imm(4));
        }
        self.or_flags(F_IP4);
        // Flags and fragment offset, tested as loaded (network order): MF | offset.
        let l4_start = self.new_block();
        if n.frag4 {
            let raw = self.raw16(l3, 6);
            let any = self.bin(BinOp::And, raw, Operand::Imm(net16(0x3fff)));
            let frag = self.new_block();
            self.br(Cond::Ne, any, Operand::Imm(0), frag, l4_start);
            self.cur = frag;
            self.or_flags(F_FRAG);
            let off = self.bin(BinOp::And, raw, Operand::Imm(net16(0x1fff)));
            let later = self.new_block();
            self.br(
                Cond::Eq,
                off,
                Operand::Imm(0),
                if l4_needed { l4_start } else { done },
                later,
            );
            self.cur = later;
            self.or_flags(F_FRAG_LATER);
            self.goto(done);
        } else {
            if l4_needed {
                // Only whether it is a later fragment (no L4 header) matters.
                let raw = self.raw16(l3, 6);
                let off = self.bin(BinOp::And, raw, Operand::Imm(net16(0x1fff)));
                self.exit_if(Cond::Ne, off, Operand::Imm(0), done);
            }
            self.goto(l4_start);
        }
        self.cur = l4_start;
        if l4_needed {
            let l3 = self.get(self.v.l3);
            let hl64 = self.zext(hl, IntTy::U64);
            let l4p = self.ptr_add(l3, hl64);
            self.set(self.v.l4, l4p);
            let mut protos = vec![
                (n.tcp4, IPPROTO_TCP, l4.tcp),
                (n.udp4 || self.tun.is_some(), IPPROTO_UDP, l4.udp),
                (n.sctp4, IPPROTO_SCTP, l4.sctp),
                (n.icmp, IPPROTO_ICMP, l4.icmp),
            ];
            self.tunnel_protos(&mut protos);
            self.dispatch(&protos, done);
        } else {
            self.goto(done);
        }
    }

    fn ipv6(&mut self, l4: &L4Blocks, done: Block) {
        let n = self.needs;
        let s = n.store6;
        let m = self.malformed;
        let l3 = self.get(self.v.l3);
        self.check(l3, 40);
        let b0 = self.ld8(l3, 0);
        let ver = self.bin(BinOp::And, b0, Operand::Imm(0xf0));
        self.exit_if(Cond::Ne, ver, Operand::Imm(0x60), m);
        let pl = self.be16(l3, 4);
        self.set(self.v.ip_len, pl);
        if self.hook == ParserHook::Tc && self.base == 0 {
            self.slow(Cond::Eq, pl, Operand::Imm(0), |p| p.gso_length(true, None));
        }
        let pl = self.get(self.v.ip_len);
        let tot = self.bin(BinOp::Add, pl, Operand::Imm(40));
        if has(s, OFF_IP_LEN, 4) {
            self.st(IntTy::U32, OFF_IP_LEN, tot.into());
        }
        let tot64 = self.zext(tot, IntTy::U64);
        let ip_end = self.ptr_add(l3, tot64);
        self.set(self.v.ip_end, ip_end);
        self.ip_end_ok(ip_end);
        if has(s, OFF_IP_TTL, 1) {
            let v = self.load(IntTy::U8, l3, 7);
            self.st(IntTy::U8, OFF_IP_TTL, v.into());
        }
        if has(s, OFF_IP6_NEXTHDR, 1) {
            let v = self.load(IntTy::U8, l3, 6);
            self.st(IntTy::U8, OFF_IP6_NEXTHDR, v.into());
        }
        for (plen, addr, from) in [
            (OFF_SRC_PREFIXLEN, OFF_SRC, 8),
            (OFF_DST_PREFIXLEN, OFF_DST, 24),
        ] {
            for k in 0..4 {
                if has(s, addr + 4 * k, 4) {
                    let w = self.load(IntTy::U32, l3, from + 4 * k);
                    self.st(IntTy::U32, addr + 4 * k, w.into());
                }
            }
            if has(s, plen, 4) {
                self.st(IntTy::U32, plen, Operand::Imm(128));
            }
        }
        if has(s, OFF_IP_VERSION, 1) {
            self.st(IntTy::U8, OFF_IP_VERSION, Operand::Imm(6));
        }
        self.or_flags(F_IP6);
        if !n.ip6_walk() {
            self.goto(done);
            return;
        }
        let nh = self.ld8(l3, 6);
        self.set(self.v.proto, nh);
        let first = self.ptr_add(l3, Operand::Imm(40));
        self.set(self.v.l4, first);
        // Extension headers, unrolled: each is checked, then the L4 pointer moves past it.
        // The checks are against the frame only; both ways out of the walk test the
        // pointer against the IP end once (see bpf/parser/ipv6.rs).
        let end_of_chain = self.new_block();
        let later = self.new_block();
        for _ in 0..MAX_EXT_HDRS {
            let hdr = self.new_block();
            let adv = self.new_block();
            let frag = self.new_block();
            let nh = self.get(self.v.proto);
            for proto in [
                IPPROTO_HOPOPTS,
                IPPROTO_ROUTING,
                IPPROTO_DSTOPTS,
                IPPROTO_FRAGMENT,
            ] {
                self.exit_if(Cond::Eq, nh, Operand::Imm(proto), hdr);
            }
            self.br(Cond::Ne, nh, Operand::Imm(IPPROTO_AH), end_of_chain, hdr);
            self.cur = hdr;
            let at = self.get(self.v.l4);
            self.check(at, 8);
            let len = self.ld8(at, 1);
            let next = self.ld8(at, 0);
            self.set(self.v.next, next);
            self.exit_if(Cond::Eq, nh, Operand::Imm(IPPROTO_FRAGMENT), frag);
            // Options headers: (hdrlen + 1) * 8 bytes; AH: (hdrlen + 2) * 4 = that / 2 + 4.
            let len = self.bin(BinOp::Add, len, Operand::Imm(1));
            let len = self.bin(BinOp::Shl, len, Operand::Imm(3));
            self.set(self.v.ext_len, len);
            self.exit_if(Cond::Ne, nh, Operand::Imm(IPPROTO_AH), adv);
            let half = self.bin(BinOp::Lshr, len, Operand::Imm(1));
            let ah = self.bin(BinOp::Add, half, Operand::Imm(4));
            self.set(self.v.ext_len, ah);
            self.goto(adv);
            // A fragment header (8 bytes; its length byte is reserved): a first fragment
            // goes on walking, a later one carries no L4 header.
            self.cur = frag;
            if n.frag6 {
                self.or_flags(F_FRAG);
            }
            let fo = self.raw16(at, 2);
            let off = self.bin(BinOp::And, fo, Operand::Imm(net16(0xfff8)));
            self.exit_if(Cond::Ne, off, Operand::Imm(0), later);
            let eight = self.iconst(IntTy::U32, 8);
            self.set(self.v.ext_len, eight);
            self.goto(adv);
            self.cur = adv;
            let len = self.get(self.v.ext_len);
            let len = self.forget(len);
            self.exit_if(Cond::Ugt, len, Operand::Imm(2048), m);
            let next = self.get(self.v.next);
            self.set(self.v.proto, next);
            let at = self.get(self.v.l4);
            let len64 = self.zext(len, IntTy::U64);
            let moved = self.ptr_add(at, len64);
            self.set(self.v.l4, moved);
        }
        // Still an extension header after MAX_EXT_HDRS of them: fail closed.
        let nh = self.get(self.v.proto);
        for proto in [
            IPPROTO_HOPOPTS,
            IPPROTO_ROUTING,
            IPPROTO_DSTOPTS,
            IPPROTO_FRAGMENT,
            IPPROTO_AH,
        ] {
            self.exit_if(Cond::Eq, nh, Operand::Imm(proto), m);
        }
        self.goto(end_of_chain);
        self.cur = end_of_chain;
        let at = self.get(self.v.l4);
        let ip_end = self.get(self.v.ip_end);
        self.exit_if(Cond::Ugt, at, ip_end, m);
        if has(s, OFF_IP_PROTO, 1) {
            let nh = self.get(self.v.proto);
            self.st(IntTy::U8, OFF_IP_PROTO, nh.into());
        }
        let mut protos = vec![
            (n.tcp6, IPPROTO_TCP, l4.tcp),
            (n.udp6 || self.tun.is_some(), IPPROTO_UDP, l4.udp),
            (n.sctp6, IPPROTO_SCTP, l4.sctp),
            (n.icmp6, IPPROTO_ICMPV6, l4.icmp6),
        ];
        self.tunnel_protos(&mut protos);
        self.dispatch(&protos, done);
        // A later fragment: the fragment header, and every header before it, ends inside
        // the IP packet.
        self.cur = later;
        let at = self.get(self.v.l4);
        let end = self.ptr_add(at, Operand::Imm(8));
        let ip_end = self.get(self.v.ip_end);
        self.exit_if(Cond::Ugt, end, ip_end, m);
        if n.frag6 {
            self.or_flags(F_FRAG_LATER);
        }
        if has(s, OFF_IP_PROTO, 1) {
            let next = self.get(self.v.next);
            self.st(IntTy::U8, OFF_IP_PROTO, next.into());
        }
        self.goto(done);
    }

    fn ports(&mut self, at: Value, mask: ByteMask) {
        match (has(mask, OFF_SPORT, 2), has(mask, OFF_DPORT, 2)) {
            (true, true) => {
                // Both ports in one load: swapped, sport << 16 | dport.
                let w = self.load(IntTy::U32, at, 0);
                let w = self.push(Op::Bswap(w), Type::U32);
                self.st(IntTy::U16, OFF_DPORT, w.into());
                let sp = self.bin(BinOp::Lshr, w, Operand::Imm(16));
                self.st(IntTy::U16, OFF_SPORT, sp.into());
            }
            (sport, true) | (sport @ true, false) => {
                let (off, from) = if sport {
                    (OFF_SPORT, 0)
                } else {
                    (OFF_DPORT, 2)
                };
                let v = self.be16(at, from);
                self.st(IntTy::U16, off, v.into());
            }
            (false, false) => {}
        }
    }

    fn l4(&mut self, l4: &L4Blocks, done: Block) {
        let n = self.needs;
        let m = self.malformed;
        let ports = crate::packet::needs::span(OFF_SPORT, 4);
        let kinds = [
            (n.tcp4 || n.tcp6, l4.tcp),
            (n.udp4 || n.udp6 || self.tun.is_some(), l4.udp),
            (n.sctp4 || n.sctp6, l4.sctp),
            (n.icmp6, l4.icmp6),
            (n.icmp, l4.icmp),
        ];
        for (on, blk) in kinds {
            if !on {
                continue;
            }
            self.cur = blk;
            let at = self.get(self.v.l4);
            if blk == l4.tcp {
                self.check_ip(at, 20);
                // Data offset (high nibble of byte 12) >= 5.
                let off = self.ld8(at, 12);
                self.exit_if(Cond::Ult, off, Operand::Imm(0x50), m);
                if has(n.store_tcp, OFF_TCP_FLAGS, 1) {
                    let fl = self.load(IntTy::U8, at, 13);
                    self.st(IntTy::U8, OFF_TCP_FLAGS, fl.into());
                }
                self.or_flags(F_TCP);
                self.ports(at, n.store_tcp & ports);
                if n.payload_tcp || (n.l7 && self.base == 0) {
                    // The payload starts after the data offset's 32-bit words.
                    let words = self.bin(BinOp::Lshr, off, Operand::Imm(4));
                    let hl = self.bin(BinOp::Shl, words, Operand::Imm(2));
                    let hl = self.zext(hl, IntTy::U64);
                    let start = self.ptr_add(at, hl);
                    if n.l7 && self.base == 0 {
                        self.l7_payload(start);
                    }
                    if n.payload_tcp {
                        self.payload(start);
                    }
                }
            } else if blk == l4.udp {
                self.check_ip(at, 8);
                self.or_flags(F_UDP);
                self.ports(at, n.store_udp & ports);
                // A UDP tunnel goes to its inner packet before any payload is copied: the
                // payload copy's many exits, each walking the inner parser again, would
                // exceed the verifier's budget. A tunnel's UDP payload is its tunnel header.
                if let Some(t) = self.tun {
                    let dport = self.be16(at, 2);
                    self.exit_if(Cond::Eq, dport, Operand::Imm(UDP_VXLAN), t.vxlan);
                    self.exit_if(Cond::Eq, dport, Operand::Imm(UDP_GENEVE), t.geneve);
                }
                if n.l7 && self.base == 0 {
                    let start = self.ptr_add(at, Operand::Imm(8));
                    self.l7_payload(start);
                }
                if n.payload_udp {
                    let start = self.ptr_add(at, Operand::Imm(8));
                    self.payload(start);
                }
            } else if blk == l4.sctp {
                self.check_ip(at, 12);
                self.or_flags(F_SCTP);
                self.ports(at, n.store_sctp & ports);
            } else {
                self.or_flags(if blk == l4.icmp { F_ICMP } else { F_ICMP6 });
                self.check_ip(at, 4);
                for (off, from) in [(OFF_ICMP_TYPE, 0), (OFF_ICMP_CODE, 1)] {
                    if has(n.store_icmp, off, 1) {
                        let v = self.load(IntTy::U8, at, from);
                        self.st(IntTy::U8, off, v.into());
                    }
                }
                if n.payload_icmp {
                    // Connection tracking: the echo identifier, or an error's quoted header.
                    let start = self.ptr_add(at, Operand::Imm(4));
                    self.icmp_body(start);
                }
            }
            self.goto(done);
        }
    }

    /// Stores where the L4 payload at `start` lies, for the L7 passes (`crate::l7`): its
    /// offset from the start of the packet and its length inside the IP packet (at most
    /// 65535), in the L7 window. A data offset past the IP packet leaves both 0. The
    /// bytes themselves are read by the pass with `skb_load_bytes`/`xdp_load_bytes`, so
    /// a payload outside the linear head is no harder than one inside it.
    fn l7_payload(&mut self, start: Value) {
        let out = self.new_block();
        let ip_end = self.get(self.v.ip_end);
        self.exit_if(Cond::Ugt, start, ip_end, out);
        let len = self.push(Op::Binary(BinOp::Sub, ip_end, start.into()), Type::U64);
        let count = self.b.var(Type::U64);
        self.set(count, len);
        let clip = self.new_block();
        let fits = self.new_block();
        self.br(Cond::Ugt, len, Operand::Imm(0xffff), clip, fits);
        self.cur = clip;
        let w = self.iconst(IntTy::U64, 0xffff);
        self.set(count, w);
        self.goto(fits);
        self.cur = fits;
        let n = self.get(count);
        let n16 = self.push(Op::Ext(ExtOp::Trunc, n), Type::Int(IntTy::U16));
        self.st(IntTy::U16, OFF_L7_PAY_LEN, n16.into());
        let data = self.get(self.v.data);
        let off = self.push(Op::Binary(BinOp::Sub, start, data.into()), Type::U64);
        let off16 = self.push(Op::Ext(ExtOp::Trunc, off), Type::Int(IntTy::U16));
        self.st(IntTy::U16, OFF_L7_PAY_OFF, off16.into());
        self.goto(out);
        self.cur = out;
    }

    /// What [`Self::payload`] and [`Self::icmp_body`] start with: the bytes from `start`
    /// to the IP packet's end (`avail`; none when `start` lies past it, which goes to the
    /// returned `out` block) and their count clipped to `window` (`n`). Code continues in
    /// the block where `n` is known.
    fn clipped(&mut self, start: Value, window: i64) -> (Block, Value, Value) {
        let out = self.new_block();
        let ip_end = self.get(self.v.ip_end);
        self.exit_if(Cond::Ugt, start, ip_end, out);
        let avail = self.push(Op::Binary(BinOp::Sub, ip_end, start.into()), Type::U64);
        let count = self.b.var(Type::U64);
        self.set(count, avail);
        let clip = self.new_block();
        let fits = self.new_block();
        self.br(Cond::Ugt, avail, Operand::Imm(window), clip, fits);
        self.cur = clip;
        let w = self.iconst(IntTy::U64, window);
        self.set(count, w);
        self.goto(fits);
        self.cur = fits;
        let n = self.get(count);
        (out, avail, n)
    }

    /// Copies the first `needs.payload` bytes of the L4 payload at `start` behind the
    /// record, and their count (the payload inside the IP packet, at most the window) to
    /// `OFF_PAYLOAD_LEN`. A byte past the linear head is `truncated` (TC pulls and parses
    /// again; on XDP the headers and the window lie in the first buffer, so it is
    /// malformed). A data offset past the IP packet leaves no payload.
    fn payload(&mut self, start: Value) {
        let window = i64::from(self.needs.payload);
        let (out, avail, n) = self.clipped(start, window);
        let n16 = self.push(Op::Ext(ExtOp::Trunc, n), Type::Int(IntTy::U16));
        self.st(IntTy::U16, OFF_PAYLOAD_LEN, n16.into());
        for i in 0..window {
            self.exit_if(Cond::Ule, avail, Operand::Imm(i), out);
            self.check(start, i + 1);
            let byte = self.load(IntTy::U8, start, i as i16);
            self.st(IntTy::U8, OFF_PAYLOAD + i as i16, byte.into());
        }
        self.goto(out);
        self.cur = out;
    }

    /// Connection tracking's copy of an ICMP message from its byte 4 (`start`): the whole
    /// 32-bit words of it inside the IP packet, `needs.payload` bytes at most, to
    /// `OFF_PAYLOAD`, and their byte count to `OFF_PAYLOAD_LEN`. Words, not bytes as
    /// `payload` copies: a quoted header is read by the word, and this is a fourth of the
    /// code.
    fn icmp_body(&mut self, start: Value) {
        let window = i64::from(self.needs.payload / 4 * 4);
        let (out, avail, n) = self.clipped(start, window);
        let n = self.bin(BinOp::And, n, Operand::Imm(!3));
        let n16 = self.push(Op::Ext(ExtOp::Trunc, n), Type::Int(IntTy::U16));
        self.st(IntTy::U16, OFF_PAYLOAD_LEN, n16.into());
        for i in (0..window).step_by(4) {
            self.exit_if(Cond::Ult, avail, Operand::Imm(i + 4), out);
            self.check(start, i + 4);
            let word = self.load(IntTy::U32, start, i as i16);
            self.st(IntTy::U32, OFF_PAYLOAD + i as i16, word.into());
        }
        self.goto(out);
        self.cur = out;
    }

    /// TC's `truncated`: a read past data_end. The linear head of a socket buffer can end
    /// anywhere, so pull the headers into it (at least `PULL_MIN` bytes, at most the
    /// packet) and parse again from the start, once: the helper invalidates every packet
    /// pointer, and the loop's second pass defines them afresh. A read past the packet's
    /// end, or a second truncation, is malformed.
    fn pull(&mut self, pass: Value, start: Block) {
        let m = self.malformed;
        self.exit_if(Cond::Ne, pass, Operand::Imm(0), m);
        let want = self.get(self.v.want);
        let data = self.get(self.v.data);
        let want = self.push(Op::Binary(BinOp::Sub, want, data.into()), Type::U64);
        let len = self.load(IntTy::U32, self.ctx, SKB_LEN);
        let len = self.zext(len, IntTy::U64);
        self.exit_if(Cond::Ugt, want, len, m);
        // max(want, PULL_MIN), then min(that, len).
        let amount = self.b.var(Type::U64);
        self.set(amount, want);
        let grow = self.new_block();
        let keep = self.new_block();
        self.br(Cond::Ugt, want, Operand::Imm(PULL_MIN), keep, grow);
        self.cur = grow;
        let min = self.iconst(IntTy::U64, PULL_MIN);
        self.set(amount, min);
        self.goto(keep);
        self.cur = keep;
        let a = self.get(amount);
        let clip = self.new_block();
        let fits = self.new_block();
        self.br(Cond::Ule, a, len, fits, clip);
        self.cur = clip;
        self.set(amount, len);
        self.goto(fits);
        self.cur = fits;
        let a = self.get(amount);
        let id = helpers::by_name("skb_pull_data").map_or(39, |h| h.id);
        self.push(Op::Call(id, vec![self.ctx, a]), Type::I64);
        let next = self.bin(BinOp::Add, pass, Operand::Imm(1));
        self.term(Term::Br {
            cond: Cond::Ult,
            a: next,
            b: Operand::Imm(2),
            then: BlockCall::new(start, vec![next]),
            els: BlockCall::new(m, vec![]),
        });
    }
}
