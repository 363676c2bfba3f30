//! Hook claims: which `pol run` owns which hook (network namespace, interface, XDP or tc
//! ingress/egress), so that two runs never share one silently, and so that what a run
//! killed by SIGKILL left on its hook is found and removed by the next run on that hook.
//!
//! A claim is a file `/run/pol/hooks/net<netns inode>-if<ifindex>-<hook>` holding a JSON
//! [`ClaimRecord`], locked (`flock`) by its owner for as long as it runs. The kernel drops
//! the lock when the owner dies, however it dies, so a locked claim is a live run and an
//! unlocked one that still exists is what a killed run left: its record says what to
//! remove. /run is shared by the mount namespaces `ip netns exec` creates, unlike
//! /sys/fs/bpf.
//!
//! What a SIGKILL leaves: BPF links (XDP, TCX) die with their process, so only a cls_bpf
//! filter (tagged with [`attach::TC_PRIO`]/[`attach::TC_HANDLE`]), a clsact qdisc pol
//! created, and pins (swept by [`crate::sets::sweep_stale`]) can outlive it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::attach;
use crate::sys::netlink;

/// Where claims live.
pub const CLAIM_ROOT: &str = "/run/pol/hooks";

/// [`CLAIM_ROOT`], or `$POL_CLAIM_DIR` (for systems without /run, and tests).
pub fn claim_root() -> PathBuf {
    std::env::var_os("POL_CLAIM_DIR").map_or_else(|| PathBuf::from(CLAIM_ROOT), PathBuf::from)
}

/// A hook of an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Hook {
    Xdp,
    TcIngress,
    TcEgress,
}

impl Hook {
    fn key(self) -> &'static str {
        match self {
            Hook::Xdp => "xdp",
            Hook::TcIngress => "tc-ingress",
            Hook::TcEgress => "tc-egress",
        }
    }
    fn show(self) -> &'static str {
        match self {
            Hook::Xdp => "XDP",
            Hook::TcIngress => "tc ingress",
            Hook::TcEgress => "tc egress",
        }
    }
}

/// What a claim file says about its owner and what it attached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimRecord {
    pub pid: u32,
    /// The `.pol` file of the run.
    pub file: String,
    pub program: String,
    pub iface: String,
    pub ifindex: u32,
    pub hook: Hook,
    /// `tc ingress (clsact)`, `xdp native`, ... once attached; empty before.
    #[serde(default)]
    pub how: String,
    /// Whether the run created the clsact qdisc (and so should remove it).
    #[serde(default)]
    pub qdisc_created: bool,
    /// Set when the hook belongs to a policy loaded for good (`pol load`), which no
    /// process holds: the claim stays unlocked, and counts as long as the policy's record
    /// exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
}

/// Whether loaded policy `name` still exists (its record; see `crate::policies`).
fn policy_loaded(name: &str) -> bool {
    let dir = std::env::var_os("POL_POLICY_DIR").map_or_else(
        || PathBuf::from(crate::policies::RECORD_ROOT),
        PathBuf::from,
    );
    dir.join(format!("{name}.json")).exists()
}

/// Why a hook cannot be claimed.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("{hook} of `{iface}` is already filtered by `pol run` (pid {pid}, {file}, filter `{program}`); two runs on one hook would each decide only part of the traffic: stop that run first (kill {pid})")]
    Busy {
        hook: &'static str,
        iface: String,
        pid: u32,
        file: String,
        program: String,
    },
    #[error("{hook} of `{iface}` is used by the loaded policy `{policy}`; two filters on one hook would each decide only part of the traffic: `pol unload {policy}` first, or load this file with `pol load --name {policy}` to replace it")]
    Policy {
        hook: &'static str,
        iface: String,
        policy: String,
    },
    #[error("cannot claim {hook} of `{iface}` in {dir}: {error}")]
    Io {
        hook: &'static str,
        iface: String,
        dir: String,
        error: std::io::Error,
    },
}

