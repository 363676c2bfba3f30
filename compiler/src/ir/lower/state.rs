//! Lowering of stateful tests (issue 15): a rate limit is a layer check per key field,
//! then one `Inst::Rate` whose result picks the branch. Its map is made on first use.

use super::maps::count_key_off;
use super::{Lower, MapDef};
use crate::hir::fields::{Field, Slot};
use crate::hir::Ty;
use crate::ir::{BlockId, BrOp, Inst, Term};
use crate::maps::{BtfTy, MapKind, MapSpec};

/// The record bytes of a rate key field: as a keyed counter's (`ip` with its prefix
/// length, so IPv4 and IPv6 keys differ).
fn key_piece(f: &Field) -> (i16, u8) {
    let len = match (f.slot, f.ty) {
        (Slot::Addr { .. }, Ty::Ip) => 20,
        (Slot::Addr { .. }, Ty::Ip6) => 16,
        (Slot::Addr { .. }, _) => 4,
        (Slot::Int { size, .. }, _) => size,
        _ => 4,
    };
    (count_key_off(f), len)
}

impl Lower<'_> {
    /// `rate(..) > N` (`over`) or `<= N` into `at`.
    pub(super) fn rate(&mut self, at: BlockId, rate: usize, over: bool, t: BlockId, f: BlockId) {
        let Some(def) = self.hir.rates.get(rate) else {
            return self.set_term(at, Term::Jump(f));
        };
        let mut cur = at;
        for k in &def.keys {
            cur = self.layer(cur, k, k.layer, f);
        }
        let keys: Vec<(i16, u8)> = def.keys.iter().map(|k| key_piece(k)).collect();
        if !self.maps.iter().any(|m| m.spec.name == def.map) {
            let len: u32 = keys.iter().map(|&(_, n)| u32::from(n)).sum();
            let spec = if keys.is_empty() {
                MapSpec {
                    name: def.map.clone(),
                    kind: MapKind::Array,
                    key: BtfTy::U32,
                    value: BtfTy::U64,
                    max_entries: 1,
                    flags: 0,
                }
            } else {
                MapSpec {
                    name: def.map.clone(),
                    kind: MapKind::LruHash,
                    key: BtfTy::Bytes(len),
                    value: BtfTy::U64,
                    max_entries: def.size,
                    flags: 0,
                }
            };
            self.maps.push(MapDef {
                spec,
                entries: vec![],
            });
        }
        let dst = self.vreg();
        self.push(
            cur,
            Inst::Rate {
                dst,
                map: def.map.clone(),
                keys,
                interval_ns: def.interval_ns,
                tolerance_ns: def.tolerance_ns(),
            },
        );
        let (yes, no) = if over { (t, f) } else { (f, t) };
        self.set_term(
            cur,
            Term::Branch {
                op: BrOp::Ne,
                wide: false,
                lhs: dst,
                imm: 0,
                t: yes,
                f: no,
            },
        );
    }
}
