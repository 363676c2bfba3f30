//! The L7 stage of a filter with DNS tests (issue 13), between the packet parser and
//! the rules, and the rules' L7 ops (`ir::Inst::L7Load`, `L7Lookup`).
//!
//! The stage: a UDP datagram from or to port 53 is a DNS message; its first bytes (at
//! most `dns::RAW_MAX`) are copied into the filter's scratch map with
//! `bpf_skb_load_bytes` / `bpf_xdp_load_bytes`, which read payload in pages and XDP
//! fragments alike, and `{filter}_dns_name` (MIR text from `l7::dns`) reads the question
//! into the scratch value. A message the stage cannot read (cut short, a name over 255
//! bytes, a compression loop, not one question) is incomplete: its status says so, and
//! the rules' incomplete gate (`ir::lower::l7_passes`) decides it, as for HTTP.

use super::rules::R;
use super::Tags;
use crate::ir::SRC_PARSER;
use crate::l7::{dns, tls};
use crate::mir::build::Builder;
use crate::mir::{
    helpers, BinOp, Block, BlockCall, Cond, ExtOp, FuncId, IntTy, MapId, Op, Operand, PtrKind,
    Slot, Term, Type, Value,
};
use crate::packet::needs::{span, Needs, ParserHook};
use crate::packet::record::{F_TCP, F_UDP, OFF_DPORT, OFF_L7_PAY_LEN, OFF_L7_PAY_OFF, OFF_SPORT};

/// What a filter with L7 tests needs parsed: UDP over IPv4 and IPv6, its ports, the
/// payload's place.
pub(super) fn needs(n: &mut Needs) {
    let ports = span(OFF_SPORT, 4);
    n.ip4 = true;
    n.ip6 = true;
    n.udp4 = true;
    n.udp6 = true;
    n.tcp4 = true;
    n.tcp6 = true;
    n.reads |= ports;
    n.store_udp |= ports;
    n.store_tcp |= ports;
    n.l7 = true;
}

/// The scratch map a filter's IR reads, when it has L7 tests.
pub(super) fn scratch_of(func: &crate::ir::Function) -> Option<&str> {
    func.blocks
        .iter()
        .flat_map(|b| &b.insts)
        .find_map(|i| match i {
            crate::ir::Inst::L7Load { scratch, .. } | crate::ir::Inst::L7Lookup { scratch, .. } => {
                Some(scratch.as_str())
            }
            _ => None,
        })
}

/// The stage's pieces in the module.
pub(super) struct Stage {
    pub scratch: MapId,
    /// `{filter}_dns_name`, when a rule tests DNS.
    pub dns: Option<FuncId>,
    /// `{filter}_tls_hello`, when a rule tests TLS.
    pub tls: Option<FuncId>,
}

fn block(b: &mut Builder, tags: &mut Tags) -> Block {
    let blk = b.add_block();
    tags.set(blk, SRC_PARSER);
    blk
}

/// What the stage's blocks share.
struct Cx<'a> {
    st: &'a Stage,
    hook: ParserHook,
    ctx: Value,
    /// The scratch value (null-checked).
    s: Value,
    /// Where the rules start (the IR's incomplete gate first).
    rules: Block,
}

