//! Lowering of stateful tests (issue 15): a rate limit is a layer check per key field,
//! then one `Inst::Rate` whose result picks the branch (its map made on first use); a
//! `ct.*` test reads the tracking result that `track` adds before every filter's rules.

use super::maps::count_key_off;
use super::{Lower, MapDef};
use crate::hir::fields::{Field, Slot};
use crate::hir::state::{CT_MAP, FLOW_LOST, FLOW_RATE_MAP, FLOW_RING, FLOW_RING_BYTES};
use crate::hir::{Action, Hook};
use crate::hir::{Hir, Ty};
use crate::ir::{Block, BlockId, BrOp, Function, Inst, Term, SRC_PARSER};
use crate::maps::{BtfTy, MapKind, MapSpec};
use crate::syntax::ast::Verdict;

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

impl Lower<'_> {
    /// `ct.state in {..}` / `ct.direction == ..`: any bit of `mask` in the tracking result.
    pub(super) fn ct(&mut self, at: BlockId, mask: u32, t: BlockId, f: BlockId) {
        let v = self.vreg();
        self.push(at, Inst::Ct { dst: v });
        let m = self.vreg();
        self.push(
            at,
            Inst::AndImm {
                dst: m,
                src: v,
                imm: mask,
            },
        );
        self.set_term(
            at,
            Term::Branch {
                op: BrOp::Ne,
                wide: false,
                lhs: m,
                imm: 0,
                t,
                f,
            },
        );
    }
}

/// In a file with connection tracking, every filter tracks each packet before its rules:
/// a new entry block does it, then goes where the rules begin. The table is made once.
pub(super) fn track(hir: &Hir, maps: &mut Vec<MapDef>, mut f: Function) -> Function {
    let Some(mut config) = hir.ct else {
        return f;
    };
    config.related = crate::hir::state::tells_related(hir);
    if !maps.iter().any(|m| m.spec.name == CT_MAP) {
        maps.push(MapDef {
            spec: MapSpec {
                name: CT_MAP.into(),
                kind: MapKind::LruHash,
                key: ct_key_ty(),
                value: BtfTy::Struct {
                    name: "pol_ct_entry".into(),
                    fields: vec![
                        ("expires_ns".into(), BtfTy::U64),
                        ("state".into(), BtfTy::U32),
                        // 1 from a FIN or RST on (until a new SYN): expires by tcp_closing.
                        ("closing".into(), BtfTy::U32),
                    ],
                },
                max_entries: config.size,
                flags: 0,
            },
            entries: vec![],
        });
    }
    let entry = BlockId(f.blocks.len() as u32);
    f.blocks.push(Block {
        insts: vec![Inst::CtTrack {
            map: CT_MAP.into(),
            config,
        }],
        term: Term::Jump(f.entry),
        rule: Some(SRC_PARSER),
    });
    f.entry = entry;
    f
}

/// The flow key: both addresses (IPv4 in the first 4 bytes), both ports (0 for ICMP), the
/// L4 protocol and the IP version; 40 bytes.
fn ct_key_ty() -> BtfTy {
    BtfTy::Struct {
        name: "pol_ct_key".into(),
        fields: vec![
            ("src".into(), BtfTy::Bytes(16)),
            ("dst".into(), BtfTy::Bytes(16)),
            ("sport".into(), BtfTy::U16),
            ("dport".into(), BtfTy::U16),
            ("proto".into(), BtfTy::U8),
            ("version".into(), BtfTy::U8),
            ("pad".into(), BtfTy::U16),
        ],
    }
}

impl Lower<'_> {
    /// A flow event for action `a` of rule `stat` (`None`: the best rule found), with the
    /// file's flow maps made on first use.
    pub(super) fn log(&mut self, b: BlockId, hook: &Hook, a: &Action, stat: Option<u32>) {
        if !self.maps.iter().any(|m| m.spec.name == FLOW_RING) {
            let spec = |name: &str, kind, key, value, max_entries| MapDef {
                spec: MapSpec {
                    name: name.into(),
                    kind,
                    key,
                    value,
                    max_entries,
                    flags: 0,
                },
                entries: vec![],
            };
            self.maps.push(spec(
                FLOW_RING,
                MapKind::RingBuf,
                BtfTy::U32,
                BtfTy::U32,
                FLOW_RING_BYTES,
            ));
            self.maps.push(spec(
                FLOW_RATE_MAP,
                MapKind::Array,
                BtfTy::U32,
                BtfTy::U64,
                1,
            ));
            self.maps.push(spec(
                FLOW_LOST,
                MapKind::PercpuArray,
                BtfTy::U32,
                BtfTy::U64,
                1,
            ));
        }
        let hook = match hook {
            Hook::Xdp { .. } => 0,
            Hook::Tc { ingress: true, .. } => 1,
            Hook::Tc { ingress: false, .. } => 2,
        };
        self.push(
            b,
            Inst::Log {
                filter: self.filter_index,
                rule: stat,
                hook,
                verdict: match a.verdict {
                    Verdict::Pass => 0,
                    Verdict::Drop => 1,
                },
                ct: self.hir.ct.is_some(),
                interval_ns: self.hir.flow_rate.interval_ns(),
                burst: self.hir.flow_rate.burst,
            },
        );
    }
}
