//! Named sets at run time: which maps hold a set, values encoded exactly as the compiler
//! encodes them (`compiler/src/ir/lower.rs`) and decoded back, the pins `pol run` keeps
//! under `/sys/fs/bpf/pol/<file stem>-<pid>/` while it runs, and the changes `pol set`
//! makes through them.
//!
//! Encoding: an address set has one map per family (`<set>_v4`, `<set>_v6`): a hash map
//! keyed by the address bytes when every element of the file is a full address, else an
//! LPM trie keyed `{u32 prefixlen (little-endian), address bytes}`. An integer set has
//! one hash map per field size it is tested against (`<set>` for 2-byte fields such as
//! ports, `<set>_u8`, `<set>_u32`), keyed by the little-endian integer; ranges stay in
//! the code. Every value is `1u8`.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use pol_compiler::driver::Compiled;
use pol_compiler::hir::fields::edit_distance;
use pol_compiler::hir::types::Ty;
use pol_compiler::hir::values::parse_element;
use pol_compiler::hir::{SetDef, Value};
use pol_compiler::ir::lower::INLINE_SET_MAX;
use pol_compiler::obj::{BtfTy, MapKind};

use crate::sys::{self, SysError};

/// Where `pol run` pins the maps of named sets: `<PIN_ROOT>/<file stem>-<pid>/<map>` (bpffs allows no dots in names).
pub const PIN_ROOT: &str = "/sys/fs/bpf/pol";

/// The value of every set map entry (`PRESENT` in the compiler).
const PRESENT: u8 = 1;

/// How one map of a set is keyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetMapKind {
    /// One address family; `lpm` for an LPM trie, else a hash of exact addresses.
    Addr { v6: bool, lpm: bool },
    /// Integers of `size` bytes (the size of the field the set is tested against).
    Int { size: u8 },
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
    #[error("sets of {elem} cannot be changed at run time (set `{set}`); only address and integer sets become maps")]
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
    c.hir
        .sets
        .iter()
        .filter_map(|s| maps_of(c, s).ok())
        .flat_map(|s| s.maps)
        .collect()
}

/// Finds set `set` of file `file` (for messages) and the maps it became.
pub fn lookup(c: &Compiled, file: &str, set: &str) -> Result<SetMaps, SetError> {
    let Some(def) = c.hir.sets.iter().find(|s| s.name == set) else {
        let names: Vec<&str> = c.hir.sets.iter().map(|s| s.name.as_str()).collect();
        let close = names
            .iter()
            .map(|n| (edit_distance(n, set), *n))
            .filter(|(d, n)| *d <= 2.max(n.len() / 3))
            .min();
        let hint = match (close, names.is_empty()) {
            (Some((_, n)), _) => format!("; did you mean `{n}`?"),
            (None, true) => "; it declares no sets".to_string(),
            (None, false) => format!("; its sets are: {}", names.join(", ")),
        };
        return Err(SetError::UnknownSet {
            file: file.to_string(),
            set: set.to_string(),
            hint,
        });
    };
    if !def.elem.is_addr() && !def.elem.is_int() {
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

/// The maps the compiler made for `def`, by the names `ir/lower.rs` gives them.
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

/// Parses one value as written on the command line, in the set's element type, as the
/// compiler parses the lines of a `file("...")` set.
pub fn parse_value(text: &str, elem: Ty) -> Result<Value, String> {
    if !elem.is_addr() && !elem.is_int() {
        return Err(format!("is not changeable: sets of {elem} are not maps"));
    }
    parse_element(text.trim(), elem)
}

/// A value as the user writes it (`192.0.2.0/24`, `2001:db8::1`, `22`).
pub fn show(v: &Value) -> String {
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

/// The (map index, key) pairs `value` goes to, encoded as `ir/lower.rs` does.
pub fn encode(s: &SetMaps, value: &Value) -> Result<Keys, SetError> {
    let text = show(value);
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
pub fn decode(kind: SetMapKind, key: &[u8]) -> Option<Value> {
    match kind {
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
            Some(Value::Net { v6, addr, prefix })
        }
        SetMapKind::Int { size } => {
            if key.len() != size as usize {
                return None;
            }
            let mut b = [0u8; 8];
            b[..key.len()].copy_from_slice(key);
            let v = u64::from_le_bytes(b);
            Some(Value::Int { lo: v, hi: v })
        }
    }
}

/// Sort order for listing: IPv4 before IPv6, then by address and prefix; integers by value.
fn sort_key(v: &Value) -> (u8, [u8; 16], u64) {
    match *v {
        Value::Int { lo, .. } => (0, [0; 16], lo),
        Value::Net { v6, addr, prefix } => (1 + u8::from(v6), addr, u64::from(prefix)),
    }
}

// ---------------------------------------------------------------------------------------
// Pins

/// The pins of one `pol run`: removed (files, then the directory, then the root when empty)
/// on drop, also while a panic unwinds.
#[derive(Debug)]
pub struct Pins {
    dir: PathBuf,
    files: Vec<PathBuf>,
}

/// A file stem usable as a directory name.
pub fn stem_of(file: &Path) -> String {
    let s = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "pol".into());
    s.chars()
        // bpffs refuses names with dots ("reserved for future use").
        .map(|c| {
            if c == '/' || c == '.' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/comm")) {
        Ok(comm) => comm.trim().starts_with("pol"),
        Err(_) => false,
    }
}

/// The run directories of `stem` under `root`: (pid, path), live or not.
fn runs_of(root: &Path, stem: &str) -> Vec<(u32, PathBuf)> {
    let Ok(rd) = std::fs::read_dir(root) else {
        return vec![];
    };
    let mut out: Vec<(u32, PathBuf)> = rd
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let (s, pid) = name.rsplit_once('-')?;
            let pid: u32 = pid.parse().ok()?;
            (s == stem).then(|| (pid, e.path()))
        })
        .collect();
    out.sort();
    out
}

fn remove_dir(dir: &Path) -> Result<(), String> {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            std::fs::remove_file(e.path())
                .map_err(|err| format!("cannot remove the pin {}: {err}", e.path().display()))?;
        }
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot remove {}: {e}", dir.display())),
    }
}

