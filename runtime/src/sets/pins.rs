//! Pins: the set maps `pol run` pins while it runs, found by `pol set`, swept when stale.

use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};

use super::SetError;
use crate::sys;

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
