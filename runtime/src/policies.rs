//! Policies loaded for good (`pol load`): programs attached through BPF links that are
//! pinned, so they keep filtering after the loading process exits, until `pol unload`.
//!
//! A policy named `NAME` is two things:
//! - its pins, `<bpffs>/pol/NAME/`: `link_<program>` (what keeps it attached),
//!   `prog_<program>` and `map_<map>`; the bpffs is the host's ([`crate::pinroot`]);
//! - its record, `/run/pol/policies/NAME.json` ([`PolicyRecord`]): the source and the
//!   `file(..)` sets it was compiled from (so `pol status` can name rules and decode
//!   counters), where each program is attached, and when.
//!
//! Loading a name again replaces the policy in place ([`replace`]): the new programs are
//! loaded and verified first, counters are carried over where their layout is unchanged,
//! then each link switches program with one `BPF_LINK_UPDATE` (guarded by the program it
//! expects to replace), so every packet sees exactly one version. A failure switches the
//! links already switched back.
//!
//! Names are `[A-Za-z0-9_]`, so they never look like a `pol run`'s `<stem>-<pid>` pins.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::direct::{Direct, Object};
use crate::load::{self, Entry, LoadError};
use crate::sys::{self, link, MapInfo};
use pol_compiler::obj::MapSpec;

/// Where policy records live.
pub const RECORD_ROOT: &str = "/run/pol/policies";

/// Where one attached program of a policy is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyProgram {
    pub name: String,
    pub iface: String,
    pub ifindex: u32,
    /// `xdp native`, `tc ingress (tcx)`, ...
    pub how: String,
}

/// What `/run/pol/policies/NAME.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRecord {
    pub name: String,
    /// The `.pol` file it was loaded from.
    pub file: String,
    pub source: String,
    /// The contents of the `file(..)` sets, by the name the source gives.
    pub files: BTreeMap<String, String>,
    pub programs: Vec<PolicyProgram>,
    pub maps: Vec<String>,
    /// Seconds since the epoch of the first load, and of the last replacement.
    pub loaded_at: u64,
    pub replaced_at: Option<u64>,
    /// How many times it was replaced.
    pub generation: u64,
    /// A digest of each filter's rule texts: per-rule statistics carry over a replacement
    /// only when they are equal (slot i is rule i), without compiling the old source again.
    #[serde(default)]
    pub rule_digests: BTreeMap<String, u64>,
    /// Why the last attempt to replace it failed (`pol agent`), while this version stays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// What `pol set` changed in its sets since it was loaded, by set name: replayed on
    /// every replacement, so a value added at run time is not lost when the file changes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set_edits: BTreeMap<String, SetEdits>,
}

/// The values `pol set` added to and deleted from one set of a loaded policy (as
/// `pol set list` shows them); the last change of a value wins.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetEdits {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub added: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deleted: Vec<String>,
}

impl SetEdits {
    pub fn note(&mut self, value: &str, added: bool) {
        self.added.retain(|v| v != value);
        self.deleted.retain(|v| v != value);
        if added {
            self.added.push(value.to_string());
        } else {
            self.deleted.push(value.to_string());
        }
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.deleted.is_empty()
    }
}

/// The operation lock of one policy: `pol load`, `pol unload`, `pol set` and the agent
/// take it, so two of them never interleave their steps on one policy. Unlocked on drop.
#[derive(Debug)]
pub struct PolicyLock {
    _file: std::fs::File,
}

/// Why a policy operation failed, as a sentence.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("`{0}` is not a policy name: use letters, digits and `_` (it names a directory under /sys/fs/bpf/pol)")]
    BadName(String),
    #[error("no policy `{0}` is loaded (`pol status` lists them)")]
    NotLoaded(String),
    #[error("policy `{name}`: {message}")]
    Failed { name: String, message: String },
}

fn failed(name: &str, message: impl std::fmt::Display) -> PolicyError {
    PolicyError::Failed {
        name: name.to_string(),
        message: message.to_string(),
    }
}

/// Checks a policy name.
pub fn check_name(name: &str) -> Result<(), PolicyError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(PolicyError::BadName(name.to_string()))
    }
}

/// A policy name from a file name: its stem with anything else than `[A-Za-z0-9_]` as `_`.
pub fn name_of(file: &Path) -> String {
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "policy".into());
    let n: String = stem
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(64)
        .collect();
    if n.is_empty() {
        "policy".into()
    } else {
        n
    }
}

/// Where the policies' pins and records are: the pin directory of all policies
/// (`<bpffs>/pol`) and the record directory.
#[derive(Debug, Clone)]
pub struct Store {
    pub pins: PathBuf,
    pub records: PathBuf,
}

