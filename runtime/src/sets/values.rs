//! Set values: parsed as the user writes them, shown back, and encoded into map keys as the
//! compiler encodes them (and decoded back).

use std::net::{Ipv4Addr, Ipv6Addr};

use pol_compiler::hir::types::Ty;
use pol_compiler::hir::values::parse_element;
use pol_compiler::hir::Value;
use pol_compiler::l7::dns::{self, Pattern};

use super::{SetError, SetMapKind, SetMaps};

/// One element of a set as `pol set` handles it: a value of an address, integer or MAC
/// set, or a name pattern of a `dnsname` set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Member {
    Value(Value),
    Name(Pattern),
}

/// Parses one value as written on the command line, in the set's element type, as the
/// compiler parses the lines of a `file("...")` set.
pub fn parse_value(text: &str, elem: Ty) -> Result<Member, String> {
    if !changeable(elem) {
        return Err(format!("is not changeable: sets of {elem} are not maps"));
    }
    if elem == Ty::DnsName {
        return dns::parse_pattern(text.trim())
            .map(Member::Name)
            .map_err(|why| format!("is not a DNS name pattern: {why}"));
    }
    parse_element(text.trim(), elem).map(Member::Value)
}

/// Whether sets of `elem` become maps `pol set` can change: addresses, integers, MACs,
/// DNS names.
pub fn changeable(elem: Ty) -> bool {
    elem.is_addr() || elem.is_int() || elem == Ty::Mac || elem == Ty::DnsName
}

/// A value of a set of `elem` as the user writes it: `show`, and MAC addresses as
/// `02:00:00:00:00:01`.
pub fn show_in(m: &Member, elem: Ty) -> String {
    let Member::Value(v) = m else {
        return show(m);
    };
    match (*v, elem) {
        (Value::Int { lo, hi }, Ty::Mac) if lo == hi => {
            let b = lo.to_be_bytes();
            b[2..]
                .iter()
                .map(|x| format!("{x:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        }
        _ => show(m),
    }
}

/// A value as the user writes it (`192.0.2.0/24`, `2001:db8::1`, `22`, `*.example.com`).
pub fn show(m: &Member) -> String {
    let v = match m {
        Member::Value(v) => v,
        Member::Name(p) => return p.to_string(),
    };
    match *v {
        Value::Int { lo, hi } if lo == hi => lo.to_string(),
        Value::Int { lo, hi } => format!("{lo}..{hi}"),
        Value::Net { v6, addr, prefix } => {
            let a = if v6 {
                Ipv6Addr::from(addr).to_string()
            } else {
                Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]).to_string()
            };
            if prefix == if v6 { 128 } else { 32 } {
                a
            } else {
                format!("{a}/{prefix}")
            }
        }
    }
}

fn family(v6: bool) -> &'static str {
    if v6 {
        "IPv6"
    } else {
        "IPv4"
    }
}

/// (index into [`SetMaps::maps`], key) pairs.
pub type Keys = Vec<(usize, Vec<u8>)>;

/// The (map index, key) pairs `value` goes to, encoded as `ir/lower/maps.rs` does.
pub fn encode(s: &SetMaps, member: &Member) -> Result<Keys, SetError> {
    let text = show_in(member, s.elem);
    let value = match member {
        Member::Value(v) => v,
        Member::Name(p) => {
            return Ok(s
                .maps
                .iter()
                .position(|m| m.kind == SetMapKind::Name)
                .map(|i| vec![(i, dns::pattern_key(p))])
                .unwrap_or_default())
        }
    };
    match *value {
        Value::Net { v6, addr, prefix } => {
            let Some((i, m)) = s
                .maps
                .iter()
                .enumerate()
                .find(|(_, m)| matches!(m.kind, SetMapKind::Addr { v6: w, .. } if w == v6))
            else {
                return Err(SetError::Family {
                    value: text,
                    set: s.set.clone(),
                    family: family(v6),
                    other: family(!v6),
                });
            };
            let len = if v6 { 16 } else { 4 };
            let full = if v6 { 128 } else { 32 };
            let SetMapKind::Addr { lpm, .. } = m.kind else {
                return Ok(vec![]);
            };
            let mut key = Vec::with_capacity(len + 4);
            if lpm {
                key.extend_from_slice(&u32::from(prefix).to_le_bytes());
            } else if prefix != full {
                return Err(SetError::PrefixInHash {
                    value: text,
                    set: s.set.clone(),
                    family: family(v6),
                });
            }
            key.extend_from_slice(&addr[..len]);
            Ok(vec![(i, key)])
        }
        Value::Int { lo, hi } => {
            if lo != hi {
                return Err(SetError::Range {
                    value: text,
                    set: s.set.clone(),
                });
            }
            let mut out = Vec::new();
            for (i, m) in s.maps.iter().enumerate() {
                let SetMapKind::Int { size } = m.kind else {
                    continue;
                };
                let max = if size >= 8 {
                    u64::MAX
                } else {
                    (1u64 << (u32::from(size) * 8)) - 1
                };
                if lo > max {
                    return Err(SetError::TooWide {
                        value: text,
                        set: s.set.clone(),
                        size,
                        max,
                    });
                }
                out.push((i, lo.to_le_bytes()[..size as usize].to_vec()));
            }
            Ok(out)
        }
    }
}

/// A map key back to a value (the inverse of [`encode`]); `None` for a key of the wrong size.
pub fn decode(kind: SetMapKind, key: &[u8]) -> Option<Member> {
    match kind {
        SetMapKind::Name => dns::key_pattern(key).map(Member::Name),
        SetMapKind::Addr { v6, lpm } => {
            let len = if v6 { 16 } else { 4 };
            let (prefix, bytes) = if lpm {
                let p = u32::from_le_bytes(key.get(..4)?.try_into().ok()?);
                (u8::try_from(p).ok()?, key.get(4..)?)
            } else {
                (if v6 { 128 } else { 32 }, key)
            };
            if bytes.len() != len {
                return None;
            }
            let mut addr = [0u8; 16];
            addr[..len].copy_from_slice(bytes);
            Some(Member::Value(Value::Net { v6, addr, prefix }))
        }
        SetMapKind::Int { size } => {
            if key.len() != size as usize {
                return None;
            }
            let mut b = [0u8; 8];
            b[..key.len()].copy_from_slice(key);
            let v = u64::from_le_bytes(b);
            Some(Member::Value(Value::Int { lo: v, hi: v }))
        }
    }
}

/// Sort order for listing: IPv4 before IPv6, then by address and prefix; integers by value;
/// names by their text.
pub(super) fn sort_key(m: &Member) -> (u8, [u8; 16], u64, String) {
    match m {
        Member::Value(Value::Int { lo, .. }) => (0, [0; 16], *lo, String::new()),
        Member::Value(Value::Net { v6, addr, prefix }) => {
            (1 + u8::from(*v6), *addr, u64::from(*prefix), String::new())
        }
        Member::Name(p) => (3, [0; 16], 0, p.to_string()),
    }
}
