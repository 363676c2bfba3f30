//! Attaching connect and bind rules to a cgroup: each `cgroup/connect4|connect6|bind4|
//! bind6` program through a BPF link on the cgroup2 directory's fd, so it runs for every
//! process in that cgroup and below it. Links are owned fds: dropping them (an error
//! half-way, the end of the run, the process killed) detaches every program.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::sys::link::{link_create, AttachType};
use crate::trace::load::ProbeObject;

/// The attach type of a cgroup hook by its section name.
pub fn attach_type(name: &str) -> Option<AttachType> {
    Some(match name {
        "connect4" => AttachType::CgroupInet4Connect,
        "connect6" => AttachType::CgroupInet6Connect,
        "bind4" => AttachType::CgroupInet4Bind,
        "bind6" => AttachType::CgroupInet6Bind,
        "sendmsg4" => AttachType::CgroupUdp4Sendmsg,
        "sendmsg6" => AttachType::CgroupUdp6Sendmsg,
        _ => return None,
    })
}

/// Why rules could not be attached to a cgroup: one sentence each.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("connect and bind rules attach to a cgroup v2, and no cgroup2 file system is mounted (mount -t cgroup2 none /sys/fs/cgroup)")]
    NoCgroup2,
    #[error("cannot open cgroup {}: {reason}", .path.display())]
    Open { path: PathBuf, reason: String },
    #[error("{} is not a cgroup v2 directory (cgroup2 is mounted at {})", .path.display(), .root.display())]
    NotCgroup2 { path: PathBuf, root: PathBuf },
    #[error("the object has no program `{0}` (a bug in pol)")]
    NoProgram(String),
    #[error("no cgroup hook `{0}` (a bug in pol)")]
    NoHook(String),
    #[error("cannot attach `{program}` to cgroup {}: {reason}", .path.display())]
    Attach {
        program: String,
        path: PathBuf,
        reason: String,
    },
}

/// The cgroup rules attach to when none is named: the cgroup2 root (every process).
pub fn default_cgroup() -> Result<PathBuf, CgroupError> {
    crate::trace::cgroups::cgroup2_root().ok_or(CgroupError::NoCgroup2)
}

/// Opens `path` as a cgroup v2 directory: it must lie under the cgroup2 mount.
pub fn open(path: &Path) -> Result<OwnedFd, CgroupError> {
    let root = default_cgroup()?;
    let full = std::fs::canonicalize(path).map_err(|e| CgroupError::Open {
        path: path.into(),
        reason: e.to_string(),
    })?;
    if !full.starts_with(&root) {
        return Err(CgroupError::NotCgroup2 {
            path: path.into(),
            root,
        });
    }
    let dir = std::fs::File::open(&full).map_err(|e| CgroupError::Open {
        path: path.into(),
        reason: e.to_string(),
    })?;
    if !dir.metadata().is_ok_and(|m| m.is_dir()) {
        return Err(CgroupError::Open {
            path: path.into(),
            reason: "not a directory".into(),
        });
    }
    Ok(dir.into())
}

/// Attaches each `(program, hook)` of `obj` to the cgroup `cg` (opened by [`open`] from
/// `path`): all or none.
pub fn attach(
    obj: &ProbeObject,
    programs: &[(String, String)],
    cg: BorrowedFd<'_>,
    path: &Path,
) -> Result<Vec<OwnedFd>, CgroupError> {
    let mut links = Vec::new();
    for (program, hook) in programs {
        let kind = attach_type(hook).ok_or_else(|| CgroupError::NoHook(hook.clone()))?;
        let prog = obj
            .program_fd(program)
            .map_err(|_| CgroupError::NoProgram(program.clone()))?;
        let target = cg.as_raw_fd() as u32;
        // On failure `links` drops here, detaching what was attached before.
        let link = link_create(prog, target, kind, 0).map_err(|e| CgroupError::Attach {
            program: program.clone(),
            path: path.into(),
            reason: e.to_string(),
        })?;
        links.push(link);
    }
    Ok(links)
}
