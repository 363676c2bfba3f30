//! Stateful pseudo-ops as MIR (issue 15). A rate limit is GCRA, the token bucket kept as
//! one u64 per key: the theoretical arrival time (TAT) of the key's next packet.
//!
//! ```text
//! now = ktime_get_ns(); p = lookup(map, key)
//! absent:          insert now + T                  -> within (a new key has its burst)
//! TAT <= now:      *p = now + T                    -> within (idle: the bucket is full)
//! TAT - now > tau: nothing                         -> over   (no token left)
//! else:            atomic *p += T                  -> within (one token taken)
//! ```
//!
//! `T` is the interval between packets at the rate, `tau` the tolerance `(burst-1)·T`.
//! The map is shared by every CPU: taking a token is an atomic add, so CPUs racing on one
//! key cannot let more than the rate through; only a reset after an idle spell is a plain
//! store (two CPUs resetting together lose one token, in favour of the packet).

use super::rules::R;
use crate::mir::{helpers, BinOp, Block, Cond, IntTy, Op, Operand, PtrKind, Type, Value};

/// BPF_ANY: insert or replace.
const BPF_ANY: i64 = 0;

/// One `Inst::Rate`.
pub(super) struct Rate<'a> {
    pub map: &'a str,
    pub keys: &'a [(i16, u8)],
    pub interval_ns: u64,
    pub tolerance_ns: u64,
}

impl R<'_> {
    /// Lowers one rate test in `cur`; returns the block that continues and the result
    /// (u32: 1 over the rate, 0 within).
    pub(super) fn rate(
        &mut self,
        cur: Block,
        src: u32,
        r: &Rate<'_>,
    ) -> Result<(Block, Value), String> {
        let map = self.map(r.map)?;
        let ktime = helpers::by_name("ktime_get_ns").map_or(5, |h| h.id);
        let update = helpers::by_name("map_update_elem").map_or(2, |h| h.id);
        let now = self.b.f.push(cur, Op::Call(ktime, vec![]), Type::U64);
        let key = match r.keys {
            [] => {
                self.store(cur, IntTy::U32, self.slots.key, 0, Operand::Imm(0));
                self.slot_addr(cur, self.slots.key, 0)
            }
            [(off, _)] => self.slot_addr(cur, self.slots.rec, i64::from(*off)),
            pieces => {
                let len: u32 = pieces.iter().map(|&(_, n)| u32::from(n)).sum();
                let slot = self.b.f.add_slot(len.div_ceil(8) * 8, 8);
                let rec = self.slot_addr(cur, self.slots.rec, 0);
                let dst = self.slot_addr(cur, slot, 0);
                let mut at = 0i16;
                for &(off, n) in pieces {
                    let mut k = 0i16;
                    let n = i16::from(n);
                    while k < n {
                        let size = [4i16, 2, 1]
                            .into_iter()
                            .find(|&s| (off + k) % s == 0 && (at + k) % s == 0 && k + s <= n)
                            .unwrap_or(1);
                        let ty = match size {
                            4 => IntTy::U32,
                            2 => IntTy::U16,
                            _ => IntTy::U8,
                        };
                        let v = self.load(cur, ty, rec, off + k);
                        self.b.f.push_void(
                            cur,
                            Op::Store {
                                ty,
                                ptr: dst,
                                off: at + k,
                                val: v.into(),
                            },
                        );
                        k += size;
                    }
                    at += n;
                }
                dst
            }
        };
        let interval = self.b.f.iconst(cur, IntTy::U64, clamp(r.interval_ns));
        let p = self.lookup(cur, map, key);
        let done = self.new_block(src);
        let result = self.b.f.add_block_param(done, Type::U32);
        let hit = self.new_block(src);
        let miss = self.new_block(src);
        self.b.br(cur, Cond::Eq, p, 0, miss, hit);
        // Absent (a new key of an LRU table; never for the array of `rate()`).
        let next = self.b.f.push(
            miss,
            Op::Binary(BinOp::Add, now, interval.into()),
            Type::U64,
        );
        let val = self.b.f.add_slot(8, 8);
        let at = self.slot_addr(miss, val, 0);
        self.b.f.push_void(
            miss,
            Op::Store {
                ty: IntTy::U64,
                ptr: at,
                off: 0,
                val: next.into(),
            },
        );
        let m = self
            .b
            .f
            .push(miss, Op::MapRef(map), Type::Ptr(PtrKind::Map(map)));
        let flags = self.b.f.iconst(miss, IntTy::U64, BPF_ANY);
        // The key again: a value made in `cur` may not survive the call's clobbers as a
        // stack pointer in every allocation, and recomputing it costs one instruction.
        let key2 = match r.keys {
            [] => self.slot_addr(miss, self.slots.key, 0),
            [(off, _)] => self.slot_addr(miss, self.slots.rec, i64::from(*off)),
            _ => key,
        };
        self.b
            .f
            .push(miss, Op::Call(update, vec![m, key2, at, flags]), Type::I64);
        let zero = self.b.f.iconst(miss, IntTy::U32, 0);
        self.jump(miss, done, vec![zero]);
        // Present.
        let tat = self.load(hit, IntTy::U64, p, 0);
        let reset = self.new_block(src);
        let busy = self.new_block(src);
        self.b.br(hit, Cond::Ule, tat, now, reset, busy);
        let fresh = self.b.f.push(
            reset,
            Op::Binary(BinOp::Add, now, interval.into()),
            Type::U64,
        );
        self.b.f.push_void(
            reset,
            Op::Store {
                ty: IntTy::U64,
                ptr: p,
                off: 0,
                val: fresh.into(),
            },
        );
        let zero = self.b.f.iconst(reset, IntTy::U32, 0);
        self.jump(reset, done, vec![zero]);
        let ahead = self
            .b
            .f
            .push(busy, Op::Binary(BinOp::Sub, tat, now.into()), Type::U64);
        let tolerance = self.b.f.iconst(busy, IntTy::U64, clamp(r.tolerance_ns));
        let take = self.new_block(src);
        let over = self.new_block(src);
        self.b.br(busy, Cond::Ugt, ahead, tolerance, over, take);
        let one = self.b.f.iconst(over, IntTy::U32, 1);
        self.jump(over, done, vec![one]);
        let interval2 = self.b.f.iconst(take, IntTy::U64, clamp(r.interval_ns));
        self.b.f.push_void(
            take,
            Op::AtomicAdd {
                ty: IntTy::U64,
                ptr: p,
                off: 0,
                val: interval2,
            },
        );
        let zero = self.b.f.iconst(take, IntTy::U32, 0);
        self.jump(take, done, vec![zero]);
        Ok((done, result))
    }
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Entry states kept in the table (the value's `state` word).
const ENTRY_NEW: i64 = 1;
const ENTRY_ESTABLISHED: i64 = 2;
const TCP_FIN_RST: i64 = 0x05;
const TCP_SYN_ACK: i64 = 0x12;
const TCP_SYN: i64 = 0x02;
/// ICMP error types as bits: ICMP 3 (unreachable), 4 (source quench), 5 (redirect), 11
/// (time exceeded), 12 (parameter problem); ICMPv6 1 (unreachable), 2 (packet too big),
/// 3 (time exceeded), 4 (parameter problem). No type is an error in one and something
/// else in the other.
const ICMP_ERRORS: i64 =
    (1 << 1) | (1 << 2) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 11) | (1 << 12);
