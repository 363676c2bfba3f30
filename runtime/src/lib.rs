//! pol runtime: loads compiled pol objects (aya), attaches them, runs packets through them.
//!
//! `sys` holds the raw `bpf(2)` calls and is the only module with `unsafe`; `load` loads
//! ELF objects through aya and reads their maps; `packet` builds test packets.

pub mod attach;
pub mod direct;
pub mod flow;
pub mod hooks;
pub mod live;
pub mod load;
pub mod metrics;
pub mod packet;
pub mod pinroot;
pub mod policies;
pub mod security;
pub mod sets;
pub mod sys;
pub mod testcase;
pub mod testrun;
pub mod trace;

/// Where pol pins maps and expects the BPF filesystem.
pub const BPFFS: &str = "/sys/fs/bpf";

/// Mounts bpffs at /sys/fs/bpf unless it is already mounted there.
/// The error is a sentence saying why it could not be mounted.
pub fn ensure_bpffs() -> Result<(), String> {
    if sys::bpffs_mounted(BPFFS)? {
        return Ok(());
    }
    if !std::path::Path::new(BPFFS).is_dir() {
        std::fs::create_dir_all(BPFFS)
            .map_err(|e| format!("cannot create the bpffs mount point {BPFFS}: {e}"))?;
    }
    sys::mount_bpffs(BPFFS)
}