impl Cx<'_> {
    /// Copies `len` payload bytes at `off` (u64 values; `len` at least `min`) to the
    /// scratch value's window, at most `RAW_MAX`, and their count to `S_N`; continues in
    /// the returned block, or in `failed` when a read fails.
    fn read(
        &self,
        b: &mut Builder,
        tags: &mut Tags,
        from: Block,
        (off, len): (Value, Value),
        min: i64,
        failed: Block,
    ) -> Block {
        let val = Type::Ptr(PtrKind::MapValue(self.st.scratch));
        let fits = block(b, tags);
        let n = b.f.add_block_param(fits, Type::U64);
        let clip = block(b, tags);
        b.set_term(
            from,
            Term::Br {
                cond: Cond::Ugt,
                a: len,
                b: Operand::Imm(i64::from(dns::RAW_MAX)),
                then: BlockCall::new(clip, vec![]),
                els: BlockCall::new(fits, vec![len]),
            },
        );
        let max = b.f.iconst(clip, IntTy::U64, i64::from(dns::RAW_MAX));
        b.set_term(clip, Term::Jump(BlockCall::new(fits, vec![max])));
        // The helpers take constant sizes: n bytes are two reads of the largest power of
        // two P <= n, at 0 and at n - P (they overlap).
        let helper = match self.hook {
            ParserHook::Tc => "skb_load_bytes",
            ParserHook::Xdp => "xdp_load_bytes",
        };
        let id = helpers::by_name(helper).map_or(26, |h| h.id);
        let (s, ctx) = (self.s, self.ctx);
        let loaded = block(b, tags);
        let read = |b: &mut Builder, cur: Block, at: Value, size: i64| -> Value {
            let raw =
                b.f.push(cur, Op::PtrAdd(s, Operand::Imm(i64::from(dns::S_RAW))), val);
            let dst = b.f.push(cur, Op::PtrAdd(raw, Operand::Value(at)), val);
            let from = b.f.push(
                cur,
                Op::Binary(BinOp::Add, off, Operand::Value(at)),
                Type::U64,
            );
            let size = b.f.iconst(cur, IntTy::U32, size);
            b.f.push(cur, Op::Call(id, vec![ctx, from, dst, size]), Type::I64)
        };
        let mut cur = fits;
        let mut p = i64::from(dns::RAW_MAX);
        while p * 2 > min {
            let this = block(b, tags);
            let next = block(b, tags);
            b.br(cur, Cond::Uge, n, Operand::Imm(p), this, next);
            let zero = b.f.iconst(this, IntTy::U64, 0);
            let ret = read(b, this, zero, p);
            let second = block(b, tags);
            b.br(this, Cond::Ne, ret, Operand::Imm(0), failed, second);
            if p == i64::from(dns::RAW_MAX) {
                b.set_term(second, Term::Jump(BlockCall::new(loaded, vec![])));
            } else {
                let rest = b.f.push(
                    second,
                    Op::Binary(BinOp::Sub, n, Operand::Imm(p)),
                    Type::U64,
                );
                let rest = b.f.push(
                    second,
                    Op::Binary(BinOp::And, rest, Operand::Imm(p - 1)),
                    Type::U64,
                );
                let ret = read(b, second, rest, p);
                b.br(second, Cond::Ne, ret, Operand::Imm(0), failed, loaded);
            }
            cur = next;
            p /= 2;
        }
        b.set_term(cur, Term::Jump(BlockCall::new(failed, vec![])));
        b.f.push_void(
            loaded,
            Op::Store {
                ty: IntTy::U16,
                ptr: s,
                off: dns::S_N,
                val: Operand::Value(n),
            },
        );
        loaded
    }

    /// Calls the protocol's function in `cur`, which leaves its status in the scratch
    /// value (`S_STATUS`, `S_TLS_STATUS`), and goes on to the rules.
    fn call(&self, b: &mut Builder, cur: Block, func: FuncId) {
        let zero = b.f.iconst(cur, IntTy::U64, 0);
        b.f.push(cur, Op::CallFn(func, vec![zero]), Type::U64);
        b.set_term(cur, Term::Jump(BlockCall::new(self.rules, vec![])));
    }
}