/// A hook this process owns; dropping it removes the claim (after the attachment it guards
/// has been detached, so claims are dropped after [`attach::Attachment`]).
#[derive(Debug)]
pub struct Claim {
    path: PathBuf,
    file: File,
    pub record: ClaimRecord,
    /// A loaded policy's claim (`record.policy`): not removed on drop, only by
    /// [`release_policy`]; dropping it unlocks it.
    keep: bool,
}

/// The network namespace of this process, as the inode of /proc/self/ns/net.
fn netns_inode() -> u64 {
    std::fs::metadata("/proc/self/ns/net").map_or(0, |m| m.ino())
}

/// The claim file of `hook` of interface `ifindex` in this network namespace.
fn claim_path(root: &Path, ifindex: u32, hook: Hook) -> PathBuf {
    root.join(format!("net{}-if{ifindex}-{}", netns_inode(), hook.key()))
}

/// Claims `record.hook` of `record.iface` for this process in `root` (normally
/// [`CLAIM_ROOT`]). Refuses a hook a live `pol run` holds. Removes what a killed run left
/// there and returns a sentence for each thing removed or that could not be.
pub fn claim(root: &Path, mut record: ClaimRecord) -> Result<(Claim, Vec<String>), ClaimError> {
    let io = |error: std::io::Error, r: &ClaimRecord| ClaimError::Io {
        hook: r.hook.show(),
        iface: r.iface.clone(),
        dir: root.display().to_string(),
        error,
    };
    record.pid = std::process::id();
    std::fs::create_dir_all(root).map_err(|e| io(e, &record))?;
    let path = claim_path(root, record.ifindex, record.hook);
    let mut notes = sweep(root, &path);
    // Lock, then check that the locked file is still the one at `path`: its previous owner
    // may have removed it between our open and our lock.
    let mut tries = 0;
    let mut file = loop {
        let file = match OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
        {
            Ok(file) => file,
            // Someone (an older pol, an admin) removed the root since create_dir_all.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && tries < 20 => {
                tries += 1;
                std::fs::create_dir_all(root).map_err(|e| io(e, &record))?;
                continue;
            }
            Err(e) => return Err(io(e, &record)),
        };
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                // A live run holds its lock for as long as it runs, but other runs' sweeps
                // and claims (and a claim being created, with no record yet) hold it only
                // for a moment: wait that out before calling the hook busy.
                if tries < 20 {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    continue;
                }
                let other = read_record(&file).unwrap_or_else(|| ClaimRecord {
                    pid: 0,
                    file: "?".into(),
                    program: "?".into(),
                    policy: None,
                    ..record.clone()
                });
                if let Some(p) = other.policy.filter(|p| policy_loaded(p)) {
                    if record.policy.as_ref() != Some(&p) {
                        return Err(ClaimError::Policy {
                            hook: record.hook.show(),
                            iface: record.iface.clone(),
                            policy: p,
                        });
                    }
                }
                return Err(ClaimError::Busy {
                    hook: record.hook.show(),
                    iface: record.iface.clone(),
                    pid: other.pid,
                    file: other.file,
                    program: other.program,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e, &record)),
        }
        let same = match (file.metadata(), std::fs::metadata(&path)) {
            (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
            _ => false,
        };
        if same {
            break file;
        }
    };
    if let Some(stale) = read_record(&file).filter(|r| r.pid != record.pid) {
        match &stale.policy {
            // The same policy claiming again (a replacement) keeps its claim.
            Some(p) if policy_loaded(p) && record.policy.as_ref() != Some(p) => {
                return Err(ClaimError::Policy {
                    hook: record.hook.show(),
                    iface: record.iface.clone(),
                    policy: p.clone(),
                });
            }
            Some(_) => {}
            None => notes.extend(remove_leftovers(&stale)),
        }
    }
    write_record(&mut file, &record).map_err(|e| io(e, &record))?;
    Ok((
        Claim {
            path,
            file,
            keep: record.policy.is_some(),
            record,
        },
        notes,
    ))
}