/// How many bytes of an ICMP message, from its byte 4, connection tracking reads (the
/// parser copies them by the 32-bit word): 4 unused bytes, an IPv6 header and 8 bytes of
/// the quoted L4 header.
pub(crate) const ICMP_BODY: u8 = 4 + 40 + 8;

impl R<'_> {
    fn br_imm(&mut self, cur: Block, cond: Cond, a: Value, imm: i64, t: Block, f: Block) {
        self.b.br(cur, cond, a, imm, t, f);
    }

    fn u64c(&mut self, b: Block, v: u64) -> Value {
        self.b.f.iconst(b, IntTy::U64, clamp(v))
    }

    /// The slot holding the packet's tracking result, made on first use.
    fn ct_slot(&mut self) -> crate::mir::Slot {
        match self.ct {
            Some(s) => s,
            None => {
                let s = self.b.f.add_slot(8, 8);
                self.ct = Some(s);
                s
            }
        }
    }

    /// `Inst::Ct`: the tracking result `CtTrack` stored.
    pub(super) fn ct_result(&mut self, cur: Block) -> Value {
        let s = self.ct_slot();
        let at = self.slot_addr(cur, s, 0);
        self.load(cur, IntTy::U32, at, 0)
    }

    /// `Inst::CtTrack`: classifies the packet, looks its flow up both ways, creates or
    /// refreshes the entry, and stores the result (`hir::state::CT_*`); returns the block
    /// that continues. See docs/stateful.md for the states and timeouts.
    pub(super) fn ct_track(
        &mut self,
        cur: Block,
        src: u32,
        map: &str,
        c: &crate::hir::state::CtConfig,
    ) -> Result<Block, String> {
        use crate::hir::state::{
            CT_ESTABLISHED, CT_INVALID, CT_NEW, CT_ORIGINAL, CT_REPLY, CT_UNTRACKED,
        };
        use crate::packet::record::{
            F_ICMP, F_ICMP6, F_IP4, F_IP6, F_TCP, F_UDP, OFF_DPORT, OFF_DST, OFF_ICMP_TYPE,
            OFF_IP_PROTO, OFF_IP_VERSION, OFF_PAYLOAD, OFF_SPORT, OFF_SRC, OFF_TCP_FLAGS,
        };
        let map = self.map(map)?;
        let slot = self.ct_slot();
        let done = self.new_block(src);
        let result = self.b.f.add_block_param(done, Type::U32);
        let fin = |r: &mut Self, b: Block, v: u32| {
            let x = r.b.f.iconst(b, IntTy::U32, i64::from(v));
            r.jump(b, done, vec![x]);
        };
        // Which packets are tracked, whether they may start a flow, and their timeouts.
        let classified = self.new_block(src);
        let start = self.b.f.add_block_param(classified, Type::U32);
        let new_to = self.b.f.add_block_param(classified, Type::U64);
        let est_to = self.b.f.add_block_param(classified, Type::U64);
        // The key's ports: TCP and UDP ports; for echo the identifier, at `sport` in a
        // request and `dport` in a reply, so a reply's reverse key is its request's key
        // and a request from the other side with the same identifier is a flow of its own.
        let sp = self.b.f.add_block_param(classified, Type::Int(IntTy::U16));
        let dp = self.b.f.add_block_param(classified, Type::Int(IntTy::U16));
        // 1 for a TCP FIN or RST: the flow is closing from then on (the entry's flag).
        let fin_rst = self.b.f.add_block_param(classified, Type::U32);
        let untracked = self.new_block(src);
        fin(self, untracked, CT_UNTRACKED);
        let to = |r: &mut Self,
                  b: Block,
                  start: Value,
                  (n, e): (u64, u64),
                  ports: (Value, Value),
                  fin: i64| {
            let n = r.u64c(b, n);
            let e = r.u64c(b, e);
            let fin = r.b.f.iconst(b, IntTy::U32, fin);
            r.jump(b, classified, vec![start, n, e, ports.0, ports.1, fin]);
        };
        let l4_ports = |r: &mut Self, b: Block| {
            let rec = r.slot_addr(b, r.slots.rec, 0);
            let s = r.load(b, IntTy::U16, rec, OFF_SPORT);
            let d = r.load(b, IntTy::U16, rec, OFF_DPORT);
            (s, d)
        };
        let flags = self.flags;
        let ip = self.b.f.push(
            cur,
            Op::Binary(BinOp::And, flags, Operand::Imm(i64::from(F_IP4 | F_IP6))),
            Type::U32,
        );
        let is_ip = self.new_block(src);
        self.br_imm(cur, Cond::Eq, ip, 0, untracked, is_ip);
        let tcp_bit = self.b.f.push(
            is_ip,
            Op::Binary(BinOp::And, flags, Operand::Imm(i64::from(F_TCP))),
            Type::U32,
        );
        let tcp = self.new_block(src);
        let not_tcp = self.new_block(src);
        self.br_imm(is_ip, Cond::Ne, tcp_bit, 0, tcp, not_tcp);
        // TCP: a lone SYN may start a flow; after a FIN or RST every timeout is the
        // closing one.
        let rec = self.slot_addr(tcp, self.slots.rec, 0);
        let tf = self.load(tcp, IntTy::U8, rec, OFF_TCP_FLAGS);
        let tf = self
            .b
            .f
            .push(tcp, Op::Ext(crate::mir::ExtOp::Zext, tf), Type::U32);
        let sa = self.b.f.push(
            tcp,
            Op::Binary(BinOp::And, tf, Operand::Imm(TCP_SYN_ACK)),
            Type::U32,
        );
        let x = self.b.f.push(
            tcp,
            Op::Binary(BinOp::Xor, sa, Operand::Imm(TCP_SYN)),
            Type::U32,
        );
        // x < 0x100: (x + 0xff) >> 8 is 1 exactly when x != 0; start = that ^ 1.
        let x = self.b.f.push(
            tcp,
            Op::Binary(BinOp::Add, x, Operand::Imm(0xff)),
            Type::U32,
        );
        let x = self
            .b
            .f
            .push(tcp, Op::Binary(BinOp::Lshr, x, Operand::Imm(8)), Type::U32);
        let syn = self
            .b
            .f
            .push(tcp, Op::Binary(BinOp::Xor, x, Operand::Imm(1)), Type::U32);
        let fr = self.b.f.push(
            tcp,
            Op::Binary(BinOp::And, tf, Operand::Imm(TCP_FIN_RST)),
            Type::U32,
        );
        let ports = l4_ports(self, tcp);
        let closing = self.new_block(src);
        let open = self.new_block(src);
        self.br_imm(tcp, Cond::Ne, fr, 0, closing, open);
        to(self, closing, syn, (c.tcp_closing, c.tcp_closing), ports, 1);
        to(self, open, syn, (c.tcp_new, c.tcp), ports, 0);
        let udp_bit = self.b.f.push(
            not_tcp,
            Op::Binary(BinOp::And, flags, Operand::Imm(i64::from(F_UDP))),
            Type::U32,
        );
        let udp = self.new_block(src);
        let not_udp = self.new_block(src);
        self.br_imm(not_tcp, Cond::Ne, udp_bit, 0, udp, not_udp);
        let one = self.b.f.iconst(udp, IntTy::U32, 1);
        let ports = l4_ports(self, udp);
        to(self, udp, one, (c.udp_new, c.udp), ports, 0);
        // ICMP and ICMPv6 echo: a request may start a flow, a reply may not; an error
        // is related to the flow it quotes; other types are not tracked.
        let icmp_bit = self.b.f.push(
            not_udp,
            Op::Binary(BinOp::And, flags, Operand::Imm(i64::from(F_ICMP | F_ICMP6))),
            Type::U32,
        );
        let icmp = self.new_block(src);
        self.br_imm(not_udp, Cond::Eq, icmp_bit, 0, untracked, icmp);
        let rec = self.slot_addr(icmp, self.slots.rec, 0);
        let ty = self.load(icmp, IntTy::U8, rec, OFF_ICMP_TYPE);
        let ty = self
            .b
            .f
            .push(icmp, Op::Ext(crate::mir::ExtOp::Zext, ty), Type::U32);
        let request = self.new_block(src);
        let reply = self.new_block(src);
        let mut at = icmp;
        for (t, target) in [(8, request), (128, request), (0, reply), (129, reply)] {
            let next = self.new_block(src);
            self.br_imm(at, Cond::Eq, ty, t, target, next);
            at = next;
        }
        // Errors: ICMP 3, 4, 5, 11, 12 and ICMPv6 1 to 4 (`ICMP_ERRORS` has their bits);
        // untracked, without reading the quote, where no rule could tell (`c.related`).
        let error = if c.related {
            let error = self.new_block(src);
            let small = self.new_block(src);
            self.br_imm(at, Cond::Ugt, ty, 12, untracked, small);
            let bits = self.b.f.iconst(small, IntTy::U32, ICMP_ERRORS);
            let bit = self
                .b
                .f
                .push(small, Op::Binary(BinOp::Lshr, bits, ty.into()), Type::U32);
            let bit = self.b.f.push(
                small,
                Op::Binary(BinOp::And, bit, Operand::Imm(1)),
                Type::U32,
            );
            self.br_imm(small, Cond::Eq, bit, 0, untracked, error);
            Some(error)
        } else {
            self.jump(at, untracked, vec![]);
            None
        };
        // The parser copied the message from its byte 4 to the payload window.
        let rec = self.slot_addr(request, self.slots.rec, 0);
        let id = self.load(request, IntTy::U16, rec, OFF_PAYLOAD);
        let zero16 = self.b.f.iconst(request, IntTy::U16, 0);
        let one = self.b.f.iconst(request, IntTy::U32, 1);
        to(self, request, one, (c.icmp, c.icmp), (id, zero16), 0);
        let rec = self.slot_addr(reply, self.slots.rec, 0);
        let id = self.load(reply, IntTy::U16, rec, OFF_PAYLOAD);
        let zero16 = self.b.f.iconst(reply, IntTy::U16, 0);
        let zero = self.b.f.iconst(reply, IntTy::U32, 0);
        to(self, reply, zero, (c.icmp, c.icmp), (zero16, id), 0);

        // The flow key as the packet goes (`fwd`) and as its reply would (`rev`).
        let fwd = self.b.f.add_slot(40, 8);
        let rev = self.b.f.add_slot(40, 8);
        if let Some(error) = error {
            self.related(error, src, map, (fwd, rev), done)?;
        }
        let cur = classified;
        let rec = self.slot_addr(cur, self.slots.rec, 0);
        let kf = self.slot_addr(cur, fwd, 0);
        let kr = self.slot_addr(cur, rev, 0);
        for k in 0..4i16 {
            let s = self.load(cur, IntTy::U32, rec, OFF_SRC + 4 * k);
            let d = self.load(cur, IntTy::U32, rec, OFF_DST + 4 * k);
            for (ptr, off, v) in [(kf, 0, s), (kf, 16, d), (kr, 0, d), (kr, 16, s)] {
                self.b.f.push_void(
                    cur,
                    Op::Store {
                        ty: IntTy::U32,
                        ptr,
                        off: off + 4 * k,
                        val: v.into(),
                    },
                );
            }
        }
        let proto = self.load(cur, IntTy::U8, rec, OFF_IP_PROTO);
        let ver = self.load(cur, IntTy::U8, rec, OFF_IP_VERSION);
        for (ptr, a, b) in [(kf, sp, dp), (kr, dp, sp)] {
            self.b.f.push_void(
                cur,
                Op::Store {
                    ty: IntTy::U16,
                    ptr,
                    off: 32,
                    val: a.into(),
                },
            );
            self.b.f.push_void(
                cur,
                Op::Store {
                    ty: IntTy::U16,
                    ptr,
                    off: 34,
                    val: b.into(),
                },
            );
            self.b.f.push_void(
                cur,
                Op::Store {
                    ty: IntTy::U8,
                    ptr,
                    off: 36,
                    val: proto.into(),
                },
            );
            self.b.f.push_void(
                cur,
                Op::Store {
                    ty: IntTy::U8,
                    ptr,
                    off: 37,
                    val: ver.into(),
                },
            );
            self.b.f.push_void(
                cur,
                Op::Store {
                    ty: IntTy::U16,
                    ptr,
                    off: 38,
                    val: Operand::Imm(0),
                },
            );
        }
        let ktime = helpers::by_name("ktime_get_ns").map_or(5, |h| h.id);
        let now = self.b.f.push(cur, Op::Call(ktime, vec![]), Type::U64);
        // As the packet goes: an entry that has not expired.
        let kf = self.slot_addr(cur, fwd, 0);
        let p = self.lookup(cur, map, kf);
        let hit = self.new_block(src);
        let try_rev = self.new_block(src);
        self.br_imm(cur, Cond::Eq, p, 0, try_rev, hit);
        let exp = self.load(hit, IntTy::U64, p, 0);
        let live = self.new_block(src);
        self.b.br(hit, Cond::Ult, exp, now, try_rev, live);
        let st = self.load(live, IntTy::U32, p, 8);
        let orig_new = self.new_block(src);
        let orig_est = self.new_block(src);
        self.br_imm(live, Cond::Eq, st, ENTRY_NEW, orig_new, orig_est);
        for (b, timeout, res) in [
            (orig_new, new_to, CT_NEW | CT_ORIGINAL),
            (orig_est, est_to, CT_ESTABLISHED | CT_ORIGINAL),
        ] {
            let e = self.expiry(b, p, now, timeout, (start, fin_rst), c.tcp_closing);
            self.b.f.push_void(
                b,
                Op::Store {
                    ty: IntTy::U64,
                    ptr: p,
                    off: 0,
                    val: e.into(),
                },
            );
            fin(self, b, res);
        }
        // Back the other way: a reply establishes the flow.
        let kr = self.slot_addr(try_rev, rev, 0);
        let q = self.lookup(try_rev, map, kr);
        let rhit = self.new_block(src);
        let miss = self.new_block(src);
        self.br_imm(try_rev, Cond::Eq, q, 0, miss, rhit);
        let exp = self.load(rhit, IntTy::U64, q, 0);
        let rlive = self.new_block(src);
        self.b.br(rhit, Cond::Ult, exp, now, miss, rlive);
        let e = self.expiry(rlive, q, now, est_to, (start, fin_rst), c.tcp_closing);
        self.b.f.push_void(
            rlive,
            Op::Store {
                ty: IntTy::U64,
                ptr: q,
                off: 0,
                val: e.into(),
            },
        );
        self.b.f.push_void(
            rlive,
            Op::Store {
                ty: IntTy::U32,
                ptr: q,
                off: 8,
                val: Operand::Imm(ENTRY_ESTABLISHED),
            },
        );
        fin(self, rlive, CT_ESTABLISHED | CT_REPLY);
        // Unknown both ways: a packet that may start a flow starts one; another is invalid
        // (closed), or taken up as established (open).
        let create = self.new_block(src);
        let cannot = self.new_block(src);
        self.br_imm(miss, Cond::Ne, start, 0, create, cannot);
        let update = helpers::by_name("map_update_elem").map_or(2, |h| h.id);
        let val = self.b.f.add_slot(16, 8);
        let insert = |r: &mut Self, b: Block, timeout: Value, state: i64, res: u32| {
            let e =
                r.b.f
                    .push(b, Op::Binary(BinOp::Add, now, timeout.into()), Type::U64);
            let at = r.slot_addr(b, val, 0);
            r.b.f.push_void(
                b,
                Op::Store {
                    ty: IntTy::U64,
                    ptr: at,
                    off: 0,
                    val: e.into(),
                },
            );
            // The state, and the closing flag above it.
            let f =
                r.b.f
                    .push(b, Op::Ext(crate::mir::ExtOp::Zext, fin_rst), Type::U64);
            let f =
                r.b.f
                    .push(b, Op::Binary(BinOp::Shl, f, Operand::Imm(32)), Type::U64);
            let v =
                r.b.f
                    .push(b, Op::Binary(BinOp::Or, f, Operand::Imm(state)), Type::U64);
            r.b.f.push_void(
                b,
                Op::Store {
                    ty: IntTy::U64,
                    ptr: at,
                    off: 8,
                    val: v.into(),
                },
            );
            let m = r.b.f.push(b, Op::MapRef(map), Type::Ptr(PtrKind::Map(map)));
            let k = r.slot_addr(b, fwd, 0);
            let flags = r.b.f.iconst(b, IntTy::U64, BPF_ANY);
            r.b.f
                .push(b, Op::Call(update, vec![m, k, at, flags]), Type::I64);
            fin(r, b, res);
        };
        insert(self, create, new_to, ENTRY_NEW, CT_NEW | CT_ORIGINAL);
        if c.open {
            insert(
                self,
                cannot,
                est_to,
                ENTRY_ESTABLISHED,
                CT_ESTABLISHED | CT_ORIGINAL,
            );
        } else {
            fin(self, cannot, CT_INVALID);
        }
        let at = self.slot_addr(done, slot, 0);
        self.b.f.push_void(
            done,
            Op::Store {
                ty: IntTy::U32,
                ptr: at,
                off: 0,
                val: result.into(),
            },
        );
        Ok(done)
    }
}

