//! Which BPF filesystem to pin in: the host's, whatever mount namespace pol runs in.
//!
//! `ip netns exec NS cmd` runs `cmd` in a new mount namespace with a fresh /sys, where
//! /sys/fs/bpf is not mounted. Mounting bpffs there would create a *new* instance whose pins
//! nobody outside can see (`pol set` from another shell would find no run). Instead, when
//! /sys/fs/bpf is not mounted here, pol looks for the nearest ancestor process (then pid 1)
//! in another mount namespace that has it, and pins through `/proc/<pid>/root/sys/fs/bpf`,
//! held open so the path stays valid if that process exits. Only when none has one does it
//! mount bpffs here.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::{ensure_bpffs, sys, BPFFS};

/// The bpffs directory to pin under, and what the user should know about it.
#[derive(Debug)]
pub struct PinRoot {
    path: PathBuf,
    /// The directory of another mount namespace's bpffs, kept open (see the module doc).
    _held: Option<File>,
    /// A sentence for the user (a bpffs found elsewhere or mounted), if any.
    pub note: Option<String>,
}

impl PinRoot {
    /// The bpffs directory (`/sys/fs/bpf`, or `/proc/self/fd/N` for another namespace's).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `p` (under [`PinRoot::path`]) as users find it: under /sys/fs/bpf.
    pub fn show(&self, p: &Path) -> String {
        match p.strip_prefix(&self.path) {
            Ok(rest) => Path::new(BPFFS).join(rest).display().to_string(),
            Err(_) => p.display().to_string(),
        }
    }
}

fn mnt_ns(pid: &str) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok()
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn has_bpffs(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/mounts")).is_ok_and(|m| {
        m.lines().any(|l| {
            let mut f = l.split_whitespace();
            f.nth(1) == Some(BPFFS) && f.next() == Some("bpf")
        })
    })
}

/// Finds the bpffs to pin in; mounts one at /sys/fs/bpf only as the last resort.
pub fn pin_root() -> Result<PinRoot, String> {
    let here = |note| PinRoot {
        path: PathBuf::from(BPFFS),
        _held: None,
        note,
    };
    if sys::bpffs_mounted(BPFFS).unwrap_or(true) {
        return Ok(here(None));
    }
    let ours = mnt_ns("self");
    let mut candidates = Vec::new();
    let mut pid = std::process::id();
    while let Some(p) = parent_of(pid).filter(|&p| p > 1 && candidates.len() < 64) {
        candidates.push(p);
        pid = p;
    }
    candidates.push(1);
    for pid in candidates {
        let theirs = mnt_ns(&pid.to_string());
        if theirs.is_none() || theirs == ours || !has_bpffs(pid) {
            continue;
        }
        let Ok(dir) = File::open(format!("/proc/{pid}/root{BPFFS}")) else {
            continue;
        };
        let path = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
        return Ok(PinRoot {
            path,
            _held: Some(dir),
            note: Some(format!(
                "this mount namespace has no BPF filesystem at {BPFFS} (`ip netns exec` \
                 remounts /sys); pinning in the one of process {pid}, where `pol set` and \
                 bpftool see the pins"
            )),
        });
    }
    ensure_bpffs()?;
    Ok(here(Some(format!("mounted the BPF filesystem at {BPFFS}"))))
}
