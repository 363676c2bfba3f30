//! Named sets at run time: which maps hold a set, values encoded exactly as the compiler
//! encodes them (`compiler/src/ir/lower/maps.rs`) and decoded back, the pins `pol run` keeps
//! under `/sys/fs/bpf/pol/<file stem>-<pid>/` while it runs, and the changes `pol set`
//! makes through them.
//!
//! Encoding: an address set has one map per family (`<set>_v4`, `<set>_v6`): a hash map
//! keyed by the address bytes when every element of the file is a full address, else an
//! LPM trie keyed `{u32 prefixlen (little-endian), address bytes}`. An integer set has
//! one hash map per field size it is tested against (`<set>` for 2-byte fields such as
//! ports, `<set>_u8`, `<set>_u32`), keyed by the little-endian integer; ranges stay in
//! the code. A `dnsname` set is one LPM trie named after it, keyed as `l7::dns` keys names
//! (`{u32 prefixlen, labels reversed}`). Every value is `1u8`.

mod live;
mod pins;
#[cfg(test)]
mod tests;
mod values;

use pol_compiler::diag::suggest;
use pol_compiler::driver::Compiled;
use pol_compiler::hir::types::Ty;
use pol_compiler::hir::{SetDef, Value};
use pol_compiler::ir::lower::INLINE_SET_MAX;
use pol_compiler::obj::{BtfTy, MapKind};

use crate::sys::SysError;

pub use live::{Change, LiveSet};
pub use pins::{find_run, stem_of, sweep_stale, Pins};
pub use values::{changeable, decode, encode, parse_value, show, show_in, Keys, Member};

/// Where `pol run` pins the maps of named sets: `<PIN_ROOT>/<file stem>-<pid>/<map>` (bpffs allows no dots in names).
pub const PIN_ROOT: &str = "/sys/fs/bpf/pol";
/// [`PIN_ROOT`] relative to the bpffs (`pol_runtime::pinroot` says which bpffs).
pub const PIN_DIR: &str = "pol";

/// The value of every set map entry (`PRESENT` in the compiler).
const PRESENT: u8 = 1;

/// How one map of a set is keyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetMapKind {
    /// One address family; `lpm` for an LPM trie, else a hash of exact addresses.
    Addr { v6: bool, lpm: bool },
    /// Integers of `size` bytes (the size of the field the set is tested against).
    Int { size: u8 },
    /// DNS name patterns (an LPM trie over reversed labels).
    Name,
}

/// One map holding (part of) a set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetMap {
    pub name: String,
    pub kind: SetMapKind,
    pub max_entries: u32,
}

impl SetMap {
    fn key_size(&self) -> u32 {
        match self.kind {
            SetMapKind::Addr { v6, lpm } => (if v6 { 16 } else { 4 }) + if lpm { 4 } else { 0 },
            SetMapKind::Int { size } => u32::from(size),
            SetMapKind::Name => pol_compiler::l7::dns::KEY_SIZE as u32,
        }
    }
}

/// A named set of a compiled file and the maps it became.
#[derive(Debug, Clone, PartialEq)]
pub struct SetMaps {
    pub set: String,
    pub elem: Ty,
    /// Number of elements in the file (ranges included).
    pub declared: usize,
    /// Ranges of an integer set: compiled into the code, not in any map.
    pub ranges: usize,
    pub maps: Vec<SetMap>,
}

/// What went wrong with a set operation, as a sentence that says what to do.
#[derive(Debug, thiserror::Error)]
pub enum SetError {
    #[error("{file} has no set `{set}`{hint}")]
    UnknownSet {
        file: String,
        set: String,
        hint: String,
    },
    #[error(
        "set `{set}` has {n} element{s}, so the compiler wrote it into the filter's code \
         (sets of up to {INLINE_SET_MAX} elements are inlined) and it has no map that can be \
         changed while the filter runs; give it more than {INLINE_SET_MAX} elements in the file \
         (it then becomes a map) and restart `pol run`",
        s = if *n == 1 { "" } else { "s" }
    )]
    Inline { set: String, n: usize },
    #[error("set `{set}` is not used by any filter, so it has no map; use it in a rule (`drop ip.src in {set}`) and restart `pol run`")]
    Unused { set: String },
    #[error("sets of {elem} cannot be changed at run time (set `{set}`); only address, integer, MAC and DNS name sets become maps")]
    Unsupported { set: String, elem: Ty },
    #[error("no `pol run` of {file} is running (nothing pinned under {root}/{stem}-*); start one with `sudo pol run {file}`")]
    NotRunning {
        file: String,
        root: String,
        stem: String,
    },
    #[error("{n} `pol run`s of {file} are running (pids {pids}); choose one with --pid")]
    Ambiguous {
        file: String,
        n: usize,
        pids: String,
    },
    #[error("no `pol run` of {file} with pid {pid} is running; running: {running}")]
    NoSuchPid {
        file: String,
        pid: u32,
        running: String,
    },
    #[error("`{value}` is not a value of set `{set}` ({elem}): it {why}")]
    BadValue {
        value: String,
        set: String,
        elem: Ty,
        why: String,
    },
    #[error("set `{set}` has no {family} map: its elements in the file are all {other} (or its filters test only {other} fields), so the filter never looks {family} addresses up in it; add an {family} element to the set in the file and restart `pol run` to add `{value}`")]
    Family {
        value: String,
        set: String,
        family: &'static str,
        other: &'static str,
    },
    #[error("set `{set}` holds only exact {family} addresses, so it was compiled to a hash map, which cannot hold the prefix `{value}`; add a prefix to the set in the file (it then becomes an LPM trie) and restart `pol run`, or add single addresses")]
    PrefixInHash {
        value: String,
        set: String,
        family: &'static str,
    },
    #[error("`{value}` is a range; the ranges of set `{set}` are compiled into the filter's code, only single values can be added or deleted at run time")]
    Range { value: String, set: String },
    #[error("`{value}` cannot match in set `{set}`: the filter looks it up with a {size}-byte field, whose largest value is {max}")]
    TooWide {
        value: String,
        set: String,
        size: u8,
        max: u64,
    },
    #[error("set `{set}` is full: map `{map}` holds its {max} entries (the file's elements plus room to grow); delete some with `pol set del`, or add elements to the file and restart `pol run` for more room{done}")]
    Full {
        set: String,
        map: String,
        max: u32,
        done: String,
    },
    #[error("the map `{map}` pinned at {path} does not match the file as it is now ({why}); the file changed since `pol run` started: restart it")]
    Mismatch {
        map: String,
        path: String,
        why: String,
    },
    #[error("{what}: {err}")]
    Sys { what: String, err: SysError },
    #[error("{0}")]
    Io(String),
}

