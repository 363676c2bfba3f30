//! Lowering of conditions: layer bits, field tests, address prefixes, and set
//! membership, inline or through set maps.

use super::{Lower, INLINE_SET_MAX};
use crate::hir::fields::{Field, Slot};
use crate::hir::{CmpOp, Cond, SetDef, Test, Value};
use crate::ir::{BlockId, BrOp, Inst, Term, VReg};
use crate::packet::record::{mac_pieces, MAC_SIZE, OFF_PAYLOAD, OFF_PAYLOAD_LEN};

impl Lower<'_> {
    /// Lowers `cond` into block `at`: control reaches `t` when it holds, else `f`.
    pub(super) fn cond(&mut self, at: BlockId, cond: &Cond, t: BlockId, f: BlockId) {
        match cond {
            Cond::Const(true) => self.set_term(at, Term::Jump(t)),
            Cond::Const(false) => self.set_term(at, Term::Jump(f)),
            Cond::Not(c) => self.cond(at, c, f, t),
            Cond::And(cs) | Cond::Or(cs) if cs.is_empty() => {
                let v = matches!(cond, Cond::And(_));
                self.cond(at, &Cond::Const(v), t, f)
            }
            // Short circuit: each part but the last goes on to the next part when it
            // decides nothing (true for `and`, false for `or`).
            Cond::And(cs) | Cond::Or(cs) => {
                let and = matches!(cond, Cond::And(_));
                let mut cur = at;
                for (i, c) in cs.iter().enumerate() {
                    if i + 1 == cs.len() {
                        self.cond(cur, c, t, f);
                    } else {
                        let next = self.new_block();
                        let (ct, cf) = if and { (next, f) } else { (t, next) };
                        self.cond(cur, c, ct, cf);
                        cur = next;
                    }
                }
            }
            Cond::Test(test) => self.test(at, test, t, f),
        }
    }

    /// Tests the field's layer bits in `at`; returns the block where the field may be read.
    pub(super) fn layer(&mut self, at: BlockId, field: &Field, mask: u32, f: BlockId) -> BlockId {
        if field.always_present() {
            return at;
        }
        let then = self.new_block();
        self.set_term(at, Term::Flags { mask, t: then, f });
        then
    }

    /// `field [& mask] OP value` over an integer slot.
    #[allow(clippy::too_many_arguments)]
    fn int(
        &mut self,
        at: BlockId,
        field: &Field,
        mask: Option<u32>,
        op: CmpOp,
        value: u64,
        t: BlockId,
        f: BlockId,
    ) {
        let b = self.layer(at, field, field.layer, f);
        let (Slot::Int { off, size } | Slot::Eq { off, size, .. }) = field.slot else {
            return self.set_term(b, Term::Jump(f));
        };
        if size == MAC_SIZE {
            // Checking admits only `==` and `!=` on MAC addresses.
            return match op {
                CmpOp::Ne => self.mac_eq(b, off, value, f, t),
                _ => self.mac_eq(b, off, value, t, f),
            };
        }
        let mut v = self.load(b, off, size);
        if let Some(imm) = mask {
            let masked = self.vreg();
            self.push(
                b,
                Inst::AndImm {
                    dst: masked,
                    src: v,
                    imm,
                },
            );
            v = masked;
        }
        let op = match op {
            CmpOp::Eq => BrOp::Eq,
            CmpOp::Ne => BrOp::Ne,
            CmpOp::Lt => BrOp::Lt,
            CmpOp::Le => BrOp::Le,
            CmpOp::Gt => BrOp::Gt,
            CmpOp::Ge => BrOp::Ge,
        };
        self.set_term(
            b,
            Term::Branch {
                op,
                wide: false,
                lhs: v,
                imm: value as u32,
                t,
                f,
            },
        );
    }

    /// One link of a chain of equal pieces: `v == want` goes on to a new block (to `t`
    /// after the `last` piece), anything else to `f`. Returns the block of the next piece.
    fn eq_link(
        &mut self,
        cur: BlockId,
        v: VReg,
        want: u32,
        last: bool,
        t: BlockId,
        f: BlockId,
    ) -> BlockId {
        let next = if last { t } else { self.new_block() };
        self.set_term(
            cur,
            Term::Branch {
                op: BrOp::Eq,
                wide: false,
                lhs: v,
                imm: want,
                t: next,
                f,
            },
        );
        next
    }

    /// The 6-byte MAC slot at `off` equals `value`: one compare per aligned piece.
    fn mac_eq(&mut self, at: BlockId, off: i16, value: u64, t: BlockId, f: BlockId) {
        let le = value.to_le_bytes();
        let pieces = mac_pieces(off);
        let mut cur = at;
        for (n, &(o, size)) in pieces.iter().enumerate() {
            let mut want = [0u8; 4];
            let from = o as usize;
            want[..size as usize].copy_from_slice(&le[from..from + size as usize]);
            let v = self.load(cur, off + o, size);
            cur = self.eq_link(
                cur,
                v,
                u32::from_le_bytes(want),
                n + 1 == pieces.len(),
                t,
                f,
            );
        }
    }

    /// `payload[start..] == bytes` (`!=` when `!eq`): false for both when the payload of
    /// `layer` is absent or shorter; else the bytes past the record compared in aligned
    /// pieces (the verifier wants stack loads aligned to their size).
    #[allow(clippy::too_many_arguments)]
    fn payload(
        &mut self,
        at: BlockId,
        layer: u32,
        start: u8,
        bytes: &[u8],
        eq: bool,
        t: BlockId,
        f: BlockId,
    ) {
        let b = self.new_block();
        self.set_term(
            at,
            Term::Flags {
                mask: layer,
                t: b,
                f,
            },
        );
        let have = self.load(b, OFF_PAYLOAD_LEN, 2);
        let mut cur = self.new_block();
        self.set_term(
            b,
            Term::Branch {
                op: BrOp::Ge,
                wide: false,
                lhs: have,
                imm: u32::from(start) + bytes.len() as u32,
                t: cur,
                f,
            },
        );
        let (same, differ) = if eq { (t, f) } else { (f, t) };
        let mut k = 0;
        while k < bytes.len() {
            let off = OFF_PAYLOAD + i16::from(start) + k as i16;
            let size = [4usize, 2, 1]
                .into_iter()
                .find(|&n| off % n as i16 == 0 && k + n <= bytes.len())
                .unwrap_or(1);
            let mut want = [0u8; 4];
            want[..size].copy_from_slice(&bytes[k..k + size]);
            let v = self.load(cur, off, size as u8);
            k += size;
            let last = k == bytes.len();
            cur = self.eq_link(cur, v, u32::from_le_bytes(want), last, same, differ);
        }
    }

    fn test(&mut self, at: BlockId, test: &Test, t: BlockId, f: BlockId) {
        match *test {
            Test::Layer(mask) => self.set_term(at, Term::Flags { mask, t, f }),
            Test::Int { field, op, value } => self.int(at, field, None, op, value, t, f),
            Test::Masked {
                field,
                mask,
                op,
                value,
            } => self.int(at, field, Some(mask), op, value, t, f),
            Test::Bits { field, mask } => {
                let b = self.layer(at, field, field.layer, f);
                let Slot::Bits { off, size, .. } = field.slot else {
                    return self.set_term(b, Term::Jump(f));
                };
                let v = self.load(b, off, size);
                self.set_term(
                    b,
                    Term::Branch {
                        op: BrOp::Set,
                        wide: false,
                        lhs: v,
                        imm: mask,
                        t,
                        f,
                    },
                );
            }
            Test::Net { field, net } => self.net(at, field, net, t, f),
            Test::Payload {
                layer,
                start,
                len,
                bytes,
                eq,
            } => self.payload(at, layer, start, &bytes[..len as usize], eq, t, f),
            Test::Rate { rate, over } => self.rate(at, rate, over, t, f),
            Test::Ct { mask } => self.ct(at, mask, t, f),
            Test::L7(crate::l7::L7Test::Http(ref h)) => self.http(at, h, t, f),
            Test::L7(ref l7) => self.l7(at, l7, t, f),
            Test::InSet { field, set } => {
                let def = &self.hir.sets[set];
                if def.values.len() <= INLINE_SET_MAX {
                    let c = inline_set(field, def);
                    return self.cond(at, &c, t, f);
                }
                self.set_lookup(at, field, set, t, f);
            }
        }
    }

    /// An HTTP test: the pass's state says a request line was read, then its method or
    /// version byte, or the bit of a path test, in the record's L7 window.
    fn http(&mut self, at: BlockId, h: &crate::l7::http::HttpTest, t: BlockId, f: BlockId) {
        use crate::l7::http::{HttpTest, STATE_REQUEST};
        use crate::packet::record::{
            OFF_HTTP_METHOD, OFF_HTTP_STATE, OFF_HTTP_VERSION, OFF_L7_BITS,
        };
        let state = self.load(at, OFF_HTTP_STATE, 1);
        let cur = self.new_block();
        let then = if *h == HttpTest::Request { t } else { cur };
        self.set_term(
            at,
            Term::Branch {
                op: BrOp::Eq,
                wide: false,
                lhs: state,
                imm: u32::from(STATE_REQUEST),
                t: then,
                f,
            },
        );
        let (off, size, op, imm) = match h {
            HttpTest::Request => return self.set_term(cur, Term::Jump(f)),
            HttpTest::Method(m) => (OFF_HTTP_METHOD, 1, BrOp::Eq, u32::from(*m)),
            HttpTest::Version(v) => (OFF_HTTP_VERSION, 1, BrOp::Eq, u32::from(*v)),
            HttpTest::Path(p) => match self.l7.bit("http.path", p) {
                Some(bit) => (OFF_L7_BITS, 4, BrOp::Set, 1u32 << bit),
                None => return self.set_term(cur, Term::Jump(f)),
            },
            HttpTest::Host(p) | HttpTest::Header(p) => {
                let field = h.string().map_or("", |(field, _)| field);
                match self.l7.bit(field, p) {
                    Some(bit) => (OFF_L7_BITS, 4, BrOp::Set, 1u32 << bit),
                    None => return self.set_term(cur, Term::Jump(f)),
                }
            }
        };
        let v = self.load(cur, off, size);
        self.set_term(
            cur,
            Term::Branch {
                op,
                wide: false,
                lhs: v,
                imm,
                t,
                f,
            },
        );
    }

    pub(super) fn load(&mut self, b: BlockId, off: i16, size: u8) -> VReg {
        let v = self.vreg();
        self.push(b, Inst::LoadRecord { dst: v, off, size });
        v
    }

    /// `field in net`: compares the address 32 bits at a time, masking the last chunk.
    fn net(&mut self, at: BlockId, field: &Field, net: Value, t: BlockId, f: BlockId) {
        let Value::Net { v6, addr, prefix } = net else {
            return self.set_term(at, Term::Jump(f));
        };
        let Slot::Addr { off } = field.slot else {
            return self.set_term(at, Term::Jump(f));
        };
        let Some(fam) = field.family_layer(v6) else {
            return self.set_term(at, Term::Jump(f));
        };
        let mut cur = if field.layer == fam {
            self.layer(at, field, fam, f)
        } else {
            // `ip.*` fields: the family of the prefix decides.
            let then = self.new_block();
            self.set_term(
                at,
                Term::Flags {
                    mask: fam,
                    t: then,
                    f,
                },
            );
            then
        };
        let chunks: Vec<(usize, u32)> = (0..if v6 { 4 } else { 1 })
            .map(|i| (i, (prefix as usize).saturating_sub(i * 32).min(32) as u32))
            .filter(|&(_, bits)| bits > 0)
            .collect();
        if chunks.is_empty() {
            return self.set_term(cur, Term::Jump(t));
        }
        for (n, &(i, bits)) in chunks.iter().enumerate() {
            let bytes: [u8; 4] = [
                addr[i * 4],
                addr[i * 4 + 1],
                addr[i * 4 + 2],
                addr[i * 4 + 3],
            ];
            let mask_be: u32 = if bits == 32 {
                u32::MAX
            } else {
                !(u32::MAX >> bits)
            };
            // The record holds network order; a 32-bit load reads it little-endian.
            let mask = u32::from_le_bytes(mask_be.to_be_bytes());
            let want = u32::from_le_bytes(bytes);
            let mut v = self.load(cur, off + (i as i16) * 4, 4);
            if bits < 32 {
                let m = self.vreg();
                self.push(
                    cur,
                    Inst::AndImm {
                        dst: m,
                        src: v,
                        imm: mask,
                    },
                );
                v = m;
            }
            cur = self.eq_link(cur, v, want, n + 1 == chunks.len(), t, f);
        }
    }

    /// `field in SET` through maps: one lookup per address family the set holds.
    fn set_lookup(
        &mut self,
        at: BlockId,
        field: &'static Field,
        set: usize,
        t: BlockId,
        f: BlockId,
    ) {
        let def = &self.hir.sets[set];
        match field.slot {
            Slot::Addr { off } => {
                let mut cur = at;
                let fams: Vec<bool> = [false, true]
                    .into_iter()
                    .filter(|&v6| field.family_layer(v6).is_some())
                    .filter(|&v6| {
                        def.values
                            .iter()
                            .any(|v| matches!(v, Value::Net { v6: w, .. } if *w == v6))
                    })
                    .collect();
                if fams.is_empty() {
                    return self.set_term(at, Term::Jump(f));
                }
                for (n, &v6) in fams.iter().enumerate() {
                    let miss = if n + 1 == fams.len() {
                        f
                    } else {
                        self.new_block()
                    };
                    let fam = field.family_layer(v6).unwrap_or(0);
                    let b = self.new_block();
                    self.set_term(
                        cur,
                        Term::Flags {
                            mask: fam,
                            t: b,
                            f: miss,
                        },
                    );
                    let (map, exact) = self.addr_set_map(def, v6);
                    let key_off = if exact { off } else { off - 4 };
                    let p = self.vreg();
                    self.push(
                        b,
                        Inst::Lookup {
                            dst: p,
                            map,
                            key_off,
                        },
                    );
                    self.set_term(
                        b,
                        Term::Branch {
                            op: BrOp::Ne,
                            wide: true,
                            lhs: p,
                            imm: 0,
                            t,
                            f: miss,
                        },
                    );
                    cur = miss;
                }
            }
            Slot::Int { off, size } => {
                // Ranges stay inline; single values go to a hash map.
                let ranges: Vec<Cond> = def
                    .values
                    .iter()
                    .filter(|v| matches!(v, Value::Int { lo, hi } if lo != hi))
                    .map(|v| value_test(field, v))
                    .collect();
                let b = self.layer(at, field, field.layer, f);
                let mut cur = b;
                if !ranges.is_empty() {
                    let next = self.new_block();
                    self.cond(cur, &Cond::Or(ranges), t, next);
                    cur = next;
                }
                let map = self.int_set_map(def, size);
                let p = self.vreg();
                self.push(
                    cur,
                    Inst::Lookup {
                        dst: p,
                        map,
                        key_off: off,
                    },
                );
                self.set_term(
                    cur,
                    Term::Branch {
                        op: BrOp::Ne,
                        wide: true,
                        lhs: p,
                        imm: 0,
                        t,
                        f,
                    },
                );
            }
            _ => self.set_term(at, Term::Jump(f)),
        }
    }
}

fn value_test(field: &'static Field, v: &Value) -> Cond {
    match *v {
        Value::Int { lo, hi } if lo == hi => Cond::Test(Test::Int {
            field,
            op: CmpOp::Eq,
            value: lo,
        }),
        Value::Int { lo, hi } => Cond::And(vec![
            Cond::Test(Test::Int {
                field,
                op: CmpOp::Ge,
                value: lo,
            }),
            Cond::Test(Test::Int {
                field,
                op: CmpOp::Le,
                value: hi,
            }),
        ]),
        net @ Value::Net { v6, .. } => {
            if field.family_layer(v6).is_none() {
                Cond::Const(false)
            } else {
                Cond::Test(Test::Net { field, net })
            }
        }
    }
}

fn inline_set(field: &'static Field, set: &SetDef) -> Cond {
    Cond::Or(set.values.iter().map(|v| value_test(field, v)).collect())
}