impl Store {
    pub fn new(bpffs: &Path) -> Store {
        Store {
            pins: bpffs.join(crate::sets::PIN_DIR),
            records: PathBuf::from(
                std::env::var_os("POL_POLICY_DIR").unwrap_or_else(|| RECORD_ROOT.into()),
            ),
        }
    }

    pub fn dir(&self, name: &str) -> PathBuf {
        self.pins.join(name)
    }

    fn record_path(&self, name: &str) -> PathBuf {
        self.records.join(format!("{name}.json"))
    }

    /// The record of `name`, if it is loaded.
    pub fn record(&self, name: &str) -> Result<Option<PolicyRecord>, PolicyError> {
        let text = match std::fs::read_to_string(self.record_path(name)) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(failed(name, format!("cannot read its record: {e}"))),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| failed(name, format!("its record is damaged ({e})")))
    }

    /// Every loaded policy's name, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(&self.records)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.strip_suffix(".json").map(str::to_string)
            })
            .filter(|n| check_name(n).is_ok())
            .collect();
        out.sort();
        out
    }

    /// Takes the operation lock of policy `name`, waiting for another command that holds
    /// it (`waiting` is called once first if so).
    pub fn lock(&self, name: &str, waiting: impl FnOnce()) -> Result<PolicyLock, PolicyError> {
        std::fs::create_dir_all(&self.records).map_err(|e| {
            failed(
                name,
                format!("cannot create {}: {e}", self.records.display()),
            )
        })?;
        let path = self.records.join(format!(".{name}.lock"));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| failed(name, format!("cannot open {}: {e}", path.display())))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                waiting();
                file.lock()
                    .map_err(|e| failed(name, format!("cannot lock {}: {e}", path.display())))?;
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(failed(name, format!("cannot lock {}: {e}", path.display())))
            }
        }
        Ok(PolicyLock { _file: file })
    }

    pub fn write_record(&self, r: &PolicyRecord) -> Result<(), PolicyError> {
        std::fs::create_dir_all(&self.records).map_err(|e| {
            failed(
                &r.name,
                format!("cannot create {}: {e}", self.records.display()),
            )
        })?;
        let text = serde_json::to_string_pretty(r).map_err(|e| failed(&r.name, e))?;
        // Write then rename: a reader never sees half a record.
        let tmp = self.records.join(format!(".{}.json.tmp", r.name));
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, self.record_path(&r.name)))
            .map_err(|e| failed(&r.name, format!("cannot write its record: {e}")))
    }

    /// Removes a policy: its pins (the links with them, which detaches its programs) and
    /// its record. Returns what could not be removed.
    pub fn remove(&self, name: &str) -> Vec<String> {
        let mut problems = Vec::new();
        let dir = self.dir(name);
        if let Ok(rd) = std::fs::read_dir(&dir) {
            // Links first: from then on nothing of it filters.
            let mut pins: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
            pins.sort_by_key(|p| {
                !p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("link_"))
            });
            for p in pins {
                if let Err(e) = std::fs::remove_file(&p) {
                    problems.push(format!("cannot remove the pin {}: {e}", p.display()));
                }
            }
        }
        if let Err(e) = std::fs::remove_dir(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                problems.push(format!("cannot remove {}: {e}", dir.display()));
            }
        }
        let _ = std::fs::remove_dir(&self.pins); // only when empty
        if let Err(e) = std::fs::remove_file(self.record_path(name)) {
            if e.kind() != std::io::ErrorKind::NotFound {
                problems.push(format!("cannot remove the record of `{name}`: {e}"));
            }
        }
        problems
    }
}

/// A loaded policy's programs and maps, opened from its pins.
pub struct Pinned {
    progs: BTreeMap<String, OwnedFd>,
    maps: BTreeMap<String, (OwnedFd, MapInfo)>,
    links: BTreeMap<String, OwnedFd>,
}

impl Pinned {
    /// Opens every pin of the policy in `dir`.
    pub fn open(dir: &Path, name: &str) -> Result<Pinned, PolicyError> {
        let rd = std::fs::read_dir(dir).map_err(|e| {
            failed(
                name,
                format!("its pins at {} cannot be read ({e})", dir.display()),
            )
        })?;
        let mut p = Pinned {
            progs: BTreeMap::new(),
            maps: BTreeMap::new(),
            links: BTreeMap::new(),
        };
        for e in rd.flatten() {
            let file = e.file_name().to_string_lossy().into_owned();
            let fd = sys::pin::obj_get(&e.path()).map_err(|err| failed(name, err))?;
            if let Some(m) = file.strip_prefix("map_") {
                let info = sys::map_info(fd.as_fd()).map_err(|err| failed(name, err))?;
                p.maps.insert(m.to_string(), (fd, info));
            } else if let Some(prog) = file.strip_prefix("prog_") {
                p.progs.insert(prog.to_string(), fd);
            } else if let Some(l) = file.strip_prefix("link_") {
                p.links.insert(l.to_string(), fd);
            }
        }
        Ok(p)
    }