/// Removes the pin directories under `root` whose `pol run` is gone (killed with SIGKILL);
/// returns a note for each.
pub fn sweep_stale(root: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(root) else {
        return vec![];
    };
    let mut notes = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some((_, pid)) = name.rsplit_once('-') else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() || pid_alive(pid) {
            continue;
        }
        match remove_dir(&e.path()) {
            Ok(()) => notes.push(format!(
                "removed the pins of a `pol run` that is gone (pid {pid}): {}",
                e.path().display()
            )),
            Err(err) => notes.push(err),
        }
    }
    notes
}

impl Pins {
    /// Pins `maps` (name, fd) under `<root>/<stem>-<pid>/`. Nothing is created when `maps`
    /// is empty. On error everything pinned so far is removed.
    pub fn create(
        root: &Path,
        stem: &str,
        maps: &[(String, BorrowedFd<'_>)],
    ) -> Result<Option<Pins>, String> {
        if maps.is_empty() {
            return Ok(None);
        }
        let dir = root.join(format!("{stem}-{}", std::process::id()));
        // Another run may remove an empty root at the same moment: retry.
        let mut tries = 0;
        loop {
            let made = std::fs::create_dir_all(root).and_then(|()| std::fs::create_dir(&dir));
            match made {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    remove_dir(&dir)?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && tries < 5 => {}
                Err(e) => {
                    let _ = std::fs::remove_dir(root);
                    return Err(format!(
                        "cannot create {} to pin the set maps: {e}; is the BPF filesystem mounted at {}?",
                        dir.display(),
                        crate::BPFFS
                    ));
                }
            }
            tries += 1;
            if tries > 5 {
                return Err(format!("cannot create {}", dir.display()));
            }
        }
        let mut pins = Pins { dir, files: vec![] };
        for (name, fd) in maps {
            let path = pins.dir.join(name);
            sys::pin::obj_pin(*fd, &path)
                .map_err(|e| format!("cannot pin set map `{name}`: {e}"))?;
            pins.files.push(path);
        }
        Ok(Some(pins))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Removes the pins now; returns what could not be removed, as sentences.
    pub fn remove(mut self) -> Vec<String> {
        self.cleanup()
    }

    fn cleanup(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        for f in self.files.drain(..) {
            if let Err(e) = std::fs::remove_file(&f) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    problems.push(format!("cannot remove the pin {}: {e}", f.display()));
                }
            }
        }
        if self.dir.as_os_str().is_empty() {
            return problems;
        }
        if let Err(e) = remove_dir(&self.dir) {
            problems.push(format!(
                "{e}; remove it with `rm -r {}`",
                self.dir.display()
            ));
        }
        // The root goes when it is empty (another run's directory keeps it).
        if let Some(root) = self.dir.parent() {
            let _ = std::fs::remove_dir(root);
        }
        self.dir = PathBuf::new();
        problems
    }
}

impl Drop for Pins {
    fn drop(&mut self) {
        for p in self.cleanup() {
            eprintln!("warning: {p}");
        }
    }
}

/// The pin directory of the running `pol run` of a file (by stem), `pid` choosing among
/// several.
pub fn find_run(
    root: &Path,
    file: &str,
    stem: &str,
    pid: Option<u32>,
) -> Result<PathBuf, SetError> {
    let live: Vec<(u32, PathBuf)> = runs_of(root, stem)
        .into_iter()
        .filter(|(p, _)| pid_alive(*p))
        .collect();
    let pids = || {
        live.iter()
            .map(|(p, _)| p.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match pid {
        Some(want) => match live.iter().find(|(p, _)| *p == want) {
            Some((_, d)) => Ok(d.clone()),
            None => Err(SetError::NoSuchPid {
                file: file.to_string(),
                pid: want,
                running: if live.is_empty() {
                    "none".into()
                } else {
                    pids()
                },
            }),
        },
        None => match live.len() {
            0 => Err(SetError::NotRunning {
                file: file.to_string(),
                root: root.display().to_string(),
                stem: stem.to_string(),
            }),
            1 => Ok(live[0].1.clone()),
            n => Err(SetError::Ambiguous {
                file: file.to_string(),
                n,
                pids: pids(),
            }),
        },
    }
}

// ---------------------------------------------------------------------------------------
// Changing a running set

/// A set of a running filter, its maps opened through their pins.
pub struct LiveSet {
    pub maps: SetMaps,
    fds: Vec<OwnedFd>,
}

/// What happened to one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Added(String),
    AlreadyThere(String),
    Deleted(String),
    NotThere(String),
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Added(v) => write!(f, "added {v}"),
            Change::AlreadyThere(v) => write!(f, "{v} was already in the set"),
            Change::Deleted(v) => write!(f, "deleted {v}"),
            Change::NotThere(v) => write!(f, "{v} was not in the set"),
        }
    }
}

