//! Changing a running set: its pinned maps opened, values added, deleted and listed.

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use pol_compiler::obj::MapKind;

use super::values::sort_key;
use super::{
    decode, encode, show_in, Keys, Member, SetError, SetMap, SetMapKind, SetMaps, PRESENT,
};
use crate::sys::{self, SysError};

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
    /// Opens the pinned maps of `maps` in `dir` (a `pol run`'s pins, named after the maps),
    /// checking they are what the file says.
    pub fn open(dir: &Path, maps: SetMaps) -> Result<LiveSet, SetError> {
        LiveSet::open_with(maps, |m| dir.join(m))
    }

    /// [`LiveSet::open`] with the pin of each map where `pin_of(map name)` says (a loaded
    /// policy pins its maps as `map_NAME`).
    pub fn open_with(
        maps: SetMaps,
        pin_of: impl Fn(&str) -> std::path::PathBuf,
    ) -> Result<LiveSet, SetError> {
        let mut fds = Vec::new();
        for m in &maps.maps {
            let path = pin_of(&m.name);
            if !path.exists() {
                return Err(SetError::Mismatch {
                    map: m.name.clone(),
                    path: path.display().to_string(),
                    why: "the running filter has no such map".into(),
                });
            }
            let fd = sys::pin::obj_get(&path)
                .map_err(sys_err(format!("cannot open set map `{}`", m.name)))?;
            fds.push((fd, path.display().to_string()));
        }
        LiveSet::from_fds(maps, fds)
    }

    /// The set whose maps are `fds` (in the order of `maps.maps`, each with where it is
    /// pinned, for errors), checking they are what the file says.
    pub fn from_fds(maps: SetMaps, fds: Vec<(OwnedFd, String)>) -> Result<LiveSet, SetError> {
        for (m, (fd, path)) in maps.maps.iter().zip(&fds) {
            let info = sys::map_info(fd.as_fd())
                .map_err(sys_err(format!("cannot read set map `{}`", m.name)))?;
            let want_type = match m.kind {
                SetMapKind::Addr { lpm: true, .. } | SetMapKind::Name => {
                    MapKind::LpmTrie.bpf_type()
                }
                _ => MapKind::Hash.bpf_type(),
            };
            if info.key_size != m.key_size() || info.map_type != want_type {
                return Err(SetError::Mismatch {
                    map: m.name.clone(),
                    path: path.clone(),
                    why: format!(
                        "map type {} with {}-byte keys, expected type {want_type} with {}-byte keys",
                        info.map_type,
                        info.key_size,
                        m.key_size()
                    ),
                });
            }
        }
        if fds.len() != maps.maps.len() {
            return Err(SetError::Mismatch {
                map: maps.set.clone(),
                path: fds.first().map(|f| f.1.clone()).unwrap_or_default(),
                why: format!("{} maps, expected {}", fds.len(), maps.maps.len()),
            });
        }
        let fds: Vec<OwnedFd> = fds.into_iter().map(|(fd, _)| fd).collect();
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
    pub fn add(&self, values: &[Member]) -> Result<Vec<Change>, SetError> {
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
                            what: format!(
                                "cannot add {} to map `{}`",
                                show_in(v, self.maps.elem),
                                m.name
                            ),
                            err,
                        })
                    }
                }
            }
            out.push(if added {
                Change::Added(show_in(v, self.maps.elem))
            } else {
                Change::AlreadyThere(show_in(v, self.maps.elem))
            });
        }
        Ok(out)
    }

    /// Encodes every value first, then deletes them.
    pub fn delete(&self, values: &[Member]) -> Result<Vec<Change>, SetError> {
        let keys = self.encode_all(values)?;
        let mut out = Vec::new();
        for (v, ks) in values.iter().zip(keys) {
            let mut deleted = false;
            for (i, key) in ks {
                let m = &self.maps.maps[i];
                deleted |= sys::map_delete(self.fds[i].as_fd(), &key).map_err(sys_err(format!(
                    "cannot delete {} from map `{}`",
                    show_in(v, self.maps.elem),
                    m.name
                )))?;
            }
            out.push(if deleted {
                Change::Deleted(show_in(v, self.maps.elem))
            } else {
                Change::NotThere(show_in(v, self.maps.elem))
            });
        }
        Ok(out)
    }

    fn encode_all(&self, values: &[Member]) -> Result<Vec<Keys>, SetError> {
        values.iter().map(|v| encode(&self.maps, v)).collect()
    }

    /// Every value in the maps, sorted and without duplicates (an integer set has the same
    /// values in each of its maps).
    pub fn list(&self) -> Result<Vec<Member>, SetError> {
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