    pub fn link_fd(&self, program: &str) -> Option<BorrowedFd<'_>> {
        self.links.get(program).map(|f| f.as_fd())
    }

    /// Each map's name, kernel description and number of entries.
    pub fn map_sizes(&self) -> Vec<(String, MapInfo, usize)> {
        self.maps
            .iter()
            .map(|(n, (fd, info))| {
                let used = load::raw_entries(n, fd.as_fd(), info).map_or(0, |e| e.len());
                (n.clone(), info.clone(), used)
            })
            .collect()
    }
}

impl Object for Pinned {
    fn program_fd(&self, name: &str) -> Result<BorrowedFd<'_>, LoadError> {
        self.progs
            .get(name)
            .map(|f| f.as_fd())
            .ok_or_else(|| LoadError::Object {
                message: format!("no pinned program `{name}`"),
            })
    }
    fn map_fd(&self, name: &str) -> Result<BorrowedFd<'_>, LoadError> {
        self.maps
            .get(name)
            .map(|(f, _)| f.as_fd())
            .ok_or_else(|| LoadError::Object {
                message: format!("no pinned map `{name}`"),
            })
    }
    fn map_entries(&self, name: &str) -> Result<Vec<Entry>, LoadError> {
        let (fd, info) = self.maps.get(name).ok_or_else(|| LoadError::Object {
            message: format!("no pinned map `{name}`"),
        })?;
        load::map_entries(name, fd.as_fd(), info)
    }
}