impl R<'_> {
    /// A live entry `p`'s new expiry: `now + timeout`, or `now + closing` once the flow is
    /// closing. The entry's flag (offset 12) is set by a FIN or RST (`fin`) and cleared by
    /// a lone SYN (`start`: a new connection on the same 5-tuple), branch-free:
    /// `flag = flag & !start | fin`, `timeout + flag * (closing - timeout)` (wrapping).
    fn expiry(
        &mut self,
        b: Block,
        p: Value,
        now: Value,
        timeout: Value,
        (start, fin): (Value, Value),
        closing: u64,
    ) -> Value {
        let flag = self.load(b, IntTy::U32, p, 12);
        let keep = self
            .b
            .f
            .push(b, Op::Binary(BinOp::Xor, start, Operand::Imm(1)), Type::U32);
        let flag = self
            .b
            .f
            .push(b, Op::Binary(BinOp::And, flag, keep.into()), Type::U32);
        let flag = self
            .b
            .f
            .push(b, Op::Binary(BinOp::Or, flag, fin.into()), Type::U32);
        self.b.f.push_void(
            b,
            Op::Store {
                ty: IntTy::U32,
                ptr: p,
                off: 12,
                val: flag.into(),
            },
        );
        let f = self
            .b
            .f
            .push(b, Op::Ext(crate::mir::ExtOp::Zext, flag), Type::U64);
        let closing = self.u64c(b, closing);
        let d = self.b.f.push(
            b,
            Op::Binary(BinOp::Sub, closing, timeout.into()),
            Type::U64,
        );
        let d = self
            .b
            .f
            .push(b, Op::Binary(BinOp::Mul, f, d.into()), Type::U64);
        let t = self
            .b
            .f
            .push(b, Op::Binary(BinOp::Add, timeout, d.into()), Type::U64);
        self.b
            .f
            .push(b, Op::Binary(BinOp::Add, now, t.into()), Type::U64)
    }

    fn zext32(&mut self, b: Block, v: Value) -> Value {
        self.b
            .f
            .push(b, Op::Ext(crate::mir::ExtOp::Zext, v), Type::U32)
    }

    /// An ICMP or ICMPv6 error (in `error`): the flow its quoted header names, looked up
    /// both ways (`fwd`, `rev` are the key slots) without refreshing it. A live entry makes
    /// the error `related`, in the direction opposite the quoted packet's; a quote of a
    /// flow the table does not hold is `invalid`; one pol cannot read (cut short, IPv4
    /// options, an IPv6 extension header, neither TCP, UDP nor echo) is `untracked`.
    fn related(
        &mut self,
        error: Block,
        src: u32,
        map: crate::mir::MapId,
        (fwd, rev): (crate::mir::Slot, crate::mir::Slot),
        done: Block,
    ) -> Result<(), String> {
        use crate::hir::state::{CT_INVALID, CT_ORIGINAL, CT_RELATED, CT_REPLY, CT_UNTRACKED};
        use crate::packet::record::{F_ICMP6, OFF_PAYLOAD, OFF_PAYLOAD_LEN};
        // The quoted IP header: after the error's 4 unused bytes.
        const W: i16 = OFF_PAYLOAD + 4;
        let fin = |r: &mut Self, b: Block, v: u32| {
            let x = r.b.f.iconst(b, IntTy::U32, i64::from(v));
            r.jump(b, done, vec![x]);
        };
        let untracked = self.new_block(src);
        fin(self, untracked, CT_UNTRACKED);
        let keyed = self.new_block(src);
        let ksp = self.b.f.add_block_param(keyed, Type::Int(IntTy::U16));
        let kdp = self.b.f.add_block_param(keyed, Type::Int(IntTy::U16));
        let v4 = self.new_block(src);
        let v6 = self.new_block(src);
        let flags = self.flags;
        let is6 = self.b.f.push(
            error,
            Op::Binary(BinOp::And, flags, Operand::Imm(i64::from(F_ICMP6))),
            Type::U32,
        );
        self.br_imm(error, Cond::Ne, is6, 0, v6, v4);
        // (block, version, header length, protocol, source, destination, echo types)
        for (b, ver, hl, proto_at, src_at, dst_at, echo) in [
            (v4, 4i64, 20i16, 9i16, 12i16, 16i16, (8i64, 0i64, 1i64)),
            (v6, 6, 40, 6, 8, 24, (128, 129, 58)),
        ] {
            let rec = self.slot_addr(b, self.slots.rec, 0);
            let len = self.load(b, IntTy::U16, rec, OFF_PAYLOAD_LEN);
            let len = self.zext32(b, len);
            let head = self.new_block(src);
            self.br_imm(b, Cond::Ult, len, i64::from(4 + hl + 4), untracked, head);
            let b0 = self.load(head, IntTy::U8, rec, W);
            let b0 = self.zext32(head, b0);
            let (mask, want) = if ver == 4 { (0xff, 0x45) } else { (0xf0, 0x60) };
            let top = self.b.f.push(
                head,
                Op::Binary(BinOp::And, b0, Operand::Imm(mask)),
                Type::U32,
            );
            let ok = self.new_block(src);
            self.br_imm(head, Cond::Ne, top, want, untracked, ok);
            let b = ok;
            let kf = self.slot_addr(b, fwd, 0);
            let kr = self.slot_addr(b, rev, 0);
            let st = |r: &mut Self, ptr: Value, ty: IntTy, off: i16, val: Operand| {
                r.b.f.push_void(b, Op::Store { ty, ptr, off, val });
            };
            for k in 0..4i16 {
                let (s, d): (Operand, Operand) = if ver == 4 && k > 0 {
                    (Operand::Imm(0), Operand::Imm(0))
                } else {
                    (
                        self.load(b, IntTy::U32, rec, W + src_at + 4 * k).into(),
                        self.load(b, IntTy::U32, rec, W + dst_at + 4 * k).into(),
                    )
                };
                st(self, kf, IntTy::U32, 4 * k, s);
                st(self, kf, IntTy::U32, 16 + 4 * k, d);
                st(self, kr, IntTy::U32, 4 * k, d);
                st(self, kr, IntTy::U32, 16 + 4 * k, s);
            }
            let proto = self.load(b, IntTy::U8, rec, W + proto_at);
            for k in [kf, kr] {
                st(self, k, IntTy::U8, 36, proto.into());
                st(self, k, IntTy::U8, 37, Operand::Imm(ver));
                st(self, k, IntTy::U16, 38, Operand::Imm(0));
            }
            let proto = self.zext32(b, proto);
            let l4 = W + hl;
            let tu = self.new_block(src);
            let not_tcp = self.new_block(src);
            let not_udp = self.new_block(src);
            let icmp = self.new_block(src);
            self.br_imm(b, Cond::Eq, proto, 6, tu, not_tcp);
            self.br_imm(not_tcp, Cond::Eq, proto, 17, tu, not_udp);
            self.br_imm(not_udp, Cond::Eq, proto, echo.2, icmp, untracked);
            let mut ports = Vec::new();
            for off in [l4, l4 + 2] {
                let v = self.load(tu, IntTy::U16, rec, off);
                ports.push(self.b.f.push(tu, Op::Bswap(v), Type::Int(IntTy::U16)));
            }
            self.jump(tu, keyed, ports);
            // A quoted echo: its identifier, placed as `ct_track` places it.
            let long = self.new_block(src);
            self.br_imm(icmp, Cond::Ult, len, i64::from(4 + hl + 8), untracked, long);
            let t = self.load(long, IntTy::U8, rec, l4);
            let t = self.zext32(long, t);
            let id = self.load(long, IntTy::U16, rec, l4 + 4);
            let zero = self.b.f.iconst(long, IntTy::U16, 0);
            let req = self.new_block(src);
            let not_req = self.new_block(src);
            let rep = self.new_block(src);
            self.br_imm(long, Cond::Eq, t, echo.0, req, not_req);
            self.br_imm(not_req, Cond::Eq, t, echo.1, rep, untracked);
            self.jump(req, keyed, vec![id, zero]);
            self.jump(rep, keyed, vec![zero, id]);
        }
        let b = keyed;
        let kf = self.slot_addr(b, fwd, 0);
        let kr = self.slot_addr(b, rev, 0);
        for (ptr, a, c) in [(kf, ksp, kdp), (kr, kdp, ksp)] {
            for (off, v) in [(32, a), (34, c)] {
                self.b.f.push_void(
                    b,
                    Op::Store {
                        ty: IntTy::U16,
                        ptr,
                        off,
                        val: v.into(),
                    },
                );
            }
        }
        let ktime = helpers::by_name("ktime_get_ns").map_or(5, |h| h.id);
        let now = self.b.f.push(b, Op::Call(ktime, vec![]), Type::U64);
        // The quoted packet went the entry's original way: the error comes back (reply);
        // it went the reply way: the error goes the original way.
        let mut at = b;
        for (slot, res) in [
            (fwd, CT_RELATED | CT_REPLY),
            (rev, CT_RELATED | CT_ORIGINAL),
        ] {
            let k = self.slot_addr(at, slot, 0);
            let p = self.lookup(at, map, k);
            let hit = self.new_block(src);
            let next = self.new_block(src);
            self.br_imm(at, Cond::Eq, p, 0, next, hit);
            let exp = self.load(hit, IntTy::U64, p, 0);
            let live = self.new_block(src);
            self.b.br(hit, Cond::Ult, exp, now, next, live);
            fin(self, live, res);
            at = next;
        }
        fin(self, at, CT_INVALID);
        Ok(())
    }
}