fn sys_err(what: String) -> impl FnOnce(SysError) -> SetError {
    move |err| SetError::Sys { what, err }
}

impl LiveSet {
    /// Opens the pinned maps of `maps` in `dir`, checking they are what the file says.
    pub fn open(dir: &Path, maps: SetMaps) -> Result<LiveSet, SetError> {
        let mut fds = Vec::new();
        for m in &maps.maps {
            let path = dir.join(&m.name);
            if !path.exists() {
                return Err(SetError::Mismatch {
                    map: m.name.clone(),
                    path: path.display().to_string(),
                    why: "the running filter has no such map".into(),
                });
            }
            let fd = sys::pin::obj_get(&path)
                .map_err(sys_err(format!("cannot open set map `{}`", m.name)))?;
            let info = sys::map_info(fd.as_fd())
                .map_err(sys_err(format!("cannot read set map `{}`", m.name)))?;
            let want_type = match m.kind {
                SetMapKind::Addr { lpm: true, .. } => MapKind::LpmTrie.bpf_type(),
                _ => MapKind::Hash.bpf_type(),
            };
            if info.key_size != m.key_size() || info.map_type != want_type {
                return Err(SetError::Mismatch {
                    map: m.name.clone(),
                    path: path.display().to_string(),
                    why: format!(
                        "map type {} with {}-byte keys, expected type {want_type} with {}-byte keys",
                        info.map_type,
                        info.key_size,
                        m.key_size()
                    ),
                });
            }
            fds.push(fd);
        }
        let mut maps = maps;
        // The running map's size, whatever the file says now.
        for (m, fd) in maps.maps.iter_mut().zip(&fds) {
            if let Ok(info) = sys::map_info(fd.as_fd()) {
                m.max_entries = info.max_entries;
            }
        }
        Ok(LiveSet { maps, fds })
    }