/// Pins a freshly loaded and attached policy: links, programs, maps. On error everything
/// pinned so far is removed (and the caller's attachment, dropped, detaches).
pub fn pin_new(
    store: &Store,
    name: &str,
    new: &Direct,
    links: &[(&str, BorrowedFd<'_>)],
) -> Result<(), PolicyError> {
    let dir = store.dir(name);
    std::fs::create_dir_all(&dir)
        .map_err(|e| failed(name, format!("cannot create {}: {e}", dir.display())))?;
    let pin_all = || -> Result<(), PolicyError> {
        for (prog, fd) in links {
            sys::pin::obj_pin(*fd, &dir.join(format!("link_{prog}")))
                .map_err(|e| failed(name, e))?;
        }
        pin_objects(&dir, name, new)
    };
    pin_all().inspect_err(|_| {
        let _ = store.remove(name);
    })
}

/// Pins the programs and maps of `new` in `dir` (not the links).
fn pin_objects(dir: &Path, name: &str, new: &Direct) -> Result<(), PolicyError> {
    for p in new.program_names() {
        let fd = new.program_fd(&p).map_err(|e| failed(name, e))?;
        sys::pin::obj_pin(fd, &dir.join(format!("prog_{p}"))).map_err(|e| failed(name, e))?;
    }
    for m in new.map_names() {
        let fd = new.map_fd(&m).map_err(|e| failed(name, e))?;
        sys::pin::obj_pin(fd, &dir.join(format!("map_{m}"))).map_err(|e| failed(name, e))?;
    }
    Ok(())
}

/// The maps named in `carry` that a replacement of `old` can share with it: the loaded
/// map itself (a new fd for it), where `maps` (the replacement's) declares one of the same
/// type, key and value sizes and capacity. Both versions then count into the same map, so
/// the switch loses no count: copying values into the new map instead raced with the new
/// program's own increments. A note says why each other map starts from zero.
pub fn shared_maps(
    old: &Pinned,
    maps: &[MapSpec],
    carry: &[String],
) -> (Vec<(String, OwnedFd)>, Vec<String>) {
    let mut shared = Vec::new();
    let mut notes = Vec::new();
    for m in carry {
        let (Some((ofd, oinfo)), Some(spec)) =
            (old.maps.get(m), maps.iter().find(|s| s.name == *m))
        else {
            continue;
        };
        let same = oinfo.map_type == spec.kind.bpf_type()
            && oinfo.key_size == spec.key.size()
            && oinfo.value_size == spec.value.size()
            && oinfo.max_entries == spec.max_entries;
        if !same {
            notes.push(format!("`{m}` starts from zero: its layout changed"));
            continue;
        }
        match ofd.try_clone() {
            Ok(fd) => shared.push((m.clone(), fd)),
            Err(e) => notes.push(format!("`{m}` starts from zero: {e}")),
        }
    }
    (shared, notes)
}

/// Switches every link of `old` to the program of the same name in `new`, each guarded by
/// the program it replaces. On failure, the links already switched go back to their old
/// program and the error says which link failed.
pub fn switch(old: &Pinned, new: &Direct, name: &str) -> Result<(), PolicyError> {
    let mut done: Vec<&str> = Vec::new();
    for (prog, link_fd) in &old.links {
        let (Some(old_prog), Ok(new_prog)) = (old.progs.get(prog), new.program_fd(prog)) else {
            continue;
        };
        if let Err(e) = link::link_update(link_fd.as_fd(), new_prog, Some(old_prog.as_fd())) {
            let mut rollback = Vec::new();
            for p in done.iter().rev() {
                if let (Some(l), Some(o), Ok(n)) =
                    (old.links.get(*p), old.progs.get(*p), new.program_fd(p))
                {
                    if let Err(e) = link::link_update(l.as_fd(), o.as_fd(), Some(n)) {
                        rollback.push(format!("`{p}` could not be switched back ({e})"));
                    }
                }
            }
            let back = if rollback.is_empty() {
                "the programs already switched were switched back".to_string()
            } else {
                rollback.join("; ")
            };
            return Err(failed(
                name,
                format!("cannot switch filter `{prog}` to its new version ({e}); {back}"),
            ));
        }
        done.push(prog);
    }
    Ok(())
}

/// Whether a link of the policy has been severed (its interface or network namespace is
/// gone: the kernel detached it): probed by switching each link to the program it runs.
pub fn severed(old: &Pinned) -> bool {
    old.links.iter().any(|(prog, l)| {
        old.progs.get(prog).is_some_and(|p| {
            link::link_update(l.as_fd(), p.as_fd(), Some(p.as_fd()))
                .is_err_and(|e| e.errno() == Some(libc::ENOLINK))
        })
    })
}

/// After [`switch`]: replaces the program and map pins of the policy with those of `new`
/// (the link pins stay: they are the same links).
pub fn repin(store: &Store, name: &str, new: &Direct) -> Result<(), PolicyError> {
    let dir = store.dir(name);
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd.flatten() {
            let f = e.file_name().to_string_lossy().into_owned();
            if f.starts_with("prog_") || f.starts_with("map_") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    pin_objects(&dir, name, new)
}

/// The digest of a filter's rules, for [`PolicyRecord::rule_digests`].
pub fn rule_digest<'a>(texts: impl Iterator<Item = &'a str>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for t in texts {
        t.hash(&mut h);
    }
    h.finish()
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Replays what `pol set` changed in the old version's sets (`edits`) on the sets of the
/// new version `new`, compiled as `c`, before the switch: deletions first, then additions.
/// Returns the edits kept for the new record and a note per edit that no longer applies
/// (its set is gone, holds another type, or is full).
pub fn replay_set_edits(
    c: &pol_compiler::driver::Compiled,
    new: &Direct,
    edits: &BTreeMap<String, SetEdits>,
) -> (BTreeMap<String, SetEdits>, Vec<String>) {
    use crate::sets::{self, LiveSet};
    let mut kept = BTreeMap::new();
    let mut notes = Vec::new();
    for (set, e) in edits.iter().filter(|(_, e)| !e.is_empty()) {
        let n = e.added.len() + e.deleted.len();
        let dropped =
            |why: String| format!("{n} `pol set` change(s) of set `{set}` dropped: {why}");
        let live = sets::lookup(c, "the new version", set).and_then(|maps| {
            let mut fds = Vec::new();
            for m in &maps.maps {
                let fd = new
                    .map_fd(&m.name)
                    .ok()
                    .and_then(|fd| fd.try_clone_to_owned().ok());
                match fd {
                    Some(fd) => fds.push((fd, format!("the new version's `{}`", m.name))),
                    None => {
                        return Err(sets::SetError::Mismatch {
                            map: m.name.clone(),
                            path: "the new version".into(),
                            why: "it has no such map".into(),
                        })
                    }
                }
            }
            LiveSet::from_fds(maps, fds)
        });
        let live = match live {
            Ok(l) => l,
            Err(why) => {
                notes.push(dropped(why.to_string()));
                continue;
            }
        };
        let parse = |vs: &[String]| -> Result<Vec<sets::Member>, String> {
            vs.iter()
                .map(|v| sets::parse_value(v, live.maps.elem).map_err(|w| format!("{v}: {w}")))
                .collect()
        };
        let (deleted, added) = match (parse(&e.deleted), parse(&e.added)) {
            (Ok(d), Ok(a)) => (d, a),
            (Err(why), _) | (_, Err(why)) => {
                notes.push(dropped(format!(
                    "the set now holds {} ({why})",
                    live.maps.elem
                )));
                continue;
            }
        };
        let outcome = live.delete(&deleted).and_then(|_| live.add(&added));
        if let Err(why) = outcome {
            notes.push(format!("set `{set}`: replaying `pol set` changes: {why}"));
        }
        kept.insert(set.clone(), e.clone());
    }
    (kept, notes)
}