/// What connection tracking reads: IPv4 and IPv6 with TCP, UDP, ICMP and ICMPv6 parsed,
/// both addresses, the ports, the protocol, the version, the TCP flags and the ICMP type
/// stored (whatever the rules test); with `related`, the ICMP errors' quoted headers too.
pub(super) fn ct_needs(n: &mut crate::packet::needs::Needs, related: bool) {
    use crate::packet::needs::span;
    use crate::packet::record::{
        OFF_DPORT, OFF_DST, OFF_ICMP_TYPE, OFF_IP_PROTO, OFF_IP_VERSION, OFF_PAYLOAD_LEN,
        OFF_SPORT, OFF_SRC, OFF_TCP_FLAGS,
    };
    let ports = span(OFF_SPORT, 2) | span(OFF_DPORT, 2);
    let ip = span(OFF_IP_PROTO, 1) | span(OFF_IP_VERSION, 1);
    let addrs = span(OFF_SRC, 16) | span(OFF_DST, 16);
    let tcp = ports | span(OFF_TCP_FLAGS, 1);
    let icmp = span(OFF_ICMP_TYPE, 1);
    n.ip4 = true;
    n.ip6 = true;
    n.tcp4 = true;
    n.tcp6 = true;
    n.udp4 = true;
    n.udp6 = true;
    n.icmp = true;
    n.icmp6 = true;
    n.reads |= ip | addrs | tcp | icmp;
    n.store4 |= ip | span(OFF_SRC, 4) | span(OFF_DST, 4);
    n.store6 |= ip | addrs;
    n.store_tcp |= tcp;
    n.store_udp |= ports;
    n.store_icmp |= icmp;
    // Echo identifiers and the headers errors quote, copied behind the record.
    n.payload_icmp = true;
    n.payload = n.payload.max(if related { ICMP_BODY } else { 4 });
    n.reads |= span(OFF_PAYLOAD_LEN, 2);
}