    /// Encodes every value first (nothing changes when one is wrong), then adds them.
    pub fn add(&self, values: &[Value]) -> Result<Vec<Change>, SetError> {
        let keys = self.encode_all(values)?;
        let mut out = Vec::new();
        for (v, ks) in values.iter().zip(keys) {
            let mut added = false;
            for (i, key) in ks {
                let m = &self.maps.maps[i];
                match sys::map_update(self.fds[i].as_fd(), &key, &[PRESENT], 1) {
                    Ok(()) => added = true,
                    Err(e) if e.errno() == Some(libc::EEXIST) => {}
                    Err(e) if matches!(e.errno(), Some(libc::E2BIG | libc::ENOSPC)) => {
                        let done = if out.is_empty() {
                            String::new()
                        } else {
                            format!(
                                " (before it: {})",
                                out.iter()
                                    .map(|c: &Change| c.to_string())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )
                        };
                        return Err(SetError::Full {
                            set: self.maps.set.clone(),
                            map: m.name.clone(),
                            max: m.max_entries,
                            done,
                        });
                    }
                    Err(err) => {
                        return Err(SetError::Sys {
                            what: format!("cannot add {} to map `{}`", show(v), m.name),
                            err,
                        })
                    }
                }
            }
            out.push(if added {
                Change::Added(show(v))
            } else {
                Change::AlreadyThere(show(v))
            });
        }
        Ok(out)
    }

    /// Encodes every value first, then deletes them.
    pub fn delete(&self, values: &[Value]) -> Result<Vec<Change>, SetError> {
        let keys = self.encode_all(values)?;
        let mut out = Vec::new();
        for (v, ks) in values.iter().zip(keys) {
            let mut deleted = false;
            for (i, key) in ks {
                let m = &self.maps.maps[i];
                deleted |= sys::map_delete(self.fds[i].as_fd(), &key).map_err(sys_err(format!(
                    "cannot delete {} from map `{}`",
                    show(v),
                    m.name
                )))?;
            }
            out.push(if deleted {
                Change::Deleted(show(v))
            } else {
                Change::NotThere(show(v))
            });
        }
        Ok(out)
    }

    fn encode_all(&self, values: &[Value]) -> Result<Vec<Keys>, SetError> {
        values.iter().map(|v| encode(&self.maps, v)).collect()
    }

    /// Every value in the maps, sorted and without duplicates (an integer set has the same
    /// values in each of its maps).
    pub fn list(&self) -> Result<Vec<Value>, SetError> {
        let mut out = Vec::new();
        for (m, fd) in self.maps.maps.iter().zip(&self.fds) {
            for key in self.keys(m, fd.as_fd())? {
                if let Some(v) = decode(m.kind, &key) {
                    out.push(v);
                }
            }
        }
        out.sort_by_key(sort_key);
        out.dedup();
        Ok(out)
    }

    /// (map name, entries, max entries) of each map.
    pub fn usage(&self) -> Result<Vec<(String, usize, u32)>, SetError> {
        self.maps
            .maps
            .iter()
            .zip(&self.fds)
            .map(|(m, fd)| {
                Ok((
                    m.name.clone(),
                    self.keys(m, fd.as_fd())?.len(),
                    m.max_entries,
                ))
            })
            .collect()
    }