/// Builds the stage from `from` (where the parser ended): it continues in `rules` with the
/// status of what it read (an incomplete message too) in the scratch value.
#[allow(clippy::too_many_arguments)]
pub(super) fn stage(
    b: &mut Builder,
    tags: &mut Tags,
    st: &Stage,
    hook: ParserHook,
    ctx: Value,
    flags: Value,
    (rec, key): (Slot, Slot),
    from: Block,
    rules: Block,
) {
    let stack = Type::Ptr(PtrKind::Stack);
    let cur = from;
    let k = b.f.push(cur, Op::SlotAddr(key), stack);
    b.f.push_void(
        cur,
        Op::Store {
            ty: IntTy::U32,
            ptr: k,
            off: 0,
            val: Operand::Imm(0),
        },
    );
    let m = b.f.push(
        cur,
        Op::MapRef(st.scratch),
        Type::Ptr(PtrKind::Map(st.scratch)),
    );
    let lookup = helpers::by_name("map_lookup_elem").map_or(1, |h| h.id);
    let s = b.f.push(
        cur,
        Op::Call(lookup, vec![m, k]),
        Type::Ptr(PtrKind::MapValueOrNull(st.scratch)),
    );
    let hit = block(b, tags);
    b.br(cur, Cond::Eq, s, Operand::Imm(0), rules, hit);
    let cur = hit;
    let store8 = |b: &mut Builder, cur: Block, off: i16, v: i64| {
        b.f.push_void(
            cur,
            Op::Store {
                ty: IntTy::U8,
                ptr: s,
                off,
                val: Operand::Imm(v),
            },
        );
    };
    store8(b, cur, dns::S_STATUS, dns::ST_NONE);
    store8(b, cur, tls::S_TLS_STATUS, dns::ST_NONE);
    // The name of an earlier hello must not be seen by this packet's rules.
    store8(b, cur, tls::X_HAS_NAME, 0);
    let cx = Cx {
        st,
        hook,
        ctx,
        s,
        rules,
    };
    let incomplete = block(b, tags);
    store8(b, incomplete, dns::S_STATUS, dns::ST_INCOMPLETE);
    b.set_term(incomplete, Term::Jump(BlockCall::new(cx.rules, vec![])));
    let l4 = b.f.push(
        cur,
        Op::Binary(BinOp::And, flags, Operand::Imm(i64::from(F_UDP | F_TCP))),
        Type::U32,
    );
    let ports = block(b, tags);
    b.br(cur, Cond::Eq, l4, Operand::Imm(0), rules, ports);
    let cur = ports;
    let r = b.f.push(cur, Op::SlotAddr(rec), stack);
    let load16 = |b: &mut Builder, off: i16, ty: Type| {
        let v =
            b.f.push(cur, Op::Load { ptr: r, off }, Type::Int(IntTy::U16));
        b.f.push(cur, Op::Ext(ExtOp::Zext, v), ty)
    };
    let sport = load16(b, OFF_SPORT, Type::U32);
    let dport = load16(b, OFF_DPORT, Type::U32);
    let len = load16(b, OFF_L7_PAY_LEN, Type::U64);
    let off = load16(b, OFF_L7_PAY_OFF, Type::U64);
    let tcp = b.f.push(
        cur,
        Op::Binary(BinOp::And, flags, Operand::Imm(i64::from(F_TCP))),
        Type::U32,
    );
    // TLS: a TCP segment with payload, not to or from port 53, that starts a ClientHello.
    let hello = block(b, tags);
    match st.tls {
        Some(func) => {
            let seg = block(b, tags);
            b.br(hello, Cond::Eq, tcp, Operand::Imm(0), rules, seg);
            let some = block(b, tags);
            b.br(seg, Cond::Ult, len, Operand::Imm(6), rules, some);
            let loaded = cx.read(b, tags, some, (off, len), 6, rules);
            cx.call(b, loaded, func);
        }
        None => b.set_term(hello, Term::Jump(BlockCall::new(rules, vec![]))),
    }
    let Some(dns_func) = st.dns else {
        b.set_term(cur, Term::Jump(BlockCall::new(hello, vec![])));
        return;
    };
    let msg = block(b, tags);
    let to = block(b, tags);
    b.br(
        cur,
        Cond::Eq,
        sport,
        Operand::Imm(i64::from(dns::PORT)),
        msg,
        to,
    );
    b.br(
        to,
        Cond::Eq,
        dport,
        Operand::Imm(i64::from(dns::PORT)),
        msg,
        hello,
    );
    // Over TCP a message follows its 2-byte length; a segment without payload (an ACK, a
    // FIN) carries none. Only a segment that starts a message is read.
    let cur = msg;
    let framed = block(b, tags);
    let message = block(b, tags);
    let m_off = b.f.add_block_param(message, Type::U64);
    let m_len = b.f.add_block_param(message, Type::U64);
    b.set_term(
        cur,
        Term::Br {
            cond: Cond::Ne,
            a: tcp,
            b: Operand::Imm(0),
            then: BlockCall::new(framed, vec![]),
            els: BlockCall::new(message, vec![off, len]),
        },
    );
    let segment = block(b, tags);
    b.br(framed, Cond::Eq, len, Operand::Imm(0), rules, segment);
    let short = block(b, tags);
    let t_off = b.f.push(
        segment,
        Op::Binary(BinOp::Add, off, Operand::Imm(2)),
        Type::U64,
    );
    b.br(segment, Cond::Ult, len, Operand::Imm(2), incomplete, short);
    let t_len = b.f.push(
        short,
        Op::Binary(BinOp::Sub, len, Operand::Imm(2)),
        Type::U64,
    );
    b.set_term(
        short,
        Term::Jump(BlockCall::new(message, vec![t_off, t_len])),
    );
    // A DNS message: its header, a name of at least the root, the type and class (17
    // bytes); at most RAW_MAX bytes copied.
    let sized = block(b, tags);
    b.br(
        message,
        Cond::Ult,
        m_len,
        Operand::Imm(17),
        incomplete,
        sized,
    );
    let loaded = cx.read(b, tags, sized, (m_off, m_len), 17, incomplete);
    cx.call(b, loaded, dns_func);
}

