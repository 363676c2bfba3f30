//! Lowering of L7 tests (issue 13): each reads what the filter's L7 stage left in its
//! scratch map (`l7::dns`), or looks the question name's key up in a name set's trie.

use super::maps::MapDef;
use super::Lower;
use crate::hir::CmpOp;
use crate::ir::{BlockId, BrOp, Inst, Term};
use crate::l7::{self, dns, tls};
use crate::maps::{BtfTy, MapKind, MapSpec};

/// The LPM-trie key of a name set, as BTF (the kernel wants a struct).
pub fn name_key_ty() -> BtfTy {
    BtfTy::Struct {
        name: "dns_name_key".into(),
        fields: vec![
            ("prefixlen".into(), BtfTy::U32),
            ("name".into(), BtfTy::Bytes(dns::KEY_DATA as u32)),
        ],
    }
}

/// The name set's map: every pattern's key, with room for `pol set` to add more.
pub fn name_map(set: &dns::NameSet) -> MapDef {
    let entries: Vec<(Vec<u8>, Vec<u8>)> = set
        .patterns
        .iter()
        .map(|p| (dns::pattern_key(p), vec![1]))
        .collect();
    let n = entries.len();
    MapDef {
        spec: MapSpec {
            name: set.map.clone(),
            kind: MapKind::LpmTrie,
            key: name_key_ty(),
            value: BtfTy::U8,
            max_entries: (n + (n / 4).max(64)).min(u32::MAX as usize) as u32,
            // BPF_F_NO_PREALLOC: the kernel refuses an LPM trie without it.
            flags: 1,
        },
        entries,
    }
}

/// The file's ALPN map: each protocol some `tls.alpn` test names, with the tests' bits.
pub fn alpn_map(sets: &[tls::AlpnSet]) -> MapDef {
    let entries = tls::alpn_entries(sets);
    MapDef {
        spec: MapSpec {
            name: tls::ALPN_MAP.into(),
            kind: MapKind::Hash,
            key: BtfTy::Bytes(tls::ALPN_KEY as u32),
            value: BtfTy::U32,
            max_entries: entries.len().max(1) as u32,
            flags: 0,
        },
        entries,
    }
}

fn br_op(op: CmpOp) -> BrOp {
    match op {
        CmpOp::Eq => BrOp::Eq,
        CmpOp::Ne => BrOp::Ne,
        CmpOp::Lt => BrOp::Lt,
        CmpOp::Le => BrOp::Le,
        CmpOp::Gt => BrOp::Gt,
        CmpOp::Ge => BrOp::Ge,
    }
}

/// The scratch map of filter `filter`'s DNS/TLS stage, added to `maps` on first use.
pub(super) fn scratch_map(maps: &mut Vec<MapDef>, filter: &str) -> String {
    let name = dns::scratch_map(filter);
    if !maps.iter().any(|m| m.spec.name == name) {
        maps.push(MapDef {
            spec: MapSpec {
                name: name.clone(),
                kind: MapKind::PercpuArray,
                key: BtfTy::U32,
                value: BtfTy::Bytes(dns::SCRATCH_SIZE),
                max_entries: 1,
                flags: 0,
            },
            entries: vec![],
        });
    }
    name
}

impl Lower<'_> {
    /// The filter's scratch map (added on first use).
    fn scratch(&mut self) -> String {
        let filter = self
            .hir
            .filters
            .get(usize::from(self.filter_index))
            .map_or("", |f| f.name.as_str());
        scratch_map(self.maps, filter)
    }

    pub(super) fn l7(&mut self, at: BlockId, test: &l7::L7Test, t: BlockId, f: BlockId) {
        let scratch = self.scratch();
        let dst = self.vreg();
        let (op, imm) = match *test {
            // `Lower::cond` sends HTTP tests to `Lower::http` (the record, not the scratch).
            l7::L7Test::Http(_) => return self.set_term(at, Term::Jump(f)),
            l7::L7Test::Dns => {
                self.push(
                    at,
                    Inst::L7Load {
                        dst,
                        scratch,
                        off: dns::S_STATUS,
                        size: 1,
                    },
                );
                (BrOp::Eq, dns::ST_OK as u32)
            }
            l7::L7Test::DnsInt { field, op, value } => {
                let (off, size) = field.slot();
                self.push(
                    at,
                    Inst::L7Load {
                        dst,
                        scratch,
                        off,
                        size,
                    },
                );
                (br_op(op), value as u32)
            }
            l7::L7Test::Tls => {
                self.push(
                    at,
                    Inst::L7Load {
                        dst,
                        scratch,
                        off: tls::S_TLS_STATUS,
                        size: 1,
                    },
                );
                (BrOp::Eq, dns::ST_OK as u32)
            }
            l7::L7Test::TlsVersion { op, value } => {
                self.push(
                    at,
                    Inst::L7Load {
                        dst,
                        scratch,
                        off: tls::X_VERSION,
                        size: 2,
                    },
                );
                (br_op(op), value as u32)
            }
            l7::L7Test::TlsAlpn { set } => {
                if !self.maps.iter().any(|m| m.spec.name == tls::ALPN_MAP) {
                    self.maps.push(alpn_map(&self.hir.l7.alpn));
                }
                self.push(
                    at,
                    Inst::L7Load {
                        dst,
                        scratch,
                        off: tls::X_ALPN_BITS,
                        size: 4,
                    },
                );
                (BrOp::Set, 1u32 << (set % tls::ALPN_TESTS_MAX))
            }
            l7::L7Test::DnsName { set } | l7::L7Test::TlsName { set } => {
                let Some(def) = self.hir.l7.names.get(set) else {
                    return self.set_term(at, Term::Jump(f));
                };
                let map = def.map.clone();
                if !self.maps.iter().any(|m| m.spec.name == map) {
                    self.maps.push(name_map(def));
                }
                // The key is there when this byte is 1 (`ST_OK`).
                let status = match test {
                    l7::L7Test::TlsName { .. } => tls::X_HAS_NAME,
                    _ => dns::S_STATUS,
                };
                self.push(
                    at,
                    Inst::L7Lookup {
                        dst,
                        scratch,
                        map,
                        status,
                    },
                );
                (BrOp::Ne, 0)
            }
        };
        self.set_term(
            at,
            Term::Branch {
                op,
                wide: false,
                lhs: dst,
                imm,
                t,
                f,
            },
        );
    }
}