/// The set maps of a compiled file: (map name, set name), for pinning.
pub fn all_set_maps(c: &Compiled) -> Vec<SetMap> {
    let names = c
        .hir
        .l7
        .names
        .iter()
        .filter(|s| s.declared)
        .map(|s| name_maps(c, s));
    c.hir
        .sets
        .iter()
        .filter_map(|s| maps_of(c, s).ok())
        .chain(names)
        .flat_map(|s| s.maps)
        .collect()
}

/// The map of a named `dnsname` set, when a filter uses it.
fn name_maps(c: &Compiled, set: &pol_compiler::l7::dns::NameSet) -> SetMaps {
    let maps = c
        .maps
        .iter()
        .filter(|m| m.spec.name == set.map && m.spec.kind == MapKind::LpmTrie)
        .map(|m| SetMap {
            name: m.spec.name.clone(),
            kind: SetMapKind::Name,
            max_entries: m.spec.max_entries,
        })
        .collect();
    SetMaps {
        set: set.map.clone(),
        elem: Ty::DnsName,
        declared: set.patterns.len(),
        ranges: 0,
        maps,
    }
}

/// Finds set `set` of file `file` (for messages) and the maps it became.
pub fn lookup(c: &Compiled, file: &str, set: &str) -> Result<SetMaps, SetError> {
    let declared_names = || c.hir.l7.names.iter().filter(|s| s.declared);
    if let Some(names) = declared_names().find(|s| s.map == set) {
        let found = name_maps(c, names);
        if found.maps.is_empty() {
            return Err(SetError::Unused {
                set: set.to_string(),
            });
        }
        return Ok(found);
    }
    let Some(def) = c.hir.sets.iter().find(|s| s.name == set) else {
        let names: Vec<&str> = c
            .hir
            .sets
            .iter()
            .map(|s| s.name.as_str())
            .chain(declared_names().map(|s| s.map.as_str()))
            .collect();
        let close = suggest::nearest(set, names.iter().copied(), 2.max(set.len() / 3));
        let hint = match (close.is_empty(), names.is_empty()) {
            (false, _) => format!("; did you mean {}?", suggest::one_of(&close)),
            (true, true) => "; it declares no sets".to_string(),
            (true, false) => format!("; its sets are: {}", names.join(", ")),
        };
        return Err(SetError::UnknownSet {
            file: file.to_string(),
            set: set.to_string(),
            hint,
        });
    };
    if !changeable(def.elem) {
        return Err(SetError::Unsupported {
            set: set.to_string(),
            elem: def.elem,
        });
    }
    if def.values.len() <= INLINE_SET_MAX {
        return Err(SetError::Inline {
            set: set.to_string(),
            n: def.values.len(),
        });
    }
    let found = maps_of(c, def)?;
    if found.maps.is_empty() {
        return Err(SetError::Unused {
            set: set.to_string(),
        });
    }
    Ok(found)
}

/// The maps the compiler made for `def`, by the names `ir/lower/maps.rs` gives them.
fn maps_of(c: &Compiled, def: &SetDef) -> Result<SetMaps, SetError> {
    let mut maps = Vec::new();
    for m in &c.maps {
        let s = &m.spec;
        if s.value != BtfTy::U8 {
            continue;
        }
        let kind = if def.elem.is_addr() {
            let v6 = if s.name == format!("{}_v4", def.name) {
                false
            } else if s.name == format!("{}_v6", def.name) {
                true
            } else {
                continue;
            };
            match s.kind {
                MapKind::Hash => SetMapKind::Addr { v6, lpm: false },
                MapKind::LpmTrie => SetMapKind::Addr { v6, lpm: true },
                _ => continue,
            }
        } else {
            let size = match &s.key {
                BtfTy::U8 => 1,
                BtfTy::U16 => 2,
                BtfTy::U32 => 4,
                // A MAC address: 6 bytes, the 48-bit value little-endian.
                BtfTy::Bytes(6) if def.elem == Ty::Mac => 6,
                _ => continue,
            };
            let want = if size == 2 {
                def.name.clone()
            } else {
                format!("{}_u{}", def.name, size * 8)
            };
            if s.name != want || s.kind != MapKind::Hash {
                continue;
            }
            SetMapKind::Int { size }
        };
        maps.push(SetMap {
            name: s.name.clone(),
            kind,
            max_entries: s.max_entries,
        });
    }
    let ranges = def
        .values
        .iter()
        .filter(|v| matches!(v, Value::Int { lo, hi } if lo != hi))
        .count();
    Ok(SetMaps {
        set: def.name.clone(),
        elem: def.elem,
        declared: def.values.len(),
        ranges,
        maps,
    })
}