impl R<'_> {
    /// The scratch value, or `miss` (with 0) when the lookup fails (never: one entry).
    fn scratch(
        &mut self,
        cur: Block,
        scratch: &str,
        src: u32,
    ) -> Result<(Block, Value, Block, Value), String> {
        let map = self.map(scratch)?;
        self.store(cur, IntTy::U32, self.slots.key, 0, Operand::Imm(0));
        let k = self.slot_addr(cur, self.slots.key, 0);
        let s = self.lookup(cur, map, k);
        let hit = self.new_block(src);
        let join = self.new_block(src);
        let v = self.b.f.add_block_param(join, Type::U32);
        let zero = self.b.f.iconst(cur, IntTy::U32, 0);
        self.b.set_term(
            cur,
            Term::Br {
                cond: Cond::Eq,
                a: s,
                b: Operand::Imm(0),
                then: BlockCall::new(join, vec![zero]),
                els: BlockCall::new(hit, vec![]),
            },
        );
        Ok((hit, s, join, v))
    }

    /// `L7Load`: the scratch value's integer at `off`, zero-extended to u32.
    pub(super) fn l7_load(
        &mut self,
        cur: Block,
        src: u32,
        scratch: &str,
        off: i16,
        size: u8,
    ) -> Result<(Block, Value), String> {
        let (hit, s, join, v) = self.scratch(cur, scratch, src)?;
        let ty = match size {
            1 => IntTy::U8,
            2 => IntTy::U16,
            _ => IntTy::U32,
        };
        let x = self.load(hit, ty, s, off);
        let x = if ty.bits < 32 {
            self.b.f.push(hit, Op::Ext(ExtOp::Zext, x), Type::U32)
        } else {
            x
        };
        self.jump(hit, join, vec![x]);
        Ok((join, v))
    }

    /// `L7Lookup`: 1 when the question name's key is in the trie `map`, else 0.
    pub(super) fn l7_lookup(
        &mut self,
        cur: Block,
        src: u32,
        scratch: &str,
        map: &str,
        status_off: i16,
    ) -> Result<(Block, Value), String> {
        let names = self.map(map)?;
        let scratch_id = self.map(scratch)?;
        let (read, s, join, v) = self.scratch(cur, scratch, src)?;
        // Only a name this packet carried: the key of an earlier packet stays behind.
        let status = self.load(read, IntTy::U8, s, status_off);
        let status = self.b.f.push(read, Op::Ext(ExtOp::Zext, status), Type::U32);
        let hit = self.new_block(src);
        let zero = self.b.f.iconst(read, IntTy::U32, 0);
        self.b.set_term(
            read,
            Term::Br {
                cond: Cond::Ne,
                a: status,
                b: Operand::Imm(dns::ST_OK),
                then: BlockCall::new(join, vec![zero]),
                els: BlockCall::new(hit, vec![]),
            },
        );
        let key = self.b.f.push(
            hit,
            Op::PtrAdd(s, Operand::Imm(i64::from(dns::S_KEY))),
            Type::Ptr(PtrKind::MapValue(scratch_id)),
        );
        let found = self.lookup(hit, names, key);
        let zero = self.b.f.iconst(hit, IntTy::U32, 0);
        let one = self.b.f.iconst(hit, IntTy::U32, 1);
        self.b.set_term(
            hit,
            Term::Br {
                cond: Cond::Eq,
                a: found,
                b: Operand::Imm(0),
                then: BlockCall::new(join, vec![zero]),
                els: BlockCall::new(join, vec![one]),
            },
        );
        Ok((join, v))
    }
}