/// One `Inst::Log`.
pub(super) struct Log {
    pub filter: u16,
    pub rule: Option<u32>,
    pub hook: u8,
    pub verdict: u8,
    pub ct: bool,
    pub interval_ns: u64,
    pub burst: u64,
}

impl R<'_> {
    /// A flow event: over the file's rate it is only counted as suppressed; else the
    /// 64-byte event (`hir::state::flow_event`) goes to the ring buffer.
    pub(super) fn log(&mut self, cur: Block, src: u32, l: &Log) -> Result<Block, String> {
        use crate::hir::state::{flow_event as ev, FLOW_LOST, FLOW_RATE_MAP, FLOW_RING};
        use crate::packet::record::{
            OFF_DPORT, OFF_DST, OFF_IP_PROTO, OFF_IP_VERSION, OFF_SPORT, OFF_SRC,
        };
        let interval = l.interval_ns;
        let (cur, over) = self.rate(
            cur,
            src,
            &Rate {
                map: FLOW_RATE_MAP,
                keys: &[],
                interval_ns: interval,
                tolerance_ns: l.burst.saturating_sub(1).saturating_mul(interval),
            },
        )?;
        let ring = self.map(FLOW_RING)?;
        let lost = self.map(FLOW_LOST)?;
        let done = self.new_block(src);
        let suppressed = self.new_block(src);
        let emit = self.new_block(src);
        self.br_imm(cur, Cond::Ne, over, 0, suppressed, emit);
        let zero = self.b.f.iconst(suppressed, IntTy::U32, 0);
        let after = self.stat(suppressed, lost, zero, src);
        self.jump(after, done, vec![]);
        let slot = match self.flow {
            Some(s) => s,
            None => {
                let s = self.b.f.add_slot(ev::SIZE, 8);
                self.flow = Some(s);
                s
            }
        };
        let b = emit;
        let p = self.slot_addr(b, slot, 0);
        let st = |r: &mut Self, ty: IntTy, off: i16, val: Operand| {
            r.b.f.push_void(
                b,
                Op::Store {
                    ty,
                    ptr: p,
                    off,
                    val,
                },
            );
        };
        let ktime = helpers::by_name("ktime_get_ns").map_or(5, |h| h.id);
        let now = self.b.f.push(b, Op::Call(ktime, vec![]), Type::U64);
        st(self, IntTy::U64, ev::TIME, now.into());
        let ifindex_off = if l.hook == 0 { 12 } else { 40 };
        let ifindex = self.load(b, IntTy::U32, self.ctx, ifindex_off);
        st(self, IntTy::U32, ev::IFINDEX, ifindex.into());
        let rule = match l.rule {
            Some(r) => Operand::Imm(i64::from(r)),
            None => {
                let best = self.slot_addr(b, self.slots.best, 0);
                self.load(b, IntTy::U32, best, 0).into()
            }
        };
        st(self, IntTy::U32, ev::RULE, rule);
        st(
            self,
            IntTy::U16,
            ev::FILTER,
            Operand::Imm(i64::from(l.filter)),
        );
        st(
            self,
            IntTy::U8,
            ev::VERDICT,
            Operand::Imm(i64::from(l.verdict)),
        );
        st(self, IntTy::U8, ev::HOOK, Operand::Imm(i64::from(l.hook)));
        let ct = if l.ct {
            self.ct_result(b).into()
        } else {
            Operand::Imm(0)
        };
        st(self, IntTy::U32, ev::CT, ct);
        let rec = self.slot_addr(b, self.slots.rec, 0);
        for (from, ty, to) in [
            (OFF_IP_VERSION, IntTy::U8, ev::VERSION),
            (OFF_IP_PROTO, IntTy::U8, ev::PROTO),
            (OFF_SPORT, IntTy::U16, ev::SPORT),
            (OFF_DPORT, IntTy::U16, ev::DPORT),
        ] {
            let v = self.load(b, ty, rec, from);
            st(self, ty, to, v.into());
        }
        st(self, IntTy::U16, ev::DPORT + 2, Operand::Imm(0));
        for k in 0..4i16 {
            for (from, to) in [(OFF_SRC, ev::SRC), (OFF_DST, ev::DST)] {
                let v = self.load(b, IntTy::U32, rec, from + 4 * k);
                st(self, IntTy::U32, to + 4 * k, v.into());
            }
        }
        let output = helpers::by_name("ringbuf_output").map_or(130, |h| h.id);
        let m = self
            .b
            .f
            .push(b, Op::MapRef(ring), Type::Ptr(PtrKind::Map(ring)));
        let data = self.slot_addr(b, slot, 0);
        let size = self.b.f.iconst(b, IntTy::U64, i64::from(ev::SIZE));
        let flags = self.b.f.iconst(b, IntTy::U64, 0);
        self.b
            .f
            .push(b, Op::Call(output, vec![m, data, size, flags]), Type::I64);
        self.jump(b, done, vec![]);
        Ok(done)
    }
}
