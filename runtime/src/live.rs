//! Reading a running object's counters for display: per-rule decision counts from each
//! program's statistics map, and every `count` map, keys decoded by their field's type.
//!
//! [`Snapshot::read`] takes one reading; [`Snapshot::to_json`] and [`Snapshot::table`] turn it
//! (with the previous reading, for rates) into what `pol run` prints.

use std::fmt::Write as _;

use pol_compiler::driver::Compiled;
use pol_compiler::hir::types::Ty;
use pol_compiler::obj::BtfTy;
use serde_json::{json, Value};

use crate::direct::Object;
use crate::load::LoadError;

/// How many keys of a keyed counter the table shows (JSON has them all).
pub const TABLE_TOP: usize = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleCount {
    pub index: u32,
    pub line: u32,
    pub text: String,
    pub verdict: String,
    pub packets: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramCounts {
    pub name: String,
    pub rules: Vec<RuleCount>,
    pub default: u64,
    pub malformed: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterCounts {
    pub name: String,
    /// The field a keyed counter is keyed by (`ip.src`), `None` for a plain one.
    pub key_field: Option<String>,
    /// (decoded key, packets), most packets first; one entry with an empty key when plain.
    pub entries: Vec<(String, u64)>,
}

impl CounterCounts {
    pub fn total(&self) -> u64 {
        self.entries.iter().map(|(_, n)| n).sum()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub programs: Vec<ProgramCounts>,
    pub counters: Vec<CounterCounts>,
}

fn u64_le(b: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    let n = b.len().min(8);
    buf[..n].copy_from_slice(&b[..n]);
    u64::from_le_bytes(buf)
}

impl Snapshot {
    /// Reads every statistics and count map of `c` from `loaded` (loaded either way).
    pub fn read(c: &Compiled, loaded: &dyn Object) -> Result<Snapshot, LoadError> {
        let mut programs = Vec::new();
        for p in &c.spec.programs {
            let Some(stats) = &p.stats else { continue };
            let slots: Vec<u64> = loaded
                .map_entries(&stats.map)?
                .iter()
                .map(|(_, v)| u64_le(v))
                .collect();
            let at = |i: u32| slots.get(i as usize).copied().unwrap_or(0);
            programs.push(ProgramCounts {
                name: p.name.clone(),
                rules: p
                    .rules
                    .iter()
                    .map(|r| RuleCount {
                        index: r.index,
                        line: r.line,
                        text: r.text.clone(),
                        verdict: r.verdict.clone(),
                        packets: at(r.index),
                    })
                    .collect(),
                default: at(stats.default_index),
                malformed: at(stats.malformed_index),
            });
        }
        let mut counters = Vec::new();
        for counter in &c.hir.counters {
            let key_ty = c
                .maps
                .iter()
                .find(|m| m.spec.name == counter.name)
                .map(|m| m.spec.key.clone());
            let field = counter.key;
            let mut entries: Vec<(String, u64)> = loaded
                .map_entries(&counter.name)?
                .iter()
                .map(|(k, v)| {
                    let key = match (field, &key_ty, counter.l7) {
                        (_, _, Some(l7)) => l7.decode(k),
                        (Some(f), Some(ty), None) => decode_key(k, f.ty, ty),
                        _ => String::new(),
                    };
                    (key, u64_le(v))
                })
                .collect();
            entries.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            counters.push(CounterCounts {
                name: counter.name.clone(),
                key_field: field
                    .map(|f| f.name.to_string())
                    .or(counter.l7.map(|k| k.name().to_string())),
                entries,
            });
        }
        Ok(Snapshot { programs, counters })
    }

    /// The reading as JSON: `{"programs":[{name, rules:[{index,line,text,verdict,packets}],
    /// default, malformed}], "counts":[{name, key?, total, entries?:[{key, packets}]}]}`.
    pub fn to_json(&self) -> Value {
        let programs: Vec<Value> = self
            .programs
            .iter()
            .map(|p| {
                json!({
                    "name": p.name,
                    "rules": p.rules.iter().map(|r| json!({
                        "index": r.index, "line": r.line, "text": r.text,
                        "verdict": r.verdict, "packets": r.packets,
                    })).collect::<Vec<_>>(),
                    "default": p.default,
                    "malformed": p.malformed,
                })
            })
            .collect();
        let counts: Vec<Value> = self
            .counters
            .iter()
            .map(|c| match &c.key_field {
                None => json!({ "name": c.name, "total": c.total() }),
                Some(f) => json!({
                    "name": c.name, "key": f, "total": c.total(),
                    "entries": c.entries.iter()
                        .map(|(k, n)| json!({ "key": k, "packets": n }))
                        .collect::<Vec<_>>(),
                }),
            })
            .collect();
        json!({ "programs": programs, "counts": counts })
    }

    /// A table of the reading; with `prev` and the seconds since it, a rate column.
    pub fn table(&self, prev: Option<(&Snapshot, f64)>) -> String {
        let mut out = String::new();
        let rate = |now: u64, before: Option<u64>| -> String {
            match (prev, before) {
                (Some((_, secs)), Some(b)) if secs > 0.0 => {
                    format!("{:.0}/s", now.saturating_sub(b) as f64 / secs)
                }
                _ => String::new(),
            }
        };
        for (pi, p) in self.programs.iter().enumerate() {
            let old = prev.and_then(|(s, _)| s.programs.get(pi));
            let _ = writeln!(out, "filter {}", p.name);
            let _ = writeln!(
                out,
                "  {:>4}  {:>12}  {:>9}  rule",
                "line", "packets", "rate"
            );
            for (ri, r) in p.rules.iter().enumerate() {
                let before = old.and_then(|o| o.rules.get(ri)).map(|r| r.packets);
                let _ = writeln!(
                    out,
                    "  {:>4}  {:>12}  {:>9}  {}",
                    r.line,
                    r.packets,
                    rate(r.packets, before),
                    r.text
                );
            }
            let rows = [
                ("default", p.default, old.map(|o| o.default)),
                ("malformed", p.malformed, old.map(|o| o.malformed)),
            ];
            for (what, n, before) in rows {
                let _ = writeln!(
                    out,
                    "  {:>4}  {:>12}  {:>9}  ({what})",
                    "",
                    n,
                    rate(n, before)
                );
            }
        }
        for c in &self.counters {
            match &c.key_field {
                None => {
                    let _ = writeln!(out, "count {:<24} {:>12}", c.name, c.total());
                }
                Some(f) => {
                    let _ = writeln!(
                        out,
                        "count {}[{f}]: {} packets, {} keys",
                        c.name,
                        c.total(),
                        c.entries.len()
                    );
                    for (k, n) in c.entries.iter().take(TABLE_TOP) {
                        let _ = writeln!(out, "  {k:<40} {n:>12}");
                    }
                }
            }
        }
        out
    }

    /// One line: `edge: 3 12 0 0 default 40 malformed 0 | telnet 12 | by_src 2 keys`.
    pub fn line(&self) -> String {
        let mut parts = Vec::new();
        for p in &self.programs {
            let rules: Vec<String> = p.rules.iter().map(|r| r.packets.to_string()).collect();
            parts.push(format!(
                "{}: rules {} default {} malformed {}",
                p.name,
                rules.join(" "),
                p.default,
                p.malformed
            ));
        }
        for c in &self.counters {
            match &c.key_field {
                None => parts.push(format!("{} {}", c.name, c.total())),
                Some(_) => parts.push(format!(
                    "{} {} ({} keys)",
                    c.name,
                    c.total(),
                    c.entries.len()
                )),
            }
        }
        parts.join(" | ")
    }
}

/// A count map key as text, by the type of the field it is keyed by. Ports and integers
/// are stored in host order; addresses in network order (`ip` keys are {prefix length,
/// 16 address bytes}, the length telling IPv4 from IPv6).
pub fn decode_key(key: &[u8], field: Ty, btf: &BtfTy) -> String {
    let hex = || key.iter().map(|b| format!("{b:02x}")).collect::<String>();
    match (field, btf) {
        (Ty::Ip, BtfTy::Struct { .. }) if key.len() >= 20 => {
            let family = u32::from_ne_bytes([key[0], key[1], key[2], key[3]]);
            if family == 32 {
                std::net::Ipv4Addr::new(key[4], key[5], key[6], key[7]).to_string()
            } else {
                ipv6(&key[4..20]).unwrap_or_else(hex)
            }
        }
        (Ty::Ip4, _) if key.len() == 4 => {
            std::net::Ipv4Addr::new(key[0], key[1], key[2], key[3]).to_string()
        }
        (Ty::Ip6, _) => ipv6(key).unwrap_or_else(hex),
        // A 48-bit value in host order: the last byte is the first on the wire.
        (Ty::Mac, _) if key.len() == 6 => key
            .iter()
            .rev()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
        (_, BtfTy::U8 | BtfTy::U16 | BtfTy::U32 | BtfTy::U64) if key.len() <= 8 => {
            u64_le(key).to_string()
        }
        _ => hex(),
    }
}

fn ipv6(b: &[u8]) -> Option<String> {
    let a: [u8; 16] = b.try_into().ok()?;
    Some(std::net::Ipv6Addr::from(a).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_decode_by_type() {
        let mut ip = 32u32.to_ne_bytes().to_vec();
        ip.extend_from_slice(&[10, 99, 0, 2]);
        ip.extend_from_slice(&[0; 12]);
        let ip_ty = BtfTy::Struct {
            name: "ip_key".into(),
            fields: vec![],
        };
        assert_eq!(decode_key(&ip, Ty::Ip, &ip_ty), "10.99.0.2");
        let mut ip6 = 128u32.to_ne_bytes().to_vec();
        ip6.extend_from_slice(&[0xfd, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(decode_key(&ip6, Ty::Ip, &ip_ty), "fd99::1");
        assert_eq!(
            decode_key(&[192, 0, 2, 1], Ty::Ip4, &BtfTy::U32),
            "192.0.2.1"
        );
        assert_eq!(
            decode_key(&23u16.to_le_bytes(), Ty::Port, &BtfTy::U16),
            "23"
        );
        assert_eq!(decode_key(&[1, 2, 3], Ty::U32, &BtfTy::Bytes(3)), "010203");
    }
}