    fn keys(&self, m: &SetMap, fd: BorrowedFd<'_>) -> Result<Vec<Vec<u8>>, SetError> {
        let mut keys = Vec::new();
        let mut cur: Option<Vec<u8>> = None;
        for _ in 0..=m.max_entries {
            let next = sys::map_next_key(fd, cur.as_deref())
                .map_err(sys_err(format!("cannot read set map `{}`", m.name)))?;
            let Some(k) = next else { break };
            keys.push(k.clone());
            cur = Some(k);
        }
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compiled(src: &str) -> Compiled {
        match pol_compiler::driver::compile(src) {
            Ok(c) => c,
            Err(d) => panic!("does not compile: {d:?}"),
        }
    }

    const SRC: &str = "set big: cidr = { 10.0.0.1, 10.0.0.2, 10.0.0.3, 10.0.0.4, 10.0.0.5, \
        10.0.0.6, 10.0.0.7, 10.0.0.8, 10.0.0.9 }\n\
        set nets: cidr = { 10.1.0.0/16, 10.2.0.0/16, 10.3.0.0/16, 10.4.0.0/16, 10.5.0.0/16, \
        10.6.0.0/16, 10.7.0.0/16, 10.8.0.0/16, 2001:db8::/32 }\n\
        set ports: port = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 100..200 }\n\
        set small: cidr = { 10.0.0.1 }\n\
        set unused: port = { 1, 2, 3, 4, 5, 6, 7, 8, 9 }\n\
        filter f on xdp(\"lo\") {\n    drop ip.src in big\n    drop ip.dst in nets\n    \
        drop tcp.dport in ports\n    drop ip.src in small\n    default pass\n}\n";

    #[test]
    fn finds_the_maps_of_sets_and_explains_the_rest() {
        let c = compiled(SRC);
        let big = lookup(&c, "f.pol", "big").expect("big");
        assert_eq!(big.maps.len(), 1);
        assert_eq!(
            big.maps[0].kind,
            SetMapKind::Addr {
                v6: false,
                lpm: false
            }
        );
        assert_eq!(big.maps[0].max_entries, 9 + 64);
        let nets = lookup(&c, "f.pol", "nets").expect("nets");
        assert_eq!(nets.maps.len(), 2);
        let ports = lookup(&c, "f.pol", "ports").expect("ports");
        assert_eq!(ports.maps[0].kind, SetMapKind::Int { size: 2 });
        assert_eq!(ports.ranges, 1);
        let e = lookup(&c, "f.pol", "bigg")
            .expect_err("unknown")
            .to_string();
        assert!(e.contains("did you mean `big`?"), "{e}");
        let e = lookup(&c, "f.pol", "small")
            .expect_err("inline")
            .to_string();
        assert!(e.contains("1 element,") && e.contains("more than 8"), "{e}");
        let e = lookup(&c, "f.pol", "unused")
            .expect_err("unused")
            .to_string();
        assert!(e.contains("not used by any filter"), "{e}");
        assert_eq!(all_set_maps(&c).len(), 4);
    }

    #[test]
    fn encodes_like_the_compiler() {
        let c = compiled(SRC);
        // Every entry the compiler wrote decodes and re-encodes to the same key.
        for name in ["big", "nets", "ports"] {
            let s = lookup(&c, "f.pol", name).expect("set");
            for (i, m) in s.maps.iter().enumerate() {
                let def = c
                    .maps
                    .iter()
                    .find(|d| d.spec.name == m.name)
                    .expect("map def");
                for (k, v) in &def.entries {
                    assert_eq!(v, &vec![PRESENT]);
                    let val = decode(m.kind, k).expect("decodes");
                    assert_eq!(encode(&s, &val).expect("encodes"), vec![(i, k.clone())]);
                }
            }
        }
    }

    #[test]
    fn values_of_the_wrong_kind_are_refused() {
        let c = compiled(SRC);
        let big = lookup(&c, "f.pol", "big").expect("big");
        let v = parse_value("192.0.2.0/24", Ty::Cidr).expect("parses");
        let e = encode(&big, &v).expect_err("prefix").to_string();
        assert!(e.contains("cannot hold the prefix `192.0.2.0/24`"), "{e}");
        let v = parse_value("2001:db8::1", Ty::Cidr).expect("parses");
        let e = encode(&big, &v).expect_err("family").to_string();
        assert!(e.contains("has no IPv6 map"), "{e}");
        let v = parse_value("192.0.2.77/24", Ty::Cidr).expect("parses");
        assert_eq!(show(&v), "192.0.2.0/24");
        assert!(parse_value("300000", Ty::Port).is_err());
        assert!(parse_value("nope", Ty::Cidr).is_err());
        assert!(parse_value("10.0.0.0/8", Ty::Ip).is_err());
        assert!(parse_value("::1", Ty::Ip4).is_err());
        let ports = lookup(&c, "f.pol", "ports").expect("ports");
        let r = parse_value("5..6", Ty::Port).expect("range");
        assert!(encode(&ports, &r).is_err());
        let v = parse_value("2001:db8:1::/48", Ty::Cidr).expect("parses");
        let nets = lookup(&c, "f.pol", "nets").expect("nets");
        let keys = encode(&nets, &v).expect("encodes");
        assert_eq!(keys[0].1[..4], 48u32.to_le_bytes());
        assert_eq!(
            show(&decode(nets.maps[keys[0].0].kind, &keys[0].1).expect("dec")),
            "2001:db8:1::/48"
        );
    }
}
