//! The BPF filesystem (is it mounted, mounting it at /sys/fs/bpf) and tracefs.

use std::ffi::CString;

/// Whether a `bpf` filesystem is mounted at `path`, according to /proc/self/mounts.
pub fn bpffs_mounted(path: &str) -> Result<bool, String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts")
        .map_err(|e| format!("cannot read /proc/self/mounts to look for bpffs: {e}"))?;
    Ok(mounts.lines().any(|line| {
        let mut fields = line.split_whitespace();
        let _source = fields.next();
        let target = fields.next();
        let fstype = fields.next();
        target == Some(path) && fstype == Some("bpf")
    }))
}

/// Mounts a `bpf` filesystem at `path` (which must exist).
pub fn mount_bpffs(path: &str) -> Result<(), String> {
    mount(
        path,
        c"bpf",
        "bpffs",
        "this kernel has no bpf filesystem (CONFIG_BPF_SYSCALL is off)",
    )
}

/// Mounts a `tracefs` filesystem at `path` (which must exist), for tracepoint ids and
/// format files, and the uprobe events aya may create there.
pub fn mount_tracefs(path: &str) -> Result<(), String> {
    mount(
        path,
        c"tracefs",
        "tracefs",
        "this kernel has no tracefs (CONFIG_TRACING is off)",
    )
}

/// Mounts a filesystem of type `fstype` (also its source) at `path`; errors name it `shown`
/// and say `no_fs` when the kernel lacks it.
fn mount(path: &str, fstype: &std::ffi::CStr, shown: &str, no_fs: &str) -> Result<(), String> {
    let target =
        CString::new(path).map_err(|_| format!("mount path {path:?} contains a NUL byte"))?;
    // SAFETY: all pointers are NUL-terminated strings that live across the call; data is null.
    let ret = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if ret == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    let why = match err.raw_os_error() {
        Some(libc::EPERM) => "mounting needs root (CAP_SYS_ADMIN)",
        Some(libc::ENOENT) => "the mount point does not exist",
        Some(libc::ENODEV) => no_fs,
        _ => "the kernel refused the mount",
    };
    Err(format!("cannot mount {shown} at {path}: {why} ({err})"))
}