impl Claim {
    /// Records how the program was attached (for the next run, should this one be killed).
    pub fn attached(&mut self, how: &str, qdisc_created: bool) -> std::io::Result<()> {
        self.record.how = how.to_string();
        self.record.qdisc_created = qdisc_created;
        write_record(&mut self.file, &self.record)
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        // Unlink while locked; the lock goes with the fd. The root stays: removing it when
        // empty raced with a concurrent claim between its create_dir_all and its open.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Removes the claims under `root` (except `mine`) that no live run holds and that need no
/// cleanup, or whose cleanup can be done from here (this network namespace); returns notes.
/// A netlink claim of another namespace waits for a run there.
fn sweep(root: &Path, mine: &Path) -> Vec<String> {
    let mut notes = Vec::new();
    let here = format!("net{}-", netns_inode());
    let Ok(rd) = std::fs::read_dir(root) else {
        return notes;
    };
    for e in rd.flatten() {
        let path = e.path();
        if path == mine {
            continue;
        }
        let Ok(file) = OpenOptions::new().read(true).write(true).open(&path) else {
            continue;
        };
        // A loaded policy's claim is unlocked for good: leave it without locking it, so a
        // claimer never finds it locked by this sweep.
        if read_record(&file)
            .and_then(|r| r.policy)
            .is_some_and(|p| policy_loaded(&p))
        {
            continue;
        }
        if file.try_lock().is_err() {
            continue; // a live run
        }
        let Some(stale) = read_record(&file) else {
            continue; // being created: its creator holds no lock for a moment
        };
        if stale.policy.as_deref().is_some_and(policy_loaded) {
            continue; // held by a loaded policy, not by a process
        }
        let local = e.file_name().to_string_lossy().starts_with(&here);
        let needs_cleanup = stale.how.contains("clsact") && stale.policy.is_none();
        if local && stale.policy.is_none() {
            notes.extend(remove_leftovers(&stale));
        } else if needs_cleanup {
            continue;
        }
        let _ = std::fs::remove_file(&path);
    }
    notes
}

/// Removes the claims of loaded policy `policy` (on `pol unload`).
pub fn release_policy(root: &Path, policy: &str) {
    let Ok(rd) = std::fs::read_dir(root) else {
        return;
    };
    for e in rd.flatten() {
        let Ok(file) = File::open(e.path()) else {
            continue;
        };
        if read_record(&file).is_some_and(|r| r.policy.as_deref() == Some(policy)) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn read_record(mut file: &File) -> Option<ClaimRecord> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

fn write_record(file: &mut File, r: &ClaimRecord) -> std::io::Result<()> {
    let text = serde_json::to_string(r).map_err(std::io::Error::other)?;
    file.set_len(0)?;
    file.rewind()?;
    file.write_all(text.as_bytes())?;
    file.flush()
}

/// Removes what the killed run of `stale` left on its hook: its tagged cls_bpf filter, and
/// the clsact qdisc it created once no filter is left under it.
fn remove_leftovers(stale: &ClaimRecord) -> Vec<String> {
    let mut notes = Vec::new();
    let who = format!("a killed `pol run` of {} (pid {})", stale.file, stale.pid);
    if stale.hook == Hook::Xdp || !stale.how.contains("clsact") {
        // BPF links die with their process: nothing of it is attached any more.
        return notes;
    }
    let egress = stale.hook == Hook::TcEgress;
    let ours = |f: &netlink::TcFilter| {
        f.prio == attach::TC_PRIO && f.handle == attach::TC_HANDLE && f.kind == "bpf"
    };
    match netlink::tc_filters(stale.ifindex, egress) {
        Ok(fs) if fs.iter().any(ours) => {
            match netlink::tc_filter_del(stale.ifindex, egress, attach::TC_PRIO, attach::TC_HANDLE)
            {
                Ok(()) => notes.push(format!(
                    "removed the tc filter `{}` that {who} left on {} of `{}`",
                    stale.program,
                    stale.hook.show(),
                    stale.iface
                )),
                Err(e) => notes.push(format!(
                    "{who} left its tc filter `{}` on {} of `{}` and it cannot be removed \
                     ({e}): `tc filter del dev {} {} pref {}`",
                    stale.program,
                    stale.hook.show(),
                    stale.iface,
                    stale.iface,
                    if egress { "egress" } else { "ingress" },
                    attach::TC_PRIO
                )),
            }
        }
        Ok(_) => {}
        Err(e) => notes.push(format!(
            "cannot list the tc filters of `{}` to remove what {who} left: {e}",
            stale.iface
        )),
    }
    if stale.qdisc_created {
        let empty = |eg| netlink::tc_filters(stale.ifindex, eg).is_ok_and(|f| f.is_empty());
        if empty(false) && empty(true) && netlink::qdisc_del_clsact(stale.ifindex).is_ok() {
            notes.push(format!(
                "removed the clsact qdisc that {who} added to `{}`",
                stale.iface
            ));
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(pid: u32) -> ClaimRecord {
        ClaimRecord {
            pid,
            file: "a.pol".into(),
            program: "f".into(),
            iface: "va".into(),
            ifindex: 4242,
            hook: Hook::Xdp,
            how: "xdp native".into(),
            qdisc_created: false,
            policy: None,
        }
    }

    /// A claim file as another run left it, locked (through its own open file, as another
    /// process would) for `hold`.
    fn locked_by_other(
        root: &Path,
        pid: u32,
        hold: std::time::Duration,
    ) -> std::thread::JoinHandle<()> {
        std::fs::create_dir_all(root).expect("root");
        let path = claim_path(root, 4242, Hook::Xdp);
        let mut file = File::create(&path).expect("claim file");
        write_record(&mut file, &record(pid)).expect("record");
        file.lock().expect("lock");
        std::thread::spawn(move || {
            std::thread::sleep(hold);
            drop(file);
        })
    }

    fn temp_root(tag: &str) -> PathBuf {
        let root = std::env::temp_dir().join(format!("pol-hooks-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        root
    }

    /// Other runs' sweeps lock every claim for a moment; that is not a busy hook (it made
    /// `pol load` refuse a free hook under parallel tests).
    #[test]
    fn a_claim_locked_for_a_moment_is_claimed_once_released() {
        let root = temp_root("moment");
        let t = locked_by_other(&root, 1, std::time::Duration::from_millis(40));
        let (claim, _) = claim(&root, record(0)).expect("claimed after the sweep let go");
        assert_eq!(claim.record.pid, std::process::id());
        t.join().expect("thread");
        let path = claim.path.clone();
        drop(claim);
        assert!(!path.exists(), "the claim file is removed on drop");
        let _ = std::fs::remove_dir_all(&root);
    }

    /// Runs claiming and releasing different hooks at once never find the root gone (a
    /// release used to remove the empty root while another run was between its
    /// create_dir_all and its open: "cannot claim ... No such file or directory").
    #[test]
    fn concurrent_claims_and_releases_all_succeed() {
        let root = temp_root("race");
        let threads: Vec<_> = (0..4u32)
            .map(|t| {
                let root = root.clone();
                std::thread::spawn(move || {
                    for _ in 0..300 {
                        let r = ClaimRecord {
                            ifindex: 5000 + t,
                            ..record(0)
                        };
                        match claim(&root, r) {
                            Ok((c, _)) => drop(c),
                            Err(e) => return Err(e.to_string()),
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        for t in threads {
            let outcome = t.join().expect("thread");
            assert_eq!(outcome, Ok(()));
        }
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn a_claim_held_by_a_live_run_is_busy_and_names_it() {
        let root = temp_root("live");
        let t = locked_by_other(&root, 77, std::time::Duration::from_millis(600));
        let err = claim(&root, record(0)).expect_err("busy");
        assert!(matches!(&err, ClaimError::Busy { pid: 77, .. }), "{err}");
        t.join().expect("thread");
        let _ = std::fs::remove_dir_all(&root);
    }
}
